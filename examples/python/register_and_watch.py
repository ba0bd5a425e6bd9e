#!/usr/bin/env python3
"""Register a service with a TTL check through the local agent, then watch its health.

Uses nothing but the gRPC stubs that ship in the ``consul-grpc`` wheel
(``pip install consul-grpc``; ``from generated.consul.<area>.v1 import ...``)
and talks to the agent running beside the application (default
``127.0.0.1:8502``, the agent's ``--grpc-addr``):

1. ``AgentService.RegisterService`` registers the service, and
   ``AgentService.RegisterCheck`` its TTL check. New checks start critical.
2. A heartbeat task calls ``AgentService.UpdateTTL`` every third of the TTL,
   so the check turns passing and stays so. With ``--flap`` it alternates
   passing and warning, which makes changes to watch (handy in CI).
3. The main task watches ``HealthService.ServiceHealth`` with blocking queries:
   each call passes the last ``meta.index`` as ``options.min_index`` and a
   ``max_wait``; the agent answers as soon as the service's health changes, or
   after ``max_wait`` with the same index (then the call is simply repeated).
   Every change is printed as one line.

It exits 0 after ``--changes`` changes (0: run until SIGINT/SIGTERM), and 2
when ``--timeout`` passes first. On the way out it deregisters the service.

    python register_and_watch.py --name web --port 8080 --changes 3 --flap
    python register_and_watch.py --name web --no-register --changes 0   # only discover

The same program runs the Compose demo (``compose.yaml``): one container
registers itself and heartbeats forever, another only watches.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys

import grpc
from google.protobuf.duration_pb2 import Duration

from generated.consul.agent.v1 import agent_pb2, agent_pb2_grpc
from generated.consul.common.v1 import query_pb2, types_pb2
from generated.consul.health.v1 import health_pb2, health_pb2_grpc

# Typing: a stub built on a grpc.aio channel is typed as ``<Service>AsyncStub``
# (a name that exists only in the shipped .pyi files; annotations are never
# evaluated here), so ``await stub.Method(...)`` type-checks under mypy --strict.

RPC_TIMEOUT = 10.0  # seconds: the deadline of every non-blocking call
STATUS = {
    types_pb2.HEALTH_STATUS_PASSING: "passing",
    types_pb2.HEALTH_STATUS_WARNING: "warning",
    types_pb2.HEALTH_STATUS_CRITICAL: "critical",
    types_pb2.HEALTH_STATUS_MAINTENANCE: "maintenance",
}
ORDER = ["passing", "warning", "critical", "maintenance"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--addr",
        default=os.environ.get("CONSUL_GRPC_ADDR", "127.0.0.1:8502"),
        help="local agent gRPC address (env CONSUL_GRPC_ADDR; default %(default)s)",
    )
    p.add_argument("--name", default="py-demo", help="service name (default %(default)s)")
    p.add_argument("--id", default="", help="service ID (default NAME-HOSTNAME-PID)")
    p.add_argument("--address", default="", help="service address (default: the node's)")
    p.add_argument("--port", type=int, default=8080, help="service port (default %(default)s)")
    p.add_argument("--ttl", type=float, default=15.0, help="TTL in seconds (default %(default)s)")
    p.add_argument("--flap", action="store_true", help="alternate passing and warning")
    p.add_argument("--no-register", action="store_true", help="only watch NAME")
    p.add_argument("--changes", type=int, default=3, help="exit after N changes (0: never)")
    p.add_argument("--timeout", type=float, default=60.0, help="give up after S seconds (0: never)")
    p.add_argument("--max-wait", type=float, default=10.0, help="blocking query wait in seconds")
    args = p.parse_args(argv)
    if args.ttl < 1:
        p.error("--ttl must be at least 1 second")
    if not args.id:
        args.id = f"{args.name}-{socket.gethostname()}-{os.getpid()}"
    return args


def seconds(value: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(int(value * 1e9))
    return d


def aggregate(checks: list[types_pb2.HealthCheck]) -> str:
    """Consul's rule: maintenance > critical > warning > passing."""
    worst = "passing"
    for c in checks:
        name = STATUS.get(c.status, "critical")
        if ORDER.index(name) > ORDER.index(worst):
            worst = name
    return worst


def describe(resp: health_pb2.ServiceHealthResponse) -> str:
    entries = sorted(
        f"{e.service.id}@{e.node.name}={aggregate(list(e.checks))}" for e in resp.entries
    )
    return ", ".join(entries) or "(no instances)"


