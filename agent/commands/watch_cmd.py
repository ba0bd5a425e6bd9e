"""``watch`` (Consul's watch types over blocking queries) and ``event``.

Each change of the watched result (its ``X-Consul-Index`` moved) is written
as Consul's JSON: to stdout, or, with a handler (``watch -type key -key k
handler args`` or after ``--``), to the handler's stdin, run with ``sh -c``
and ``CONSUL_INDEX`` in its environment. Without a handler Consul's watch
prints the first result and exits; ``-count N`` (ours) stops after N
results either way (0: never, the default with a handler).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from agent.commands.api import APIError, Client, add_http_flags, client_from

__all__ = ["add_parsers", "read_watch"]

WAIT = 300.0


async def read_watch(
    api: Client, args: argparse.Namespace, index: int, wait: float
) -> tuple[Any, int]:
    """One (blocking) read of the watched thing: (Consul's JSON, index)."""
    kind = args.type
    if kind == "key":
        pairs, new = await api.get(f"/v1/kv/{args.key}", index=index, wait=wait, ok_404=True)
        return (pairs[0] if pairs else None), new
    if kind == "keyprefix":
        pairs, new = await api.get(
            f"/v1/kv/{args.prefix}", {"recurse": True}, index=index, wait=wait, ok_404=True
        )
        return (pairs or []), new
    if kind == "services":
        return await api.get("/v1/catalog/services", index=index, wait=wait)
    if kind == "nodes":
        return await api.get("/v1/catalog/nodes", index=index, wait=wait)
    if kind == "service":
        params: dict[str, Any] = {"passing": True if args.passingonly else None}
        if args.tag:
            params["tag"] = args.tag
        return await api.get(f"/v1/health/service/{args.service}", params, index=index, wait=wait)
    if kind == "checks":
        if args.service:
            return await api.get(f"/v1/health/checks/{args.service}", index=index, wait=wait)
        return await api.get(f"/v1/health/state/{args.state or 'any'}", index=index, wait=wait)
    params = {"name": args.name} if args.name else {}
    return await api.get("/v1/event/list", params, index=index, wait=wait)


async def _handle(handler: str, data: bytes, index: int) -> None:
    env = {**os.environ, "CONSUL_INDEX": str(index)}
    child = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", handler, stdin=asyncio.subprocess.PIPE, env=env
    )
    await child.communicate(data)
    if child.returncode:
        print(f"Error executing handler: exit status {child.returncode}", file=sys.stderr)


async def watch(args: argparse.Namespace) -> int:
    needs = {"key": "key", "keyprefix": "prefix", "service": "service"}
    if args.type in needs and not getattr(args, needs[args.type]):
        print(f"Must specify a single {needs[args.type]} to watch", file=sys.stderr)
        return 1
    handler = " ".join(a for a in args.handler if a != "--")
    count = args.count if args.count is not None else (0 if handler else 1)
    shown, index = 0, 0
    async with client_from(args) as api:
        while count == 0 or shown < count:
            try:
                value, new_index = await read_watch(api, args, index, args.wait_seconds)
            except APIError as exc:
                print(f"Error querying Consul agent: {exc}", file=sys.stderr)
                return 1
            if new_index < index:  # the index went backwards: start over, as Consul's watch
                index = 0
                continue
            if new_index != index or index == 0:
                data = json.dumps(value, indent=4)
                if handler:
                    await _handle(handler, (data + "\n").encode(), new_index)
                else:
                    print(data, flush=True)
                shown += 1
            index = max(new_index, 1)
    return 0


async def event(args: argparse.Namespace) -> int:
    if not args.name:
        print("Error! Event name must be specified", file=sys.stderr)
        return 1
    params = {
        "service": args.service or None,
        "node": args.node or None,
        "tag": args.tag or None,
    }
    async with client_from(args) as api:
        try:
            fired = await api.put(
                f"/v1/event/fire/{args.name}", params, (args.payload or "").encode()
            )
        except APIError as exc:
            print(f"Error firing event: {exc}", file=sys.stderr)
            return 1
    print(f"Event ID: {fired['ID']}")
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("watch", help="run a handler (or print) each time a query's result changes")
    p.add_argument(
        "-type",
        "--type",
        required=True,
        choices=["key", "keyprefix", "services", "nodes", "service", "checks", "event"],
    )
    p.add_argument("-key", "--key", default="")
    p.add_argument("-prefix", "--prefix", default="")
    p.add_argument("-service", "--service", default="")
    p.add_argument("-tag", "--tag", default="")
    p.add_argument(
        "-passingonly", "--passingonly", "--passing", dest="passingonly", action="store_true"
    )
    p.add_argument("-state", "--state", default="")
    p.add_argument("-name", "--name", default="")
    p.add_argument("-count", "--count", type=int, default=None, help="stop after N results")
    p.add_argument("--wait-seconds", type=float, default=WAIT, help=argparse.SUPPRESS)
    add_http_flags(p)
    p.add_argument("handler", nargs=argparse.REMAINDER)
    p.set_defaults(run=watch)

    p = sub.add_parser("event", help="fire a user event")
    p.add_argument("-name", "--name", default="")
    p.add_argument("-service", "--service", default="")
    p.add_argument("-node", "--node", default="")
    p.add_argument("-tag", "--tag", default="")
    add_http_flags(p)
    p.add_argument("payload", nargs="?", default="")
    p.set_defaults(run=event)
