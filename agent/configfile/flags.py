"""The agent's ``-config-file``/``-config-dir`` flags and applying their sources to a config."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from agent.config import AgentConfig
from agent.configfile.load import load_sources

__all__ = ["add_config_flags", "apply_sources"]


class _Source(argparse.Action):
    """Appends ``(kind, path)`` to ``config_sources``, keeping command-line order."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        sources = list(getattr(namespace, self.dest, None) or [])
        sources.append((self.const, str(values)))
        setattr(namespace, self.dest, sources)


def add_config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config-file",
        "-config-file",
        dest="config_sources",
        action=_Source,
        const="file",
        metavar="FILE",
        help="a JSON or HCL config file (repeatable)",
    )
    p.add_argument(
        "--config-dir",
        "-config-dir",
        dest="config_sources",
        action=_Source,
        const="dir",
        metavar="DIR",
        help="a directory of .json and .hcl config files, read in lexical order (repeatable)",
    )


def apply_sources(config: AgentConfig, sources: list[tuple[str, str]]) -> AgentConfig:
    """``config`` with what the config files say applied (flags are applied after)."""
    defaults = {
        "http_addr": config.http_addr,
        "grpc_addr": config.grpc_addr,
        "rpc_addr": config.rpc_addr,
    }
    loaded = load_sources(sources, defaults)
    merged = config.merged(loaded.values)
    return merged.merged({"config_sources": tuple(sources)})
