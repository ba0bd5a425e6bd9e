"""KV at scale (issue 16, item 4): a large prefix read, listed and watched.

    .venv/bin/python bench/kv_scale.py [--sizes 3000,10000,30000] [--watchers 1000]
    .venv/bin/python bench/kv_scale.py --full     # 10k, 30k and 100k keys (a 10k prefix)

For each size N, on a fresh etcd with one etcd-backed server and one client
agent joined to it: N keys of 100-byte values are loaded through the server
(``PUT /v1/txn``, 64 sets per transaction), a tenth of them under ``big/``
(``big/gNNN/kNNNNNN``, 100 keys per group), the rest under ``rest/``. Then,
each beside its reference in the same run:

1. ``GET /v1/kv/big/?recurse`` (N/10 pairs) at the server and at the client
   agent: p50/p99 and bytes, vs a raw etcd range of the same prefix in the
   server's namespace with the agent's own etcd library (etcd3aio);
2. ``GET /v1/kv/?keys&separator=/`` (every key scanned, 2 names back) and
   ``GET /v1/kv/big/?keys&separator=/`` at the server, vs an etcd keys-only
   range of the same keys;
3. ``--watchers`` blocking queries ``GET /v1/kv/big/?recurse&index=I`` (raw
   keep-alive sockets, as in bench/views.py), at the client agent, then
   straight at the server; one write under ``big/``; the time from the write
   until each watcher has its whole answer (p50/p99/max), and the CPU time
   and RSS of the server and the client agent for the wake.

Also: the load rate, and how long a second server started cold on that etcd
takes to be ready (its replica loads every key).

Bounded: every wait has a timeout; each size runs in a fresh cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import QUIET, percentile, rss_kib
from tests.support.etcd import EtcdServer
from tests.support.procs import AgentProcess, Cluster

VALUE = b"v" * 100
PER_TXN = 64
NAMESPACE = b"/consul-grpc/dc1/"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def key_of(i: int, big: int) -> str:
    if i < big:
        return f"big/g{i // 100:03d}/k{i:06d}"
    return f"rest/g{(i - big) // 1000:04d}/k{i:07d}"


async def load(http: str, size: int, big: int) -> float:
    """Write ``size`` keys through the server's /v1/txn; the keys per second."""
    value = base64.b64encode(VALUE).decode()
    batches = [
        [
            {"KV": {"Verb": "set", "Key": key_of(i, big), "Value": value}}
            for i in range(start, min(size, start + PER_TXN))
        ]
        for start in range(0, size, PER_TXN)
    ]
    queue = list(reversed(batches))
    t0 = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http_session:

        async def worker() -> None:
            while queue:
                batch = queue.pop()
                async with http_session.put(f"http://{http}/v1/txn", json=batch) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"txn: {resp.status} {await resp.text()}")

        await asyncio.gather(*(worker() for _ in range(8)))
    return size / (time.perf_counter() - t0)


async def timed_gets(http: str, path: str, reps: int) -> tuple[list[float], int, int]:
    """``reps`` sequential GETs: (latencies s, body bytes, status)."""
    lat: list[float] = []
    size = status = 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as s:
        for _ in range(reps):
            t0 = time.perf_counter()
            async with s.get(f"http://{http}{path}") as resp:
                body = await resp.read()
                status = resp.status
            lat.append(time.perf_counter() - t0)
            size = len(body)
    return lat, size, status


async def etcd_ranges(endpoint: str, prefix: bytes, reps: int, keys_only: bool) -> list[float]:
    """The reference: a raw etcd range of ``prefix`` with the agent's etcd library."""
    from etcd3aio import Etcd3Client

    from agent.store.etcd import prefix_range_end

    client = Etcd3Client([endpoint])
    client._manager.grpc_options += [("grpc.max_receive_message_length", 256 * 1024 * 1024)]
    await client.connect()
    assert client.kv is not None
    lat = []
    try:
        for _ in range(reps):
            t0 = time.perf_counter()
            resp = await client.kv.get(
                prefix, range_end=prefix_range_end(prefix), keys_only=keys_only, timeout=30
            )
            # Decode as the agent's store does: every key (and value) into Python.
            _ = [(bytes(kv.key).decode(), bytes(kv.value)) for kv in resp.kvs]
            lat.append(time.perf_counter() - t0)
    finally:
        await client.close()
    return lat


