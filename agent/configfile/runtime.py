"""The config files on a running agent: services and checks at start, and ``reload``.

``ConfigRuntime`` is an async context manager beside an agent. On enter it
registers the services and checks the files define (not persisted: the files
are their record, as in Consul), logs one warning per key accepted but not
used, fills the agent's ``reload`` hook and listens for SIGHUP. ``reload``
reads the files again: a file that fails to load changes nothing (the error
is the answer of ``PUT /v1/agent/reload``); otherwise the services and checks
become the files' (added, changed, removed), ``log_level`` takes effect, the
TLS hook re-reads the certificates (the agent's ``reload_tls``: new
connections get them, open ones keep theirs; changed ``tls`` keys themselves
need a restart), and keys that need a restart are logged as such.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from agent.config import AgentConfig
from agent.configfile.load import LoadedConfig, load_sources
from agent.errors import InvalidArgument
from agent.http.operator_routes import BROADCAST
from generated.consul.agent.v1 import agent_pb2 as apb

__all__ = ["RELOADABLE", "ConfigRuntime"]

logger = logging.getLogger(__name__)

#: AgentConfig fields a reload applies; a change to any other is logged as needing a restart.
RELOADABLE = frozenset({"log_level", "config_sources"})


class ConfigTarget(Protocol):
    """The agent's local state, as far as config-defined services go."""

    def apply_config(
        self, services: list[apb.ServiceDefinition], checks: list[apb.CheckDefinition]
    ) -> tuple[list[str], list[str]]: ...


class Hooks(Protocol):
    reload: Any


def _addresses(config: AgentConfig) -> dict[str, str]:
    return {
        "http_addr": config.http_addr,
        "grpc_addr": config.grpc_addr,
        "rpc_addr": config.rpc_addr,
    }


class ConfigRuntime:
    def __init__(
        self,
        config: AgentConfig,
        target: ConfigTarget,
        hooks: Hooks | None = None,
        *,
        flags: dict[str, Any] | None = None,
        on_tls: Callable[[LoadedConfig], list[str] | None] | None = None,
        handle_sighup: bool = True,
    ) -> None:
        """``flags``: the command line's values, which win over the files on reload too."""
        self.config = config
        self.target = target
        self.hooks = hooks
        self.flags = dict(flags or {})
        self.on_tls = on_tls
        self.handle_sighup = handle_sighup
        self.reloads = 0
        self._lock = asyncio.Lock()
        self._sighup_tasks: set[asyncio.Task[None]] = set()

    def load(self) -> LoadedConfig:
        return load_sources(list(self.config.config_sources), _addresses(AgentConfig()))

    async def __aenter__(self) -> ConfigRuntime:
        loaded = self.load()
        for warning in loaded.warnings:
            logger.warning("%s", warning)
        self._apply_services(loaded)
        if self.hooks is not None:
            self.hooks.reload = self.reload
        if self.handle_sighup:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self.handle_sighup:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        for task in list(self._sighup_tasks):
            task.cancel()
        for task in list(self._sighup_tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.hooks is not None:
            self.hooks.reload = None

    def _apply_services(self, loaded: LoadedConfig) -> None:
        services, checks = self.target.apply_config(list(loaded.services), list(loaded.checks))
        logger.info(
            "config files loaded files=%d services=%s checks=%s",
            len(loaded.files),
            ",".join(services) or "-",
            ",".join(checks) or "-",
        )

    def _on_sighup(self) -> None:
        logger.info("SIGHUP received: reloading the configuration")
        task = asyncio.get_running_loop().create_task(self._reload_logged(), name="config-reload")
        self._sighup_tasks.add(task)
        task.add_done_callback(self._sighup_tasks.discard)

    async def _reload_logged(self) -> None:
        try:
            await self.reload()
        except InvalidArgument as exc:
            logger.error("reload failed, configuration unchanged: %s", exc.message)

    async def reload(self) -> None:
        """Read the files again and apply what changes without a restart."""
        async with self._lock:
            loaded = self.load()  # raises ConfigError: nothing changed
            new = AgentConfig().merged({"server": self.config.server}).merged(loaded.values)
            new = replace(new.merged(self.flags), config_sources=self.config.config_sources)
            for warning in loaded.warnings:
                logger.warning("%s", warning)
            self._apply_services(loaded)
            if new.log_level != self.config.log_level:
                levelno = logging.getLevelName(new.log_level.upper())
                if not isinstance(levelno, int):
                    raise InvalidArgument(f"Unknown log level {new.log_level!r}")
                BROADCAST.set_agent_level(levelno)
                logger.info("log level changed to %s", new.log_level)
            if self.on_tls is not None:
                for error in self.on_tls(loaded) or []:
                    logger.warning("tls reload: %s (the previous certificate stays)", error)
            for name in AgentConfig.__dataclass_fields__:
                if name in RELOADABLE or name in ("node_id", "dev"):
                    continue
                if getattr(new, name) != getattr(self.config, name):
                    logger.warning("config change needs a restart to take effect key=%s", name)
            self.config = replace(self.config, log_level=new.log_level)
            self.reloads += 1
            logger.info("configuration reloaded")
