"""Discovery reads from a client agent's views, each beside its reference (issue 10).

    .venv/bin/python bench/views.py [--seconds 4] [--watchers 2000] [--agents 100]

In one run, on real processes (a dev server, a client agent joined to it, a
real etcd, bench/echo_server.py), it prints side by side:

1. HTTP ``GET /v1/health/service/web?passing`` at the client agent (10
   instances, ``wrk -t1 -c32``) vs an aiohttp handler returning the same
   bytes from memory, and vs etcd's JSON gateway serializable Range of 10
   keys holding the same entries (wrk with a POST script);
2. gRPC ``HealthService.ServiceHealth(passing)`` at the client agent vs a
   bare grpc.aio echo of the same payload size (closed loop, 32 callers);
3. N HTTP blocking queries on ``web`` at the client agent, woken by one
   registration: how many woke, p50/p99 from the write to each answer, and
   the server's CPU time for the wake, for N and for N/10 watchers;
4. M views simulated from this process (M gRPC connections, one Subscribe
   each, straight to the server): time from a write until each sees it
   (p50/p99), and the server's RSS per subscription.

Needs ``wrk`` (Debian; ``scripts/bootstrap`` installs it).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import EchoServer, percentile, register_instances, rss_kib, run_load
from generated.consul.catalog.v1 import catalog_pb2 as cpb
from generated.consul.catalog.v1 import catalog_pb2_grpc
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.health.v1 import health_pb2 as hpb
from generated.consul.health.v1 import health_pb2_grpc
from generated.consul.subscribe.v1 import subscribe_pb2 as spb
from generated.consul.subscribe.v1 import subscribe_pb2_grpc
from tests.support.etcd import EtcdServer, free_port
from tests.support.procs import Cluster

PATH = "/v1/health/service/web?passing"

_STATIC_SERVER = """
import sys
from aiohttp import web
body = open(sys.argv[1], "rb").read()
async def handler(request):
    return web.Response(body=body, content_type="application/json")
