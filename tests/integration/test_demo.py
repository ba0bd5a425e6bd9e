"""``consul-grpc demo``: the scenario end to end (--once), the no-etcd fallback, and Ctrl-C.

Each test runs ``python -m agent.cli demo`` as a subprocess in an empty
directory (the package is installed; the demo must not depend on the current
directory), with a timeout, and checks what it printed and that it left no
process and no temporary directory behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from agent.demo import etcd_binary

DEMO = [sys.executable, "-m", "agent.cli", "demo"]
RUN_TIMEOUT = 200


def require_etcd() -> None:
    """The project installs etcd (scripts/bootstrap): its absence is a failure, not a skip."""
    assert etcd_binary() is not None, "etcd not installed: run ./scripts/bootstrap"


def run_demo(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DEMO, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def temp_dir(out: str) -> Path:
    match = re.search(r"\(temp dir (\S+)\)", out)
    assert match, out
    return Path(match.group(1))


def printed_pids(out: str) -> list[int]:
    """The PID column of the demo's process table, and etcd's pid."""
    pids = [int(m) for m in re.findall(r"^  \S+\s+(?:server|client)\s+dc\d.*\s(\d+)$", out, re.M)]
    pids += [int(m) for m in re.findall(r"etcd: \S+ \(pid (\d+),", out)]
    return pids


def start_time(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat (start time), None if no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def alive(pid: int, started: str | None = None) -> bool:
    """Whether ``pid`` is a live (not zombie) process, the same one if ``started`` is given."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    return fields[0] != "Z" and (started is None or fields[19] == started)


def descendants(pid: int) -> dict[int, str | None]:
    """Every descendant of ``pid`` (Linux /proc children lists), with its start time."""
    found: dict[int, str | None] = {}
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found[child] = start_time(child)
                    todo.append(child)
    return found


def in_group(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


@pytest.mark.timeout(RUN_TIMEOUT + 30)
def test_demo_once_runs_the_whole_scenario(tmp_path: Path) -> None:
    require_etcd()
    res = run_demo(tmp_path, "--once")
    out = res.stdout
    assert res.returncode == 0, f"exit {res.returncode}\n{out}\n{res.stderr}"
    for expected in (
        "Starting etcd, 3 dc1 servers, 1 dc2 server, 2 dc1 clients",
        "Cluster ready in",
        "members --grpc-addr 127.0.0.1:",
        "catalog services --datacenter dc2 --grpc-addr 127.0.0.1:",
        "[1/4]",
        "TTL passed: service:web-1 is passing",
        "web -> node client-1 (dc1) 127.0.0.1:8080",
        "service:web-1=passing",
        "kill -9 server-",
        "left client-2's router after",
        "reads after the kill, 0 failed",
        "client-1, datacenter=dc2: api -> node dc2-server (dc2) 127.0.0.1:9090",
        "The demo succeeded",
        "Stopped.",
    ):
        assert expected in out, f"missing {expected!r} in:\n{out}"
    assert len(re.findall(r"^  [1-4]\. ok ", out, re.M)) == 4, out
    # curl lines only when the agents answer HTTP.
    assert "curl http://127.0.0.1:" in out or "do not serve the HTTP API" in out
    assert "FAILED" not in out and "skipped" not in out
    assert "Traceback" not in res.stderr, res.stderr
    # Torn down: every process it started is gone, and its directory removed.
    pids = printed_pids(out)
    assert len(pids) == 7, out
    assert [p for p in pids if alive(p)] == []
    assert not temp_dir(out).exists()


@pytest.mark.timeout(RUN_TIMEOUT + 30)
def test_demo_without_etcd_says_how_to_get_it_and_runs_one_dc1_server(tmp_path: Path) -> None:
    res = run_demo(tmp_path, "--once", "--no-etcd")
    out = res.stdout
    assert res.returncode == 0, f"exit {res.returncode}\n{out}\n{res.stderr}"
    assert "apt-get install etcd-server" in out
    assert "ONE server on the memory store" in out
    assert "Starting 1 dc1 server, 1 dc2 server, 2 dc1 clients" in out
    assert "web -> node client-1 (dc1)" in out
    assert "skipped: dc1 has one server" in out
    assert re.search(r"^  3\. skipped ", out, re.M), out
    assert "client-1, datacenter=dc2: api -> node dc2-server (dc2)" in out
    assert "The demo succeeded" in out
    pids = printed_pids(out)
    assert len(pids) == 4, out
    assert [p for p in pids if alive(p)] == []
    assert not temp_dir(out).exists()


@pytest.mark.timeout(150)
def test_ctrl_c_tears_everything_down_promptly(tmp_path: Path) -> None:
    require_etcd()
    proc = subprocess.Popen(
        DEMO,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,  # its own process group, as a terminal gives it
    )
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Cluster ready"):
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(90), "".join(lines)
        children = descendants(proc.pid)
        assert len(children) >= 7, (children, "".join(lines))  # etcd + 6 agents
        # Ctrl-C in a terminal: SIGINT to the foreground process group.
        t0 = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        rc = proc.wait(40)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        reader.join(10)
    out = "".join(lines)
    assert rc == 130, f"exit {rc}\n{out}"  # interrupted before the scenario finished
    assert elapsed < 30, (elapsed, out)
    assert "SIGINT: tearing the demo down" in out
    assert "Stopped." in out and "still running" not in out
    assert "Traceback" not in out, out
    leftover = [pid for pid, started in children.items() if alive(pid, started)]
    assert leftover == [], (leftover, out)
    assert in_group(proc.pid) == []
    assert not temp_dir(out).exists()
