"""Protobuf at the edge: query options in, query meta out, once per call."""

from __future__ import annotations

from agent.durations import duration_seconds, seconds_duration
from agent.errors import InvalidArgument
from agent.state.blocking import QueryOpts
from generated.consul.common.v1 import query_pb2 as qpb

__all__ = ["MAX_NAME_LENGTH", "check_name", "query_meta", "query_opts"]

MAX_NAME_LENGTH = 512

_CONSISTENCY = {
    qpb.CONSISTENCY_UNSPECIFIED: "default",
    qpb.CONSISTENCY_STALE: "stale",
    qpb.CONSISTENCY_CONSISTENT: "consistent",
}


def check_name(value: str, what: str, *, required: bool = True) -> str:
    """A name field: present when required, at most MAX_NAME_LENGTH characters."""
    if required and not value:
        raise InvalidArgument(f"Must provide {what}")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidArgument(
            f"{what} too long: {len(value)} characters, at most {MAX_NAME_LENGTH}"
        )
    return value


def query_opts(options: qpb.QueryOptions) -> QueryOpts:
    """Validated internal query options of a request.

    ``min_index`` is clamped to 2^63-2: indexes are etcd revisions (int64) and
    a watch starts at ``min_index + 1``; a larger index (any uint64 is valid,
    as in Consul) means the same "block until the wait ends" and must not
    overflow the revision.
    """
    if options.consistency not in _CONSISTENCY:
        raise InvalidArgument(f"Unknown consistency mode {options.consistency}")
    return QueryOpts(
        datacenter=options.datacenter,
        min_index=min(options.min_index, (1 << 63) - 2),
        max_wait=duration_seconds(options.max_wait, "max_wait"),
        consistency=_CONSISTENCY[options.consistency],
        token=options.token,
        filter=options.filter,
    )


def query_meta(index: int, known_leader: bool, last_contact: float = 0.0) -> qpb.QueryMeta:
    return qpb.QueryMeta(
        index=max(1, index),
        known_leader=known_leader,
        last_contact=seconds_duration(last_contact),
    )
