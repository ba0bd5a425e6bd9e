"""python-consul2, unmodified, over every method of its API surface.

python-consul2 imports as ``consul`` like py-consul, so it runs in a
subprocess (tests/compat/runners/python_consul2.py) with its own install
(.venv/compat/python-consul2, made by scripts/bootstrap) first on PYTHONPATH.
The runner calls every method once against this module's dev agent and ACL
agent and reports each step; one test per step reads its result. A step that
fails on a gap of the agent is ``xfail(strict=True)`` naming the gap.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.compat.conftest import MGMT
from tests.compat.runners.python_consul2 import STEPS
from tests.support.procs import ROOT, AgentProcess

pytestmark = pytest.mark.timeout(120)

RUNNER = ROOT / "tests" / "compat" / "runners" / "python_consul2.py"
TARGET = ROOT / ".venv" / "compat" / "python-consul2"

GAP_CONNECT_CA = "gap connect CA and intentions: /v1/connect/*, /v1/agent/connect/* not served"

XFAIL: dict[str, str] = {
    "agent_connect_authorize": GAP_CONNECT_CA,
    "agent_connect_root_certificates": GAP_CONNECT_CA,
    "agent_connect_leaf_certificates": GAP_CONNECT_CA,
    **{s.__name__: GAP_CONNECT_CA for s in STEPS if s.__name__.startswith("connect_")},
}


@pytest.fixture(scope="module")
def results(dev: AgentProcess, acl_dev: AgentProcess) -> dict[str, str]:
    assert (TARGET / "consul").is_dir(), "python-consul2 is not installed: run scripts/bootstrap"
    env = {**os.environ, "PYTHONPATH": str(TARGET)}
    proc = subprocess.run(
        [sys.executable, str(RUNNER), dev.http_addr, acl_dev.http_addr, MGMT],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=100,
    )
    assert proc.returncode == 0, proc.stderr
    answer: dict[str, str] = json.loads(proc.stdout)
    return answer


def test_runner_uses_python_consul2() -> None:
    env = {**os.environ, "PYTHONPATH": str(TARGET)}
    code = "import consul, json; print(json.dumps([consul.__version__, consul.__file__]))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    version, path = json.loads(out.stdout)
    assert version == "0.1.5"
    assert path.startswith(str(TARGET))


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            s.__name__,
            marks=[pytest.mark.xfail(strict=True, reason=XFAIL[s.__name__])]
            if s.__name__ in XFAIL
            else [],
        )
        for s in STEPS
    ],
)
def test_method(results: dict[str, str], name: str) -> None:
    assert results[name] == "ok", results[name]
