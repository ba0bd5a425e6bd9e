"""``consul-grpc``: run an agent, or talk to one over gRPC.

consul-grpc agent --dev
consul-grpc agent --server --store etcd --etcd-endpoints 127.0.0.1:2379
consul-grpc agent --retry-join 127.0.0.1:8300
consul-grpc members [--wan]
consul-grpc catalog services|nodes|datacenters
consul-grpc kv get|put|delete KEY [VALUE]
consul-grpc acl bootstrap | token|policy|role create|list|read|delete ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import grpc

from agent import commands as http_commands
from agent.acl.cli import add_acl_parser, cmd_acl
from agent.config import AgentConfig, setup_logging, with_node_id
from agent.configfile.flags import add_config_flags, apply_sources
from agent.configfile.runtime import ConfigRuntime
from agent.demo import add_demo_parser, cmd_demo
from agent.dns.config import dns_config
from agent.durations import parse_duration, seconds_duration
from agent.errors import ConsulError, InvalidArgument
from agent.shapes import check_json, kv_json, node_json, service_entry_json
from agent.tls.cli import add_agent_tls_flags, add_tls_parser, cmd_tls
from generated.consul.agent.v1 import agent_pb2, agent_pb2_grpc
from generated.consul.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from generated.consul.common.v1 import query_pb2, types_pb2
from generated.consul.health.v1 import health_pb2, health_pb2_grpc
from generated.consul.kv.v1 import kv_pb2, kv_pb2_grpc
from generated.consul.membership.v1 import membership_pb2 as mpb

if TYPE_CHECKING:
    from agent.agents.client import ClientAgent
    from agent.agents.server import ServerAgent

__all__ = ["main"]

logger = logging.getLogger(__name__)

DEFAULT_GRPC = "127.0.0.1:8502"
CALL_TIMEOUT = 10.0


def _agent_parser(sub: Any) -> None:
    p = sub.add_parser("agent", help="run an agent")
    p.add_argument("--dev", "-dev", action="store_true", help="one dev server, memory store")
    p.add_argument("--server", "-server", action="store_true", help="run as a server")
    p.add_argument("--datacenter", "-datacenter")
    p.add_argument("--node", "-node", dest="node_name")
    p.add_argument("--node-id", dest="node_id")
    p.add_argument("--data-dir", "-data-dir", dest="data_dir")
    add_config_flags(p)
    p.add_argument("--rpc-addr", dest="rpc_addr")
    p.add_argument("--http-addr", dest="http_addr")
    p.add_argument("--grpc-addr", dest="grpc_addr")
    p.add_argument("--advertise", dest="advertise_addr")
    p.add_argument("--dns-addr", "-dns-addr", dest="dns_addr", help="HOST:PORT; port -1 disables")
    p.add_argument("--alt-domain", "-alt-domain", dest="alt_domain")
    p.add_argument("--recursor", "-recursor", dest="recursors", action="append")
    p.add_argument("--retry-join", "-retry-join", dest="retry_join", action="append")
    p.add_argument("--retry-join-wan", "-retry-join-wan", dest="retry_join_wan", action="append")
    p.add_argument("--store", choices=["memory", "etcd"])
    p.add_argument("--etcd-endpoints", dest="etcd_endpoints")
    p.add_argument("--log-level", "-log-level", dest="log_level")
    p.add_argument("--log-json", "-log-json", dest="log_json", action="store_true", default=None)
    p.add_argument("--suspect-timeout", dest="suspect_timeout")
    p.add_argument("--reconnect-timeout", dest="reconnect_timeout")
    p.add_argument("--rpc-rate", dest="rpc_rate", type=float)
    p.add_argument("--rpc-max-burst", dest="rpc_max_burst", type=int)
    p.add_argument("--rpc-hold-timeout", dest="rpc_hold_timeout")
    p.add_argument("--leader-ttl", dest="leader_ttl")
    p.add_argument("--rebalance-interval", dest="rebalance_interval", help="test hook")
    p.add_argument(
        "--enable-script-checks", dest="enable_script_checks", action="store_true", default=None
    )
    p.add_argument("--ui", "-ui", dest="ui", action="store_true", default=None, help="web UI")
    add_agent_tls_flags(p)


def build_config(args: argparse.Namespace) -> AgentConfig:
    config = AgentConfig()
    if args.dev:
        # Consul's DevConsulSource also writes coordinates every 100 ms.
        config = config.merged(
            {
                "server": True,
                "dev": True,
                "store": "memory",
                "ui": True,
                "coordinate_update_period": 0.1,
            }
        )
    if args.config_sources:
        config = apply_sources(config, args.config_sources)
    flags = agent_flags(args)
    # Lists from files and flags append, as Consul merges its config sources.
    for name in ("retry_join", "retry_join_wan"):
        if name in flags:
            flags[name] = (*getattr(config, name), *flags[name])
    config = config.merged(flags).validated()
    # The DNS settings fail here, before anything starts, when they are bad.
    dns_config(
        config.dns_config,
        domain=config.domain,
        alt_domain=config.alt_domain,
        recursors=config.recursors,
    )
    return with_node_id(config)


def agent_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The ``agent`` command's flags that were given, as AgentConfig overrides."""
    flags = {
        k: v
        for k, v in vars(args).items()
        if k not in ("command", "config_sources", "dev", "server") and v is not None
    }
    if args.server:
        flags["server"] = True
    return flags