async def _http_get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str
) -> tuple[int, int]:
    """One keep-alive GET on a raw connection: (X-Consul-Index, body bytes)."""
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
    left = length
    while left:
        left -= len(await reader.read(min(left, 1 << 20)))
    return index, length


async def wake(
    target: AgentProcess, writer_http: str, pids: dict[str, int], watchers: int
) -> dict[str, object]:
    """``watchers`` blocking recursive reads of ``big/`` at ``target``; one write."""
    host, port = target.http_addr.rsplit(":", 1)
    conns = [await asyncio.open_connection(host, int(port)) for _ in range(watchers)]
    try:
        index, _ = await _http_get(*conns[0], "/v1/kv/big/?recurse")
        done_at: list[float] = []
        parked = 0

        async def block(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal parked
            parked += 1
            got, _ = await _http_get(reader, writer, f"/v1/kv/big/?recurse&index={index}&wait=120s")
            if got > index:
                done_at.append(time.perf_counter())

        tasks = [asyncio.create_task(block(r, w)) for r, w in conns]
        while parked < watchers:
            await asyncio.sleep(0.05)
        await asyncio.sleep(min(10.0, 1.0 + watchers / 500))  # the queries reach the agent
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        own0 = time.process_time()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
            t0 = time.perf_counter()
            async with s.put(f"http://{writer_http}/v1/kv/big/g000/wake", data=b"x") as resp:
                assert resp.status == 200, resp.status
            t_ack = time.perf_counter()
            put_ms = (t_ack - t0) * 1000
        try:
            async with asyncio.timeout(120):
                await asyncio.gather(*tasks)
        except TimeoutError:
            for t in tasks:
                t.cancel()
        own = time.process_time() - own0
        cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
        rss = {name: rss_kib(pid) / 1024 for name, pid in pids.items()}
    finally:
        for _, w in conns:
            w.close()
    ms = sorted((d - t0) * 1000 for d in done_at)
    after_ack = sorted(max(0.0, d - t_ack) * 1000 for d in done_at)
    return {
        "woken": len(ms),
        "ms": ms,
        "after_ack": after_ack,
        "cpu": cpu,
        "rss": rss,
        "put_ms": put_ms,
        "own": own,
    }


def _pct(lat: list[float]) -> str:
    return f"p50 {percentile(lat, 50) * 1000:7.1f} ms  p99 {percentile(lat, 99) * 1000:7.1f} ms"


async def one_size(size: int, args: argparse.Namespace, limits: Path) -> list[str]:
    big = max(1, size // 10)
    lines = [f"== {size} keys, {big} under big/ (100-byte values)"]
    async with EtcdServer() as etcd:
        cluster = Cluster()
        try:
            server = cluster.server(
                "kvb-s1",
                *("--store", "etcd", "--etcd-endpoints", etcd.endpoint),
                *("--config-file", str(limits), *QUIET),
            )
            client = cluster.client(
                "kvb-c1", "--retry-join", server.rpc_addr, "--config-file", str(limits), *QUIET
            )
            assert server.proc is not None and client.proc is not None
            pids = {"server": server.proc.pid, "client": client.proc.pid}
            rate = await load(server.http_addr, size, big)
            lines.append(f"load through the server (/v1/txn, 64 per txn): {rate:7.0f} keys/s")
            # A server started cold on this etcd loads its replica of every key.
            t_cold = time.perf_counter()
            try:
                cold = await asyncio.to_thread(
                    cluster.server,
                    "kvb-s2",
                    *("--store", "etcd", "--etcd-endpoints", etcd.endpoint, *QUIET),
                )
                lines.append(
                    f"a second server started cold on this etcd: ready in "
                    f"{time.perf_counter() - t_cold:.1f} s, RSS "
                    f"{rss_kib(cold.proc.pid) / 1024 if cold.proc else 0:.0f} MiB"
                )
                await asyncio.to_thread(cold.stop)
            except Exception as exc:  # a figure of the bench: report it
                lines.append(f"a second server started cold on this etcd: FAILED ({exc})"[:300])
            reps = args.reps
            kv_big = NAMESPACE + b"kv/big/"
            ref = await etcd_ranges(etcd.endpoint, kv_big, reps, keys_only=False)
            for label, where in (("server", server), ("client agent", client)):
                lat, nbytes, status = await timed_gets(where.http_addr, "/v1/kv/big/?recurse", reps)
                lines.append(
                    f"recurse big/ at the {label:<12} {_pct(lat)}  {nbytes / 1e6:5.2f} MB "
                    f"(status {status}); p50 {percentile(lat, 50) / percentile(ref, 50):5.1f}x etcd"
                )
            lines.append(f"etcd range of the same prefix      {_pct(ref)}")
            ref_all = await etcd_ranges(etcd.endpoint, NAMESPACE + b"kv/", reps, keys_only=True)
            ref_big = await etcd_ranges(etcd.endpoint, kv_big, reps, keys_only=True)
            for path, reference in (
                ("/v1/kv/?keys&separator=/", ref_all),
                ("/v1/kv/big/?keys&separator=/", ref_big),
            ):
                lat, nbytes, status = await timed_gets(server.http_addr, path, reps)
                lines.append(
                    f"{path:<30} server {_pct(lat)}  {nbytes:8d} B (status {status}); "
                    f"p50 {percentile(lat, 50) / percentile(reference, 50):5.1f}x etcd keys-only "
                    f"({percentile(reference, 50) * 1000:.1f} ms)"
                )
            for path in ("/v1/kv/?keys&separator=/", "/v1/kv/big/?keys&separator=/"):
                lat, nbytes, status = await timed_gets(client.http_addr, path, reps)
                lines.append(f"{path:<30} client {_pct(lat)}  {nbytes:8d} B (status {status})")
            for label, target in (("client agent", client), ("server", server)):
                r = await wake(target, server.http_addr, pids, args.watchers)
                ms: list[float] = r["ms"]  # type: ignore[assignment]
                worst = max(ms, default=float("nan"))
                cpu: dict[str, float] = r["cpu"]  # type: ignore[assignment]
                rss: dict[str, float] = r["rss"]  # type: ignore[assignment]
                lines.append(
                    f"{args.watchers} watchers of big/?recurse at the {label}: woken "
                    f"{r['woken']}/{args.watchers}  p50 {percentile(ms, 50):7.0f} ms  "
                    f"p99 {percentile(ms, 99):7.0f} ms  max {worst:7.0f} ms;"
                    f" CPU server {cpu['server'] * 1000:.0f} ms, client {cpu['client'] * 1000:.0f}"
                    f" ms; RSS server {rss['server']:.0f} MiB, client {rss['client']:.0f} MiB"
                    f" (the write took {r['put_ms']:.0f} ms, after its answer p99"
                    f" {percentile(r['after_ack'], 99):.0f} ms; the bench's readers"  # type: ignore[arg-type]
                    f" {r['own'] * 1000:.0f} ms of CPU)"
                )
        finally:
            await asyncio.to_thread(cluster.stop_all)
    return lines


async def main(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # agents inherit it
    limits = Path(tempfile.mkdtemp(prefix="kv-bench-")) / "limits.json"
    limits.write_text(
        json.dumps(
            {"limits": {"http_max_conns_per_client": 0, "http_max_blocking_queries_per_client": 0}}
        )
    )
    sizes = [10_000, 30_000, 100_000] if args.full else [int(s) for s in args.sizes.split(",")]
    t0 = time.monotonic()
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    try:
        for size in sizes:
            print("\n".join(await one_size(size, args, limits)), flush=True)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    print(f"(total {time.monotonic() - t0:.0f} s, load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="3000,10000,30000", help="total keys, one run each")
    parser.add_argument("--full", action="store_true", help="10k, 30k and 100k keys")
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=10, help="sequential reads per figure")
    asyncio.run(main(parser.parse_args()))
