"""DNS throughput of a client agent against dnsmasq, with dnsperf, in one run.

    .venv/bin/python bench/dns_perf.py [--seconds 10] [--no-cache]

Starts a dev server and a client agent (real processes; the client agent with
``dns_config.use_cache`` and ``cache_max_age`` 1s unless ``--no-cache``),
registers ``web`` with 3 passing instances and ``api`` with 20, and starts
dnsmasq (Debian ``dnsmasq-base``, our own process on a free port, no
upstream, the same records as static entries). dnsperf (Debian ``dnsperf``)
then sends, to each server in turn: A queries for ``web.service.consul`` over
UDP, and SRV queries for ``api.service.consul`` over TCP. Prints qps, lost
queries and average latency for each, and the agent/dnsmasq ratio.

dnsmasq answers TCP in forked children, one query at a time, and loses
dnsperf's pipelined TCP queries (a few qps here); so SRV is also measured over
UDP with EDNS (``dnsperf -e``, all 20 answers fit), where dnsmasq is a fair
reference.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.etcd import free_port
from tests.support.procs import Cluster, wait_until


def register(http_addr: str, node: str, address: str, service: str, port: int) -> None:
    body = {
        "Node": node,
        "Address": address,
        "Service": {"Service": service, "ID": f"{service}-{node}", "Port": port},
        "Check": {
            "CheckID": f"{service}-{node}",
            "Status": "passing",
            "ServiceID": f"{service}-{node}",
        },
    }
    req = urllib.request.Request(
        f"http://{http_addr}/v1/catalog/register", data=json.dumps(body).encode(), method="PUT"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200


def dnsmasq(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    hosts = tmp / "hosts"
    lines = [f"10.0.0.{i} web.service.consul" for i in range(1, 4)]
    lines += [f"10.0.1.{i} n{i}.node.dc1.consul" for i in range(20)]
    hosts.write_text("\n".join(lines) + "\n")
    srv = [
        f"--srv-host=_api._tcp.service.consul,n{i}.node.dc1.consul,{9000 + i},1,1"
        for i in range(20)
    ]
    srv += [f"--srv-host=api.service.consul,n{i}.node.dc1.consul,{9000 + i},1,1" for i in range(20)]
    cmd = [
        "dnsmasq",
        "--no-daemon",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        f"--addn-hosts={hosts}",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        f"--port={port}",
        "--pid-file=",
        "--log-facility=-",
        "--user=root",
        *srv,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def dnsperf(
    port: int, name: str, qtype: str, seconds: float, tcp: bool, tmp: Path, edns: bool = False
) -> dict[str, float]:
    data = tmp / f"{name}-{qtype}.txt"
    data.write_text(f"{name} {qtype}\n")
    cmd = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(data), "-l", str(seconds)]
    cmd += ["-c", "4" if tcp else "1", "-q", "64", "-t", "5"]
    if tcp:
        cmd += ["-m", "tcp"]
    if edns:
        cmd += ["-e"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout

    def num(pattern: str) -> float:
        m = re.search(pattern, out)
        return float(m.group(1)) if m else float("nan")

    return {
        "qps": num(r"Queries per second:\s+([\d.]+)"),
        "sent": num(r"Queries sent:\s+(\d+)"),
        "lost": num(r"Queries lost:\s+(\d+)"),
        "latency_ms": num(r"Average Latency \(s\):\s+([\d.]+)") * 1000,
        "noerror": num(r"NOERROR (\d+)"),
    }


def show(label: str, r: dict[str, float]) -> str:
    return (
        f"{label:<34} {r['qps']:>9.0f} qps  lost {r['lost']:.0f} of {r['sent']:.0f}"
        f"  avg {r['latency_ms']:.2f} ms"
    )


def main(seconds: float, cache: bool) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="dns-perf-"))
    cluster = Cluster()
    conf = tmp / "client.json"
    conf.write_text(json.dumps({"dns_config": {"use_cache": cache, "cache_max_age": "1s"}}))
    dev = cluster.server("bench-dev", "--dev", "--log-level", "WARNING")
    agent = cluster.client(
        "bench-c1",
        "--retry-join",
        dev.rpc_addr,
        "--log-level",
        "WARNING",
        "--config-file",
        str(conf),
    )
    port = free_port()
    masq = dnsmasq(tmp, port)
    try:
        for i in range(1, 4):
            register(agent.http_addr, f"w{i}", f"10.0.0.{i}", "web", 80)
        for i in range(20):
            register(agent.http_addr, f"n{i}", f"10.0.1.{i}", "api", 9000 + i)

        def ready() -> bool:
            out = subprocess.run(
                [
                    "dig",
                    "@127.0.0.1",
                    "-p",
                    str(agent.dns_port),
                    "+short",
                    "+tcp",
                    "api.service.consul",
                    "SRV",
                ],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout
            return len(out.splitlines()) == 20

        wait_until(ready, what="20 SRV answers")
        rows = []
        for label, name, qtype, tcp, edns in (
            ("A web.service.consul (3) UDP", "web.service.consul", "A", False, False),
            ("SRV api.service.consul (20) TCP", "api.service.consul", "SRV", True, False),
            ("SRV api.service.consul (20) UDP+EDNS", "api.service.consul", "SRV", False, True),
        ):
            ours = dnsperf(agent.dns_port, name, qtype, seconds, tcp, tmp, edns)
            ref = dnsperf(port, name, qtype, seconds, tcp, tmp, edns)
            rows.append((label, ours, ref))
        print(
            f"client agent DNS (use_cache={str(cache).lower()}) vs dnsmasq,"
            f" dnsperf {seconds:g}s each"
        )
        for label, ours, ref in rows:
            print(show(f"agent   {label}", ours))
            print(show(f"dnsmasq {label}", ref))
            print(f"  ratio agent/dnsmasq {ours['qps'] / ref['qps']:.2f}x (goal >= 0.2x, 0 lost)")
    finally:
        masq.terminate()
        masq.wait(10)
        cluster.stop_all()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--no-cache", action="store_true", help="every query reads through the client")
    a = p.parse_args()
    started = time.monotonic()
    main(a.seconds, not a.no_cache)
    print(f"({time.monotonic() - started:.0f} s)")
