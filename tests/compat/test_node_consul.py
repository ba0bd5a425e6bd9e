"""The npm ``consul`` package (node-consul), unmodified, over every method of its API.

tests/compat/runners/node_consul.js calls every method once against this
module's dev agent and ACL agent (one node process for the whole batch) and
reports each step; one test per step reads its result. The package is a
pinned devDependency of package.json, installed by scripts/bootstrap. A step
that fails on a gap of the agent is ``xfail(strict=True)`` naming the gap.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.compat.conftest import MGMT
from tests.support.procs import ROOT, AgentProcess

pytestmark = pytest.mark.timeout(120)

RUNNER = ROOT / "tests" / "compat" / "runners" / "node_consul.js"
NODE = shutil.which("node") or "node"

# Step name -> the gap it fails on (none left: every node-consul method passes).
XFAIL: dict[str, str] = {}


def _steps() -> list[str]:
    out = subprocess.run(
        [NODE, str(RUNNER), "--list"], capture_output=True, text=True, cwd=ROOT, timeout=30
    )
    assert out.returncode == 0, out.stderr
    names: list[str] = json.loads(out.stdout)
    return names


STEPS = _steps()


@pytest.fixture(scope="module")
def results(dev: AgentProcess, acl_dev: AgentProcess) -> dict[str, str]:
    proc = subprocess.run(
        [NODE, str(RUNNER), dev.http_addr, acl_dev.http_addr, MGMT],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=100,
    )
    assert proc.returncode == 0, proc.stderr
    answer: dict[str, str] = json.loads(proc.stdout)
    return answer


def test_runner_uses_the_pinned_package() -> None:
    pkg = json.loads((ROOT / "node_modules" / "consul" / "package.json").read_text())
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["consul"]
    assert pkg["version"] == pinned == "2.0.1"


def test_every_step_reported(results: dict[str, str]) -> None:
    assert sorted(results) == sorted(STEPS)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(
            name,
            marks=[pytest.mark.xfail(strict=True, reason=XFAIL[name])] if name in XFAIL else [],
        )
        for name in STEPS
    ],
)
def test_method(results: dict[str, str], name: str) -> None:
    assert results[name] == "ok", results[name]
