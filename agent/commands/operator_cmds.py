"""``operator raft|autopilot|usage``: Consul's ``consul operator`` commands over HTTP.

- ``operator raft list-peers``: Consul's table (Node, ID, Address, State,
  Voter, RaftProtocol, Commit Index, Trails Leader By);
- ``operator raft remove-peer -id=ID | -address=IP:port``;
- ``operator raft transfer-leader [-id=ID]``;
- ``operator autopilot get-config``, ``set-config [-cleanup-dead-servers=bool
  -max-trailing-logs=N -min-quorum=N -last-contact-threshold=D
  -server-stabilization-time=D -redundancy-zone-tag=T
  -disable-upgrade-migration=bool -upgrade-version-tag=T]`` (read, change,
  write back with ``?cas``, as Consul's), ``state [-format=json]``;
- ``operator usage instances``: the billable and connect instance counts.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from agent.commands.api import add_http_flags, client_from
from agent.commands.table import print_table
from agent.durations import format_duration, parse_duration
from agent.errors import InvalidArgument

__all__ = ["add_parsers", "parse"]


def _go_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "t", "true"):
        return True
    if value in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {text!r}")


def _go_duration(text: str) -> str:
    try:
        return format_duration(parse_duration(text))
    except InvalidArgument as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _quoted(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str) and not value:
        return '""'
    return str(value)


async def raft(args: argparse.Namespace) -> int:
    async with client_from(args) as api:
        if args.op == "list-peers":
            conf, _ = await api.get("/v1/operator/raft/configuration")
            servers = conf.get("Servers") or []
            leader_index = max((s["LastIndex"] for s in servers if s["Leader"]), default=0)
            rows = [
                [
                    "Node",
                    "ID",
                    "Address",
                    "State",
                    "Voter",
                    "RaftProtocol",
                    "Commit Index",
                    "Trails Leader By",
                ]
            ]
            for s in servers:
                trails = "-" if s["Leader"] else f"{max(0, leader_index - s['LastIndex'])} commits"
                rows.append(
                    [
                        s["Node"],
                        s["ID"],
                        s["Address"],
                        "leader" if s["Leader"] else "follower",
                        str(s["Voter"]).lower(),
                        s["ProtocolVersion"],
                        str(s["LastIndex"]),
                        trails,
                    ]
                )
            print_table(rows)
            return 0
        if args.op == "remove-peer":
            if bool(args.id) == bool(args.address):
                print(
                    "Error removing peer: Must specify exactly one of -id or -address"
                    if args.id
                    else "Error removing peer: Must specify either -id or -address"
                )
                return 1
            params = {"id": args.id} if args.id else {"address": args.address}
            await api.request("DELETE", "/v1/operator/raft/peer", params)
            if args.id:
                print(f'Removed peer with id "{args.id}"')
            else:
                print(f'Removed peer with address "{args.address}"')
            return 0
        _, _, raw = await api.request(
            "POST", "/v1/operator/raft/transfer-leader", {"id": args.id} if args.id else None
        )
        answer = json.loads(raw or b"{}")
        if not answer.get("Success"):
            print("Error transferring leadership: the leadership did not move")
            return 1
        print("Success")
        return 0


_SETTERS = (
    ("cleanup_dead_servers", "CleanupDeadServers"),
    ("max_trailing_logs", "MaxTrailingLogs"),
    ("min_quorum", "MinQuorum"),
    ("last_contact_threshold", "LastContactThreshold"),
    ("server_stabilization_time", "ServerStabilizationTime"),
    ("redundancy_zone_tag", "RedundancyZoneTag"),
    ("disable_upgrade_migration", "DisableUpgradeMigration"),
    ("upgrade_version_tag", "UpgradeVersionTag"),
)
_ORDER = [field for _, field in _SETTERS]


def _print_state(state: dict[str, Any]) -> None:
    print(f"Healthy:                      {str(state.get('Healthy')).lower()}")
    print(f"Failure Tolerance:            {state.get('FailureTolerance', 0)}")
    print(f"Optimistic Failure Tolerance: {state.get('OptimisticFailureTolerance', 0)}")
    print(f"Leader:                       {state.get('Leader', '')}")
    print("Voters:")
    for voter in state.get("Voters") or []:
        print(f"   {voter}")
    print("\nServers:")
    for sid, s in sorted((state.get("Servers") or {}).items()):
        print(f"   {sid}")
        print(f"      Name:            {s.get('Name', '')}")
        print(f"      Address:         {s.get('Address', '')}")
        print(f"      Version:         {s.get('Version', '')}")
        print(f"      Status:          {s.get('Status', '')}")
        print(f"      Node Type:       {s.get('NodeType', '')}")
        print(f"      Node Status:     {s.get('NodeStatus', '')}")
        print(f"      Healthy:         {str(s.get('Healthy')).lower()}")
        print(f"      Last Contact:    {s.get('LastContact', '')}")
        print(f"      Last Term:       {s.get('LastTerm', 0)}")
        print(f"      Last Index:      {s.get('LastIndex', 0)}")


async def autopilot(args: argparse.Namespace) -> int:
    path = "/v1/operator/autopilot/configuration"
    async with client_from(args) as api:
        if args.op == "get-config":
            conf, _ = await api.get(path)
            for field in _ORDER:
                print(f"{field} = {_quoted(conf.get(field))}")
            return 0
        if args.op == "set-config":
            conf, _ = await api.get(path)
            for attr, field in _SETTERS:
                value = getattr(args, attr)
                if value is not None:
                    conf[field] = value
            ok = await api.put(path, {"cas": conf.get("ModifyIndex", 0)}, conf)
            if ok:
                print("Configuration updated!")
                return 0
            print("Configuration could not be atomically updated, please try again")
            return 1
        state, _ = await api.get("/v1/operator/autopilot/state")
        if args.format == "json":
            print(json.dumps(state, indent=4))
        else:
            _print_state(state)
        return 0


async def usage(args: argparse.Namespace) -> int:
    async with client_from(args) as api:
        doc, _ = await api.get("/v1/operator/usage")
    per_dc: dict[str, Any] = (doc or {}).get("Usage") or {}
    total = sum(u.get("BillableServiceInstances", 0) for u in per_dc.values())
    print(f"Billable Service Instances Total: {total}")
    for dc, u in sorted(per_dc.items()):
        print(f"{dc} Billable Service Instances: {u.get('BillableServiceInstances', 0)}")
    print("\nBillable Services")
    print_table(
        [
            ["Datacenter", "Services", "Service instances", "Nodes"],
            *[
                [dc, str(u.get("Services", 0)), str(u.get("ServiceInstances", 0)),
                 str(u.get("Nodes", 0))]
                for dc, u in sorted(per_dc.items())
            ],
        ]
    )  # fmt: skip
    print("\nConnect Services")
    rows = [["Datacenter", "Type", "Service instances"]]
    for dc, u in sorted(per_dc.items()):
        for kind, count in sorted((u.get("ConnectServiceInstances") or {}).items()):
            rows.append([dc, kind, str(count)])
    print_table(rows)
    return 0


def add_parsers(sub: Any) -> None:
    op = sub.add_parser("operator", help="raft, autopilot and usage operations")
    groups = op.add_subparsers(dest="group", required=True)

    r = groups.add_parser("raft", help="the raft peers (the etcd members on etcd)")
    r.add_argument("op", choices=["list-peers", "remove-peer", "transfer-leader"])
    r.add_argument("-id", "--id", dest="id", default="")
    r.add_argument("-address", "--address", dest="address", default="")
    add_http_flags(r)
    r.set_defaults(run=raft)

    a = groups.add_parser("autopilot", help="autopilot configuration and state")
    a.add_argument("op", choices=["get-config", "set-config", "state"])
    a.add_argument(
        "-format", "--format", dest="format", choices=["pretty", "json"], default="pretty"
    )
    a.add_argument(
        "-cleanup-dead-servers",
        "--cleanup-dead-servers",
        dest="cleanup_dead_servers",
        type=_go_bool,
        default=None,
    )
    a.add_argument(
        "-max-trailing-logs",
        "--max-trailing-logs",
        dest="max_trailing_logs",
        type=int,
        default=None,
    )
    a.add_argument("-min-quorum", "--min-quorum", dest="min_quorum", type=int, default=None)
    a.add_argument(
        "-last-contact-threshold",
        "--last-contact-threshold",
        dest="last_contact_threshold",
        type=_go_duration,
        default=None,
    )
    a.add_argument(
        "-server-stabilization-time",
        "--server-stabilization-time",
        dest="server_stabilization_time",
        type=_go_duration,
        default=None,
    )
    a.add_argument(
        "-redundancy-zone-tag", "--redundancy-zone-tag", dest="redundancy_zone_tag", default=None
    )
    a.add_argument(
        "-disable-upgrade-migration",
        "--disable-upgrade-migration",
        dest="disable_upgrade_migration",
        type=_go_bool,
        default=None,
    )
    a.add_argument("-upgrade-version-tag", "--upgrade-version-tag", dest="upgrade_version_tag",
                   default=None)  # fmt: skip
    add_http_flags(a)
    a.set_defaults(run=autopilot)

    u = groups.add_parser("usage", help="service instance counts")
    u.add_argument("op", choices=["instances"])
    u.add_argument("-all-datacenters", "--all-datacenters", dest="all_datacenters",
                   action="store_true")  # fmt: skip
    add_http_flags(u)
    u.set_defaults(run=usage)


def parse(operator: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``operator GROUP ...``: the group's own parser takes flags after positionals."""
    groups = next(a for a in operator._actions if isinstance(a, argparse._SubParsersAction))
    if not argv or argv[0] not in groups.choices:
        return operator.parse_args(argv)  # argparse's usage error names the groups
    group: argparse.ArgumentParser = groups.choices[argv[0]]
    args = group.parse_intermixed_args(argv[1:])
    args.group = argv[0]
    return args
