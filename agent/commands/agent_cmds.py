"""``members``, ``join``, ``leave``, ``force-leave``, ``reload``, ``maint``, ``monitor``,
``info`` and ``validate``: Consul's agent commands, printing what Consul's print."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from agent.commands.api import APIError, add_http_flags, client_from
from agent.commands.table import print_table
from agent.configfile import ConfigError, load_sources

__all__ = ["add_parsers"]

_STATUS = {0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed"}


async def members(args: argparse.Namespace) -> int:
    async with client_from(args) as api:
        data, _ = await api.get("/v1/agent/members", {"wan": True if args.wan else None})
    rows = [
        ["Node", "Address", "Status", "Type", "Build", "Protocol", "DC", "Partition", "Segment"]
    ]
    for m in sorted(data or [], key=lambda m: m["Name"]):
        tags: dict[str, str] = m.get("Tags") or {}
        server = tags.get("role") == "consul"
        status = _STATUS.get(int(m.get("Status", 0)), "unknown")
        if args.status and status != args.status:
            continue
        rows.append(
            [
                m["Name"],
                f"{m.get('Addr', '')}:{m.get('Port', 0)}",
                status,
                "server" if server else "client",
                tags.get("build", tags.get("version", "")).split(":")[0],
                tags.get("vsn", "2"),
                tags.get("dc", ""),
                "default",
                "<all>" if server else "<default>",
            ]
        )
    print_table(rows)
    return 0


async def join(args: argparse.Namespace) -> int:
    joined = 0
    async with client_from(args) as api:
        for address in args.address:
            try:
                await api.put(f"/v1/agent/join/{address}", {"wan": True if args.wan else None})
                joined += 1
            except APIError as exc:
                print(f"Error joining address '{address}': {exc}", file=sys.stderr)
    if joined == 0:
        print("Failed to join any nodes.", file=sys.stderr)
        return 1
    print(f"Successfully joined cluster by contacting {joined} nodes.")
    return 0


async def leave(args: argparse.Namespace) -> int:
    async with client_from(args) as api:
        try:
            await api.put("/v1/agent/leave")
        except APIError as exc:
            print(f"Error leaving: {exc}", file=sys.stderr)
            return 1
    print("Graceful leave complete")
    return 0


async def force_leave(args: argparse.Namespace) -> int:
    params = {"prune": True if args.prune else None, "wan": True if args.wan else None}
    async with client_from(args) as api:
        try:
            await api.put(f"/v1/agent/force-leave/{args.node}", params)
        except APIError as exc:
            print(f"Error force leaving: {exc}", file=sys.stderr)
            return 1
    return 0


async def reload(args: argparse.Namespace) -> int:
    async with client_from(args) as api:
        try:
            await api.put("/v1/agent/reload")
        except APIError as exc:
            print(f"Error reloading: {exc}", file=sys.stderr)
            return 1
    print("Configuration reload triggered")
    return 0


async def maint(args: argparse.Namespace) -> int:
    if args.enable and args.disable:
        print("Only one of -enable or -disable may be provided", file=sys.stderr)
        return 1
    async with client_from(args) as api:
        if not args.enable and not args.disable:
            checks, _ = await api.get("/v1/agent/checks")
            for check in (checks or {}).values():
                if check.get("CheckID") == "_node_maintenance":
                    print("Node:")
                    print(f"  Name:   {check.get('Node', '')}")
                    print(f"  Reason: {check.get('Notes', '')}")
                    print()
                elif str(check.get("CheckID", "")).startswith("_service_maintenance:"):
                    print("Service:")
                    print(f"  ID:     {check.get('ServiceID', '')}")
                    print(f"  Reason: {check.get('Notes', '')}")
                    print()
            return 0
        params: dict[str, Any] = {"enable": "true" if args.enable else "false"}
        if args.reason:
            params["reason"] = args.reason
        path = (
            f"/v1/agent/service/maintenance/{args.service}"
            if args.service
            else "/v1/agent/maintenance"
        )
        await api.put(path, params)
    if args.service:
        verb = "entered" if args.enable else "left"
        print(f"Service {verb} maintenance mode: {args.service}")
    else:
        print("Node entered maintenance mode" if args.enable else "Node left maintenance mode")
    return 0


async def monitor(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"loglevel": args.log_level}
    if args.log_json:
        params["logjson"] = True
    async with client_from(args) as api:
        try:
            async for line in api.lines("/v1/agent/monitor", params):
                print(line, flush=True)
        except APIError as exc:
            print(f"Error starting monitor: {exc}", file=sys.stderr)
            return 1
    return 0


async def info(args: argparse.Namespace) -> int:
    async with client_from(args) as api:
        data, _ = await api.get("/v1/agent/self")
    stats: dict[str, dict[str, Any]] = (data or {}).get("Stats") or {}
    for section in sorted(stats):
        print(f"{section}:")
        for key in sorted(stats[section]):
            print(f"\t{key} = {stats[section][key]}")
    return 0


def _sources(paths: list[str]) -> list[tuple[str, str]]:
    return [("dir" if Path(p).is_dir() else "file", p) for p in paths]


async def validate(args: argparse.Namespace) -> int:
    sources = _sources(args.paths)
    try:
        loaded = load_sources(sources)
    except ConfigError as exc:
        print(f"Config validation failed: {exc.message}", file=sys.stderr)
        return 1
    if not args.quiet:
        for warning in loaded.warnings:
            print(warning, file=sys.stderr)
        print("Configuration is valid!")
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("members", help="list the cluster's members")
    p.add_argument("-wan", "--wan", action="store_true")
    p.add_argument("-status", "--status", default="")
    add_http_flags(p)
    p.set_defaults(run=members)

    p = sub.add_parser("join", help="tell the agent to join the cluster through an address")
    p.add_argument("-wan", "--wan", action="store_true")
    p.add_argument("address", nargs="+")
    add_http_flags(p)
    p.set_defaults(run=join)

    p = sub.add_parser("leave", help="gracefully leave the cluster and shut the agent down")
    add_http_flags(p)
    p.set_defaults(run=leave)

    p = sub.add_parser("force-leave", help="force a member into the left state")
    p.add_argument("-prune", "--prune", action="store_true", help="remove it from the list")
    p.add_argument("-wan", "--wan", action="store_true")
    p.add_argument("node")
    add_http_flags(p)
    p.set_defaults(run=force_leave)

    p = sub.add_parser("reload", help="reload the agent's config files")
    add_http_flags(p)
    p.set_defaults(run=reload)

    p = sub.add_parser("maint", help="node or service maintenance mode")
    p.add_argument("-enable", "--enable", action="store_true")
    p.add_argument("-disable", "--disable", action="store_true")
    p.add_argument("-reason", "--reason", default="")
    p.add_argument("-service", "--service", default="")
    add_http_flags(p)
    p.set_defaults(run=maint)

    p = sub.add_parser("monitor", help="stream the agent's logs")
    p.add_argument("-log-level", "--log-level", dest="log_level", default="info")
    p.add_argument("-log-json", "--log-json", dest="log_json", action="store_true")
    add_http_flags(p)
    p.set_defaults(run=monitor)

    p = sub.add_parser("info", help="the agent's debugging information")
    add_http_flags(p)
    p.set_defaults(run=info)

    p = sub.add_parser("validate", help="check config files or directories")
    p.add_argument("-quiet", "--quiet", action="store_true")
    p.add_argument("paths", nargs="+")
    p.set_defaults(run=validate)
