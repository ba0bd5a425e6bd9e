"""``kv get|put|delete|export|import``, with Consul's export format (base64 values)."""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path
from typing import Any

from agent.commands.api import APIError, add_http_flags, client_from

__all__ = ["add_parsers", "export_entries"]


def _value(pair: dict[str, Any]) -> bytes:
    raw = pair.get("Value")
    return base64.b64decode(raw) if raw else b""


def export_entries(pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consul's ``kv export`` entries: ``key``, ``flags``, ``value`` (base64)."""
    return [
        {"key": p["Key"], "flags": int(p.get("Flags", 0)), "value": p.get("Value") or ""}
        for p in pairs
    ]


def _read_data(arg: str | None) -> bytes:
    """A value as Consul's CLI takes it: literal, ``@file``, or ``-`` for stdin."""
    if arg is None:
        return b""
    if arg == "-":
        return sys.stdin.buffer.read()
    if arg.startswith("@"):
        return Path(arg[1:]).read_bytes()
    return arg.encode()


async def kv(args: argparse.Namespace) -> int:
    async with client_from(args) as api:
        try:
            return await _kv(args, api)
        except APIError as exc:
            print(f"Error! {exc}", file=sys.stderr)
            return 1


async def _kv(args: argparse.Namespace, api: Any) -> int:
    key = (args.key or "").lstrip("/") if args.op != "import" else ""
    if args.op == "get":
        if args.keys:
            kparams = {"keys": True, "separator": args.separator if args.separator else "/"}
            keys, _ = await api.get(f"/v1/kv/{key}", kparams, ok_404=True)
            for k in keys or []:
                print(k)
            return 0
        if args.recurse:
            pairs, _ = await api.get(f"/v1/kv/{key}", {"recurse": True}, ok_404=True)
            for p in pairs or []:
                print(f"{p['Key']}:{_value(p).decode(errors='replace')}")
            return 0
        pairs, _ = await api.get(f"/v1/kv/{key}", ok_404=True)
        if not pairs:
            print(f"Error! No key exists at: {key}", file=sys.stderr)
            return 1
        pair = pairs[0]
        if args.detailed:
            for name in ("CreateIndex", "Flags", "Key", "LockIndex", "ModifyIndex", "Session"):
                print(f"{name:<16}{pair.get(name, '')}")
            print(f"{'Value':<16}{_value(pair).decode(errors='replace')}")
            return 0
        sys.stdout.write(_value(pair).decode(errors="replace") + "\n")
        return 0
    if args.op == "put":
        params: dict[str, Any] = {"flags": args.flags or None}
        if args.cas:
            params["cas"] = args.modify_index or 0
        if args.acquire or args.release:
            if not args.session:
                print(
                    "Error! Missing -session (required with -acquire and -release)", file=sys.stderr
                )
                return 1
            params["acquire" if args.acquire else "release"] = args.session
        ok = await api.put(f"/v1/kv/{key}", params, _read_data(args.value))
        if ok is False:
            if args.cas:
                print(f"Error! Did not write to {key}: CAS failed", file=sys.stderr)
            else:
                print(f"Error! Failed writing data to {key}", file=sys.stderr)
            return 1
        print(f"Success! Data written to: {key}")
        return 0
    if args.op == "delete":
        dparams: dict[str, Any] = {"recurse": True if args.recurse else None}
        if args.cas:
            dparams["cas"] = args.modify_index or 0
        ok = await api.request("DELETE", f"/v1/kv/{key}", dparams)
        body = json.loads(ok[2] or b"true")
        if body is False:
            print(f"Error! Did not delete key {key}: CAS failed", file=sys.stderr)
            return 1
        if args.recurse:
            print(f"Success! Deleted keys with prefix: {key}")
        else:
            print(f"Success! Deleted key: {key}")
        return 0
    if args.op == "export":
        pairs, _ = await api.get(f"/v1/kv/{key}", {"recurse": True}, ok_404=True)
        print(json.dumps(export_entries(pairs or []), indent="\t"))
        return 0
    # import
    source = args.key if args.key is not None else "-"
    try:
        entries = json.loads(_read_data(source))
    except (ValueError, OSError) as exc:
        print(f"Error! Cannot read the data to import: {exc}", file=sys.stderr)
        return 1
    if not isinstance(entries, list):
        print("Error! The data to import must be a JSON array", file=sys.stderr)
        return 1
    for entry in entries:
        if not isinstance(entry, dict) or "key" not in entry:
            print(f"Error! Bad entry to import: {json.dumps(entry)[:80]}", file=sys.stderr)
            return 1
        try:
            value = base64.b64decode(entry.get("value") or "", validate=True)
        except ValueError:
            print(f"Error! Value of {entry['key']} is not base64", file=sys.stderr)
            return 1
        target = args.prefix + entry["key"]
        await api.put(f"/v1/kv/{target}", {"flags": entry.get("flags") or None}, value)
        print(f"Imported: {target}")
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("kv", help="read and write the KV store")
    p.add_argument("op", choices=["get", "put", "delete", "export", "import"])
    p.add_argument("key", nargs="?", default=None)
    p.add_argument("value", nargs="?", default=None)
    p.add_argument("-recurse", "--recurse", action="store_true")
    p.add_argument("-keys", "--keys", action="store_true")
    p.add_argument("-separator", "--separator", default="")
    p.add_argument("-detailed", "--detailed", action="store_true")
    p.add_argument("-cas", "--cas", action="store_true")
    p.add_argument("-modify-index", "--modify-index", dest="modify_index", type=int, default=0)
    p.add_argument("-flags", "--flags", type=int, default=0)
    p.add_argument("-acquire", "--acquire", action="store_true")
    p.add_argument("-release", "--release", action="store_true")
    p.add_argument("-session", "--session", default="")
    p.add_argument("-prefix", "--prefix", default="", help="import: prepended to every key")
    add_http_flags(p)
    p.set_defaults(run=kv)
