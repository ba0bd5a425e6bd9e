"""``snapshot save|restore|inspect`` and ``config write|read|list|delete``, as Consul's.

Snapshots stream through the HTTP API in both directions (a large archive is
never held in memory here), with progress on stderr for each 16 MiB;
``inspect`` reads a local archive and checks it as a restore would. Config
entries are written from a JSON or HCL file; HCL's snake_case keys become
Consul's CamelCase (``max_inbound_connections`` -> ``MaxInboundConnections``)
except inside the free-form ``Meta`` and ``Config`` maps, as Consul's decoder
does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, BinaryIO, cast

import aiohttp

from agent.commands.api import APIError, add_http_flags, client_from
from agent.configfile.parse import plain, read_source
from agent.state.snapshot import read_archive

__all__ = ["add_parsers", "camel_keys"]

CHUNK = 1024 * 1024
PROGRESS_EVERY = 16 * CHUNK
#: Words Consul writes in capitals inside field names.
_ACRONYMS = {"id": "ID", "tls": "TLS", "http": "HTTP", "sni": "SNI", "ttl": "TTL",
             "grpc": "GRPC", "tcp": "TCP", "udp": "UDP", "dns": "DNS", "acl": "ACL",
             "url": "URL", "uri": "URI", "ip": "IP", "jwt": "JWT", "ca": "CA"}  # fmt: skip
_FREE_FORM = {"meta", "config"}


def _camel(key: str) -> str:
    if "_" not in key and key[:1].isupper():
        return key
    return "".join(_ACRONYMS.get(w.lower(), w[:1].upper() + w[1:]) for w in key.split("_"))


def camel_keys(value: Any) -> Any:
    """``value`` with Consul's field casing (see the module docstring)."""
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = _camel(str(key))
        out[name] = item if str(key).lower() in _FREE_FORM else camel_keys(item)
    return out


def _progress(done: int, what: str) -> None:
    print(f"{what} {done / 2**20:.0f} MiB...", file=sys.stderr, flush=True)


def _open(path: Path | str, mode: str) -> BinaryIO:
    """A file for the CLI's own use (a one-shot command: blocking I/O is fine)."""
    return cast(BinaryIO, open(path, mode))


def _size(path: Path) -> int:
    return os.path.getsize(path)


def _inspect(path: str) -> int:
    with _open(path, "rb") as f:
        meta, entries = read_archive(f)
    prefixes: dict[str, int] = {}
    for key, _ in entries:
        top = key.split("/", 1)[0]
        prefixes[top] = prefixes.get(top, 0) + 1
    rows = [
        ("ID", meta.id),
        ("Size", str(meta.size)),
        ("Index", str(meta.index)),
        ("Term", str(meta.term)),
        ("Version", str(meta.version)),
        ("Datacenter", meta.datacenter),
        ("Store", meta.store),
    ]
    for name, value in rows:
        print(f" {name:<12} {value}")
    print("\n Type" + " " * 16 + "Count")
    for top, count in sorted(prefixes.items()):
        print(f" {top:<20} {count}")
    return 0


async def snapshot(args: argparse.Namespace) -> int:
    if args.op == "inspect":
        return _inspect(args.file)
    async with client_from(args) as api:
        if args.op == "save":
            return await _save(api, Path(args.file))
        return await _restore(api, Path(args.file))


async def _save(api: Any, path: Path) -> int:
    tmp = path.with_name(path.name + ".part")
    index = 0
    async with api.session.get(
        api.base + "/v1/snapshot",
        headers=api._headers(),
        ssl=api._ssl if api._ssl is not None else True,
        timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=60),
    ) as resp:
        if resp.status != 200:
            raise APIError(resp.status, (await resp.read()).decode(errors="replace"))
        index = int(resp.headers.get("X-Consul-Index", "0") or 0)
        done = 0
        with _open(tmp, "wb") as out:
            async for chunk in resp.content.iter_chunked(CHUNK):
                out.write(chunk)
                before, done = done, done + len(chunk)
                if done // PROGRESS_EVERY > before // PROGRESS_EVERY:
                    _progress(done, "Saved")
    with _open(tmp, "rb") as f:
        read_archive(f)  # verified before it takes the final name
    tmp.replace(path)
    print(f"Saved and verified snapshot to index {index}")
    return 0


async def _restore(api: Any, path: Path) -> int:
    size = _size(path)

    async def body() -> Any:
        sent = 0
        with _open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk
                before, sent = sent, sent + len(chunk)
                if sent // PROGRESS_EVERY > before // PROGRESS_EVERY:
                    _progress(sent, "Sent")

    async with api.session.put(
        api.base + "/v1/snapshot",
        data=body(),
        headers={**api._headers(), "Content-Length": str(size)},
        ssl=api._ssl if api._ssl is not None else True,
        timeout=aiohttp.ClientTimeout(total=None, connect=10, sock_read=600),
    ) as resp:
        if resp.status != 200:
            raise APIError(resp.status, (await resp.read()).decode(errors="replace"))
    print("Restored snapshot")
    return 0


async def config(args: argparse.Namespace) -> int:
    async with client_from(args) as api:
        if args.op == "write":
            data = camel_keys(plain(read_source(args.file).data))
            params = {"cas": args.modify_index} if args.cas else None
            ok = await api.put("/v1/config", params, data)
            if not ok:
                print(f"Config entry not updated: {data.get('Kind')}/{data.get('Name')}")
                return 1
            print(f"Config entry written: {data.get('Kind')}/{data.get('Name')}")
            return 0
        if not args.kind:
            print("Must specify the -kind parameter", file=sys.stderr)
            return 1
        if args.op == "list":
            entries, _ = await api.get(f"/v1/config/{args.kind}")
            for entry in entries or []:
                print(entry["Name"])
            return 0
        if not args.name:
            print("Must specify the -name parameter", file=sys.stderr)
            return 1
        path = f"/v1/config/{args.kind}/{args.name}"
        if args.op == "read":
            entry, _ = await api.get(path)
            print(json.dumps(entry, indent=4))
            return 0
        params = {"cas": args.modify_index} if args.cas else None
        _, _, raw = await api.request("DELETE", path, params)
        if args.cas and raw.strip() == b"false":
            print(f"Config entry not deleted: {args.kind}/{args.name}")
            return 1
        print(f"Config entry deleted: {args.kind}/{args.name}")
        return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("snapshot", help="save, restore and inspect snapshots of the state")
    p.add_argument("op", choices=["save", "restore", "inspect"])
    p.add_argument("file")
    add_http_flags(p)
    p.set_defaults(run=snapshot)
    c = sub.add_parser("config", help="configuration entries")
    c.add_argument("op", choices=["write", "read", "list", "delete"])
    c.add_argument("file", nargs="?", default="")
    c.add_argument("-kind", "--kind", default="")
    c.add_argument("-name", "--name", default="")
    c.add_argument("-cas", "--cas", action="store_true")
    c.add_argument("-modify-index", "--modify-index", dest="modify_index", type=int, default=0)
    add_http_flags(c)
    c.set_defaults(run=config)
