"""Script checks: run a command; exit 0 is passing, 1 warning, anything else critical.

Like Consul's ``CheckMonitor`` (Nagios plugin conventions): stdout and stderr
are captured together, keeping the last 4 KiB; a run that outlives its timeout
is killed with its whole process group and reported critical as
``Timed out (30s) running check``. Only ``args`` (no shell string) is supported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

from agent.checks.output import OutputBuffer
from agent.checks.runner import IntervalRunner
from agent.checks.status import CRITICAL, PASSING, WARNING
from agent.durations import format_duration

__all__ = ["ScriptRunner"]

logger = logging.getLogger(__name__)

# How long a killed script may take to be reaped before we stop waiting for it.
_REAP_TIMEOUT = 2.0


class ScriptRunner(IntervalRunner):
    """A script check."""

    # Room to kill and reap a script that timed out.
    probe_grace = 1.0 + _REAP_TIMEOUT

    async def probe(self) -> tuple[str, str]:
        args = self.spec.args
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as one
            )
        except OSError as exc:
            logger.error("check failed to invoke check=%s error=%s", self.check_id, exc)
            return CRITICAL, f"Failed to invoke {args[0]!r}: {exc.strerror or exc}"
        out = OutputBuffer()
        try:
            async with asyncio.timeout(self.spec.timeout):
                assert proc.stdout is not None
                while chunk := await proc.stdout.read(65536):
                    out.write(chunk)
                code = await proc.wait()
        except TimeoutError:
            await _kill(proc)
            msg = f"Timed out ({format_duration(self.spec.timeout)}) running check"
            logger.warning("check timed out check=%s", self.check_id)
            text = out.text()
            return CRITICAL, f"{msg}\n\n{text}" if text else msg
        finally:
            if proc.returncode is None:  # cancelled: leave no process behind
                await _kill(proc)
        if code == 0:
            return PASSING, out.text()
        if code == 1:
            return WARNING, out.text()
        return CRITICAL, out.text()


async def _kill(proc: asyncio.subprocess.Process) -> None:
    """Kill ``proc``'s process group and reap it, waiting a bounded time."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    try:
        async with asyncio.timeout(_REAP_TIMEOUT):
            await proc.wait()
    except TimeoutError:
        logger.warning("check script did not exit after kill pid=%d", proc.pid)
