"""``lock``: hold a lock (or one of ``-n`` semaphore slots) while a child process runs.

As Consul's ``consul lock`` (and its Go API's Lock and Semaphore):

- A session (TTL 15s, renewed every TTL/2) owns the hold.
- ``-n 1``: acquire ``<prefix>/.lock`` with the session (flags
  0x2ddccbc058a50c18); while another session holds it, wait with a blocking
  read of the key and try again.
- ``-n N``: the session acquires its contender key ``<prefix>/<session>``;
  ``<prefix>/.lock`` holds ``{"Limit": N, "Holders": {"<session>": true}}``
  (flags 0xe0f69a2baa414de0), updated with check-and-set; holders whose
  contender key lost its session are pruned; a slot is taken when fewer than
  N remain, else wait for the prefix to change.

The child runs with ``sh -c`` (Consul's ``-shell``), its exit code is ours.
The hold is watched with blocking reads; when it is lost (the session
invalidated or destroyed, the key taken away) the child is terminated and
we exit 1. On the way out the hold is released and the session destroyed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import signal
import sys
from typing import Any

from agent.commands.api import APIError, Client, add_http_flags, client_from
from agent.durations import parse_duration

__all__ = ["LOCK_FLAG", "SEMAPHORE_FLAG", "add_parsers"]

LOCK_FLAG = 0x2DDCCBC058A50C18
SEMAPHORE_FLAG = 0xE0F69A2BAA414DE0
SESSION_TTL = 15.0
WAIT = 15.0


async def _session(api: Client, name: str) -> str:
    created = await api.put(
        "/v1/session/create", body={"Name": name, "TTL": f"{int(SESSION_TTL)}s"}
    )
    return str(created["ID"])


async def _renew(api: Client, session: str, lost: asyncio.Event) -> None:
    while True:
        await asyncio.sleep(SESSION_TTL / 2)
        try:
            await api.put(f"/v1/session/renew/{session}")
        except asyncio.CancelledError:
            raise
        except APIError as exc:
            if exc.status == 404:
                print("Lock lost: session invalidated", file=sys.stderr)
                lost.set()
                return
        except Exception as exc:  # transient: try again next round, as Consul's renew does
            print(f"Lock session renew failed: {exc}", file=sys.stderr)


async def _acquire_lock(api: Client, key: str, session: str) -> None:
    while True:
        ok = await api.put(f"/v1/kv/{key}", {"acquire": session, "flags": LOCK_FLAG})
        if ok:
            return
        pairs, index = await api.get(f"/v1/kv/{key}", ok_404=True)
        while pairs and pairs[0].get("Session"):
            pairs, index = await api.get(f"/v1/kv/{key}", index=index, wait=WAIT, ok_404=True)


def _lock_doc(pair: dict[str, Any] | None, limit: int) -> dict[str, Any]:
    if pair is None or not pair.get("Value"):
        return {"Limit": limit, "Holders": {}}
    doc = json.loads(base64.b64decode(pair["Value"]))
    if not isinstance(doc, dict):
        raise ValueError("semaphore lock is not a JSON object")
    doc.setdefault("Holders", {})
    return doc


async def _acquire_semaphore(api: Client, prefix: str, session: str, limit: int) -> None:
    contender = f"{prefix}/{session}"
    ok = await api.put(f"/v1/kv/{contender}", {"acquire": session, "flags": SEMAPHORE_FLAG})
    if not ok:
        raise APIError(500, f"failed to make contender entry {contender}")
    index = 0
    while True:
        pairs, index = await api.get(f"/v1/kv/{prefix}/", {"recurse": True}, ok_404=True)
        by_key = {p["Key"]: p for p in pairs or []}
        lock_pair = by_key.get(f"{prefix}/.lock")
        doc = _lock_doc(lock_pair, limit)
        if int(doc.get("Limit", limit)) != limit:
            raise APIError(
                400, f"semaphore limit conflict (lock: {doc.get('Limit')}, local: {limit})"
            )
        alive = {k.rsplit("/", 1)[1] for k, p in by_key.items() if p.get("Session")}
        holders = {h: True for h in doc["Holders"] if h in alive}
        if session in holders:
            return
        if len(holders) < limit:
            holders[session] = True
            doc["Holders"] = holders
            cas = lock_pair["ModifyIndex"] if lock_pair else 0
            body = json.dumps(doc).encode()
            done = await api.put(
                f"/v1/kv/{prefix}/.lock", {"cas": cas, "flags": SEMAPHORE_FLAG}, body
            )
            if done:
                return
            continue  # lost the race for the lock document: read again
        await api.get(f"/v1/kv/{prefix}/", {"recurse": True}, index=index, wait=WAIT, ok_404=True)


async def _release_semaphore(api: Client, prefix: str, session: str) -> None:
    for _ in range(10):
        pairs, _ = await api.get(f"/v1/kv/{prefix}/.lock", ok_404=True)
        if not pairs:
            break
        doc = _lock_doc(pairs[0], 0)
        if session not in doc["Holders"]:
            break
        del doc["Holders"][session]
        params = {"cas": pairs[0]["ModifyIndex"], "flags": SEMAPHORE_FLAG}
        if await api.put(f"/v1/kv/{prefix}/.lock", params, json.dumps(doc).encode()):
            break
    await api.request("DELETE", f"/v1/kv/{prefix}/{session}")


async def _monitor(api: Client, prefix: str, session: str, n: int, lost: asyncio.Event) -> None:
    """Watch the hold with blocking reads (the Go API's ``monitorLock``): the lock
    key no longer held by our session, or the semaphore no longer listing it,
    means the hold is lost."""
    key = f"{prefix}/.lock"
    index = 0
    while not lost.is_set():
        try:
            pairs, new_index = await api.get(f"/v1/kv/{key}", index=index, wait=WAIT, ok_404=True)
        except asyncio.CancelledError:
            raise
        except Exception:  # transient: look again after a pause
            await asyncio.sleep(1.0)
            continue
        pair = pairs[0] if pairs else None
        if n == 1:
            held = pair is not None and pair.get("Session") == session
        else:
            held = pair is not None and session in _lock_doc(pair, n)["Holders"]
        if not held:
            print("Lock lost, killing child", file=sys.stderr)
            lost.set()
            return
        index = new_index if new_index >= index else 0


async def _destroy(api: Client, key: str) -> None:
    """Delete the lock key if nobody holds it any more (the Go API's ``Destroy``)."""
    pairs, _ = await api.get(f"/v1/kv/{key}", ok_404=True)
    if not pairs or pairs[0].get("Session"):
        return
    pair = pairs[0]
    if pair.get("Flags") == SEMAPHORE_FLAG and _lock_doc(pair, 0)["Holders"]:
        return
    await api.request("DELETE", f"/v1/kv/{key}", {"cas": pair["ModifyIndex"]})


async def _run_child(command: str, lost: asyncio.Event) -> int:
    child = await asyncio.create_subprocess_exec("/bin/sh", "-c", command)
    waiting = asyncio.ensure_future(child.wait())
    losing = asyncio.ensure_future(lost.wait())
    try:
        await asyncio.wait([waiting, losing], return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done():
            child.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(waiting), 5.0)
            except TimeoutError:
                child.kill()
            await waiting
            return 1
        return waiting.result()
    finally:
        losing.cancel()
        if child.returncode is None:
            child.kill()
            await child.wait()


async def lock(args: argparse.Namespace) -> int:
    if args.n < 1:
        print("Error! -n must be at least 1", file=sys.stderr)
        return 1
    prefix = args.prefix.strip("/")
    command = " ".join(args.child)
    timeout = parse_duration(args.timeout) if args.timeout else None
    async with client_from(args) as api:
        name = args.name or f"Consul lock for '{command}' at '{prefix}'"
        session = await _session(api, name)
        lost = asyncio.Event()
        renew = asyncio.create_task(_renew(api, session, lost), name="lock-renew")
        try:
            if args.n == 1:
                acquiring = _acquire_lock(api, f"{prefix}/.lock", session)
            else:
                acquiring = _acquire_semaphore(api, prefix, session, args.n)
            try:
                async with asyncio.timeout(timeout):
                    await acquiring
            except TimeoutError:
                print("Shutdown triggered or timeout during lock acquisition", file=sys.stderr)
                return 1
            if args.verbose:
                print("Lock acquired", file=sys.stderr)
            watching = asyncio.create_task(
                _monitor(api, prefix, session, args.n, lost), name="lock-monitor"
            )
            try:
                return await _run_child(command, lost)
            finally:
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching
        finally:
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renew
            with contextlib.suppress(Exception):
                if args.n == 1:
                    await api.put(
                        f"/v1/kv/{prefix}/.lock", {"release": session, "flags": LOCK_FLAG}
                    )
                else:
                    await _release_semaphore(api, prefix, session)
            with contextlib.suppress(Exception):
                await api.put(f"/v1/session/destroy/{session}")


def add_parsers(sub: Any) -> None:
    p = sub.add_parser("lock", help="run a child process while holding a lock or semaphore")
    p.add_argument("-n", "--n", type=int, default=1, help="semaphore slots (1: a lock)")
    p.add_argument("-name", "--name", default="")
    p.add_argument("-timeout", "--timeout", default="")
    p.add_argument("-verbose", "--verbose", action="store_true")
    p.add_argument("prefix")
    p.add_argument("child", nargs=argparse.REMAINDER)
    add_http_flags(p)
    p.set_defaults(run=lock)
