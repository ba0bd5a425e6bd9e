"""The built wheel ships typed stubs; a fresh virtualenv runs the Python example.

Builds the wheel from pyproject.toml, checks it carries ``generated`` with
``.pyi`` files and ``py.typed``, installs it (dependencies from the package
index) into a new virtualenv, imports the stubs there from outside the
repository, type-checks the example against the installed package (mypy
--strict), and runs ``examples/python/register_and_watch.py`` with that
virtualenv's python against a real dev agent.
"""

from __future__ import annotations

import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.polyglot.conftest import ROOT, VENV_BIN, run
from tests.support.procs import AgentProcess

AREAS = ["agent", "catalog", "common", "health", "kv", "membership", "status"]
EXAMPLE = ROOT / "examples" / "python" / "register_and_watch.py"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    started = time.monotonic()
    run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
        timeout=300,
    )
    print(f"wheel built in {time.monotonic() - started:.1f}s")
    (path,) = out.glob("consul_grpc-*.whl")
    return path


@pytest.fixture(scope="module")
def venv_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv with the wheel (and, for mypy, grpc/protobuf type stubs)."""
    venv = tmp_path_factory.mktemp("venv")
    started = time.monotonic()
    run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    run([*pip, str(wheel), "types-protobuf", "types-grpcio"], timeout=500)
    print(f"fresh venv with the wheel installed in {time.monotonic() - started:.1f}s")
    return python


def test_wheel_ships_typed_generated_stubs(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "generated/py.typed" in names
    assert "generated/__init__.py" in names
    for area in AREAS:
        stubs = [n for n in names if n.startswith(f"generated/consul/{area}/v1/")]
        assert any(n.endswith("_pb2.pyi") for n in stubs), f"{area}: no _pb2.pyi in {stubs}"
        assert any(n.endswith("_pb2_grpc.pyi") for n in stubs), f"{area}: no _pb2_grpc.pyi"
        assert any(n.endswith("_pb2_grpc.py") for n in stubs), f"{area}: no _pb2_grpc.py"
    # The console script and the agent package come along too.
    assert "agent/__init__.py" in names
    assert not any(n.startswith(("tests/", "examples/")) for n in names)


@pytest.mark.timeout(600)
def test_fresh_venv_imports_stubs_and_runs_example(
    venv_python: Path, dev_agent: AgentProcess, tmp_path: Path
) -> None:
    # Imported from the new virtualenv, not from the repository checkout.
    probe = run(
        [
            str(venv_python),
            "-c",
            "import generated, pathlib; "
            "from generated.consul.catalog.v1 import catalog_pb2, catalog_pb2_grpc; "
            "from generated.consul.agent.v1 import agent_pb2_grpc; "
            "print(pathlib.Path(generated.__file__).parent)",
        ],
        cwd=tmp_path,
        timeout=60,
    )
    where = Path(probe.stdout.strip())
    assert where.is_relative_to(venv_python.parent.parent), where
    assert (where / "py.typed").exists()

    # The stubs are typed: the example passes mypy --strict against the install.
    run(
        [
            str(VENV_BIN / "mypy"),
            "--strict",
            "--no-incremental",
            "--python-executable",
            str(venv_python),
            str(EXAMPLE),
        ],
        cwd=tmp_path,
        timeout=180,
    )

    # Register with a TTL check, flap passing/warning, watch three changes.
    proc = run(
        [
            str(venv_python),
            str(EXAMPLE),
            "--addr",
            dev_agent.grpc_addr,
            "--name",
            "wheel-demo",
            "--flap",
            "--changes",
            "3",
            "--timeout",
            "60",
        ],
        cwd=tmp_path,
        timeout=90,
    )
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("registered wheel-demo-"), proc.stdout
    watched = [line for line in lines if line.startswith("index=")]
    assert len(watched) == 4, proc.stdout  # the first answer, then three changes
    indexes = [int(line.split()[0].removeprefix("index=")) for line in watched]
    assert indexes == sorted(indexes) and len(set(indexes)) == 4, proc.stdout
    states = [line.rsplit("=", 1)[1] for line in watched]
    assert "passing" in states and "warning" in states, proc.stdout
    assert lines[-1].startswith("deregistered wheel-demo-"), proc.stdout


def test_wheel_ships_the_web_ui(wheel: Path) -> None:
    """The UI's files are package data: an installed agent serves /ui/ with nothing to build."""
    names = set(zipfile.ZipFile(wheel).namelist())
    static = Path(__file__).resolve().parents[2] / "agent" / "ui" / "static"
    want = {f"agent/ui/static/{p.relative_to(static)}" for p in static.rglob("*") if p.is_file()}
    assert "agent/ui/static/index.html" in want and "agent/ui/static/vendor/preact.mjs" in want
    assert want <= names, sorted(want - names)
