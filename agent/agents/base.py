"""What both agents share: identity, listeners, metrics, and a start that undoes itself.

An agent is an async context manager. ``start`` runs the agent's ``_start``
with an ``AsyncExitStack``: every part pushes its own stop right after it
started (store, listeners, hubs, loops...), so

- a failed start (a port already taken, etcd unreachable) unwinds what had
  started, in reverse, and re-raises: no task keeps running, no port stays
  bound;
- ``aclose`` runs every stop, in reverse, even when some fail: each failure is
  logged with the part's name and all of them are raised together as one
  ``ExceptionGroup`` once everything has been stopped.

Cancellation (``CancelledError``) is never caught by the unwinding: a stop
that is cancelled stops the unwinding with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator, Sequence

import grpc
from aiohttp import web
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message

from agent.config import AgentConfig
from agent.dns import agent_dns
from agent.http.limits import HTTPLimits
from agent.http.operator_routes import OperatorHooks
from agent.http.protocols import Invoker
from agent.http.protocols import LocalAgent as LocalEndpoint
from agent.http.serve import serve_http
from agent.metrics import AgentMetrics, Sample, rpc_samples, runtime_samples
from agent.pool import SERVER_KEEPALIVE_OPTIONS
from agent.rpc.handlers import RpcStats, service_handler
from agent.rpc.listen import GRPC_SERVER_OPTIONS, add_health_and_reflection, bind_grpc
from agent.rpc.methods import MethodSpec
from agent.tls import Configurator

__all__ = ["AgentBase", "StopFailed"]

logger = logging.getLogger(__name__)


class StopFailed(ExceptionGroup[Exception]):
    """Parts of an agent that failed to stop (each was logged when it failed)."""


class AgentBase(ABC):
    """The shared half of ``ServerAgent`` and ``ClientAgent``."""

    #: "server" or "client", for the logs.
    role: str = "agent"

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.start_time = time.time()
        self.rpc_stats = RpcStats()
        self.metrics = AgentMetrics(self._samples)
        self.leave_requested = asyncio.Event()
        self.http_address = ""
        self.dns_address = ""
        self.https_address = ""
        self.grpc_tls_address = ""
        # Certificates are read (and checked) when the agent starts.
        self.tls = Configurator(config.tls, datacenter=config.datacenter, domain=config.domain)
        #: What ``/v1/agent/reload`` and ``join`` call (filled by the agent and its owner).
        self.operator = OperatorHooks()
        self._stack: contextlib.AsyncExitStack | None = None
        self._stop_errors: list[Exception] = []

    # ----- what each agent provides ---------------------------------------

    @abstractmethod
    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        """Start every part, pushing each part's stop onto ``stack`` as it starts."""

    @abstractmethod
    def metric_samples(self) -> Iterator[Sample]:
        """The agent's own metrics (its RPC counts are added here)."""

    # ----- lifecycle --------------------------------------------------------

    async def __aenter__(self) -> AgentBase:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        if self._stack is not None:
            raise RuntimeError(f"{self.role} agent already started")
        stack = contextlib.AsyncExitStack()
        self._stop_errors = []
        try:
            self.tls.load()
            await self._start(stack)
        except BaseException as exc:
            logger.error("%s agent failed to start error=%s", self.role, exc)
            await self._unwind(stack)
            raise
        self._stack = stack

    def reload_tls(self) -> list[str]:
        """Re-read the certificates (SIGHUP, ``reload``): new connections get them,
        open ones keep theirs; the errors of files that failed (the old ones stay)."""
        return self.tls.reload()

    async def aclose(self) -> None:
        """Stop every part, in reverse order of start; raise ``StopFailed`` for failures."""
        stack, self._stack = self._stack, None
        if stack is None:
            return
        await self._unwind(stack)
        logger.info("%s agent stopped node=%s", self.role, self.config.node_name)

    async def _unwind(self, stack: contextlib.AsyncExitStack) -> None:
        await stack.aclose()
        errors, self._stop_errors = self._stop_errors, []
        if errors:
            raise StopFailed(f"{self.role} agent: {len(errors)} part(s) failed to stop", errors)

    def on_stop(
        self,
        stack: contextlib.AsyncExitStack,
        part: str,
        stop: Callable[[], Awaitable[object]],
        *,
        timeout: float | None = None,
    ) -> None:
        """Push ``stop`` for ``part``: its failure is logged and collected, never
        stops the rest of the unwinding; ``timeout`` bounds it (then it is a failure)."""

        async def guarded() -> None:
            try:
                if timeout is None:
                    await stop()
                else:
                    async with asyncio.timeout(timeout):
                        await stop()
            except Exception as exc:
                logger.warning("stop failed part=%s error=%r", part, exc)
                self._stop_errors.append(exc)

        stack.push_async_callback(guarded)

    # ----- listeners --------------------------------------------------------

    def new_grpc_server(self, stack: contextlib.AsyncExitStack) -> grpc.aio.Server:
        """A gRPC server whose stop (2 s grace) is on ``stack``: bound ports are
        released even if the agent fails before serving."""
        server = grpc.aio.server(options=[*GRPC_SERVER_OPTIONS, *SERVER_KEEPALIVE_OPTIONS])
        self.on_stop(stack, "grpc", lambda: server.stop(grace=2.0))
        return server

    @staticmethod
    def bind(
        server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None = None
    ) -> str:
        return bind_grpc(server, address, credentials)

    def bind_grpc_tls(self, server: grpc.aio.Server) -> None:
        """Serve ``server``'s services over TLS on ``config.grpc_tls_addr`` too (if set)."""
        if self.config.grpc_tls_addr:
            self.grpc_tls_address = self.bind(
                server, self.config.grpc_tls_addr, self.tls.grpc_server_credentials()
            )

    def serve_services(
        self,
        server: grpc.aio.Server,
        services: Sequence[tuple[ServiceDescriptor, object]],
        call: Callable[[MethodSpec, Message], Awaitable[Message]] | None = None,
        *,
        serialize: Callable[[Message], bytes] | None = None,
    ) -> None:
        """Serve each (service, endpoint) on ``server``, unary calls through ``call``
        (their responses written by ``serialize`` when given)."""
        for service, endpoint in services:
            server.add_generic_rpc_handlers(
                [service_handler(service, endpoint, call, serialize, stats=self.rpc_stats)]
            )

    async def serve_health_and_reflection(
        self, server: grpc.aio.Server, services: Sequence[ServiceDescriptor]
    ) -> None:
        await add_health_and_reflection(server, [s.full_name for s in services])

    async def start_http(
        self,
        stack: contextlib.AsyncExitStack,
        *,
        invoker: Invoker,
        agent_endpoint: LocalEndpoint,
        extend: Callable[[web.Application], None] | None = None,
    ) -> None:
        """Serve Consul's HTTP API on ``config.http_addr`` and ``https_addr`` (if set);
        ``extend`` adds routes and middlewares to each app before it starts."""
        cfg = self.config
        if not cfg.http_addr and not cfg.https_addr:
            return
        https_context = self.tls.https_context() if cfg.https_addr else None
        http = serve_http(
            cfg.http_addr,
            invoker=invoker,
            agent_endpoint=agent_endpoint,
            datacenter=cfg.datacenter,
            node_name=cfg.node_name,
            metrics=self.metrics,
            leave_requested=self.leave_requested,
            ui=cfg.ui,
            limits=HTTPLimits.of(cfg),
            https=(cfg.https_addr, https_context) if https_context is not None else None,
            operator=self.operator,
        )
        if extend is not None:
            extend(http.app)
        await http.start()
        self.on_stop(stack, "http", http.aclose)
        self.http_address = http.address
        self.https_address = http.tls_address

    async def start_dns(self, stack: contextlib.AsyncExitStack, *, invoker: Invoker) -> None:
        """Serve Consul's DNS interface on ``config.dns_addr`` (port -1: not at all)."""
        dns = agent_dns(self.config, invoker)
        if dns is None:
            return
        await dns.start()
        self.on_stop(stack, "dns", dns.aclose)
        self.dns_address = dns.address

    # ----- metrics ----------------------------------------------------------

    def _samples(self) -> Iterator[Sample]:
        yield from self.metric_samples()
        yield from rpc_samples(self.rpc_stats)
        yield from runtime_samples()
