"""The agent's local state: the services and checks registered on this agent.

Consul's ``agent/local/state.go`` and the agent's registration methods, in
one place. Services and checks live here, are persisted under
``<data-dir>/local/`` (so a restarted agent re-registers what it had, even
after ``kill -9``: every change is written, atomically, before it is
acknowledged), have their checks run by a ``CheckManager``, and are pushed to
the catalog by anti-entropy (``AntiEntropy``), which ``changed`` wakes.

Check statuses come from the runners; maintenance mode is a synthetic
critical check (``_node_maintenance``, ``_service_maintenance:<id>``), as in
Consul.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from google.protobuf import json_format

from agent.checks import CheckManager, CheckSpec
from agent.checks.spec import MIN_INTERVAL
from agent.convert import check_name
from agent.errors import InvalidArgument, NotFound
from agent.local.convert import (
    STATUS_OF,
    STATUS_PB,
    check_type,
    definition_from_spec,
    spec_from_definition,
)
from agent.local.sidecar import (
    SIDECAR_SUFFIX,
    alias_status,
    default_tagged_addresses,
    sidecar_service,
)
from agent.state.services import validate_service
from agent.tasks import Background
from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.common.v1 import types_pb2 as pb

__all__ = ["NODE_MAINT", "LocalState", "service_maint_id"]

logger = logging.getLogger(__name__)

NODE_MAINT = "_node_maintenance"
SERVICE_MAINT_PREFIX = "_service_maintenance:"
REAP_INTERVAL = 3.0


def service_maint_id(service_id: str) -> str:
    return SERVICE_MAINT_PREFIX + service_id


class LocalState:
    """Local services and checks of one agent; an async context manager."""

    def __init__(
        self,
        node_name: str,
        *,
        data_dir: str = "",
        enable_script_checks: bool = False,
        min_check_interval: float = MIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node_name = node_name
        self.services: dict[str, pb.Service] = {}
        self.definitions: dict[str, apb.CheckDefinition] = {}
        self.maintenance: dict[str, pb.HealthCheck] = {}
        self.changed = asyncio.Event()  # set on anything anti-entropy must push now
        self.on_change: Callable[[], None] | None = None
        self._dir = Path(data_dir) / "local" if data_dir else None
        self.checks = CheckManager(
            self._check_updated,
            enable_script_checks=enable_script_checks,
            min_interval=min_check_interval,
            clock=clock,
        )
        self._loops = Background("service-reaper")
        # Services and checks defined in config files: registered at start and
        # on reload, never persisted (the files are their record), as Consul's.
        self._config_services: dict[str, bytes] = {}
        self._config_checks: dict[str, bytes] = {}

    async def __aenter__(self) -> LocalState:
        await self.checks.__aenter__()
        self._load()
        self._loops.spawn(self._reap_loop(), "service-reaper")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._loops.aclose()
        await self.checks.aclose()

    # ----- change notification ----------------------------------------

    def _notify(self) -> None:
        self.changed.set()
        if self.on_change is not None:
            self.on_change()

    def _check_updated(self, check_id: str, status: str, output: str, status_changed: bool) -> None:
        # A status change syncs at once; an output-only change rides along with
        # the next sync (Consul's check_update_interval batching).
        if status_changed:
            self._notify()

    # ----- persistence -------------------------------------------------

    def _save(self) -> None:
        if self._dir is None:
            return
        self._dir.mkdir(parents=True, exist_ok=True)
        # A config service's sidecar is the config's too: the files bring it back.
        from_config = set(self._config_services) | {
            sid + SIDECAR_SUFFIX for sid in self._config_services
        }
        services = [s for s in self.services.values() if s.id not in from_config]
        checks = [
            c
            for c in self.definitions.values()
            if c.check_id not in self._config_checks and c.service_id not in from_config
        ]
        data = {
            "services": [json_format.MessageToDict(s) for s in services],
            "checks": [json_format.MessageToDict(c) for c in checks],
            "maintenance": [json_format.MessageToDict(c) for c in self.maintenance.values()],
        }
        tmp = self._dir / "state.json.tmp"
        with open(tmp, "w") as fh:
            json.dump(data, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._dir / "state.json")

    def _load(self) -> None:
        if self._dir is None or not (self._dir / "state.json").exists():
            return
        try:
            data = json.loads((self._dir / "state.json").read_text())
            for raw in data.get("services", []):
                svc = json_format.ParseDict(raw, pb.Service())
                self.services[svc.id] = svc
            for raw in data.get("checks", []):
                check = json_format.ParseDict(raw, apb.CheckDefinition())
                try:
                    self._start_check(check)
                except InvalidArgument as exc:
                    logger.warning("persisted check dropped check=%s error=%s", check.check_id, exc)
            for raw in data.get("maintenance", []):
                maint = json_format.ParseDict(raw, pb.HealthCheck())
                self.maintenance[maint.check_id] = maint
        except (OSError, ValueError, json_format.ParseError) as exc:
            logger.error("cannot load persisted local state dir=%s error=%s", self._dir, exc)
            return
        logger.info(
            "restored local state services=%d checks=%d", len(self.services), len(self.definitions)
        )

    # ----- services ----------------------------------------------------

    def add_service(
        self,
        definition: apb.ServiceDefinition,
        *,
        replace_existing_checks: bool = False,
    ) -> None:
        svc = pb.Service()
        svc.CopyFrom(definition.service)
        check_name(svc.name, "service name")
        if not svc.id:
            svc.id = svc.name
        check_name(svc.id, "service ID")
        if not 0 <= svc.port <= 65535:
            raise InvalidArgument(f"Invalid service port {svc.port}")
        svc.ClearField("create_index")
        svc.ClearField("modify_index")
        default_tagged_addresses(svc)
        # Consul's NodeService.Validate, for gRPC callers too (HTTP bodies were checked).
        validate_service(svc, sidecar=definition.HasField("sidecar_service"))
        sidecar: apb.ServiceDefinition | None = None
        if definition.HasField("sidecar_service"):
            # Built and validated (its port allocated) before anything changes.
            sidecar = sidecar_service(svc, definition.sidecar_service, self.services)
        checks = []
        for n, check in enumerate(definition.checks, start=1):
            c = apb.CheckDefinition()
            c.CopyFrom(check)
            c.service_id = svc.id
            if not c.check_id:
                c.check_id = (
                    f"service:{svc.id}" if len(definition.checks) == 1 else f"service:{svc.id}:{n}"
                )
            if not c.name:
                c.name = f"Service '{svc.name}' check"
            checks.append((c, self._validate_check(c, new_service=svc.id)))
        # Validated as a whole before anything changes.
        if replace_existing_checks:
            keep = {c.check_id for c, _ in checks}
            for cid, d in list(self.definitions.items()):
                if d.service_id == svc.id and cid not in keep:
                    self._drop_check(cid)
        self.services[svc.id] = svc
        for c, spec in checks:
            self._start_check(c, spec)
        if sidecar is not None:
            self.add_service(sidecar, replace_existing_checks=replace_existing_checks)
            return
        self._save()
        self._notify()

    def remove_service(self, service_id: str) -> None:
        if service_id not in self.services:
            raise NotFound(
                f'Unknown service ID "{service_id}". Ensure that the service ID is'
                " passed, not the service name."
            )
        del self.services[service_id]
        for cid, d in list(self.definitions.items()):
            if d.service_id == service_id:
                self._drop_check(cid)
        self.maintenance.pop(service_maint_id(service_id), None)
        # A sidecar registered with this service goes with it (Consul's
        # agent.removeServiceSidecars).
        sidecar = self.services.get(service_id + SIDECAR_SUFFIX)
        if sidecar is not None and sidecar.proxy.destination_service_id == service_id:
            self.remove_service(sidecar.id)
            return
        self._save()
        self._notify()

    def apply_config(
        self, services: list[apb.ServiceDefinition], checks: list[apb.CheckDefinition]
    ) -> tuple[list[str], list[str]]:
        """Make the config-defined services and checks exactly these (start and reload).

        Consul's reload unloads every config-defined service and check and loads
        the files' again; here one whose definition did not change is left
        alone (its check keeps its status), a changed one is registered again,
        one no longer in the files is removed. The loader has checked their
        form; one this agent refuses (a script check without
        ``enable_script_checks``) raises, leaving those before it applied.
        Returns (service IDs, check IDs) now defined by config.
        """
        want_services: dict[str, tuple[apb.ServiceDefinition, bytes]] = {}
        for d in services:
            sid = d.service.id or d.service.name
            want_services[sid] = (d, d.SerializeToString(deterministic=True))
        want_checks: dict[str, tuple[apb.CheckDefinition, bytes]] = {}
        for c in checks:
            cid = c.check_id or c.name
            want_checks[cid] = (c, c.SerializeToString(deterministic=True))
        for sid in list(self._config_services):
            if sid not in want_services:
                del self._config_services[sid]
                with contextlib.suppress(NotFound):
                    self.remove_service(sid)
        for cid in list(self._config_checks):
            if cid not in want_checks:
                del self._config_checks[cid]
                with contextlib.suppress(NotFound):
                    self.remove_check(cid)
        for sid, (d, key) in want_services.items():
            if self._config_services.get(sid) == key and sid in self.services:
                continue
            self._config_services[sid] = key
            try:
                self.add_service(d, replace_existing_checks=True)
            except Exception:
                del self._config_services[sid]
                raise
        for cid, (c, key) in want_checks.items():
            if self._config_checks.get(cid) == key and cid in self.definitions:
                continue
            self._config_checks[cid] = key
            try:
                self.add_check(c)
            except Exception:
                del self._config_checks[cid]
                raise
        return list(want_services), list(want_checks)

    # ----- checks ------------------------------------------------------

    def _validate_check(self, check: apb.CheckDefinition, new_service: str = "") -> CheckSpec:
        if not check.check_id:
            check.check_id = check.name
        check_name(check.check_id, "check ID or name")
        if not check.name:
            check.name = check.check_id
        if check.service_id and check.service_id not in (*self.services, new_service):
            raise NotFound(f'ServiceID "{check.service_id}" does not exist')
        if check.definition.alias_service:
            return CheckSpec(check_id=check.check_id, name=check.name, service_id=check.service_id)
        if not check_type(check.definition):
            raise InvalidArgument(
                "Check type is not valid: one of TTL, HTTP, TCP, GRPC or Args must be set"
            )
        return self.checks.validate(spec_from_definition(check))

    def _start_check(self, check: apb.CheckDefinition, spec: CheckSpec | None = None) -> None:
        if check.definition.alias_service:
            # An alias check runs nothing: its status is read from the aliased
            # service's checks (``health_checks``).
            self._drop_check(check.check_id)
            stored = apb.CheckDefinition()
            stored.CopyFrom(check)
            self.definitions[check.check_id] = stored
            return
        spec = self.checks.add(spec or self._validate_check(check))
        stored = definition_from_spec(spec, notes=check.notes)
        stored.name = check.name
        self.definitions[check.check_id] = stored

    def _drop_check(self, check_id: str) -> None:
        self.definitions.pop(check_id, None)
        with contextlib.suppress(NotFound):
            self.checks.remove(check_id)

    def add_check(self, check: apb.CheckDefinition) -> None:
        c = apb.CheckDefinition()
        c.CopyFrom(check)
        spec = self._validate_check(c)
        self._start_check(c, spec)
        self._save()
        self._notify()

    def remove_check(self, check_id: str) -> None:
        if check_id not in self.definitions:
            raise NotFound(f'Unknown check ID "{check_id}"')
        self._drop_check(check_id)
        self._save()
        self._notify()

    def update_ttl(self, check_id: str, status: str, output: str) -> None:
        if status not in ("passing", "warning", "critical"):
            raise InvalidArgument(f"Unknown check status {status!r}")
        self.checks.update_ttl(check_id, status, output)

    # ----- maintenance -------------------------------------------------

    def set_maintenance(self, enable: bool, reason: str, service_id: str = "") -> None:
        if service_id and service_id not in self.services:
            raise NotFound(f'Unknown service ID "{service_id}"')
        check_id = service_maint_id(service_id) if service_id else NODE_MAINT
        if not enable:
            if self.maintenance.pop(check_id, None) is not None:
                self._save()
                self._notify()
            return
        name = "Service Maintenance Mode" if service_id else "Node Maintenance Mode"
        self.maintenance[check_id] = pb.HealthCheck(
            node=self.node_name,
            check_id=check_id,
            name=name,
            status=pb.HEALTH_STATUS_CRITICAL,
            notes=reason
            or "Maintenance mode is enabled for this "
            + (
                "service, but no reason was provided. This is a default message."
                if service_id
                else "node, but no reason was provided. This is a default message."
            ),
            service_id=service_id,
            type="maintenance",
        )
        self._save()
        self._notify()

    # ----- reads -------------------------------------------------------

    def health_checks(self) -> list[pb.HealthCheck]:
        """Every local check as the catalog should hold it."""
        out: list[pb.HealthCheck] = []
        states = self.checks.states()
        for cid, d in self.definitions.items():
            state = states.get(cid)
            svc = self.services.get(d.service_id)
            status, output = (state.status, state.output) if state else ("critical", "")
            if d.definition.alias_service:
                status, output = alias_status(
                    d.definition.alias_service,
                    {
                        c: (x.service_id, states[c].status)
                        for c, x in self.definitions.items()
                        if c in states
                    },
                    {m.service_id: STATUS_OF[m.status] for m in self.maintenance.values()},
                    d.definition.alias_service in self.services,
                )
            out.append(
                pb.HealthCheck(
                    node=self.node_name,
                    check_id=cid,
                    name=d.name,
                    status=STATUS_PB[status],
                    notes=d.notes,
                    output=output,
                    service_id=d.service_id,
                    service_name=svc.name if svc else "",
                    service_tags=list(svc.tags) if svc else [],
                    type="alias" if d.definition.alias_service else check_type(d.definition),
                    definition=d.definition,
                )
            )
        for maint in self.maintenance.values():
            m = pb.HealthCheck()
            m.CopyFrom(maint)
            svc = self.services.get(m.service_id)
            if svc is not None:
                m.service_name = svc.name
                m.service_tags[:] = list(svc.tags)
            out.append(m)
        return sorted(out, key=lambda c: c.check_id)

    # ----- reaping -----------------------------------------------------

    def reap_once(self) -> list[str]:
        """Deregister services critical for longer than their
        ``deregister_critical_service_after``; the IDs removed."""
        removed = []
        for service_id in self.checks.services_to_reap():
            if service_id in self.services:
                logger.info("deregistering service critical for too long service=%s", service_id)
                with contextlib.suppress(NotFound):
                    self.remove_service(service_id)
                    removed.append(service_id)
        return removed

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(REAP_INTERVAL)
            self.reap_once()
