"""``consul-grpc acl ...``: Consul's ACL commands, over the agent's HTTP API.

    consul-grpc acl bootstrap
    consul-grpc acl policy create -name NAME (-rules TEXT | -rules @FILE) [-description D]
    consul-grpc acl policy list | read -id ID | read -name NAME | delete -id ID
    consul-grpc acl token create [-description D] [-policy-name N]... [-policy-id I]...
                                 [-role-name N]... [-service-identity S]... [-node-identity N:DC]...
                                 [-expires-ttl 1h]
    consul-grpc acl token list | read -id ID | read -self | delete -id ID
    consul-grpc acl role create -name NAME [-policy-name N]... | list | read | delete

``-http-addr`` defaults to ``CONSUL_HTTP_ADDR`` (else 127.0.0.1:8500) and
``-token`` to ``CONSUL_HTTP_TOKEN``, as Consul's CLI. Output is the JSON the
API answers; an API error is printed with its status and the command exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp

__all__ = ["add_acl_parser", "cmd_acl"]

#: Every call of the CLI is bounded.
TIMEOUT = aiohttp.ClientTimeout(total=15)


def _http_addr() -> str:
    addr = os.environ.get("CONSUL_HTTP_ADDR", "127.0.0.1:8500")
    return addr.removeprefix("http://")


def add_acl_parser(sub: Any) -> None:
    acl = sub.add_parser("acl", help="manage ACL tokens, policies and roles (HTTP API)")
    acl.add_argument("--http-addr", "-http-addr", default=None)
    acl.add_argument("--token", "-token", default=None)
    kinds = acl.add_subparsers(dest="acl_kind", required=True)
    kinds.add_parser("bootstrap", help="create the first management token")
    for kind in ("policy", "token", "role"):
        p = kinds.add_parser(kind, help=f"manage ACL {kind}s")
        p.add_argument("op", choices=["create", "list", "read", "delete"])
        p.add_argument("--id", "-id", default="")
        p.add_argument("--name", "-name", default="")
        p.add_argument("--description", "-description", default="")
        p.add_argument("--policy-name", "-policy-name", action="append", default=[])
        p.add_argument("--policy-id", "-policy-id", action="append", default=[])
        if kind == "policy":
            p.add_argument("--rules", "-rules", default="", help="rules text, or @FILE")
            p.add_argument("--valid-datacenter", "-valid-datacenter", action="append", default=[])
        if kind in ("token", "role"):
            p.add_argument("--service-identity", "-service-identity", action="append", default=[])
            p.add_argument("--node-identity", "-node-identity", action="append", default=[])
        if kind == "token":
            p.add_argument("--role-name", "-role-name", action="append", default=[])
            p.add_argument("--expires-ttl", "-expires-ttl", default="")
            p.add_argument("--self", "-self", action="store_true")
            p.add_argument("--secret", "-secret", default="")


def _links(args: argparse.Namespace) -> list[dict[str, str]]:
    return [{"Name": n} for n in args.policy_name] + [{"ID": i} for i in args.policy_id]


def _identities(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.service_identity:
        out["ServiceIdentities"] = [
            {"ServiceName": s.split(":")[0], "Datacenters": s.split(":")[1].split(",")}
            if ":" in s
            else {"ServiceName": s}
            for s in args.service_identity
        ]
    if args.node_identity:
        nodes = []
        for n in args.node_identity:
            name, _, dc = n.partition(":")
            nodes.append({"NodeName": name, "Datacenter": dc})
        out["NodeIdentities"] = nodes
    return out


def _request(args: argparse.Namespace) -> tuple[str, str, Any]:
    """(method, path, body) of the command."""
    kind, op = args.acl_kind, getattr(args, "op", "")
    if kind == "bootstrap":
        return "PUT", "/v1/acl/bootstrap", None
    plural = {"policy": "policies", "token": "tokens", "role": "roles"}[kind]
    if op == "list":
        return "GET", f"/v1/acl/{plural}", None
    if op == "read":
        if kind == "token" and args.self:
            return "GET", "/v1/acl/token/self", None
        if args.id:
            return "GET", f"/v1/acl/{kind}/{args.id}", None
        if args.name and kind != "token":
            return "GET", f"/v1/acl/{kind}/name/{args.name}", None
        raise SystemExit(f"acl {kind} read needs -id" + ("" if kind == "token" else " or -name"))
    if op == "delete":
        if not args.id:
            raise SystemExit(f"acl {kind} delete needs -id")
        return "DELETE", f"/v1/acl/{kind}/{args.id}", None
    body: dict[str, Any] = {"Description": args.description}
    if kind == "policy":
        rules = args.rules
        if rules.startswith("@"):
            rules = Path(rules[1:]).read_text()
        body.update(Name=args.name, Rules=rules, Datacenters=args.valid_datacenter)
    elif kind == "role":
        body.update(Name=args.name, Policies=_links(args), **_identities(args))
    else:
        body.update(
            Policies=_links(args),
            Roles=[{"Name": r} for r in args.role_name],
            **_identities(args),
        )
        if args.expires_ttl:
            body["ExpirationTTL"] = args.expires_ttl
        if args.secret:
            body["SecretID"] = args.secret
    return "PUT", f"/v1/acl/{kind}", body


async def cmd_acl(args: argparse.Namespace) -> int:
    method, path, body = _request(args)
    addr = args.http_addr or _http_addr()
    token = args.token if args.token is not None else os.environ.get("CONSUL_HTTP_TOKEN", "")
    headers = {"X-Consul-Token": token} if token else {}
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.request(method, f"http://{addr}{path}", json=body, headers=headers) as resp,
    ):
        text = await resp.text()
        if resp.status != 200:
            print(f"Error: {resp.status} {text.strip()}", file=sys.stderr)
            return 1
    try:
        print(json.dumps(json.loads(text), indent=2))
    except ValueError:
        print(text)
    return 0
