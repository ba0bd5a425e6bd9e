"""``/v1/snapshot``: save (GET) and restore (PUT) the datacenter's whole state.

GET streams the archive (Consul's format: a gzip'd tar) as it is read from a
server in 1 MiB chunks, with ``X-Consul-Index`` set to the index it was taken
at; PUT sends the request body, whatever its size, to a server in 1 MiB
chunks, and the server restores it only once the whole archive has arrived
and checked out: a corrupt or truncated upload is a 400 and changes nothing.
"""

from __future__ import annotations

from aiohttp import web

from agent.http.base import context
from agent.http.params import query_options, write_options
from agent.rpc.methods import method_spec
from generated.consul.snapshot.v1 import snapshot_pb2 as snpb

__all__ = ["add_snapshot_routes"]

_SAVE = method_spec("/consul.snapshot.v1.SnapshotService/Save")
_READ = method_spec("/consul.snapshot.v1.SnapshotService/ReadChunk")
_BEGIN = method_spec("/consul.snapshot.v1.SnapshotService/BeginRestore")
_CHUNK = method_spec("/consul.snapshot.v1.SnapshotService/RestoreChunk")
_COMMIT = method_spec("/consul.snapshot.v1.SnapshotService/CommitRestore")

CHUNK = 1024 * 1024


async def save_snapshot(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    opts = query_options(request)
    saved = await ctx.invoker.rpc(_SAVE, snpb.SaveRequest(options=opts))
    assert isinstance(saved, snpb.SaveResponse)
    resp = web.StreamResponse(
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Length": str(saved.size),
            "X-Consul-Index": str(max(1, saved.index)),
        }
    )
    await resp.prepare(request)
    offset = 0
    while offset < saved.size:
        chunk = await ctx.invoker.rpc(
            _READ,
            snpb.ReadChunkRequest(
                options=opts, download_id=saved.download_id, offset=offset
            ),
        )
        assert isinstance(chunk, snpb.ReadChunkResponse)
        if not chunk.data:
            break
        await resp.write(chunk.data)
        offset += len(chunk.data)
    await resp.write_eof()
    return resp


async def restore_snapshot(request: web.Request) -> web.Response:
    ctx = context(request)
    write = write_options(request)
    begun = await ctx.invoker.rpc(_BEGIN, snpb.BeginRestoreRequest(write=write))
    assert isinstance(begun, snpb.BeginRestoreResponse)
    size = 0
    pending = b""
    async for data in request.content.iter_chunked(CHUNK):
        pending += data
        while len(pending) >= CHUNK:
            piece, pending = pending[:CHUNK], pending[CHUNK:]
            await ctx.invoker.rpc(
                _CHUNK,
                snpb.RestoreChunkRequest(
                    write=write, upload_id=begun.upload_id, offset=size, data=piece
                ),
            )
            size += len(piece)
    if pending:
        await ctx.invoker.rpc(
            _CHUNK,
            snpb.RestoreChunkRequest(
                write=write, upload_id=begun.upload_id, offset=size, data=pending
            ),
        )
        size += len(pending)
    await ctx.invoker.rpc(
        _COMMIT, snpb.CommitRestoreRequest(write=write, upload_id=begun.upload_id, size=size)
    )
    return web.Response(status=200)


def add_snapshot_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/snapshot", save_snapshot)
    router.add_put("/v1/snapshot", restore_snapshot)