async def register(agent: agent_pb2_grpc.AgentServiceAsyncStub, args: argparse.Namespace) -> str:
    """Register the service, then its TTL check; return the check's ID.

    Two calls (RegisterService, then RegisterCheck with the service's ID) so
    the check is attached to the service it watches.
    """
    check_id = f"service:{args.id}"
    service = types_pb2.Service(
        id=args.id, name=args.name, address=args.address, port=args.port, tags=["example"]
    )
    await agent.RegisterService(
        agent_pb2.RegisterServiceRequest(definition=agent_pb2.ServiceDefinition(service=service)),
        timeout=RPC_TIMEOUT,
    )
    check = agent_pb2.CheckDefinition(
        check_id=check_id,
        name=f"{args.name} TTL",
        service_id=args.id,
        definition=types_pb2.CheckDefinition(ttl=seconds(args.ttl)),
    )
    await agent.RegisterCheck(agent_pb2.RegisterCheckRequest(check=check), timeout=RPC_TIMEOUT)
    print(f"registered {args.id} ({args.name}) with TTL check {check_id}", flush=True)
    return check_id


async def heartbeat(
    agent: agent_pb2_grpc.AgentServiceAsyncStub, check_id: str, ttl: float, flap: bool
) -> None:
    """Pass the TTL every ttl/3 (with --flap, every other beat is a warning)."""
    beat = 0
    while True:
        warn = flap and beat % 2 == 1
        status = types_pb2.HEALTH_STATUS_WARNING if warn else types_pb2.HEALTH_STATUS_PASSING
        try:
            await agent.UpdateTTL(
                agent_pb2.UpdateTTLRequest(check_id=check_id, status=status, output=f"beat {beat}"),
                timeout=RPC_TIMEOUT,
            )
        except grpc.aio.AioRpcError as exc:  # the agent may be restarting: keep beating
            print(f"heartbeat failed: {exc.code().name}: {exc.details()}", file=sys.stderr)
        beat += 1
        await asyncio.sleep(min(ttl / 3, 2.0) if flap else ttl / 3)


async def watch(health: health_pb2_grpc.HealthServiceAsyncStub, args: argparse.Namespace) -> None:
    """Blocking queries on the service's health; return after --changes changes."""
    index = 0
    last: str | None = None
    changes = 0
    while True:
        request = health_pb2.ServiceHealthRequest(
            service=args.name,
            options=query_pb2.QueryOptions(min_index=index, max_wait=seconds(args.max_wait)),
        )
        try:
            # The deadline covers the server's wait plus its jitter (wait/16).
            resp = await health.ServiceHealth(request, timeout=args.max_wait * 1.1 + RPC_TIMEOUT)
        except grpc.aio.AioRpcError as exc:
            print(f"watch failed: {exc.code().name}: {exc.details()}", file=sys.stderr)
            await asyncio.sleep(1.0)
            continue
        # An index that goes backwards (a new server or store) restarts the watch.
        index = resp.meta.index if resp.meta.index >= index else 0
        state = describe(resp)
        if state == last:
            continue  # woke on a timeout or an unrelated write: nothing changed
        if last is not None:
            changes += 1
        last = state
        print(f"index={resp.meta.index} {args.name}: {state}", flush=True)
        if args.changes and changes >= args.changes:
            return


async def run(args: argparse.Namespace) -> int:
    async with grpc.aio.insecure_channel(args.addr) as channel:
        agent = agent_pb2_grpc.AgentServiceStub(channel)
        health = health_pb2_grpc.HealthServiceStub(channel)
        check_id = "" if args.no_register else await register(agent, args)
        try:
            async with asyncio.TaskGroup() as tg:
                beats = tg.create_task(heartbeat(agent, check_id, args.ttl, args.flap))
                if not check_id:
                    beats.cancel()  # nothing to heartbeat: only watching
                await watch(health, args)
                beats.cancel()
        finally:
            if check_id:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await agent.DeregisterService(
                        agent_pb2.DeregisterServiceRequest(service_id=args.id),
                        timeout=RPC_TIMEOUT,
                    )
                    print(f"deregistered {args.id}", flush=True)
    return 0


async def main_async(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        async with asyncio.timeout(args.timeout or None):
            return await run(args)
    except TimeoutError:
        print(f"timed out after {args.timeout}s", file=sys.stderr)
        return 2
    except asyncio.CancelledError:
        return 0  # SIGINT/SIGTERM: deregistered on the way out
    except grpc.aio.AioRpcError as exc:
        print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
