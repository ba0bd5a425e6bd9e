"""ACL tokens, policies and roles laid out on the store, in Consul's JSON shapes.

Every server of a datacenter shares them through the store (memory or etcd)::

    acl/tokens/<accessor>        the token (JSON, Consul's fields)
    acl/secrets/<secret>         -> accessor (lookup by secret)
    acl/policies/<id>            the policy
    acl/policy-names/<name>      -> id
    acl/roles/<id>               the role
    acl/role-names/<name>        -> id
    acl/auth-methods/<name>      an auth method (JWT)
    acl/binding-rules/<id>       a binding rule of an auth method
    acl/bootstrap                written once by /v1/acl/bootstrap
    idx/acl/                     touched by every ACL write (blocking reads, caches)

Writes are transactions that compare the name index keys, so two servers
creating the same policy name at once cannot both win. Values are stored as
Consul shows them (``AccessorID``, ``Policies`` ...) with ``CreateIndex``/
``ModifyIndex`` filled from the store's own indexes on read.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from agent.errors import ConsulError, InvalidArgument, NotFound, PermissionDenied
from agent.state import keys
from agent.state.blocking import QueryOpts, Read, blocking_query
from agent.store import Compare, Delete, Entry, Put, Store

__all__ = [
    "ANONYMOUS_ID",
    "ANONYMOUS_SECRET",
    "GLOBAL_MANAGEMENT_ID",
    "ACLState",
    "BootstrapDone",
]

GLOBAL_MANAGEMENT_ID = "00000000-0000-0000-0000-000000000001"
ANONYMOUS_ID = "00000000-0000-0000-0000-000000000002"
ANONYMOUS_SECRET = "anonymous"
_MAX_TRIES = 20

JSON = dict[str, Any]


class BootstrapDone(PermissionDenied):
    """``/v1/acl/bootstrap`` was already used."""


def _dump(doc: JSON) -> bytes:
    return json.dumps(doc, sort_keys=True).encode()


def _load(entry: Entry) -> JSON:
    doc: JSON = json.loads(entry.value)
    doc["CreateIndex"] = entry.create_index
    doc["ModifyIndex"] = entry.modify_index
    return doc


def _stored(doc: JSON) -> JSON:
    return {k: v for k, v in doc.items() if k not in ("CreateIndex", "ModifyIndex")}


def new_id() -> str:
    return str(uuid.uuid4())


def is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def builtin_policy() -> JSON:
    return {
        "ID": GLOBAL_MANAGEMENT_ID,
        "Name": "global-management",
        "Description": "Builtin Policy that grants unlimited access",
        "Rules": "",
        "Datacenters": [],
    }


def anonymous_token() -> JSON:
    return {
        "AccessorID": ANONYMOUS_ID,
        "SecretID": ANONYMOUS_SECRET,
        "Description": "Anonymous Token",
        "Policies": [],
        "Roles": [],
        "ServiceIdentities": [],
        "NodeIdentities": [],
        "TemplatedPolicies": [],
        "Local": False,
        "CreateTime": _now(),
    }


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ACLState:
    """ACL reads and writes; ``reader`` may be a local replica of ``store``."""

    IDX = "idx/acl/"
    TOKENS = "acl/tokens/"
    SECRETS = "acl/secrets/"
    POLICIES = "acl/policies/"
    POLICY_NAMES = "acl/policy-names/"
    ROLES = "acl/roles/"
    ROLE_NAMES = "acl/role-names/"
    BOOTSTRAP = "acl/bootstrap"
    AUTH_METHODS = "acl/auth-methods/"
    BINDING_RULES = "acl/binding-rules/"

    def __init__(self, store: Store, reader: Store | None = None) -> None:
        self.store = store
        self.reader = reader or store

    # ----- generic ---------------------------------------------------------

    async def index(self) -> int:
        entry, current = await self.reader.get(self.IDX)
        return entry.modify_index if entry else max(1, current)

    async def _get(self, key: str) -> JSON | None:
        entry, _ = await self.store.get(key)
        return _load(entry) if entry else None

    async def _list(self, prefix: str, opts: QueryOpts) -> Read[list[JSON]]:
        async def read() -> Read[list[JSON]]:
            entries, current = await self.reader.range(prefix)
            idx_entry, _ = await self.reader.get(self.IDX)
            index = idx_entry.modify_index if idx_entry else current
            return Read([_load(e) for e in entries], max(1, index), current)

        return await blocking_query(self.reader, opts, [self.IDX], read)

    async def _write(self, compares: list[Compare], ops: list[Put | Delete]) -> tuple[bool, int]:
        return await self.store.txn(compares, [*ops, Put(self.IDX, b"")])

    # ----- tokens ----------------------------------------------------------

    async def token(self, accessor: str) -> JSON | None:
        return await self._get(self.TOKENS + keys.q(accessor))

    async def token_by_secret(self, secret: str) -> JSON | None:
        entry, _ = await self.reader.get(self.SECRETS + keys.q(secret))
        if entry is None:
            return None
        token_entry, _ = await self.reader.get(self.TOKENS + keys.q(entry.value.decode()))
        return _load(token_entry) if token_entry else None

    async def tokens(self, opts: QueryOpts) -> Read[list[JSON]]:
        return await self._list(self.TOKENS, opts)

    async def upsert_token(self, token: JSON, *, create: bool) -> JSON:
        """Write ``token``; ``create`` refuses an existing accessor or secret."""
        accessor = token["AccessorID"]
        secret = token["SecretID"]
        tkey = self.TOKENS + keys.q(accessor)
        skey = self.SECRETS + keys.q(secret)
        for _ in range(_MAX_TRIES):
            old_entry, _ = await self.store.get(tkey)
            sec_entry, _ = await self.store.get(skey)
            if create and old_entry is not None:
                raise InvalidArgument("Invalid Token: AccessorID is already in use")
            if not create and old_entry is None:
                raise NotFound(f"Cannot find token {accessor!r}")
            if sec_entry is not None and sec_entry.value.decode() != accessor:
                raise InvalidArgument("Invalid Token: SecretID is already in use")
            if old_entry is not None:
                old = json.loads(old_entry.value)
                if old["SecretID"] != secret:
                    raise InvalidArgument("Changing a token's SecretID is not permitted")
                token.setdefault("CreateTime", old.get("CreateTime", _now()))
            token.setdefault("CreateTime", _now())
            compares = [
                Compare(tkey, old_entry.modify_index if old_entry else 0),
                Compare(skey, sec_entry.modify_index if sec_entry else 0),
            ]
            ops: list[Put | Delete] = [Put(tkey, _dump(_stored(token)))]
            if sec_entry is None:
                ops.append(Put(skey, accessor.encode()))
            applied, _ = await self._write(compares, ops)
            if applied:
                got = await self.token(accessor)
                if got is None:
                    raise ConsulError("token vanished after write")
                return got
        raise ConsulError("Too many concurrent token writes; try again")

    async def delete_token(self, accessor: str) -> bool:
        tkey = self.TOKENS + keys.q(accessor)
        entry, _ = await self.store.get(tkey)
        if entry is None:
            return False
        secret = json.loads(entry.value)["SecretID"]
        applied, _ = await self._write(
            [Compare(tkey, entry.modify_index)],
            [Delete(tkey), Delete(self.SECRETS + keys.q(secret))],
        )
        return applied

    # ----- policies and roles ----------------------------------------------

    async def policy(self, policy_id: str) -> JSON | None:
        if policy_id == GLOBAL_MANAGEMENT_ID:
            got = await self._get(self.POLICIES + policy_id)
            return got or {**builtin_policy(), "CreateIndex": 1, "ModifyIndex": 1}
        return await self._get(self.POLICIES + keys.q(policy_id))

    async def policy_by_name(self, name: str) -> JSON | None:
        return await self._by_name(self.POLICY_NAMES, self.POLICIES, name)

    async def policies(self, opts: QueryOpts) -> Read[list[JSON]]:
        return await self._list(self.POLICIES, opts)

    async def upsert_policy(self, policy: JSON, *, create: bool) -> JSON:
        return await self._upsert_named(policy, self.POLICIES, self.POLICY_NAMES, "policy", create)

    async def delete_policy(self, policy_id: str) -> bool:
        if policy_id == GLOBAL_MANAGEMENT_ID:
            raise InvalidArgument("Delete of builtin global-management policy not allowed")
        return await self._delete_named(policy_id, self.POLICIES, self.POLICY_NAMES)

    async def role(self, role_id: str) -> JSON | None:
        return await self._get(self.ROLES + keys.q(role_id))

    async def role_by_name(self, name: str) -> JSON | None:
        return await self._by_name(self.ROLE_NAMES, self.ROLES, name)

    async def roles(self, opts: QueryOpts) -> Read[list[JSON]]:
        return await self._list(self.ROLES, opts)

    async def upsert_role(self, role: JSON, *, create: bool) -> JSON:
        return await self._upsert_named(role, self.ROLES, self.ROLE_NAMES, "role", create)

    async def delete_role(self, role_id: str) -> bool:
        return await self._delete_named(role_id, self.ROLES, self.ROLE_NAMES)

    async def _by_name(self, names: str, table: str, name: str) -> JSON | None:
        entry, _ = await self.reader.get(names + keys.q(name))
        if entry is None:
            return None
        return await self._get(table + keys.q(entry.value.decode()))

    async def _upsert_named(
        self, doc: JSON, table: str, names: str, what: str, create: bool
    ) -> JSON:
        doc_id = doc["ID"]
        key = table + keys.q(doc_id)
        name_key = names + keys.q(doc["Name"])
        for _ in range(_MAX_TRIES):
            old_entry, _ = await self.store.get(key)
            name_entry, _ = await self.store.get(name_key)
            if create and old_entry is not None:
                raise InvalidArgument(f"Invalid {what.title()}: ID is already in use")
            if not create and old_entry is None and doc_id != GLOBAL_MANAGEMENT_ID:
                raise NotFound(f"Cannot find {what} {doc_id!r}")
            if name_entry is not None and name_entry.value.decode() != doc_id:
                raise InvalidArgument(
                    f"Invalid {what.title()}: A {what.title()} with Name {doc['Name']!r}"
                    " already exists"
                )
            compares = [
                Compare(key, old_entry.modify_index if old_entry else 0),
                Compare(name_key, name_entry.modify_index if name_entry else 0),
            ]
            ops: list[Put | Delete] = [Put(key, _dump(_stored(doc)))]
            if name_entry is None:
                ops.append(Put(name_key, doc_id.encode()))
            if old_entry is not None:
                old_name = json.loads(old_entry.value)["Name"]
                if old_name != doc["Name"]:
                    ops.append(Delete(names + keys.q(old_name)))
            applied, _ = await self._write(compares, ops)
            if applied:
                got = await self._get(key)
                if got is None:
                    raise ConsulError(f"{what} vanished after write")
                return got
        raise ConsulError(f"Too many concurrent {what} writes; try again")

    async def _delete_named(self, doc_id: str, table: str, names: str) -> bool:
        key = table + keys.q(doc_id)
        entry, _ = await self.store.get(key)
        if entry is None:
            return False
        name = json.loads(entry.value)["Name"]
        applied, _ = await self._write(
            [Compare(key, entry.modify_index)], [Delete(key), Delete(names + keys.q(name))]
        )
        return applied

    # ----- auth methods and binding rules ------------------------------------

    async def auth_method(self, name: str) -> JSON | None:
        return await self._get(self.AUTH_METHODS + keys.q(name))

    async def auth_methods(self, opts: QueryOpts) -> Read[list[JSON]]:
        return await self._list(self.AUTH_METHODS, opts)

    async def upsert_auth_method(self, doc: JSON, *, create: bool) -> JSON:
        return await self._upsert_plain(self.AUTH_METHODS + keys.q(doc["Name"]), doc, create)

    async def delete_auth_method(self, name: str) -> bool:
        """Delete the method and its binding rules."""
        key = self.AUTH_METHODS + keys.q(name)
        entry, _ = await self.store.get(key)
        if entry is None:
            return False
        rules, _ = await self.store.range(self.BINDING_RULES)
        doomed = [Delete(r.key) for r in rules if json.loads(r.value).get("AuthMethod") == name]
        applied, _ = await self._write([Compare(key, entry.modify_index)], [Delete(key), *doomed])
        return applied

    async def binding_rule(self, rule_id: str) -> JSON | None:
        return await self._get(self.BINDING_RULES + keys.q(rule_id))

    async def binding_rules(self, opts: QueryOpts) -> Read[list[JSON]]:
        return await self._list(self.BINDING_RULES, opts)

    async def upsert_binding_rule(self, doc: JSON, *, create: bool) -> JSON:
        return await self._upsert_plain(self.BINDING_RULES + keys.q(doc["ID"]), doc, create)

    async def delete_binding_rule(self, rule_id: str) -> bool:
        key = self.BINDING_RULES + keys.q(rule_id)
        entry, _ = await self.store.get(key)
        if entry is None:
            return False
        applied, _ = await self._write([Compare(key, entry.modify_index)], [Delete(key)])
        return applied

    async def _upsert_plain(self, key: str, doc: JSON, create: bool) -> JSON:
        entry, _ = await self.store.get(key)
        if create and entry is not None:
            raise InvalidArgument("Invalid request: it already exists")
        if not create and entry is None:
            raise NotFound("Cannot find it to update")
        applied, _ = await self._write(
            [Compare(key, entry.modify_index if entry else 0)], [Put(key, _dump(_stored(doc)))]
        )
        if not applied:
            raise ConsulError("Concurrent write; try again")
        got = await self._get(key)
        if got is None:
            raise ConsulError("vanished after write")
        return got

    async def delete_token_by_secret(self, secret: str) -> bool:
        entry, _ = await self.store.get(self.SECRETS + keys.q(secret))
        if entry is None:
            return False
        return await self.delete_token(entry.value.decode())

    # ----- bootstrap and builtins -------------------------------------------

    async def ensure_builtins(self) -> None:
        """Write the global-management policy and the anonymous token if missing."""
        if (await self._get(self.POLICIES + GLOBAL_MANAGEMENT_ID)) is None:
            doc = builtin_policy()
            await self._write(
                [Compare(self.POLICIES + GLOBAL_MANAGEMENT_ID, 0)],
                [
                    Put(self.POLICIES + GLOBAL_MANAGEMENT_ID, _dump(doc)),
                    Put(self.POLICY_NAMES + "global-management", GLOBAL_MANAGEMENT_ID.encode()),
                ],
            )
        if (await self.token(ANONYMOUS_ID)) is None:
            doc = anonymous_token()
            await self._write(
                [Compare(self.TOKENS + ANONYMOUS_ID, 0)],
                [
                    Put(self.TOKENS + ANONYMOUS_ID, _dump(doc)),
                    Put(self.SECRETS + ANONYMOUS_SECRET, ANONYMOUS_ID.encode()),
                ],
            )

    async def ensure_management_token(self, secret: str) -> None:
        """Create the ``initial_management`` token (once; an existing one is kept)."""
        entry, _ = await self.store.get(self.SECRETS + keys.q(secret))
        if entry is not None:
            return
        token = management_token(secret, "Initial Management Token")
        try:
            await self.upsert_token(token, create=True)
        except InvalidArgument:
            return  # another server created it first
        # As Consul: a cluster given its management token is bootstrapped.
        await self._write([Compare(self.BOOTSTRAP, 0)], [Put(self.BOOTSTRAP, b"initial")])

    async def bootstrap(self, reset_index: int | None) -> JSON:
        """Create the first management token, once.

        ``reset_index``: the index from ``<data-dir>/acl-bootstrap-reset``; when
        it equals the stored bootstrap's index, bootstrapping is allowed again.
        """
        entry, _ = await self.store.get(self.BOOTSTRAP)
        if entry is not None and reset_index != entry.modify_index:
            raise BootstrapDone(
                f"ACL bootstrap no longer allowed (reset index: {entry.modify_index})"
            )
        token = management_token(new_id(), "Bootstrap Token (Global Management)")
        applied, _ = await self._write(
            [Compare(self.BOOTSTRAP, entry.modify_index if entry else 0)],
            [Put(self.BOOTSTRAP, b"done")],
        )
        if not applied:
            raise BootstrapDone("ACL bootstrap no longer allowed (reset index: 0)")
        return await self.upsert_token(token, create=True)

    async def wait_changed(self, after: int, timeout: float) -> bool:
        return await self.reader.wait([self.IDX], after, timeout)


def management_token(secret: str, description: str) -> JSON:
    return {
        "AccessorID": new_id(),
        "SecretID": secret,
        "Description": description,
        "Policies": [{"ID": GLOBAL_MANAGEMENT_ID, "Name": "global-management"}],
        "Roles": [],
        "ServiceIdentities": [],
        "NodeIdentities": [],
        "TemplatedPolicies": [],
        "Local": False,
        "CreateTime": _now(),
    }
