"""Issue 15 at the HTTP edge: Go's parsing rules, no 500 on bad input, RE2 patterns, quiet logs."""

from __future__ import annotations

import gzip
import json
import logging

import pytest

from agent.errors import InvalidArgument
from agent.http.base import text_response
from agent.http.event_routes import applies_to
from agent.http.logfilter import BadInputLogFilter
from agent.http.params import MAX_INDEX
from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.event.v1 import event_pb2 as epb
from tests.http.conftest import Client
from tests.http.fakes import FakeAgent, FakeInvoker

# -- ?index= and ?wait= by Go's rules ------------------------------------------


async def _options(client: Client, invoker: FakeInvoker, query: str) -> qpb.QueryOptions:
    resp = await client.get(f"/v1/catalog/nodes?{query}")
    assert resp.status == 200, await resp.text()
    return invoker.last("ListNodes").options  # type: ignore[attr-defined,no-any-return]


@pytest.mark.parametrize(
    "index",
    ["1_000", "+1", "%201", "1%20", "%D9%A1%D9%A2", "-1", "0x10", "1e3", "18446744073709551616"],
)
async def test_index_is_parsed_as_go_parseuint_regression(client: Client, index: str) -> None:
    # Python's int() took 1_000, " 1", "+1" and Arabic-Indic digits; Consul refuses them.
    resp = await client.get(f"/v1/catalog/nodes?index={index}")
    assert resp.status == 400
    assert (await resp.text()).startswith("Invalid index")


@pytest.mark.parametrize("index", [str(2**63 - 1), str(2**63), str(2**64 - 1)])
async def test_index_at_or_above_2_63_is_clamped_before_the_store_regression(
    client: Client, invoker: FakeInvoker, index: str
) -> None:
    opts = await _options(client, invoker, f"index={index}")
    assert opts.min_index == MAX_INDEX == 2**63 - 2


@pytest.mark.parametrize("wait", ["0.5", "1", "1_0s", "%D9%A1s", "s", ".s", "1x", "%201s", "1e3s"])
async def test_wait_is_parsed_as_go_parseduration_regression(client: Client, wait: str) -> None:
    resp = await client.get(f"/v1/catalog/nodes?index=1&wait={wait}")
    assert resp.status == 400
    assert (await resp.text()).startswith("Invalid wait time")


@pytest.mark.parametrize(
    ("wait", "seconds"),
    [("1.5s", 1.5), (".5s", 0.5), ("1h", 600.0), ("601s", 600.0), ("5%C2%B5s", 0.000005)],
)
async def test_wait_go_syntax_and_max_query_time_cap(
    client: Client, invoker: FakeInvoker, wait: str, seconds: float
) -> None:
    opts = await _options(client, invoker, f"index=1&wait={wait}")
    assert opts.max_wait.ToNanoseconds() == round(seconds * 1e9)


@pytest.mark.parametrize("wait", ["0", "-1s", "0s"])
async def test_zero_or_negative_wait_means_the_default(
    client: Client, invoker: FakeInvoker, wait: str
) -> None:
    opts = await _options(client, invoker, f"index=1&wait={wait}")
    assert not opts.HasField("max_wait")


# -- no 500 on bad input ---------------------------------------------------------

SURROGATE = "\ud800"


def _json(doc: object) -> bytes:
    """``doc`` as JSON; a lone surrogate is written as the escape ``"\\ud800"``."""
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/agent/service/register", {"Name": SURROGATE}),
        (
            "/v1/agent/service/register",
            {"Name": "a", "Tags": [SURROGATE], "Meta": {SURROGATE: "x"}},
        ),
        ("/v1/agent/check/register", {"Name": SURROGATE, "TTL": "10s"}),
        ("/v1/catalog/register", {"Node": SURROGATE, "Address": "1.2.3.4"}),
        ("/v1/session/create", {"Name": SURROGATE}),
        ("/v1/txn", [{"KV": {"Verb": "set", "Key": SURROGATE, "Value": ""}}]),
    ],
)
async def test_lone_surrogate_in_json_is_not_a_500_regression(
    client: Client, path: str, body: object
) -> None:
    resp = await client.put(path, data=_json(body))
    assert resp.status < 500, await resp.text()


