"""``consul-grpc rtt [-wan] node1 [node2]``: the estimated round-trip time
between two nodes from their network coordinates, as Consul's ``rtt``.

LAN (default): both nodes' coordinates from ``/v1/coordinate/nodes``, in the
same segment; without ``node2``, the agent's own node. ``-wan``: servers
named ``<node>.<datacenter>``, from ``/v1/coordinate/datacenters``; without
``node2``, the agent's server. Prints ``Estimated a <-> b rtt: 1.234 ms
(using LAN coordinates)``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agent.commands.api import add_http_flags, client_from
from agent.coordinate import coord_from_json

__all__ = ["add_parsers"]


def _fail(text: str) -> int:
    print(text, file=sys.stderr)
    return 1


async def rtt(args: argparse.Namespace) -> int:
    nodes: list[str] = list(args.nodes)
    if len(nodes) not in (1, 2):
        return _fail("One or two node names must be specified")
    async with client_from(args) as api:
        if len(nodes) == 1:
            me, _ = await api.get("/v1/agent/self")
            config: dict[str, Any] = (me or {}).get("Config") or {}
            own = str(config.get("NodeName", ""))
            if args.wan:
                own = f"{own}.{config.get('Datacenter', '')}"
            nodes.append(own)
        if args.wan:
            for name in nodes:
                if "." not in name:
                    return _fail(
                        "Node names must be specified as <node name>.<datacenter> with -wan"
                    )
            data, _ = await api.get("/v1/coordinate/datacenters")
            coords: dict[str, list[tuple[str, Any]]] = {}
            for dc in data or []:
                for c in dc.get("Coordinates") or []:
                    name = f"{c['Node']}.{dc['Datacenter']}"
                    coords.setdefault(name, []).append(("", c["Coord"]))
            kind = "WAN"
        else:
            data, _ = await api.get("/v1/coordinate/nodes")
            coords = {}
            for c in data or []:
                coords.setdefault(c["Node"], []).append((c.get("Segment", ""), c["Coord"]))
            kind = "LAN"
    first = coords.get(nodes[0])
    if not first:
        return _fail(f"Could not find a coordinate for node \"{nodes[0]}\"")
    second = coords.get(nodes[1])
    if not second:
        return _fail(f"Could not find a coordinate for node \"{nodes[1]}\"")
    pair = next(
        ((a, b) for seg1, a in first for seg2, b in second if seg1 == seg2),
        None,
    )
    if pair is None:
        return _fail(f"Nodes {nodes[0]!r} and {nodes[1]!r} share no network segment")
    try:
        one, two = coord_from_json(pair[0]), coord_from_json(pair[1])
    except ValueError as exc:
        return _fail(f"Bad coordinate from the agent: {exc}")
    ms = one.distance_to(two) * 1000.0
    print(f"Estimated {nodes[0]} <-> {nodes[1]} rtt: {ms:.3f} ms (using {kind} coordinates)")
    return 0


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("rtt", help="estimated round-trip time between two nodes")
    add_http_flags(p)
    p.add_argument("-wan", "--wan", dest="wan", action="store_true")
    p.add_argument("nodes", nargs="+", metavar="node")
    p.set_defaults(run=rtt)
