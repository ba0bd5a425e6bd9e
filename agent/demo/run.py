"""``consul-grpc demo``: options, the run (start, scenario, teardown), the CLI parser."""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from dataclasses import dataclass
from typing import Any

from agent.demo.cluster import (
    CALL_TIMEOUT,
    ETCD_INSTALL_HINT,
    DemoCluster,
    DemoError,
    print_addresses,
    say,
)
from agent.demo.procs import etcd_binary
from agent.demo.scenario import Scenario

__all__ = [
    "DemoCluster",
    "DemoError",
    "DemoOptions",
    "add_demo_parser",
    "cmd_demo",
    "etcd_binary",
    "run_demo",
]



@dataclass(frozen=True, slots=True)
class DemoOptions:
    once: bool = False
    no_etcd: bool = False
    keep_logs: bool = False


def _dump_logs(cluster: DemoCluster, options: DemoOptions) -> None:
    say("Last lines of each process's log:")
    for child in cluster.children():
        say(f"----- {child.name} ({child.log_path}) -----\n{child.log_tail()}")
    if not options.keep_logs:
        say("(run with --keep-logs to keep the full logs)")


async def _body(cluster: DemoCluster, options: DemoOptions, succeeded: list[bool]) -> int:
    t0 = time.monotonic()
    if cluster.etcd is not None:
        say("Starting etcd, 3 dc1 servers, 1 dc2 server, 2 dc1 clients ...")
    else:
        say("Starting 1 dc1 server, 1 dc2 server, 2 dc1 clients ...")
    try:
        await cluster.start()
    except DemoError as exc:
        say(f"\nStart-up FAILED: {exc}")
        _dump_logs(cluster, options)
        return 1
    if cluster.etcd is not None:
        say(
            f"  etcd: {cluster.etcd.endpoint} (pid {cluster.etcd.pid},"
            f" data in {cluster.etcd.data_dir})"
        )
    say(f"Cluster ready in {time.monotonic() - t0:.1f}s (temp dir {cluster.root})")
    await print_addresses(cluster)
    scenario = Scenario(cluster)
    ok = await scenario.run()
    scenario.summary()
    if not ok:
        say("\nThe demo FAILED.")
        _dump_logs(cluster, options)
        return 1
    succeeded.append(True)
    say(f"\nThe demo succeeded in {time.monotonic() - t0:.1f}s.")
    if options.once:
        return 0
    say("The cluster keeps running: try the commands above. Press Ctrl-C to stop.")
    await asyncio.Event().wait()
    return 0


async def run_demo(options: DemoOptions) -> int:
    """Run the demo; the process exit status. SIGINT/SIGTERM tear down and return."""
    binary = None if options.no_etcd else etcd_binary()
    say("consul-grpc demo: a two-datacenter cluster as local processes on loopback\n")
    if binary is None:
        why = "--no-etcd given" if options.no_etcd else "etcd is not installed"
        say(
            f"NOTE: {why}. dc1 runs as ONE server on the memory store, so the failover"
            " step is skipped.\n"
            f"      For the full demo (3 dc1 servers on etcd): {ETCD_INSTALL_HINT}"
            " (or set ETCD_BIN to an etcd binary)\n"
        )
    loop = asyncio.get_running_loop()
    cluster = DemoCluster(etcd=binary, keep_logs=options.keep_logs)
    interrupted = asyncio.Event()

    def on_signal(name: str) -> None:
        if interrupted.is_set():
            say(f"\n{name} again: killing everything now")
            cluster.hurry.set()
            return
        say(f"\n{name}: tearing the demo down (Ctrl-C again to skip the grace periods)")
        interrupted.set()

    handled = (signal.SIGINT, signal.SIGTERM)
    for sig in handled:
        loop.add_signal_handler(sig, on_signal, sig.name)
    succeeded: list[bool] = []
    body = asyncio.create_task(_body(cluster, options, succeeded))
    waiter = asyncio.create_task(interrupted.wait())
    try:
        await asyncio.wait({body, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        deadline = time.monotonic() + CALL_TIMEOUT + 1
        while not body.done() and time.monotonic() < deadline:
            body.cancel()  # again if a library swallowed the first cancel
            await asyncio.wait({body}, timeout=0.5)
        await cluster.aclose()
        for sig in handled:
            loop.remove_signal_handler(sig)
            if interrupted.is_set():  # exiting anyway: a late Ctrl-C must not turn into a traceback
                signal.signal(sig, signal.SIG_IGN)
    if interrupted.is_set():
        return 130
    if body.done() and not body.cancelled():
        exc = body.exception()
        if exc is not None:
            raise exc
        return body.result()
    return 0 if succeeded else 130


def add_demo_parser(sub: Any) -> None:
    """The ``demo`` subcommand, for ``agent.cli``'s subparsers."""
    p = sub.add_parser(
        "demo",
        help="run a local two-datacenter cluster and a guided scenario",
        description="Start etcd, three dc1 servers, one dc2 server and two dc1 clients on"
        " loopback, print where to look, run the scenario (register, discover, kill a"
        " server, query dc2), then keep running until Ctrl-C.",
    )
    p.add_argument("--once", action="store_true", help="exit after the scenario (for CI)")
    p.add_argument(
        "--no-etcd",
        action="store_true",
        help="do not use etcd even if installed: one dc1 server on the memory store",
    )
    p.add_argument(
        "--keep-logs", action="store_true", help="keep the temporary directory with the logs"
    )


async def cmd_demo(args: argparse.Namespace) -> int:
    """``consul-grpc demo``."""
    return await run_demo(
        DemoOptions(once=args.once, no_etcd=args.no_etcd, keep_logs=args.keep_logs)
    )