app = web.Application()
app.router.add_get("/v1/health/service/web", handler)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), print=None, access_log=None)
"""

_WRK_POST = """
wrk.method = "POST"
wrk.body = [[{body}]]
wrk.headers["Content-Type"] = "application/json"
"""


def wrk(url: str, seconds: float, script: str | None = None) -> float:
    """Requests/s of ``wrk -t1 -c32`` on ``url``."""
    cmd = ["wrk", "-t1", "-c32", f"-d{seconds:g}s"]
    if script is not None:
        cmd += ["-s", script]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=seconds + 30).stdout
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if found is None or errors is not None:
        raise RuntimeError(f"wrk failed on {url}:\n{out}")
    return float(found.group(1))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def http_section(agent_http: str, seconds: float, rounds: int) -> list[str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://{agent_http}{PATH}") as r:
        body = await r.read()
    entries = json.loads(body)
    assert len(entries) == 10, entries
    tmp = Path(tempfile.mkdtemp(prefix="bench-views-"))
    (tmp / "body.json").write_bytes(body)
    static_port = free_port()
    static = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _STATIC_SERVER, str(tmp / "body.json"), str(static_port)
    )
    lines = [
        f"HTTP GET {PATH} ({len(body)} bytes), wrk -t1 -c32, {rounds} x {seconds:g} s each,"
        " interleaved"
    ]
    try:
        async with EtcdServer() as etcd:
            # 10 keys holding the same entries, read back as one serializable Range.
            async with aiohttp.ClientSession() as session:
                for i, entry in enumerate(entries):
                    put = {
                        "key": base64.b64encode(f"web/{i:02d}".encode()).decode(),
                        "value": base64.b64encode(json.dumps(entry).encode()).decode(),
                    }
                    async with session.post(f"{etcd.url}/v3/kv/put", json=put) as r:
                        assert r.status == 200, await r.text()
            range_body = json.dumps(
                {
                    "key": base64.b64encode(b"web/").decode(),
                    "range_end": base64.b64encode(b"web0").decode(),
                    "serializable": True,
                }
            )
            script = tmp / "range.lua"
            script.write_text(_WRK_POST.format(body=range_body))
            for _ in range(50):  # the static server is up
                try:
                    async with (
                        aiohttp.ClientSession() as s,
                        s.get(f"http://127.0.0.1:{static_port}/v1/health/service/web") as r,
                    ):
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            static_url = f"http://127.0.0.1:{static_port}/v1/health/service/web"
            runs: dict[str, list[float]] = {"agent": [], "static": [], "etcd": []}
            for _ in range(rounds):  # interleaved: a busy moment hits all three alike
                runs["agent"].append(
                    await asyncio.to_thread(wrk, f"http://{agent_http}{PATH}", seconds)
                )
                runs["static"].append(await asyncio.to_thread(wrk, static_url, seconds))
                runs["etcd"].append(
                    await asyncio.to_thread(wrk, f"{etcd.url}/v3/kv/range", seconds, str(script))
                )
            agent, static_rate, etcd_rate = (
                statistics.mean(runs[k]) for k in ("agent", "static", "etcd")
            )
    finally:
        static.terminate()
        await asyncio.wait_for(static.wait(), 10)
        shutil.rmtree(tmp, ignore_errors=True)
    lines += [
        f"  client agent (views)                 {agent:9.0f} req/s",
        f"  aiohttp, same bytes from memory      {static_rate:9.0f} req/s",
        f"  etcd JSON gateway Range (10 keys)    {etcd_rate:9.0f} req/s",
        f"  agent/aiohttp: {agent / static_rate:.2f} (goal >= 0.6)",
        f"  agent/etcd:    {agent / etcd_rate:.2f} (goal >= 3)",
    ]
    return lines


async def grpc_section(agent_grpc: str, seconds: float) -> list[str]:
    async with grpc.aio.insecure_channel(agent_grpc) as ch, EchoServer() as echo:
        health = health_pb2_grpc.HealthServiceStub(ch)
        req = hpb.ServiceHealthRequest(service="web", passing_only=True)
        size = (await health.ServiceHealth(req, timeout=10)).ByteSize()
        agent = await run_load(
            "agent ServiceHealth(passing)",
            lambda: health.ServiceHealth(req, timeout=10),
            concurrency=32,
            seconds=seconds,
        )
        async with grpc.aio.insecure_channel(echo.address) as ech:
            bare = await run_load(
                f"grpc.aio echo ({size} bytes)",
                echo.caller(ech, b"x" * size),
                concurrency=32,
                seconds=seconds,
            )
    return [
        "gRPC, closed loop, 32 callers on one channel",
        "  " + agent.line(),
        "  " + bare.line(),
        f"  agent/echo throughput: {agent.rate / bare.rate:.2f} (goal >= 0.7)",
    ]


async def _http_get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str
) -> tuple[int, bytes]:
    """One keep-alive HTTP/1.1 GET on a raw connection: (X-Consul-Index, body).

    A bare client, so that 2,000 parked queries measure the agent, not the
    bench's own HTTP client.
    """
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    length, index = 0, 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        lname = name.strip().lower()
        if lname == b"content-length":
            length = int(value)
        elif lname == b"x-consul-index":
            index = int(value)
    return index, await reader.readexactly(length)


async def wake(
    agent_http: str,
    server_grpc: str,
    pids: tuple[int, int],
    watchers: int,
    round_no: int,
) -> tuple[int, list[float], float, float]:
    """``watchers`` blocking queries, one registration.

    (woken, latencies, server CPU s, agent CPU s) for ``pids`` = (server, agent).
    """
    server_pid, agent_pid = pids
    host, port = agent_http.rsplit(":", 1)
    conns = [await asyncio.open_connection(host, int(port)) for _ in range(watchers)]
    try:
        index, _ = await _http_get(*conns[0], "/v1/health/service/web")
        done_at: list[float] = []
        parked = 0

        async def block(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal parked
            parked += 1
            got, _ = await _http_get(
                reader, writer, f"/v1/health/service/web?index={index}&wait=60s"
            )
            if got > index:
                done_at.append(time.perf_counter())

        tasks = [asyncio.create_task(block(r, w)) for r, w in conns]
        while parked < watchers:
            await asyncio.sleep(0.05)
        await asyncio.sleep(min(10.0, 1.0 + watchers / 500))  # the queries reach the agent
        cpu0, agent_cpu0 = cpu_seconds(server_pid), cpu_seconds(agent_pid)
        async with grpc.aio.insecure_channel(server_grpc) as ch:
            t0 = time.perf_counter()
            await catalog_pb2_grpc.CatalogServiceStub(ch).Register(
                cpb.RegisterRequest(
                    node=pb.Node(name=f"wake-{round_no}", address="10.9.0.1"),
                    service=pb.Service(name="web", port=9090, tags=["wake"]),
                ),
                timeout=10,
            )
        async with asyncio.timeout(60):
            await asyncio.gather(*tasks)
        cpu = cpu_seconds(server_pid) - cpu0
        agent_cpu = cpu_seconds(agent_pid) - agent_cpu0
    finally:
        for _, w in conns:
            w.close()
    return len(done_at), [d - t0 for d in done_at], cpu, agent_cpu


async def subscribers_section(server_rpc: str, server_pid: int, agents: int) -> list[str]:
    channels = [
        grpc.aio.insecure_channel(server_rpc, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(agents)
    ]
    rss0 = rss_kib(server_pid)
    arrived: list[float] = []
    ready = asyncio.Semaphore(0)
    target = {"index": 0}

    async def follow(ch: grpc.aio.Channel) -> None:
        stub = subscribe_pb2_grpc.SubscribeServiceStub(ch)
        stream = stub.Subscribe(spb.SubscribeRequest(topic=spb.TOPIC_SERVICE_HEALTH, key="web"))
        async for msg in stream:
            kind = msg.WhichOneof("message")
            if kind == "end_of_snapshot":
                ready.release()
            elif kind == "events" and target["index"] and msg.events.index >= target["index"]:
                arrived.append(time.perf_counter())
                stream.cancel()
                return

    tasks = [asyncio.create_task(follow(ch)) for ch in channels]
    try:
        async with asyncio.timeout(60):
            for _ in range(agents):
                await ready.acquire()
        await asyncio.sleep(1.0)
        rss1 = rss_kib(server_pid)
        async with grpc.aio.insecure_channel(server_rpc) as ch:
            t0 = time.perf_counter()
            target["index"] = 1  # any change from now on
            await catalog_pb2_grpc.CatalogServiceStub(ch).Register(
                cpb.RegisterRequest(
                    node=pb.Node(name="sub-writer", address="10.9.0.2"),
                    service=pb.Service(name="web", port=9191),
                ),
                timeout=10,
            )
        async with asyncio.timeout(30):
            await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        for ch in channels:
            await ch.close()
    lat = sorted((a - t0) * 1000 for a in arrived)
    return [
        f"{agents} views simulated over gRPC (one connection and one Subscribe each)",
        f"  a write reached {len(lat)}/{agents}: p50 {percentile(lat, 50):.1f} ms"
        f"  p99 {percentile(lat, 99):.1f} ms (goal p99 < 100 ms)",
        f"  server RSS {rss0} KiB idle -> {rss1} KiB: "
        f"{(rss1 - rss0) / agents:.1f} KiB per subscription",
    ]


async def main(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # agents inherit it
    cluster = Cluster()
    quiet = ("--log-level", "WARNING")
    # Every watcher comes from 127.0.0.1: lift the per-client limits (Consul's
    # limits.http_max_conns_per_client, 200 by default; 0 means none).
    limits = Path(tempfile.mkdtemp(prefix="views-bench-")) / "limits.json"
    limits.write_text(
        json.dumps(
            {"limits": {"http_max_conns_per_client": 0, "http_max_blocking_queries_per_client": 0}}
        )
    )
    dev = cluster.server("bench-dev", "--dev", *quiet)
    agent = cluster.client(
        "bench-c1", "--retry-join", dev.rpc_addr, "--config-file", str(limits), *quiet
    )
    assert dev.proc is not None and agent.proc is not None
    lines: list[str] = []
    try:
        async with grpc.aio.insecure_channel(dev.grpc_addr) as ch:
            await register_instances(ch, "web", 10)
        lines += await http_section(agent.http_addr, args.seconds / 2, args.rounds)
        lines += await grpc_section(agent.grpc_addr, args.seconds)
        small = max(1, args.watchers // 10)
        results = {}
        for n, round_no in ((small, 1), (args.watchers, 2)):
            pids = (dev.proc.pid, agent.proc.pid)
            results[n] = await wake(agent.http_addr, dev.grpc_addr, pids, n, round_no)
        lines.append("HTTP blocking queries on one service at one client agent, one registration")
        for n, (woken, lat, cpu, agent_cpu) in results.items():
            ms = sorted(x * 1000 for x in lat)
            lines.append(
                f"  {n:5d} watchers: woken {woken}/{n}  p50 {percentile(ms, 50):6.1f} ms"
                f"  p99 {percentile(ms, 99):6.1f} ms  server CPU {cpu * 1000:5.0f} ms"
                f"  agent CPU {agent_cpu * 1000:5.0f} ms"
            )
        big, little = results[args.watchers][2], results[small][2]
        ratio = f"{big / little:.2f}" if little > 0 else f"{big * 1000:.0f} ms vs 0 ms"
        lines.append(f"  server CPU {args.watchers}/{small} watchers: {ratio} (goal < 2)")
        lines += await subscribers_section(dev.rpc_addr, dev.proc.pid, args.agents)
    finally:
        cluster.stop_all()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    print("\n".join(lines))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--watchers", type=int, default=2000)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved wrk rounds")
    asyncio.run(main(parser.parse_args()))
