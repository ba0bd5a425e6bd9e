"""Request parsing: query strings, tokens, bodies, and JSON objects read as Consul reads them.

Consul decodes JSON with Go's case-insensitive field matching and also takes
snake_case spellings (``enable_tag_override``, ``service_id``); :class:`Fields`
folds keys the same way, so ``name``, ``Name`` and ``NAME`` are one key.
Every malformed value raises ``InvalidArgument`` (HTTP 400) with a message
naming the field, never a Python error.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from agent.durations import parse_duration, seconds_duration
from agent.errors import ConsulError, InvalidArgument
from agent.http.goparse import GoSyntaxError, parse_duration_ns, parse_uint
from agent.http.limits import LIMITS, HTTPLimits
from generated.consul.common.v1 import query_pb2 as qpb

__all__ = [
    "MAX_BODY_SIZE",
    "MAX_DURATION",
    "MAX_INDEX",
    "BodyTooLarge",
    "Fields",
    "check_duration",
    "decode_json",
    "flag",
    "go_string",
    "node_meta",
    "query_options",
    "read_body",
    "token",
    "uint_param",
    "write_options",
]

# A JSON body larger than this is refused (Consul's agent has no smaller limit
# for registrations; 1 MiB is generous for any service definition).
MAX_BODY_SIZE = 1 << 20

# Go's time.Duration holds at most 2^63-1 ns (about 292 years); longer is invalid.
MAX_DURATION = (2**63 - 1) / 1e9
_MAX_DURATION_NS = 2**63 - 1

# Indexes are etcd revisions (int64) at the bottom; a watch starts at index + 1.
# Consul takes any uint64 ?index= and blocks until its wait ends when nothing
# reaches it; a larger one is clamped here, so it means the same and cannot
# overflow a revision on its way down.
MAX_INDEX = (1 << 63) - 2

# Go's encoding/json turns a lone UTF-16 surrogate (\ud800) into U+FFFD; Python
# keeps it in the str, where it cannot be encoded again (protobuf, logs, answers).
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


class BodyTooLarge(ConsulError):
    """A request body over the limit of its endpoint (HTTP 413)."""

    http_status = 413
    default_message = "Request body too large"


def check_duration(seconds: float, what: str) -> float:
    """``seconds`` if it is a duration Go could hold, else a 400 naming ``what``."""
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_DURATION:
        raise InvalidArgument(f"{what}: duration out of range")
    return seconds


def flag(query: MultiMapping[str], name: str) -> bool:
    """A boolean query flag: absent is false, ``?name`` alone is true, else Go's ParseBool."""
    if name not in query:
        return False
    value = query.get(name, "")
    if value == "" or value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InvalidArgument(f"Invalid value for ?{name}: {value!r} is not a boolean")


def uint_param(query: MultiMapping[str], name: str) -> int | None:
    """An unsigned 64-bit integer query parameter (Go's ``strconv.ParseUint``), None when absent."""
    if name not in query:
        return None
    value = query.get(name, "")
    try:
        return parse_uint(value)
    except GoSyntaxError:
        raise InvalidArgument(
            f"Invalid {name}: {_quote(value)} is not an unsigned 64-bit integer"
        ) from None


def _quote(value: str) -> str:
    """``value`` shortened and ASCII-safe, for an error message."""
    return ascii(value[:32])


def go_string(text: str) -> str:
    """``text`` with lone surrogates replaced by U+FFFD, as a Go string would hold it.

    aiohttp decodes header bytes that are not UTF-8 to surrogates
    (``surrogateescape``); JSON may spell them (``"\\ud800"``).
    """
    return _SURROGATE.sub("\ufffd", text)


def token(request: web.Request) -> str:
    """The caller's ACL token: ``?token=``, else ``X-Consul-Token``, else a Bearer token."""
    from_query = request.query.get("token", "")
    if from_query:
        return go_string(from_query)
    header = request.headers.get("X-Consul-Token", "")
    if header:
        return go_string(header)
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer":
        return go_string(value.strip())
    return ""


def node_meta(query: MultiMapping[str]) -> dict[str, str]:
    """``?node-meta=key:value`` pairs (repeatable)."""
    out: dict[str, str] = {}
    for item in query.getall("node-meta", []):
        key, _, value = item.partition(":")
        out[key] = value
    return out


def query_options(request: web.Request) -> qpb.QueryOptions:
    """QueryOptions of a read.

    From ``?dc``, ``?index`` and ``?wait``, ``?stale`` or ``?consistent``,
    ``?filter`` and the token.
    """
    query = request.query
    opts = qpb.QueryOptions(
        datacenter=query.get("dc", ""),
        token=token(request),
        filter=query.get("filter", ""),
    )
    index = uint_param(query, "index")
    if index is not None:
        opts.min_index = min(index, MAX_INDEX)
    wait_text = query.get("wait", "")
    if wait_text:
        # Consul: time.ParseDuration, "Invalid wait time" otherwise; a wait over
        # max_query_time is cut to it; zero or negative means the default wait.
        try:
            wait_ns = parse_duration_ns(wait_text)
        except GoSyntaxError as exc:
            raise InvalidArgument(f"Invalid wait time: {exc}") from None
        if wait_ns > 0:
            limits = request.app.get(LIMITS) or HTTPLimits()
            wait = min(wait_ns / 1e9, limits.max_query_time)
            opts.max_wait.CopyFrom(seconds_duration(wait))
    stale, consistent = flag(query, "stale"), flag(query, "consistent")
    if stale and consistent:
        raise InvalidArgument("Cannot specify ?stale with ?consistent, conflicting semantics.")
    if stale:
        opts.consistency = qpb.CONSISTENCY_STALE
    elif consistent:
        opts.consistency = qpb.CONSISTENCY_CONSISTENT
    return opts