async def run_agent(config: AgentConfig, flags: dict[str, Any] | None = None) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    agent: ServerAgent | ClientAgent
    if config.server:
        from agent.agents.server import ServerAgent

        agent = ServerAgent(config)
    else:
        from agent.agents.client import ClientAgent

        agent = ClientAgent(config)
    runtime = ConfigRuntime(
        config,
        agent.local.state,
        agent.operator,
        flags=flags,
        # SIGHUP and `reload` re-read the certificates too (the TLS half's hook).
        on_tls=lambda _loaded: agent.reload_tls(),
    )
    async with agent, runtime:
        stopping = asyncio.create_task(stop.wait())
        leaving = asyncio.create_task(agent.leave_requested.wait())
        await asyncio.wait([stopping, leaving], return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        leaving.cancel()
        logger.info(
            "%s: leaving gracefully", "signal received" if stop.is_set() else "leave requested"
        )
    return 0


def _opts(args: argparse.Namespace) -> query_pb2.QueryOptions:
    return query_pb2.QueryOptions(datacenter=args.datacenter or "", token=args.token or "")


async def _with_channel(address: str, fn: Callable[[grpc.aio.Channel], Awaitable[int]]) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        return await fn(channel)


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    if not rows:
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


async def cmd_members(args: argparse.Namespace) -> int:
    async def go(channel: grpc.aio.Channel) -> int:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        resp = await stub.ListMembers(
            agent_pb2.ListMembersRequest(wan=args.wan), timeout=CALL_TIMEOUT
        )
        rows = [["Node", "Address", "Status", "Type", "DC"]]
        for m in resp.members:
            rows.append(
                [
                    m.name,
                    m.address,
                    mpb.MemberStatus.Name(m.status).removeprefix("MEMBER_STATUS_").lower(),
                    "server" if m.role == mpb.MEMBER_ROLE_SERVER else "client",
                    m.datacenter,
                ]
            )
        _print_table(rows)
        me = await stub.Self(agent_pb2.SelfRequest(), timeout=CALL_TIMEOUT)
        for router in me.routers:
            wait = router.next_rebalance.ToNanoseconds() / 1e9 - time.time()
            servers = ", ".join(
                f"{s.name} ({s.address}){' *' if i == 0 else ''}"
                for i, s in enumerate(router.servers)
            )
            print(
                f"\nRouter {router.datacenter}: {servers or '(no servers)'}"
                f"\n  offline={str(router.offline).lower()}"
                f" next_rebalance_in={max(wait, 0):.1f}s  (* = in use)"
            )
        views = sorted((k, v) for k, v in me.stats.items() if k.startswith(("views.", "stream.")))
        if views:
            print("\nViews: " + "  ".join(f"{k}={v}" for k, v in views))
        return 0

    return await _with_channel(args.grpc_addr, go)


async def cmd_catalog(args: argparse.Namespace) -> int:
    async def go(channel: grpc.aio.Channel) -> int:
        stub = catalog_pb2_grpc.CatalogServiceStub(channel)
        if args.what == "services":
            resp = await stub.ListServices(
                catalog_pb2.ListServicesRequest(options=_opts(args)), timeout=CALL_TIMEOUT
            )
            for s in resp.services:
                print(f"{s.name}\t{','.join(s.tags)}" if args.tags else s.name)
        elif args.what == "nodes":
            nodes = await stub.ListNodes(
                catalog_pb2.ListNodesRequest(options=_opts(args)), timeout=CALL_TIMEOUT
            )
            rows = [["Node", "ID", "Address", "DC"]]
            rows += [[n.name, n.id[:8], n.address, n.datacenter] for n in nodes.nodes]
            _print_table(rows)
        else:
            dcs = await stub.ListDatacenters(
                catalog_pb2.ListDatacentersRequest(), timeout=CALL_TIMEOUT
            )
            for dc in dcs.datacenters:
                print(dc)
        return 0

    return await _with_channel(args.grpc_addr, go)


async def cmd_kv(args: argparse.Namespace) -> int:
    async def go(channel: grpc.aio.Channel) -> int:
        stub = kv_pb2_grpc.KVServiceStub(channel)
        write = query_pb2.WriteOptions(datacenter=args.datacenter or "", token=args.token or "")
        if args.op == "get":
            if args.recurse:
                listed = await stub.List(
                    kv_pb2.ListRequest(options=_opts(args), prefix=args.key), timeout=CALL_TIMEOUT
                )
                for p in listed.pairs:
                    print(f"{p.key}:{p.value.decode(errors='replace')}")
                return 0
            got = await stub.Get(
                kv_pb2.GetRequest(options=_opts(args), key=args.key), timeout=CALL_TIMEOUT
            )
            if not got.HasField("pair"):
                print(f"Error! No key exists at: {args.key}", file=sys.stderr)
                return 1
            sys.stdout.write(got.pair.value.decode(errors="replace") + "\n")
        elif args.op == "put":
            value = (args.value or "").encode()
            if args.value == "-":
                value = sys.stdin.buffer.read()
            req = kv_pb2.PutRequest(write=write, key=args.key, value=value, flags=args.flags)
            if args.cas is not None:
                req.cas = args.cas
            await stub.Put(req, timeout=CALL_TIMEOUT)
            print(f"Success! Data written to: {args.key}")
        else:
            dreq = kv_pb2.DeleteRequest(write=write, key=args.key, recurse=args.recurse)
            if args.cas is not None:
                dreq.cas = args.cas
            await stub.Delete(dreq, timeout=CALL_TIMEOUT)
            print(f"Success! Deleted key: {args.key}")
        return 0

    return await _with_channel(args.grpc_addr, go)


async def cmd_services(args: argparse.Namespace) -> int:
    async def go(channel: grpc.aio.Channel) -> int:
        stub = agent_pb2_grpc.AgentServiceStub(channel)
        if args.op == "deregister":
            if not args.id:
                raise InvalidArgument("services deregister needs --id")
            await stub.DeregisterService(
                agent_pb2.DeregisterServiceRequest(service_id=args.id, token=args.token),
                timeout=CALL_TIMEOUT,
            )
            print(f"Deregistered service: {args.id}")
            return 0
        if not args.name:
            raise InvalidArgument("services register needs --name")
        meta = {}
        for item in args.meta or []:
            key, sep, value = item.partition("=")
            if not sep:
                raise InvalidArgument(f"--meta takes key=value, got {item!r}")
            meta[key] = value
        service = types_pb2.Service(
            id=args.id or args.name,
            name=args.name,
            port=args.port,
            address=args.address,
            tags=args.tag or [],
            meta=meta,
        )
        checks = []
        if args.ttl:
            checks.append(
                agent_pb2.CheckDefinition(
                    definition=types_pb2.CheckDefinition(
                        ttl=seconds_duration(parse_duration(args.ttl))
                    )
                )
            )
        await stub.RegisterService(
            agent_pb2.RegisterServiceRequest(
                definition=agent_pb2.ServiceDefinition(service=service, checks=checks),
                token=args.token,
            ),
            timeout=CALL_TIMEOUT,
        )
        print(f"Registered service: {args.name}")
        return 0

    return await _with_channel(args.grpc_addr, go)


def _watch_call(
    args: argparse.Namespace, channel: grpc.aio.Channel
) -> Callable[[query_pb2.QueryOptions], Awaitable[tuple[int, Any]]]:
    """The blocking read a watch type means, returning (index, Consul-shaped JSON)."""
    catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
    kv = kv_pb2_grpc.KVServiceStub(channel)
    health = health_pb2_grpc.HealthServiceStub(channel)
    kind = args.type

    async def read(opts: query_pb2.QueryOptions) -> tuple[int, Any]:
        t = args.wait_seconds + 30
        if kind == "key":
            got = await kv.Get(kv_pb2.GetRequest(options=opts, key=args.key), timeout=t)
            return got.meta.index, kv_json(got.pair) if got.HasField("pair") else None
        if kind == "keyprefix":
            listed = await kv.List(kv_pb2.ListRequest(options=opts, prefix=args.prefix), timeout=t)
            return listed.meta.index, [kv_json(p) for p in listed.pairs]
        if kind == "services":
            svcs = await catalog.ListServices(
                catalog_pb2.ListServicesRequest(options=opts), timeout=t
            )
            return svcs.meta.index, {x.name: list(x.tags) for x in svcs.services}
        if kind == "nodes":
            nodes = await catalog.ListNodes(catalog_pb2.ListNodesRequest(options=opts), timeout=t)
            return nodes.meta.index, [node_json(n) for n in nodes.nodes]
        if kind == "service":
            entries = await health.ServiceHealth(
                health_pb2.ServiceHealthRequest(
                    options=opts, service=args.service, passing_only=args.passing
                ),
                timeout=t,
            )
            return entries.meta.index, [service_entry_json(e) for e in entries.entries]
        checks = await health.ChecksInState(
            health_pb2.ChecksInStateRequest(options=opts), timeout=t
        )
        return checks.meta.index, [check_json(c) for c in checks.checks]

    return read


async def cmd_watch(args: argparse.Namespace) -> int:
    needs = {"key": "key", "keyprefix": "prefix", "service": "service"}
    if args.type in needs and getattr(args, needs[args.type]) is None:
        raise InvalidArgument(f"watch -type {args.type} needs --{needs[args.type]}")

    async def go(channel: grpc.aio.Channel) -> int:
        read = _watch_call(args, channel)
        index, shown = 0, 0
        while args.count == 0 or shown < args.count:
            opts = _opts(args)
            opts.min_index = index
            opts.max_wait.CopyFrom(seconds_duration(args.wait_seconds))
            new_index, value = await read(opts)
            if new_index < index:  # the index went backwards: start over, as Consul's watch
                index = 0
                continue
            if new_index != index:
                print(json.dumps(value, sort_keys=True), flush=True)
                shown += 1
            index = new_index
        return 0

    return await _with_channel(args.grpc_addr, go)


def _client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--grpc-addr", "-grpc-addr", default=DEFAULT_GRPC, help="agent gRPC address")
    p.add_argument("--datacenter", "-datacenter", default="")
    p.add_argument("--token", "-token", default=os.environ.get("CONSUL_HTTP_TOKEN", ""))


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="consul-grpc", description=__doc__.splitlines()[0])
    sub = root.add_subparsers(dest="command", required=True)
    _agent_parser(sub)
    m = sub.add_parser("members", help="list the cluster's members")
    _client_args(m)
    m.add_argument("--wan", "-wan", action="store_true")
    c = sub.add_parser("catalog", help="read the catalog")
    c.add_argument("what", choices=["services", "nodes", "datacenters"])
    c.add_argument("--tags", "-tags", action="store_true")
    _client_args(c)
    k = sub.add_parser("kv", help="read and write the KV store")
    k.add_argument("op", choices=["get", "put", "delete"])
    k.add_argument("key")
    k.add_argument("value", nargs="?")
    k.add_argument("--recurse", "-recurse", action="store_true")
    k.add_argument("--cas", "-cas", type=int, default=None)
    k.add_argument("--flags", "-flags", type=int, default=0)
    _client_args(k)
    add_demo_parser(sub)
    add_acl_parser(sub)
    sv = sub.add_parser("services", help="register or deregister a local service")
    sv.add_argument("op", choices=["register", "deregister"])
    sv.add_argument("--name", "-name")
    sv.add_argument("--id", "-id", default="")
    sv.add_argument("--port", "-port", type=int, default=0)
    sv.add_argument("--address", "-address", default="")
    sv.add_argument("--tag", "-tag", action="append")
    sv.add_argument("--meta", "-meta", action="append", help="key=value")
    sv.add_argument("--ttl", "-ttl", help="add a TTL check, e.g. 30s")
    _client_args(sv)
    w = sub.add_parser("watch", help="print a blocking query's result each time it changes")
    w.add_argument(
        "--type",
        "-type",
        required=True,
        choices=["key", "keyprefix", "services", "nodes", "service", "checks"],
    )
    w.add_argument("--key", "-key")
    w.add_argument("--prefix", "-prefix")
    w.add_argument("--service", "-service")
    w.add_argument("--passing", "-passingonly", action="store_true")
    w.add_argument("--count", type=int, default=0, help="stop after N results (0: never)")
    w.add_argument("--wait-seconds", type=float, default=300.0, help=argparse.SUPPRESS)
    _client_args(w)
    add_tls_parser(sub)
    return root


COMMANDS: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "members": cmd_members,
    "catalog": cmd_catalog,
    "kv": cmd_kv,
    "demo": cmd_demo,
    "services": cmd_services,
    "watch": cmd_watch,
    "tls": cmd_tls,
    "acl": cmd_acl,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if http_commands.handles(argv):
        return http_commands.main(argv)
    args = parser().parse_args(argv)
    try:
        if args.command == "agent":
            config = build_config(args)
            setup_logging(config.log_level, config.log_json)
            return asyncio.run(run_agent(config, agent_flags(args)))
        return asyncio.run(COMMANDS[args.command](args))
    except InvalidArgument as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        return 2
    except ConsulError as exc:
        print(f"Error: {exc.message}", file=sys.stderr)
        return 1
    except grpc.aio.AioRpcError as exc:
        print(f"Error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
