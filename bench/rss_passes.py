"""Server RSS over repeated identical passes of writes: grows, then stays flat.

    .venv/bin/python bench/rss_passes.py [--passes 8] [--keys 500] [--value-kib 64]

Starts a dev server and writes the same ``--keys`` KV keys with values of
``--value-kib`` KiB, pass after pass (the data does not grow: every pass
overwrites the last), printing the server's RSS after each pass. The store
keeps a bounded history of changes for blocking queries and watches (at most
50,000 events and 64 MiB of keys and values, ``agent/store/memory.py``), so
RSS rises while that history fills and is flat after: the last line compares
the last pass with the pass at which the history filled (the reference).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import QUIET, rss_kib
from tests.support.procs import Cluster

HISTORY_BYTES = 64 * 1024 * 1024


async def one_pass(session: aiohttp.ClientSession, addr: str, keys: int, value: bytes) -> None:
    sem = asyncio.Semaphore(16)

    async def put(i: int) -> None:
        async with sem, session.put(f"http://{addr}/v1/kv/rss/{i:05d}", data=value) as resp:
            assert resp.status == 200, await resp.text()

    await asyncio.gather(*(put(i) for i in range(keys)))


async def main(args: argparse.Namespace) -> None:
    cluster = Cluster()
    try:
        server = cluster.server("rss-dev", "--dev", *QUIET)
        assert server.proc is not None
        value = b"v" * (args.value_kib * 1024)
        per_pass = args.keys * len(value)
        full_at = -(-HISTORY_BYTES // per_pass)  # the pass at which the history is full
        print(
            f"dev server; {args.passes} passes of {args.keys} puts of {args.value_kib} KiB "
            f"({per_pass / 2**20:.0f} MiB a pass, the history holds 64 MiB: full after pass "
            f"{full_at})"
        )
        rss = [rss_kib(server.proc.pid) / 1024]
        print(f"pass  0: RSS {rss[0]:7.1f} MiB")
        async with aiohttp.ClientSession() as session:
            for n in range(1, args.passes + 1):
                await one_pass(session, server.http_addr, args.keys, value)
                rss.append(rss_kib(server.proc.pid) / 1024)
                print(f"pass {n:2d}: RSS {rss[-1]:7.1f} MiB", flush=True)
        ref = min(full_at + 1, len(rss) - 1)
        print(
            f"RSS after pass {len(rss) - 1} / after pass {ref} (history full): "
            f"{rss[-1] / rss[ref]:.2f}x; growth over the last {len(rss) - 1 - ref} passes: "
            f"{rss[-1] - rss[ref]:+.1f} MiB"
        )
    finally:
        await asyncio.to_thread(cluster.stop_all)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passes", type=int, default=8)
    parser.add_argument("--keys", type=int, default=500)
    parser.add_argument("--value-kib", type=int, default=64)
    asyncio.run(main(parser.parse_args()))
