"""The operator's CLI over Consul's HTTP API: Consul's command names, flags and output.

``consul-grpc members|join|leave|force-leave|reload|maint|monitor|info|
catalog|services|kv|lock|event|watch|validate|snapshot|config|operator|rtt``, one
module per family, all through the small HTTP client in :mod:`agent.commands.api` (which honours
``CONSUL_HTTP_ADDR``, ``CONSUL_HTTP_TOKEN``, ``CONSUL_HTTP_SSL`` and
``CONSUL_CACERT``). ``agent.cli`` hands a command line here when
:func:`handles` says so: the commands above, unless ``--grpc-addr`` asks for
the older gRPC implementation of ``members``/``catalog``/``kv``/``services``/
``watch`` (kept for the demo and its scripts).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

import aiohttp

from agent.commands import (
    agent_cmds,
    catalog_cmds,
    kv_cmds,
    lock_cmd,
    operator_cmds,
    rtt_cmd,
    snapshot_config_cmds,
    watch_cmd,
)
from agent.commands.api import APIError
from agent.errors import ConsulError

__all__ = ["COMMANDS", "handles", "main", "parse", "parser"]

COMMANDS = frozenset(
    {
        "members",
        "join",
        "leave",
        "force-leave",
        "reload",
        "maint",
        "monitor",
        "info",
        "validate",
        "catalog",
        "services",
        "kv",
        "lock",
        "event",
        "watch",
        "snapshot",
        "config",
        "operator",
        "rtt",
    }
)


def handles(argv: Sequence[str]) -> bool:
    """Whether this command line is one of ours (not the gRPC variant, not ``agent``)."""
    if not argv or argv[0] not in COMMANDS:
        return False
    return not any(
        a in ("--grpc-addr", "-grpc-addr") or a.startswith(("--grpc-addr=", "-grpc-addr="))
        for a in argv
    )


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="consul-grpc")
    sub = root.add_subparsers(dest="command", required=True)
    agent_cmds.add_parsers(sub)
    catalog_cmds.add_parsers(sub)
    kv_cmds.add_parsers(sub)
    lock_cmd.add_parsers(sub)
    watch_cmd.add_parsers(sub)
    snapshot_config_cmds.add_parsers(sub)
    operator_cmds.add_parsers(sub)
    rtt_cmd.add_parsers(sub)
    return root


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """``argv`` parsed by its command's parser. Flags may follow positionals
    (``kv get key -recurse``), except where the rest of the line is a child
    process's (``lock``, ``watch``)."""
    root = parser()
    sub = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction))
    command: argparse.ArgumentParser = sub.choices[argv[0]]
    if argv[0] in ("lock", "watch"):
        args = command.parse_args(list(argv[1:]))
    elif argv[0] == "operator":
        args = operator_cmds.parse(command, list(argv[1:]))
    else:
        args = command.parse_intermixed_args(list(argv[1:]))
    args.command = argv[0]
    return args


def main(argv: Sequence[str]) -> int:
    args = parse(argv)
    try:
        code: int = asyncio.run(args.run(args))
        return code
    except APIError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except ConsulError as exc:  # a bad file (ConfigError) or argument
        print(f"Error: {exc.message}", file=sys.stderr)
        return 1
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        print(f"Error connecting to Consul agent: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