def write_options(request: web.Request, datacenter: str = "") -> qpb.WriteOptions:
    """WriteOptions of a write: ``datacenter`` (from a body) or ``?dc``, and the token."""
    return qpb.WriteOptions(
        datacenter=datacenter or request.query.get("dc", ""), token=token(request)
    )


async def read_body(request: web.Request, limit: int = MAX_BODY_SIZE, what: str = "") -> bytes:
    """The request body, refused with 413 once it passes ``limit`` bytes."""
    too_large = what or f"Request body too large: more than {limit} bytes"
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(too_large)
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = await request.content.readany()
        except web.RequestPayloadError:
            # A body that does not decode as its Content-Encoding says (not gzip).
            raise InvalidArgument(
                "Request decode failed: the body does not match its Content-Encoding"
            ) from None
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(too_large)
        chunks.append(chunk)
    return b"".join(chunks)


def decode_json(body: bytes) -> Any:
    """A JSON document, or 400 ``Request decode failed: ...``; an empty body is None."""
    if not body.strip():
        return None
    try:
        doc = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument(f"Request decode failed: {exc}") from None
    if _SURROGATE_ESCAPE.search(body):
        doc = _without_surrogates(doc)
    return doc


def _without_surrogates(value: Any) -> Any:
    """``value`` with every string (keys too) passed through :func:`go_string`."""
    if isinstance(value, str):
        return go_string(value)
    if isinstance(value, list):
        return [_without_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {go_string(k): _without_surrogates(v) for k, v in value.items()}
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON value {name}")


def _fold(key: str) -> str:
    return key.replace("_", "").replace("-", "").lower()


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


class Fields:
    """A JSON object whose keys match case-insensitively (and without ``_``/``-``)."""

    def __init__(self, obj: Any, what: str = "body") -> None:
        if not isinstance(obj, dict):
            raise InvalidArgument(
                f"Request decode failed: {what} must be a JSON object, not {_kind(obj)}"
            )
        self.what = what
        self._items: dict[str, tuple[str, Any]] = {}
        for key, value in obj.items():
            self._items[_fold(key)] = (key, value)

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def has(self, *names: str) -> bool:
        return any(self.get(n) is not None for n in names)

    def names(self) -> list[str]:
        """The keys as the client wrote them."""
        return [orig for orig, _ in self._items.values()]

    def get(self, *names: str) -> Any:
        """The raw value of the first of ``names`` present (null counts as absent)."""
        for name in names:
            item = self._items.get(_fold(name))
            if item is not None and item[1] is not None:
                return item[1]
        return None

    def _bad(self, name: str, want: str, value: Any) -> InvalidArgument:
        return InvalidArgument(
            f"Request decode failed: {self.what}.{name} must be {want}, not {_kind(value)}"
            f" {json.dumps(value)[:64]}"
        )

    def text(self, *names: str) -> str:
        value = self.get(*names)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self._bad(names[0], "a string", value)
        return value

    def boolean(self, *names: str) -> bool:
        value = self.get(*names)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self._bad(names[0], "a boolean", value)
        return value

    def integer(self, *names: str, lo: int = -(1 << 31), hi: int = (1 << 31) - 1) -> int:
        value = self.get(*names)
        if value is None:
            return 0
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(names[0], "an integer", value)
        if not lo <= value <= hi:
            raise InvalidArgument(
                f"Request decode failed: {self.what}.{names[0]} must be between {lo} and {hi},"
                f" not {str(value)[:32]}"
            )
        return value

    def strings(self, *names: str) -> list[str]:
        value = self.get(*names)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._bad(names[0], "an array of strings", value)
        return list(value)

    def string_map(self, *names: str) -> dict[str, str]:
        value = self.get(*names)
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self._bad(names[0], "an object of strings", value)
        return dict(value)

    def header_map(self, *names: str) -> dict[str, list[str]]:
        """An object of string arrays, as an HTTP check's ``Header``."""
        value = self.get(*names)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self._bad(names[0], "an object of string arrays", value)
        out: dict[str, list[str]] = {}
        for key, values in value.items():
            if isinstance(values, str):
                values = [values]
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise self._bad(f"{names[0]}.{key}", "an array of strings", values)
            out[key] = list(values)
        return out

    def obj(self, *names: str) -> Fields | None:
        value = self.get(*names)
        if value is None:
            return None
        return Fields(value, f"{self.what}.{names[0]}")

    def objs(self, *names: str) -> list[Fields]:
        value = self.get(*names)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._bad(names[0], "an array of objects", value)
        return [Fields(v, f"{self.what}.{names[0]}[{i}]") for i, v in enumerate(value)]

    def duration(self, *names: str) -> float | None:
        """A Go duration: a string (``"10s"``) or a number of nanoseconds, as Consul takes it."""
        value = self.get(*names)
        if value is None:
            return None
        if isinstance(value, bool):
            raise self._bad(names[0], "a duration", value)
        if isinstance(value, int | float):
            if value < 0:
                raise InvalidArgument(
                    f"Request decode failed: {self.what}.{names[0]} must not be negative"
                )
            if value > _MAX_DURATION_NS:  # before float(): a huge int overflows it
                raise InvalidArgument(
                    f"Request decode failed: {self.what}.{names[0]}: duration out of range"
                )
            seconds = float(value) / 1e9
        elif isinstance(value, str):
            try:
                seconds = parse_duration(value)
            except InvalidArgument as exc:
                raise InvalidArgument(
                    f"Request decode failed: {self.what}.{names[0]}: {exc}"
                ) from None
        else:
            raise self._bad(names[0], "a duration", value)
        return check_duration(seconds, f"Request decode failed: {self.what}.{names[0]}")