async def test_lone_surrogate_becomes_replacement_char_as_in_go(
    client: Client, fake_agent: FakeAgent
) -> None:
    # Go's encoding/json replaces an invalid surrogate with U+FFFD.
    resp = await client.put("/v1/agent/service/register", data=_json({"Name": f"a{SURROGATE}b"}))
    assert resp.status == 200
    req = fake_agent.last(apb.RegisterServiceRequest)
    assert req.definition.service.name == "a\ufffdb"  # type: ignore[attr-defined]


async def test_check_output_with_lone_surrogate_is_not_a_500_regression(
    client: Client, fake_agent: FakeAgent
) -> None:
    await client.put("/v1/agent/check/register", data=b'{"Name": "c", "TTL": "10s"}')
    resp = await client.put(
        "/v1/agent/check/update/c", data=_json({"Status": "passing", "Output": SURROGATE})
    )
    assert resp.status == 200, await resp.text()
    assert fake_agent.checks["c"].output == "\ufffd"


HUGE = 10**400


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/agent/service/register", {"Name": "a", "Check": {"TTL": HUGE}}),
        ("/v1/agent/check/register", {"Name": "a", "HTTP": "http://x", "Interval": HUGE}),
        ("/v1/session/create", {"LockDelay": HUGE}),
        ("/v1/session/create", {"TTL": HUGE}),
        ("/v1/agent/service/register", {"Name": "a", "Check": {"TTL": 2**63}}),
    ],
)
async def test_huge_json_integer_duration_is_400_regression(
    client: Client, path: str, body: object
) -> None:
    resp = await client.put(path, data=_json(body))
    assert resp.status == 400
    assert "out of range" in await resp.text()


async def test_body_that_is_not_its_content_encoding_is_400_regression(client: Client) -> None:
    resp = await client.put(
        "/v1/agent/service/register",
        data=b"this is not gzip",
        headers={"Content-Encoding": "gzip"},
    )
    assert resp.status == 400
    assert "Content-Encoding" in await resp.text()


async def test_real_gzip_body_still_works(client: Client, fake_agent: FakeAgent) -> None:
    resp = await client.put(
        "/v1/agent/service/register",
        data=gzip.compress(b'{"Name": "g"}'),
        headers={"Content-Encoding": "gzip"},
    )
    assert resp.status == 200
    assert "g" in fake_agent.services


async def test_400_whose_message_holds_a_surrogate_does_not_crash_the_middleware_regression(
    client: Client, invoker: FakeInvoker
) -> None:
    invoker.error = InvalidArgument("bad name \ud800")
    resp = await client.get("/v1/catalog/nodes")
    assert resp.status == 400
    assert await resp.text() == "bad name \\ud800"
    assert text_response(400, "x\udcff").body == b"x\\udcff"


# -- RE2 for user patterns --------------------------------------------------------


def test_catastrophic_event_filter_runs_on_re2_regression() -> None:
    event = epb.Event(name="e", node_filter="(a+)+$", service_filter="(x+)+$")
    services = [pb.Service(id="s", name="x" * 40 + "!")]
    assert applies_to(event, "a" * 40 + "!", services) is False
    assert applies_to(event, "aaa", [pb.Service(id="s", name="xx")]) is True


async def test_event_filter_go_refuses_is_400(client: Client) -> None:
    resp = await client.put("/v1/event/fire/x", params={"node": "(?<=a)b"})
    assert resp.status == 400
    assert "Invalid node filter" in await resp.text()


# -- quiet logs ---------------------------------------------------------------------


class RequestPayloadError(Exception):
    """Named as aiohttp's: the filter matches errors by class name."""


def _record(exc: BaseException) -> logging.LogRecord:
    return logging.LogRecord(
        "aiohttp.server",
        logging.ERROR,
        __file__,
        1,
        "Unhandled exception",
        (),
        (type(exc), exc, None),
    )


def test_bad_input_tracebacks_are_one_line_rate_limited_regression() -> None:
    now = [0.0]
    flt = BadInputLogFilter(window=60.0, clock=lambda: now[0])
    first = _record(RequestPayloadError("bad gzip"))
    assert flt.filter(first) is True
    assert first.exc_info is None and first.levelno == logging.INFO
    assert "RequestPayloadError" in first.getMessage()
    assert not any(flt.filter(_record(RequestPayloadError("again"))) for _ in range(8000))
    now[0] = 61.0
    later = _record(RequestPayloadError("later"))
    assert flt.filter(later) is True
    assert "dropped_since_last=8000" in later.getMessage()
    other = _record(RuntimeError("a real bug"))
    assert flt.filter(other) is True and other.exc_info is not None
