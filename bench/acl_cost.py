"""What ACL enforcement costs on discovery reads: ACLs on (default deny) vs off.

    .venv/bin/python bench/acl_cost.py [--seconds 3] [--rounds 3] [--instances 10]

Starts two dev servers (real processes) in one run: one without ACLs, one with
``acl { enabled = true, default_policy = "deny" }``. Both get the same
``--instances`` instances of ``web`` (one node each, a passing check). On the
ACL server the reads carry a token whose policy is
``service_prefix "" { policy = "read" }`` plus ``node_prefix "" { policy =
"read" }`` (a health or catalog entry is shown only when both its service and
its node are readable, as Consul's filter does; so both servers answer the
same entries, checked before measuring). Then interleaved rounds of the same
closed-loop load of ``ServiceHealth`` and ``ListServiceInstances`` over gRPC
(token in QueryOptions) and ``GET /v1/health/service/web`` over HTTP
(``X-Consul-Token``), and the on/off ratios. Goal: >= 0.8x.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import QUIET, LoadResult, merge, run_load
from generated.consul.catalog.v1 import catalog_pb2 as cpb
from generated.consul.catalog.v1 import catalog_pb2_grpc
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.health.v1 import health_pb2 as hpb
from generated.consul.health.v1 import health_pb2_grpc
from tests.support.procs import AgentProcess, Cluster

MGMT = "11111111-2222-3333-4444-555555555555"
READ_RULES = 'service_prefix "" { policy = "read" }\nnode_prefix "" { policy = "read" }'

Call = Callable[[], Awaitable[object]]


async def register(agent: AgentProcess, count: int, token: str) -> None:
    async with grpc.aio.insecure_channel(agent.grpc_addr) as ch:
        catalog = catalog_pb2_grpc.CatalogServiceStub(ch)
        for i in range(count):
            node = f"node-{i}"
            await catalog.Register(
                cpb.RegisterRequest(
                    write=qpb.WriteOptions(token=token),
                    node=pb.Node(name=node, address=f"10.0.0.{i + 1}"),
                    service=pb.Service(name="web", port=8080),
                    checks=[
                        pb.HealthCheck(
                            node=node,
                            check_id="service:web",
                            name="web alive",
                            status=pb.HEALTH_STATUS_PASSING,
                            service_id="web",
                        )
                    ],
                ),
                timeout=10,
            )


async def read_token(session: aiohttp.ClientSession, agent: AgentProcess) -> str:
    base = f"http://{agent.http_addr}/v1/acl"
    headers = {"X-Consul-Token": MGMT}
    policy = {"Name": "discovery-read", "Rules": READ_RULES}
    async with session.put(f"{base}/policy", json=policy, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        policy_id = (await resp.json())["ID"]
    token = {"Description": "bench reader", "Policies": [{"ID": policy_id}]}
    async with session.put(f"{base}/token", json=token, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        secret: str = (await resp.json())["SecretID"]
        return secret


def reads(
    ch: grpc.aio.Channel, session: aiohttp.ClientSession, agent: AgentProcess, token: str
) -> dict[str, Call]:
    catalog = catalog_pb2_grpc.CatalogServiceStub(ch)
    health = health_pb2_grpc.HealthServiceStub(ch)
    opts = qpb.QueryOptions(token=token)
    health_req = hpb.ServiceHealthRequest(service="web", options=opts)
    list_req = cpb.ListServiceInstancesRequest(service="web", options=opts)
    url = f"http://{agent.http_addr}/v1/health/service/web"
    headers = {"X-Consul-Token": token} if token else {}

    async def http_get() -> object:
        async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=10)) as r:
            body = await r.json()
            assert r.status == 200
            return body

    return {
        "gRPC ServiceHealth": lambda: health.ServiceHealth(health_req, timeout=10),
        "gRPC ListServiceInstances": lambda: catalog.ListServiceInstances(list_req, timeout=10),
        "HTTP /v1/health/service/web": http_get,
    }


async def main(seconds: float, rounds: int, instances: int, concurrency: int) -> None:
    cluster = Cluster()
    cfg = Path(tempfile.mkdtemp(prefix="acl-bench-")) / "acl.json"
    acl = {"enabled": True, "default_policy": "deny", "tokens": {"initial_management": MGMT}}
    cfg.write_text(json.dumps({"acl": acl}))
    off = cluster.server("bench-acl-off", "--dev", *QUIET)
    on = cluster.server("bench-acl-on", "--dev", "--config-file", str(cfg), *QUIET)
    results: dict[tuple[str, str], list[LoadResult]] = {}
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency * 2)
        ) as session:
            for _ in range(100):  # the initial management token is written at start
                async with session.get(
                    f"http://{on.http_addr}/v1/acl/token/self", headers={"X-Consul-Token": MGMT}
                ) as resp:
                    if resp.status == 200:
                        break
                await asyncio.sleep(0.1)
            await register(off, instances, "")
            await register(on, instances, MGMT)
            token = await read_token(session, on)
            async with (
                grpc.aio.insecure_channel(off.grpc_addr) as ch_off,
                grpc.aio.insecure_channel(on.grpc_addr) as ch_on,
            ):
                calls = {
                    "off": reads(ch_off, session, off, ""),
                    "on": reads(ch_on, session, on, token),
                }
                for name in calls["off"]:
                    a = await calls["off"][name]()
                    b = await calls["on"][name]()
                    n_off = len(getattr(a, "entries", None) or getattr(a, "instances", None) or a)  # type: ignore[arg-type]
                    n_on = len(getattr(b, "entries", None) or getattr(b, "instances", None) or b)  # type: ignore[arg-type]
                    assert n_off == n_on == instances, (name, n_off, n_on)
                for _ in range(rounds):
                    for name in calls["off"]:
                        for mode in ("off", "on"):
                            res = await run_load(
                                f"{name} acl={mode}",
                                calls[mode][name],
                                concurrency=concurrency,
                                seconds=seconds,
                            )
                            results.setdefault((name, mode), []).append(res)
    finally:
        cluster.stop_all()
    for name in ("gRPC ServiceHealth", "gRPC ListServiceInstances", "HTTP /v1/health/service/web"):
        off_r = merge(f"{name} acl=off", results[(name, "off")])
        on_r = merge(f"{name} acl=on", results[(name, "on")])
        print(off_r.line())
        print(on_r.line())
        print(
            f"  {name}: throughput on/off {on_r.rate / off_r.rate:.2f}x,"
            f" p50 on/off {on_r.pct(50) / off_r.pct(50):.2f}"
        )


async def in_process(instances: int, calls: int) -> None:
    """The enforcement alone, in this process: resolve (cached) + filter a
    ServiceHealth answer of ``instances`` entries, vs the same call unguarded.
    CPU time per call, so other load on the machine matters less."""
    import time

    from agent.acl.enforce import Gate
    from agent.acl.resolver import Resolver, StateTokens
    from agent.config import ACLConfig
    from agent.state.acl import ACLState
    from agent.store.memory import MemoryStore

    acl = ACLConfig(enabled=True, default_policy="deny", initial_management=MGMT)
    async with MemoryStore() as store:
        state = ACLState(store)
        await state.ensure_builtins()
        await state.ensure_management_token(MGMT)
        secrets = {}
        for n, (label, rules) in enumerate(
            [
                ("read all", READ_RULES),
                (
                    "read all but one (per-entry checks)",
                    READ_RULES + '\nservice "x" { policy = "deny" }',
                ),
            ]
        ):
            policy = await state.upsert_policy(
                {"ID": f"p-{n}", "Name": f"read{n}", "Rules": rules, "Description": ""},
                create=True,
            )
            token = await state.upsert_token(
                {
                    "AccessorID": f"00000000-0000-0000-0000-0000000000a{n}",
                    "SecretID": f"00000000-0000-0000-0000-0000000000b{n}",
                    "Policies": [{"ID": policy["ID"]}],
                },
                create=True,
            )
            secrets[label] = token["SecretID"]
        gate = Gate(Resolver(acl, StateTokens(state, "dc1"), version=state.index))
        answer = hpb.ServiceHealthResponse(
            entries=[
                pb.ServiceEntry(
                    node=pb.Node(name=f"node-{i}", address="10.0.0.1"),
                    service=pb.Service(name="web", id="web", port=8080),
                    checks=[pb.HealthCheck(node=f"node-{i}", check_id="c", service_name="web")],
                )
                for i in range(instances)
            ]
        )

        async def endpoint(req: object) -> hpb.ServiceHealthResponse:
            out = hpb.ServiceHealthResponse()
            out.CopyFrom(answer)
            return out

        path = "/consul.health.v1.HealthService/ServiceHealth"
        runs: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("unguarded", lambda: endpoint(hpb.ServiceHealthRequest(service="web")))
        ]
        for label, secret in secrets.items():
            req = hpb.ServiceHealthRequest(service="web", options=qpb.QueryOptions(token=secret))
            assert len((await gate.call(path, endpoint, req)).entries) == instances
            runs.append((f"guarded, {label}", lambda r=req: gate.call(path, endpoint, r)))
        for label, run in runs:
            t0 = time.process_time()
            for _ in range(calls):
                await run()
            per = (time.process_time() - t0) / calls * 1e6
            print(f"in-process ServiceHealth ({instances} entries) {label}: {per:.1f} us/call CPU")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--inproc-calls", type=int, default=20000)
    args = parser.parse_args()
    asyncio.run(in_process(args.instances, args.inproc_calls))
    asyncio.run(main(args.seconds, args.rounds, args.instances, args.concurrency))
