"""``catalog datacenters|nodes|services`` and ``services register|deregister``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agent.commands.api import APIError, add_http_flags, client_from
from agent.commands.table import print_table
from agent.configfile.parse import ConfigError, plain, read_source

__all__ = ["add_parsers", "service_bodies"]


async def catalog(args: argparse.Namespace) -> int:
    async with client_from(args) as api:
        if args.what == "datacenters":
            dcs, _ = await api.get("/v1/catalog/datacenters")
            for dc in dcs or []:
                print(dc)
        elif args.what == "nodes":
            params = {"filter": args.filter or None}
            if args.service:
                nodes, _ = await api.get(f"/v1/catalog/service/{args.service}", params)
                nodes = [
                    {"Node": n["Node"], "ID": n.get("ID", ""), "Address": n.get("Address", ""),
                     "Datacenter": n.get("Datacenter", "")}
                    for n in nodes or []
                ]  # fmt: skip
            else:
                nodes, _ = await api.get("/v1/catalog/nodes", params)
            if not nodes:
                print(
                    "No nodes match the given query - try expanding your search.", file=sys.stderr
                )
                return 0
            rows = [["Node", "ID", "Address", "DC"]]
            for n in sorted(nodes, key=lambda n: n["Node"]):
                node_id = n.get("ID", "") or ""
                rows.append([n["Node"], node_id[:8], n.get("Address", ""), n.get("Datacenter", "")])
            print_table(rows)
        else:
            if args.node:
                data, _ = await api.get(f"/v1/catalog/node/{args.node}")
                services: dict[str, list[str]] = {}
                for s in ((data or {}).get("Services") or {}).values():
                    services.setdefault(s["Service"], []).extend(s.get("Tags") or [])
            else:
                services, _ = await api.get("/v1/catalog/services")
            if not services:
                print("No services match the given query - try expanding your search.",
                      file=sys.stderr)  # fmt: skip
                return 0
            if args.tags:
                print_table(
                    [[name, ",".join(sorted(set(services[name])))] for name in sorted(services)]
                )
            else:
                for name in sorted(services):
                    print(name)
    return 0


def service_bodies(path: str) -> list[dict[str, Any]]:
    """The service definitions in a Consul service definition file (HCL or JSON):
    ``service { ... }`` (one or repeated) or ``services = [...]``."""
    src = read_source(path)
    out: list[dict[str, Any]] = []
    for key, raw in src.data.items():
        if key.lower() not in ("service", "services"):
            raise ConfigError(path, src.line_of((key,)), f"invalid config key {key}")
        items = plain(raw)
        for item in items if isinstance(items, list) else [items]:
            if not isinstance(item, dict):
                raise ConfigError(path, src.line_of((key,)), "a service must be an object")
            body = dict(item)
            for ck in [k for k in body if k.lower() == "check"]:
                if isinstance(body[ck], list):
                    body["checks"] = [*body.pop(ck), *(body.get("checks") or [])]
            out.append(body)
    if not out:
        raise ConfigError(path, None, "no service definition found")
    return out


def _flag_body(args: argparse.Namespace) -> dict[str, Any]:
    meta = {}
    for item in args.meta or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError("-meta", None, f"must be key=value, got {item!r}")
        meta[key] = value
    body: dict[str, Any] = {"Name": args.name, "Tags": args.tag or [], "Meta": meta}
    if args.id:
        body["ID"] = args.id
    if args.address:
        body["Address"] = args.address
    if args.port:
        body["Port"] = args.port
    if getattr(args, "ttl", None):
        body["Check"] = {"TTL": args.ttl}
    return body


async def services(args: argparse.Namespace) -> int:
    async with client_from(args) as api:
        if args.op == "register":
            if args.files and args.name:
                print("Flags and file arguments may not both be given", file=sys.stderr)
                return 1
            bodies = [_flag_body(args)] if args.name else []
            for path in args.files:
                bodies.extend(service_bodies(path))
            if not bodies:
                print(
                    "Service registration requires at least one argument or -name", file=sys.stderr
                )
                return 1
            for body in bodies:
                name = body.get("name") or body.get("Name") or ""
                try:
                    await api.put("/v1/agent/service/register", body=body)
                except APIError as exc:
                    print(f"Error registering service {name!r}: {exc}", file=sys.stderr)
                    return 1
                print(f"Registered service: {name}")
            return 0
        ids: list[str] = [args.id] if args.id else []
        for path in args.files:
            for body in service_bodies(path):
                ids.append(
                    body.get("id") or body.get("ID") or body.get("name") or body.get("Name") or ""
                )
        if not ids:
            print("Service deregistration requires at least one argument or -id", file=sys.stderr)
            return 1
        for sid in ids:
            try:
                await api.put(f"/v1/agent/service/deregister/{sid}")
            except APIError as exc:
                print(f"Error deregistering service {sid!r}: {exc}", file=sys.stderr)
                return 1
            print(f"Deregistered service: {sid}")
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("catalog", help="read the catalog")
    p.add_argument("what", choices=["datacenters", "nodes", "services"])
    p.add_argument("-tags", "--tags", action="store_true")
    p.add_argument("-node", "--node", default="")
    p.add_argument("-service", "--service", default="")
    p.add_argument("-filter", "--filter", default="")
    add_http_flags(p)
    p.set_defaults(run=catalog)

    p = sub.add_parser("services", help="register or deregister services on the agent")
    p.add_argument("op", choices=["register", "deregister"])
    p.add_argument("files", nargs="*", help="service definition files (HCL or JSON)")
    p.add_argument("-name", "--name", default="")
    p.add_argument("-id", "--id", default="")
    p.add_argument("-address", "--address", default="")
    p.add_argument("-port", "--port", type=int, default=0)
    p.add_argument("-tag", "--tag", action="append")
    p.add_argument("-meta", "--meta", action="append", help="key=value")
    p.add_argument("-ttl", "--ttl", default="", help="add a TTL check (consul-grpc)")
    add_http_flags(p)
    p.set_defaults(run=services)
