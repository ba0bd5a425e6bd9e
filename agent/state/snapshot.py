"""Snapshots: the whole state of a datacenter as one archive, and its restore.

The archive is what Consul's ``/v1/snapshot`` is, a gzip'd tar with three
members, so operators handle it the same way (store it, checksum it, inspect
it):

- ``meta.json``: ``ID``, ``Size``, ``Index``, ``Term``, ``Version`` (Consul's
  fields) plus ``Datacenter``, ``Store`` and ``Format``;
- ``state.bin``: every entry of the datacenter's store namespace, read at one
  index, as records ``key length (4 bytes, big-endian), key, value length,
  value``;
- ``SHA256SUMS``: the SHA-256 of the other two, as ``sha256sum`` writes it.

What is saved is the state a restore should bring back: catalog, KV with its
tombstones, sessions, events and every other key, but not the cluster's
runtime (membership, liveness, leadership: the servers of the restored
datacenter have their own) nor keys bound to a lease, which are transient,
except each session's TTL key, whose lease is granted anew at restore (its
TTL starts again, as Consul's does).

``restore`` first reads and checks the whole archive (gzip, tar, checksums,
records), so a corrupt or truncated archive changes nothing; then it deletes
the state (range deletes) and writes the entries in transactions of at most
the store's limit. Indexes are the new store's: a restored entry has a new
modify index (``X-Consul-Index`` values before and after a restore are not
comparable, as with Consul across a restore).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import math
import struct
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from agent.errors import InvalidArgument
from agent.state import keys
from agent.state.sessions import TTL_PREFIX
from agent.store import MAX_TXN_BYTES, MAX_TXN_OPS, Delete, Put, Store
from generated.consul.session.v1 import session_pb2 as sspb

__all__ = ["SnapshotMeta", "read_archive", "restore", "save"]

FORMAT = "consul-grpc/1"
#: Runtime state of the cluster itself, never saved nor overwritten.
RUNTIME_PREFIXES = (keys.MEMBERS, keys.ALIVE, keys.LEADER)
_LEN = struct.Struct(">I")
#: Ops and bytes per restore transaction: the store's limits, with room to spare.
_CHUNK = MAX_TXN_OPS // 2
_CHUNK_BYTES = MAX_TXN_BYTES // 2


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """What ``consul snapshot inspect`` shows, and where the archive came from."""

    id: str
    size: int
    index: int
    term: int
    version: int
    datacenter: str
    store: str

    def json(self) -> dict[str, object]:
        return {
            "ID": self.id,
            "Size": self.size,
            "Index": self.index,
            "Term": self.term,
            "Version": self.version,
            "Datacenter": self.datacenter,
            "Store": self.store,
            "Format": FORMAT,
        }


def _runtime(key: str) -> bool:
    return key.startswith(RUNTIME_PREFIXES) or key.startswith("\x00")


def _records(entries: Iterator[tuple[str, bytes]]) -> Iterator[bytes]:
    for key, value in entries:
        raw = key.encode("utf-8", errors="surrogateescape")
        yield _LEN.pack(len(raw)) + raw + _LEN.pack(len(value)) + value


def _tar_member(tar: tarfile.TarFile, name: str, data: IO[bytes], size: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = int(time.time())
    info.mode = 0o600
    tar.addfile(info, data)


async def save(store: Store, out: IO[bytes], *, datacenter: str) -> SnapshotMeta:
    """Write an archive of ``store``'s state to ``out``; its meta."""
    entries, index = await store.range("")
    kept = [(e.key, e.value) for e in entries if not _runtime(e.key) and not e.lease]
    kept += [(e.key, b"") for e in entries if e.lease and e.key.startswith(TTL_PREFIX)]
    kept.sort()
    state = io.BytesIO()
    for record in _records(iter(kept)):
        state.write(record)
    state_bytes = state.getvalue()
    meta = SnapshotMeta(
        id=f"{index}-{int(time.time() * 1000)}",
        size=len(state_bytes),
        index=index,
        term=1,
        version=1,
        datacenter=datacenter,
        store=store.kind,
    )
    meta_bytes = json.dumps(meta.json(), indent=2).encode()
    sums = (
        f"{hashlib.sha256(meta_bytes).hexdigest()}  meta.json\n"
        f"{hashlib.sha256(state_bytes).hexdigest()}  state.bin\n"
    ).encode()
    with (
        gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w") as tar,
    ):
        _tar_member(tar, "meta.json", io.BytesIO(meta_bytes), len(meta_bytes))
        _tar_member(tar, "state.bin", io.BytesIO(state_bytes), len(state_bytes))
        _tar_member(tar, "SHA256SUMS", io.BytesIO(sums), len(sums))
    return meta


