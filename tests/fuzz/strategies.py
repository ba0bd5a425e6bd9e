"""Hypothesis strategies for hostile HTTP requests against Consul's /v1 routes.

Every route the HTTP app serves is listed from the app itself (plus the
metrics route the agents add), except ``PUT /v1/agent/leave``, which would
end the target. Path parameters, query values and bodies come from pools of
known-bad values (Go-invalid numbers and durations, lone surrogates, NUL,
huge and deep values, oversized bodies, bodies that lie about their
encoding) mixed with random text and random JSON.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

from agent.http import build_app
from agent.http.params import MAX_BODY_SIZE

__all__ = ["ROUTES", "Request", "requests"]

_EXCLUDED = {("PUT", "/v1/agent/leave")}


def _routes() -> list[tuple[str, str]]:
    app = build_app(None, None, datacenter="dc1", node_name="n")  # type: ignore[arg-type]
    found = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    found.add(("GET", "/v1/agent/metrics"))
    return sorted(found - _EXCLUDED)


ROUTES = _routes()


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str
    body: bytes
    headers: dict[str, bytes]

    def describe(self) -> str:
        return f"{self.method} {self.target} body={self.body[:120]!r} headers={self.headers}"


def _pct(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


_BAD_TEXT = [
    "",
    "web",
    "\x00",
    "a\x00b",
    "\ud800",
    "\udcff",
    "é",
    "\u202e",
    "😀",
    "../..",
    "%",
    "a" * 5000,
    "(a+)+$",
    "[",
    " ",
    "\n",
]
_BAD_NUMBERS = [
    "",
    "0",
    "1",
    "-1",
    "+1",
    " 1",
    "1 ",
    "1_000",
    "١٢",
    "0x10",
    "1e3",
    "9" * 30,
    str(2**63 - 1),
    str(2**63),
    str(2**64 - 1),
    str(2**64),
    "NaN",
]
# Short or invalid only: a valid long wait would just hold the request.
_WAITS = [
    "",
    "0",
    "1",
    "0.5",
    "-1s",
    "10ms",
    "1_0ms",
    "\u0661s",
    ".s",
    "1x",
    "99999999999999h",
    "50ms",
]
_QUERY_KEYS = [
    "dc",
    "stale",
    "consistent",
    "filter",
    "token",
    "recurse",
    "keys",
    "separator",
    "cas",
    "flags",
    "acquire",
    "release",
    "passing",
    "tag",
    "node-meta",
    "pretty",
    "note",
    "enable",
    "reason",
    "name",
    "node",
    "service",
    "index",
]
_FILTERS = [
    'Service matches "(a+)+$"',
    "Service matches `" + "a" * 2000 + "`",
    'Node == "x" and (',
    "not not not " * 40 + "Node == x",
    "(" * 200 + "Node == x" + ")" * 200,
    'Checks.Status == "passing"',
    "Service matches `(?<=a)`",
    "Node in Tags",
]

_text = st.one_of(st.sampled_from(_BAD_TEXT), st.text(max_size=30))
_number = st.one_of(st.sampled_from(_BAD_NUMBERS), st.integers(-10, 2**65).map(str))


def _query_value(key: str) -> st.SearchStrategy[str]:
    if key in ("cas", "flags", "index"):
        return _number
    if key == "filter":
        return st.one_of(st.sampled_from(_FILTERS), _text)
    if key in ("stale", "consistent", "recurse", "keys", "passing", "pretty", "enable"):
        return st.sampled_from(["", "true", "1", "maybe", "False", "\x00"])
    return _text


@st.composite
def _query(draw: st.DrawFn) -> str:
    keys = draw(st.lists(st.sampled_from(_QUERY_KEYS), max_size=4, unique=True))
    pairs = [(k, draw(_query_value(k))) for k in keys]
    if "index" in keys:
        pairs.append(("wait", draw(st.sampled_from(_WAITS))))  # never a long block
    elif draw(st.booleans()):
        pairs.append(("wait", draw(st.sampled_from(_WAITS))))
    if not pairs:
        return ""
    return "?" + "&".join(f"{_pct(k)}={_pct(v)}" for k, v in pairs)


_json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    _text,
    st.sampled_from([10**400, -(10**400), 2**63, 1e308]),
)
_json_value = st.recursive(
    _json_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(_text, inner, max_size=4)),
    max_leaves=12,
)

_TEMPLATES: dict[str, dict[str, Any]] = {
    "/v1/agent/service/register": {
        "Name": "fz",
        "ID": "fz-1",
        "Port": 80,
        "Tags": ["a"],
        "Meta": {"k": "v"},
        "Check": {"TTL": "10s"},
        "Weights": {"Passing": 1},
    },
    "/v1/agent/check/register": {"Name": "fzc", "TTL": "10s", "Notes": "n"},
    "/v1/agent/check/update/{check_id}": {"Status": "passing", "Output": "ok"},
    "/v1/catalog/register": {
        "Node": "fz-node",
        "Address": "127.0.0.1",
        "Service": {"Service": "fz", "Port": 1},
        "Check": {"CheckID": "c", "Status": "passing"},
    },
    "/v1/catalog/deregister": {"Node": "fz-node"},
    "/v1/session/create": {"Name": "s", "TTL": "15s", "LockDelay": "1s", "Behavior": "release"},
    "/v1/txn": [{"KV": {"Verb": "set", "Key": "fz", "Value": "eA=="}}],
}


def _mutate(doc: Any, draw: st.DrawFn) -> Any:
    if isinstance(doc, dict) and doc:
        key = draw(st.sampled_from(sorted(doc)))
        out = dict(doc)
        action = draw(st.sampled_from(["replace", "drop", "recase", "deeper", "add"]))
        if action == "replace":
            out[key] = draw(_json_value)
        elif action == "drop":
            del out[key]
        elif action == "recase":
            out[key.lower()] = out.pop(key)
        elif action == "deeper":
            out[key] = _mutate(out[key], draw)
        else:
            out[draw(_text)] = draw(_json_value)
        return out
    if isinstance(doc, list) and doc:
        return [_mutate(doc[0], draw), *doc[1:]]
    return draw(_json_value)


@st.composite
def _body(draw: st.DrawFn, route: str) -> tuple[bytes, dict[str, bytes]]:
    template = _TEMPLATES.get(route)
    kind = draw(
        st.sampled_from(
            ["template", "template", "json", "bytes", "deep", "huge", "gzip-lie", "empty"]
        )
    )
    headers: dict[str, bytes] = {}
    if kind == "template" and template is not None:
        doc = _mutate(template, draw)
        return json.dumps(doc).encode(), headers
    if kind == "json":
        return json.dumps(draw(_json_value)).encode(), headers
    if kind == "bytes":
        return draw(st.binary(max_size=200)), headers
    if kind == "deep":
        depth = draw(st.sampled_from([100, 1000, 100_000]))
        return b"[" * depth + b"]" * depth, headers
    if kind == "huge":
        size = draw(st.sampled_from([MAX_BODY_SIZE + 1, 600 * 1024, 200 * 1024]))
        return b'{"Name": "' + b"a" * size + b'"}', headers
    if kind == "gzip-lie":
        headers["Content-Encoding"] = b"gzip"
        good = draw(st.booleans())
        payload = json.dumps(template or {}).encode()
        return (gzip.compress(payload) if good else payload), headers
    return b"", headers


@st.composite
def requests(draw: st.DrawFn) -> Request:
    method, route = draw(st.sampled_from(ROUTES))
    target = route
    while "{" in target:
        start = target.index("{")
        end = target.index("}", start)
        name = target[start + 1 : end]
        if name == "verb":
            value = draw(st.sampled_from(["pass", "warn", "fail", "explode", ""]))
        elif name == "state":
            value = draw(st.sampled_from(["passing", "any", "critical", "bogus", ""]))
        else:
            value = draw(_text)
        target = target[:start] + _pct(value) + target[end + 1 :]
    target += draw(_query())
    body, headers = draw(_body(route)) if method == "PUT" else (b"", {})
    if draw(st.integers(0, 9)) == 0:
        headers["X-Consul-Token"] = draw(st.sampled_from([b"\xff\xfe", b"t\x80", b"a" * 5000]))
    return Request(method, target, body, headers)
