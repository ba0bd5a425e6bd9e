"""The web UI in headless Chromium: first-load bytes, and rendering 500 services.

    .venv/bin/python bench/ui_load.py [--services 500] [--nodes 50] [--runs 5]

Starts a dev agent (a real process; the UI is on with --dev) and Debian's
chromium (headless, through Playwright, a fresh context per run: no cache).

1. First page load: the bytes the browser transferred (navigation plus every
   resource, from the Resource Timing API) to show the services list of a
   fresh dev agent. Goal: under 300 KB.
2. Then registers ``--services`` services (one instance each, with a passing
   check) over ``--nodes`` catalog nodes, and times, from navigation start,
   until the list shows every row. Goal: under 1 s. Split in the same page: when
   the ``/v1/internal/ui/services`` answer was in (page, modules and the agent's
   read), and the drawing of the rows after it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from playwright.sync_api import Browser, sync_playwright

from tests.support.procs import AgentProcess, Cluster
from tests.ui.conftest import CHROMIUM, CHROMIUM_ARGS

_TRANSFERRED = """() => {
  const entries = [...performance.getEntriesByType('navigation'),
                   ...performance.getEntriesByType('resource')];
  return entries.map((e) => ({name: e.name, bytes: e.transferSize}));
}"""

_FIRST_READS_DONE = """() =>
  ['/v1/agent/self', '/v1/catalog/datacenters', '/v1/internal/ui/services'].every((p) =>
    performance.getEntriesByType('resource').some((e) => e.name.includes(p)))"""

# When the services list's first answer was fully received (ms since navigation start).
_API_END = """() => {
  const e = performance.getEntriesByType('resource')
    .filter((r) => r.name.includes('/v1/internal/ui/services'))[0];
  return e ? e.responseEnd : null;
}"""


def put(agent: AgentProcess, path: str, body: object) -> None:
    req = urllib.request.Request(
        f"http://{agent.http_addr}{path}", data=json.dumps(body).encode(), method="PUT"
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200


def register(agent: AgentProcess, services: int, nodes: int) -> None:
    def one(i: int) -> None:
        node = f"bench-node-{i % nodes}"
        put(
            agent,
            "/v1/catalog/register",
            {
                "Node": node,
                "Address": f"10.0.{i % nodes // 250}.{i % nodes % 250 + 1}",
                "Service": {
                    "ID": f"svc-{i:04d}",
                    "Service": f"svc-{i:04d}",
                    "Port": 8000 + i,
                    "Tags": ["bench", f"v{i % 3}"],
                },
                "Check": {
                    "CheckID": f"svc-{i:04d}",
                    "Name": "bench check",
                    "Status": "passing",
                    "ServiceID": f"svc-{i:04d}",
                },
            },
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(services)))


def first_load(browser: Browser, agent: AgentProcess) -> list[dict[str, object]]:
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(f"http://{agent.http_addr}/ui/dc1/services/")
    page.wait_for_selector("[data-service=consul]", timeout=30_000)
    # Not "networkidle": the list's blocking query is always outstanding. Wait for
    # the page's other reads (agent self, datacenters, the first services answer).
    page.wait_for_function(_FIRST_READS_DONE, timeout=30_000)
    entries: list[dict[str, object]] = page.evaluate(_TRANSFERRED)
    ctx.close()
    return entries


def render(browser: Browser, agent: AgentProcess, rows: int) -> tuple[float, float]:
    """(ms from navigation start to all rows shown, ms until the services answer was in)."""
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(f"http://{agent.http_addr}/ui/dc1/services/", wait_until="commit")
    page.wait_for_function(
        f"document.querySelectorAll('[data-service]').length >= {rows}",
        polling="raf",
        timeout=60_000,
    )
    shown = float(page.evaluate("performance.now()"))
    api = float(page.evaluate(_API_END) or "nan")
    ctx.close()
    return shown, api


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=500)
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    cluster = Cluster()
    started = time.monotonic()
    try:
        dev = cluster.server("bench-ui", "--dev", "--log-level", "WARNING")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            entries = first_load(browser, dev)
            total = sum(int(e["bytes"]) for e in entries)  # type: ignore[call-overload]
            print(
                f"first load of the services page (dev agent): {total / 1024:.1f} KiB "
                f"transferred in {len(entries)} requests (goal < 300 KB)"
            )
            for e in sorted(entries, key=lambda e: -int(e["bytes"]))[:6]:  # type: ignore[call-overload]
                print(f"  {int(e['bytes']) / 1024:6.1f} KiB  {e['name']}")  # type: ignore[call-overload]

            register(dev, args.services, args.nodes)
            rows = args.services + 1  # and the dev agent's own `consul`
            render(browser, dev, rows)  # warm the agent's code paths once
            runs = [render(browser, dev, rows) for _ in range(args.runs)]
            shown = [s for s, _ in runs]
            med, worst = statistics.median(shown), max(shown)
            api_med = statistics.median(a for _, a in runs)
            draw_med = statistics.median(s - a for s, a in runs)
            print(
                f"services list of {rows} rows ({args.nodes} nodes), {args.runs} runs, "
                f"fresh context each: shown after p50 {med:.0f} ms, max {worst:.0f} ms "
                f"(goal < 1000 ms)"
            )
            print(
                f"  services answer fully received at p50 {api_med:.0f} ms (page, modules and"
                f" the agent's read: {api_med / med:.2f} of the total); drawing the rows after"
                f" it: p50 {draw_med:.0f} ms"
            )
            load = Path("/proc/loadavg").read_text().split()[:3]
            print(f"  load average during the run: {' '.join(load)} (2 CPUs here)")
            browser.close()
    finally:
        cluster.stop_all()
    print(f"({time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
