"""The SnapshotService endpoint: saved archives and uploads, kept a few minutes.

A ``Save`` writes the archive (``agent.state.snapshot``) to a temporary file
and answers its ID; ``ReadChunk`` serves it 1 MiB at a time. An upload is the
reverse: ``BeginRestore``, ``RestoreChunk`` in order, ``CommitRestore``,
which checks the whole archive before it changes anything. Files are bounded
(``MAX_OPEN`` at once, ``MAX_SIZE`` each) and dropped after ``IDLE_TIMEOUT``
without a call, or when a download was read to its end.
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import IO

from agent.errors import InvalidArgument, NotFound, RateLimited
from agent.state.snapshot import restore, save
from agent.store import Store
from generated.consul.snapshot.v1 import snapshot_pb2 as snpb

__all__ = ["SnapshotEndpoint"]

logger = logging.getLogger(__name__)

CHUNK = 1024 * 1024
MAX_OPEN = 4
MAX_SIZE = 4 * 1024**3
IDLE_TIMEOUT = 300.0


@dataclass
class _File:
    handle: IO[bytes]
    size: int = 0
    used: float = field(default_factory=time.monotonic)


class SnapshotEndpoint:
    """Serves SnapshotService for one server (``store``: its datacenter's store)."""

    def __init__(self, store: Store, datacenter: str) -> None:
        self.store = store
        self.datacenter = datacenter
        self._downloads: dict[str, _File] = {}
        self._uploads: dict[str, _File] = {}

    def _expire(self) -> None:
        now = time.monotonic()
        for table in (self._downloads, self._uploads):
            for key in [k for k, f in table.items() if now - f.used > IDLE_TIMEOUT]:
                table.pop(key).handle.close()

    def _open(self, table: dict[str, _File]) -> tuple[str, _File]:
        self._expire()
        if len(self._downloads) + len(self._uploads) >= MAX_OPEN:
            raise RateLimited("Too many snapshot transfers in progress; try again later")
        name = str(uuid.uuid4())
        # Closed by whoever ends the transfer (its last read, commit, or expiry).
        f = _File(tempfile.TemporaryFile(prefix="consul-grpc-snapshot-"))  # noqa: SIM115
        table[name] = f
        return name, f

    @staticmethod
    def _get(table: dict[str, _File], name: str, what: str) -> _File:
        f = table.get(name)
        if f is None:
            raise NotFound(f"Unknown snapshot {what} {name!r} (expired, or on another server)")
        f.used = time.monotonic()
        return f

    async def Save(self, req: snpb.SaveRequest) -> snpb.SaveResponse:
        name, f = self._open(self._downloads)
        try:
            meta = await save(self.store, f.handle, datacenter=self.datacenter)
        except BaseException:
            self._downloads.pop(name).handle.close()
            raise
        f.size = f.handle.tell()
        logger.info("snapshot saved index=%d state_bytes=%d size=%d", meta.index, meta.size, f.size)
        return snpb.SaveResponse(index=meta.index, download_id=name, size=f.size)

    async def ReadChunk(self, req: snpb.ReadChunkRequest) -> snpb.ReadChunkResponse:
        f = self._get(self._downloads, req.download_id, "download")
        f.handle.seek(req.offset)
        data = f.handle.read(CHUNK)
        if req.offset + len(data) >= f.size:
            self._downloads.pop(req.download_id).handle.close()
        return snpb.ReadChunkResponse(data=data)

    async def BeginRestore(self, req: snpb.BeginRestoreRequest) -> snpb.BeginRestoreResponse:
        name, _ = self._open(self._uploads)
        return snpb.BeginRestoreResponse(upload_id=name)

    async def RestoreChunk(self, req: snpb.RestoreChunkRequest) -> snpb.RestoreChunkResponse:
        f = self._get(self._uploads, req.upload_id, "upload")
        if req.offset != f.size:
            raise InvalidArgument(f"snapshot upload: expected offset {f.size}, got {req.offset}")
        if len(req.data) > CHUNK:
            raise InvalidArgument(f"snapshot upload: chunks are at most {CHUNK} bytes")
        if f.size + len(req.data) > MAX_SIZE:
            self._uploads.pop(req.upload_id).handle.close()
            raise InvalidArgument(f"snapshot upload: larger than {MAX_SIZE} bytes")
        f.handle.write(req.data)
        f.size += len(req.data)
        return snpb.RestoreChunkResponse(received=f.size)

    async def CommitRestore(self, req: snpb.CommitRestoreRequest) -> snpb.CommitRestoreResponse:
        f = self._get(self._uploads, req.upload_id, "upload")
        self._uploads.pop(req.upload_id)
        try:
            if req.size != f.size:
                raise InvalidArgument(
                    f"snapshot upload: {f.size} bytes received, {req.size} sent (truncated)"
                )
            f.handle.seek(0)
            index, entries = await restore(self.store, f.handle)
        finally:
            f.handle.close()
        logger.info("snapshot restored index=%d entries=%d", index, entries)
        return snpb.CommitRestoreResponse(index=index, entries=entries)
