"""A bare grpc.aio echo server in its own process: ``python -m bench.echo_server``.

Prints its address on the first line of stdout, serves until stdin closes.
The reference point for the benches: the Python gRPC ceiling on this machine.
"""

from __future__ import annotations

import asyncio
import sys

import grpc


async def main() -> None:
    async def echo(request: bytes, context: object) -> bytes:
        return request

    server = grpc.aio.server()
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server.add_generic_rpc_handlers([handler])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"127.0.0.1:{port}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await server.stop(0)


if __name__ == "__main__":
    asyncio.run(main())