def read_archive(data: IO[bytes]) -> tuple[SnapshotMeta, list[tuple[str, bytes]]]:
    """Parse and verify an archive; InvalidArgument naming what is wrong."""
    try:
        with (
            gzip.GzipFile(fileobj=data, mode="rb") as gz,
            tarfile.open(fileobj=gz, mode="r|") as tar,
        ):
            members: dict[str, bytes] = {}
            for info in tar:
                if info.name not in ("meta.json", "state.bin", "SHA256SUMS") or not info.isfile():
                    raise InvalidArgument(f"snapshot: unexpected archive member {info.name!r}")
                handle = tar.extractfile(info)
                if handle is None:
                    raise InvalidArgument(f"snapshot: unreadable member {info.name!r}")
                members[info.name] = handle.read()
    except (OSError, EOFError, tarfile.TarError, gzip.BadGzipFile) as exc:
        raise InvalidArgument(f"snapshot: not a valid archive: {exc}") from exc
    missing = {"meta.json", "state.bin", "SHA256SUMS"} - set(members)
    if missing:
        raise InvalidArgument(f"snapshot: archive is missing {', '.join(sorted(missing))}")
    sums: dict[str, str] = {}
    for line in members["SHA256SUMS"].decode(errors="replace").splitlines():
        digest, _, name = line.partition("  ")
        sums[name.strip()] = digest.strip()
    for name in ("meta.json", "state.bin"):
        if sums.get(name) != hashlib.sha256(members[name]).hexdigest():
            raise InvalidArgument(f"snapshot: checksum mismatch for {name}")
    try:
        doc = json.loads(members["meta.json"])
        meta = SnapshotMeta(
            id=str(doc["ID"]),
            size=int(doc["Size"]),
            index=int(doc["Index"]),
            term=int(doc["Term"]),
            version=int(doc["Version"]),
            datacenter=str(doc.get("Datacenter", "")),
            store=str(doc.get("Store", "")),
        )
        if doc.get("Format") != FORMAT:
            raise InvalidArgument(f"snapshot: unknown format {doc.get('Format')!r}")
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument(f"snapshot: bad meta.json: {exc}") from exc
    state = members["state.bin"]
    if meta.size != len(state):
        raise InvalidArgument("snapshot: state size does not match its meta")
    entries: list[tuple[str, bytes]] = []
    pos = 0
    try:
        while pos < len(state):
            (klen,) = _LEN.unpack_from(state, pos)
            key = state[pos + 4 : pos + 4 + klen].decode("utf-8", errors="surrogateescape")
            pos += 4 + klen
            (vlen,) = _LEN.unpack_from(state, pos)
            value = state[pos + 4 : pos + 4 + vlen]
            if len(value) != vlen:
                raise struct.error("value runs past the end")
            pos += 4 + vlen
            entries.append((key, value))
    except struct.error as exc:
        raise InvalidArgument(f"snapshot: truncated state record: {exc}") from exc
    return meta, entries


def _chunks(entries: list[tuple[str, bytes]]) -> Iterator[list[tuple[str, bytes]]]:
    """Runs of ``entries`` that each fit one store transaction (count and bytes)."""
    chunk: list[tuple[str, bytes]] = []
    size = 0
    for key, value in entries:
        cost = len(key.encode("utf-8", errors="surrogateescape")) + len(value)
        if chunk and (len(chunk) >= _CHUNK or size + cost > _CHUNK_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append((key, value))
        size += cost
    if chunk:
        yield chunk


def _session_ttl(entries: dict[str, bytes], session_id: str) -> float:
    raw = entries.get(keys.SESSIONS + session_id)
    if raw is None:
        return 0.0
    session = sspb.Session.FromString(raw)
    return session.ttl.seconds + session.ttl.nanos / 1e9


async def restore(store: Store, data: IO[bytes]) -> tuple[int, int]:
    """Replace ``store``'s state with the archive's; (index after, entries restored)."""
    _, entries = read_archive(data)
    entries = [(k, v) for k, v in entries if not _runtime(k)]
    by_key = dict(entries)
    current, _ = await store.range("")
    tops = sorted({e.key.split("/", 1)[0] + "/" for e in current if not _runtime(e.key)})
    index = 0
    for i in range(0, len(tops), _CHUNK):
        _, index = await store.txn([], [Delete(t, prefix=True) for t in tops[i : i + _CHUNK]])
    plain = [(k, v) for k, v in entries if not k.startswith(TTL_PREFIX)]
    for chunk in _chunks(plain):
        _, index = await store.txn([], [Put(k, v) for k, v in chunk])
    for key, _ in entries:
        if not key.startswith(TTL_PREFIX):
            continue
        ttl = _session_ttl(by_key, key[len(TTL_PREFIX) :])
        if ttl <= 0:
            continue
        lease = await store.grant_lease(max(1, math.ceil(ttl * 2)))
        _, index = await store.txn([], [Put(key, b"", lease=lease)])
    return index, len(entries)
