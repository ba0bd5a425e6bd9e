from __future__ import annotations

import logging

import pytest

from agent.checks import (
    CRITICAL,
    DEFAULT_SCRIPT_TIMEOUT,
    DEFAULT_TIMEOUT,
    PASSING,
    SCRIPTS_DISABLED,
    CheckSpec,
    split_grpc_target,
    split_host_port,
    validate_spec,
)
from agent.errors import InvalidArgument


def v(spec: CheckSpec, *, scripts: bool = False, min_interval: float = 1.0) -> CheckSpec:
    return validate_spec(spec, enable_script_checks=scripts, min_interval=min_interval)


def test_kind_is_inferred_and_defaults_filled() -> None:
    out = v(CheckSpec(check_id="", name="web", http="http://127.0.0.1:1/h", interval=10))
    assert out.kind == "http"
    assert out.check_id == "web"
    assert out.name == "web"
    assert out.timeout == DEFAULT_TIMEOUT
    assert out.method == "GET"
    assert out.status == CRITICAL
    assert v(CheckSpec(check_id="t", ttl=30)).kind == "ttl"
    tcp = v(CheckSpec(check_id="t", tcp="127.0.0.1:80", interval=5))
    assert (tcp.kind, tcp.timeout) == ("tcp", DEFAULT_TIMEOUT)
    grpc = v(CheckSpec(check_id="g", grpc="localhost:50051/my.Svc", interval=5))
    assert (grpc.kind, grpc.timeout) == ("grpc", DEFAULT_TIMEOUT)
    script = v(CheckSpec(check_id="s", args=["true"], interval=5), scripts=True)
    assert (script.kind, script.timeout) == ("script", DEFAULT_SCRIPT_TIMEOUT)


def test_explicit_timeout_and_status_kept() -> None:
    out = v(CheckSpec(check_id="t", tcp="h:1", interval=5, timeout=2, status=PASSING))
    assert out.timeout == 2
    assert out.status == PASSING


def test_interval_clamped_to_minimum_with_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        out = v(CheckSpec(check_id="t", tcp="h:1", interval=0.1))
    assert out.interval == 1.0
    assert "interval below minimum" in caplog.text
    # Tests may lower the floor explicitly.
    assert v(CheckSpec(check_id="t", tcp="h:1", interval=0.1), min_interval=0.05).interval == 0.1


def test_deregister_clamped_to_one_minute() -> None:
    out = v(CheckSpec(check_id="t", ttl=5, deregister_critical_service_after=10))
    assert out.deregister_critical_service_after == 60.0
    out = v(CheckSpec(check_id="t", ttl=5, deregister_critical_service_after=90))
    assert out.deregister_critical_service_after == 90.0
    out = v(CheckSpec(check_id="t", ttl=5, deregister_critical_service_after=0))
    assert out.deregister_critical_service_after is None


def test_scripts_refused_unless_enabled() -> None:
    spec = CheckSpec(check_id="s", args=["/bin/true"], interval=5)
    with pytest.raises(InvalidArgument) as err:
        v(spec)
    assert err.value.message == SCRIPTS_DISABLED
    assert "enable_script_checks" in SCRIPTS_DISABLED
    assert v(spec, scripts=True).kind == "script"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (CheckSpec(check_id=""), "Missing check name"),
        (CheckSpec(check_id="x"), "TTL must be > 0 for TTL checks"),
        (CheckSpec(check_id="x", kind="ttl"), "TTL must be > 0 for TTL checks"),
        (CheckSpec(check_id="x", http="http://h/", interval=0), "Interval must be > 0"),
        (CheckSpec(check_id="x", tcp="h:1"), "Interval must be > 0"),
        (CheckSpec(check_id="x", ttl=5, interval=5), "Interval and TTL cannot both be specified"),
        (CheckSpec(check_id="x", http="http://h/", tcp="h:1", interval=5), "Only one of"),
        (CheckSpec(check_id="x", kind="tcp", http="http://h/", interval=5), "cannot have HTTP"),
        (CheckSpec(check_id="x", kind="grpc", interval=5), "needs GRPC"),
        (CheckSpec(check_id="x", interval=5), "none of HTTP, TCP, GRPC or Args"),
        (CheckSpec(check_id="x", kind="bogus", ttl=5), "invalid check kind"),  # type: ignore[arg-type]
        (CheckSpec(check_id="x", ttl=5, status="sick"), "Bad check status"),
        (CheckSpec(check_id="x", ttl=5, status="maintenance"), "Bad check status"),
        (CheckSpec(check_id="x", tcp="nohost", interval=5), "invalid TCP address"),
        (CheckSpec(check_id="x", tcp="h:99999", interval=5), "invalid TCP address"),
        (CheckSpec(check_id="x", grpc="h:x/svc", interval=5), "invalid gRPC address"),
        (CheckSpec(check_id="x", http="ftp://h/", interval=5), "invalid HTTP check URL"),
        (
            CheckSpec(check_id="x", http="http://h/", method="GE T", interval=5),
            "invalid HTTP method",
        ),
        (
            CheckSpec(check_id="x", http="http://h/", headers={"A": ["1\r\nB: 2"]}, interval=5),
            "line break",
        ),
        (CheckSpec(check_id="x", tcp="h:1", interval=-1), "Interval must not be negative"),
        (CheckSpec(check_id="x", ttl=5, timeout=-1), "Timeout must not be negative"),
        (
            CheckSpec(check_id="x", ttl=5, failures_before_critical=-1),
            "failures_before_critical must not be negative",
        ),
        (
            CheckSpec(check_id="x", ttl=5, deregister_critical_service_after=-1),
            "deregister_critical_service_after must not be negative",
        ),
    ],
)
def test_validate_errors(spec: CheckSpec, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        v(spec, scripts=True)
    assert message in err.value.message


def test_split_host_port() -> None:
    assert split_host_port("127.0.0.1:80") == ("127.0.0.1", 80)
    assert split_host_port("[::1]:8500") == ("::1", 8500)
    assert split_host_port("example.com:1") == ("example.com", 1)
    for bad in ("", "h", ":80", "h:", "h:0", "::1:80", "[::1]80", "h:-1"):
        with pytest.raises(InvalidArgument):
            split_host_port(bad)


def test_split_grpc_target() -> None:
    assert split_grpc_target("h:1") == ("h:1", "")
    assert split_grpc_target("h:1/pkg.Svc") == ("h:1", "pkg.Svc")
