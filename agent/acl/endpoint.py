"""The server's ACLService: bootstrap, tokens, policies, roles, resolve, authorize.

Documents are Consul's JSON shapes, carried as ``google.protobuf.Struct``.
Every call resolves the caller's token first: managing ACLs needs
``acl:write``, reading them ``acl:read`` (a token may always read itself).
With ACLs disabled every call answers ``ACL support disabled`` (HTTP 401).
Input is checked here, once: rules must parse (400 with the position),
linked policies and roles must exist, an expiration must lie in the future.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format, struct_pb2

from agent.acl.authmethod import bindings, validate_auth_method, validate_binding_rule, verify_jwt
from agent.acl.authorizer import Authorizer
from agent.acl.identity import templated_rules
from agent.acl.resolver import Resolver, StateTokens, token_expired
from agent.acl.rules import Access, parse_rules
from agent.convert import query_meta, query_opts
from agent.durations import parse_duration
from agent.errors import ACLDisabled, ACLNotFound, InvalidArgument, NotFound, PermissionDenied
from agent.state.acl import GLOBAL_MANAGEMENT_ID, ACLState, is_uuid, new_id
from agent.state.blocking import QueryOpts
from generated.consul.acl.v1 import acl_pb2 as apb
from generated.consul.common.v1 import query_pb2 as qpb

__all__ = ["ACLEndpoint", "redact", "to_struct"]

JSON = dict[str, Any]

#: At most this many checks in one Authorize call (Consul's limit).
MAX_AUTHORIZE_CHECKS = 64
MAX_DESCRIPTION = 4096
_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def to_struct(doc: JSON) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(doc)
    return out


def from_struct(msg: struct_pb2.Struct) -> JSON:
    doc: JSON = json_format.MessageToDict(msg)
    return doc


def redact(token: JSON) -> JSON:
    return {**token, "SecretID": "<hidden>"}


def _str(doc: JSON, key: str) -> str:
    value = doc.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(f"{key} must be a string")
    return value


def _list(doc: JSON, key: str) -> list[JSON]:
    value = doc.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InvalidArgument(f"{key} must be a list of objects")
    return value


def _check_name(name: str, what: str) -> None:
    if not name or len(name) > 128 or not set(name) <= _NAME_OK:
        raise InvalidArgument(
            f"Invalid {what} Name: {name!r}; only alphanumerics, '-' and '_' are allowed,"
            " at most 128 characters"
        )


class ACLEndpoint:
    """ACLService on a server (see the module docstring)."""

    def __init__(
        self,
        state: ACLState,
        resolver: Resolver,
        *,
        datacenter: str,
        known_leader: Callable[[], bool] = lambda: True,
        reset_index: Callable[[], int | None] = lambda: None,
        tokens: StateTokens | None = None,
    ) -> None:
        self.state = state
        self.resolver = resolver
        #: Where identities come from (with the primary datacenter for global tokens).
        self.tokens = tokens or StateTokens(state, datacenter)
        self.datacenter = datacenter
        self.known_leader = known_leader
        self.reset_index = reset_index

    def _enabled(self) -> None:
        if not self.resolver.enabled:
            raise ACLDisabled()

    async def _authz(self, token: str) -> Authorizer:
        self._enabled()
        return await self.resolver.resolve(token)

    async def _need(self, token: str, access: Access) -> Authorizer:
        authz = await self._authz(token)
        authz.require("acl", None, access)
        return authz

    def _meta(self, index: int) -> qpb.QueryMeta:
        return query_meta(max(1, index), self.known_leader())

    # ----- bootstrap ---------------------------------------------------------

    async def Bootstrap(self, req: apb.BootstrapRequest) -> apb.BootstrapResponse:
        self._enabled()
        reset = req.reset_index or self.reset_index()
        token = await self.state.bootstrap(reset)
        self.resolver.invalidate()
        return apb.BootstrapResponse(token=to_struct(token))

    # ----- tokens ------------------------------------------------------------

    async def _validate_token(self, doc: JSON) -> JSON:
        out: JSON = {
            "AccessorID": _str(doc, "AccessorID"),
            "SecretID": _str(doc, "SecretID"),
            "Description": _str(doc, "Description"),
            "Local": bool(doc.get("Local", False)),
        }
        if len(out["Description"]) > MAX_DESCRIPTION:
            raise InvalidArgument(f"Description too long: at most {MAX_DESCRIPTION} characters")
        for key in ("AccessorID", "SecretID"):
            if out[key] and not is_uuid(out[key]):
                raise InvalidArgument(f"Invalid Token: {key} {out[key]!r} is not a UUID")
        policies = []
        for link in _list(doc, "Policies"):
            pol = None
            if link.get("ID"):
                pol = await self.state.policy(str(link["ID"]))
            elif link.get("Name"):
                pol = await self.state.policy_by_name(str(link["Name"]))
            if pol is None:
                ref = link.get("ID") or link.get("Name")
                raise InvalidArgument(f"cannot find policy {ref}")
            policies.append({"ID": pol["ID"], "Name": pol["Name"]})
        roles = []
        for link in _list(doc, "Roles"):
            role = None
            if link.get("ID"):
                role = await self.state.role(str(link["ID"]))
            elif link.get("Name"):
                role = await self.state.role_by_name(str(link["Name"]))
            if role is None:
                ref = link.get("ID") or link.get("Name")
                raise InvalidArgument(f"cannot find role {ref}")
            roles.append({"ID": role["ID"], "Name": role["Name"]})
        out["Policies"] = policies
        out["Roles"] = roles
        out.update(self._identities(doc))
        ttl = doc.get("ExpirationTTL")
        when = doc.get("ExpirationTime")
        if ttl:
            seconds = parse_duration(ttl) if isinstance(ttl, str) else float(ttl) / 1e9
            if seconds <= 0:
                raise InvalidArgument("Token Expiration TTL must be positive")
            when = _iso(time.time() + seconds)
        if when:
            try:
                stamp = dt.datetime.fromisoformat(str(when).replace("Z", "+00:00")).timestamp()
            except ValueError:
                raise InvalidArgument(f"Invalid ExpirationTime {when!r}") from None
            if stamp <= time.time():
                raise InvalidArgument("ExpirationTime cannot be in the past")
            out["ExpirationTime"] = str(when)
        return out

    def _identities(self, doc: JSON) -> JSON:
        services = []
        for si in _list(doc, "ServiceIdentities"):
            name = _str(si, "ServiceName")
            _check_name(name.lower(), "Service Identity")
            services.append({"ServiceName": name, "Datacenters": list(si.get("Datacenters") or [])})
        nodes = []
        for ni in _list(doc, "NodeIdentities"):
            name = _str(ni, "NodeName")
            _check_name(name, "Node Identity")
            nodes.append(
                {"NodeName": name, "Datacenter": _str(ni, "Datacenter") or self.datacenter}
            )
        templated = []
        for tp in _list(doc, "TemplatedPolicies"):
            name = _str(tp, "TemplateName")
            variables = tp.get("TemplateVariables") or {}
            templated_rules(name, variables)  # validates
            templated.append(
                {
                    "TemplateName": name,
                    "TemplateVariables": variables,
                    "Datacenters": list(tp.get("Datacenters") or []),
                }
            )
        return {
            "ServiceIdentities": services,
            "NodeIdentities": nodes,
            "TemplatedPolicies": templated,
        }

    async def WriteToken(self, req: apb.WriteTokenRequest) -> apb.WriteTokenResponse:
        await self._need(req.write.token, Access.WRITE)
        if req.clone_of:
            source = await self.state.token(req.clone_of)
            if source is None:
                raise NotFound(f"Cannot find token to clone {req.clone_of!r}")
            doc = {**source, **from_struct(req.token)}
            doc["AccessorID"] = ""
            doc["SecretID"] = ""
            create = True
        else:
            doc = from_struct(req.token)
            create = req.create
        token = await self._validate_token(doc)
        if create:
            token["AccessorID"] = token["AccessorID"] or new_id()
            token["SecretID"] = token["SecretID"] or new_id()
        else:
            if not token["AccessorID"]:
                raise InvalidArgument("Token update requires an AccessorID")
            old = await self.state.token(token["AccessorID"])
            if old is None:
                raise NotFound(f"Cannot find token {token['AccessorID']!r}")
            token["SecretID"] = token["SecretID"] or old["SecretID"]
            if "ExpirationTime" in old:
                token["ExpirationTime"] = old["ExpirationTime"]
        written = await self.state.upsert_token(token, create=create)
        self.resolver.invalidate()
        return apb.WriteTokenResponse(token=to_struct(written))

    async def ReadToken(self, req: apb.ReadTokenRequest) -> apb.ReadTokenResponse:
        authz = await self._authz(req.options.token)
        if not req.accessor_id:  # the caller's own token
            secret = self.resolver.secret_of(req.options.token)
            token = await self.state.token_by_secret(secret)
            if token is None:
                raise NotFound("ACL not found")
        else:
            if not is_uuid(req.accessor_id):
                raise InvalidArgument(f"Invalid AccessorID {req.accessor_id!r}: not a UUID")
            token = await self.state.token(req.accessor_id)
            if token is None:
                raise NotFound("ACL not found")
            if token["AccessorID"] != authz.accessor:
                authz.require("acl", None, Access.READ)
                if not authz.acl_write():
                    token = redact(token)
        return apb.ReadTokenResponse(
            meta=self._meta(await self.state.index()), token=to_struct(token)
        )

    async def DeleteToken(self, req: apb.DeleteTokenRequest) -> apb.DeleteTokenResponse:
        authz = await self._need(req.write.token, Access.WRITE)
        if not is_uuid(req.accessor_id):
            raise InvalidArgument(f"Invalid AccessorID {req.accessor_id!r}: not a UUID")
        if req.accessor_id == "00000000-0000-0000-0000-000000000002":
            raise InvalidArgument("Delete of anonymous token is not allowed")
        if req.accessor_id == authz.accessor:
            raise InvalidArgument("Deletion of the request's authorization token is not permitted")
        if await self.state.token(req.accessor_id) is None:
            raise NotFound(f"Cannot find token {req.accessor_id!r}")
        deleted = await self.state.delete_token(req.accessor_id)
        self.resolver.invalidate()
        return apb.DeleteTokenResponse(deleted=deleted)

    async def ListTokens(self, req: apb.ListTokensRequest) -> apb.ListTokensResponse:
        authz = await self._need(req.options.token, Access.READ)
        read = await self.state.tokens(query_opts(req.options))
        out = []
        for token in read.value:
            if req.policy and req.policy not in {p.get("ID") for p in token.get("Policies", [])}:
                continue
            if req.role and req.role not in {r.get("ID") for r in token.get("Roles", [])}:
                continue
            out.append(to_struct(token if authz.acl_write() else redact(token)))
        return apb.ListTokensResponse(meta=self._meta(read.index), tokens=out)

    # ----- policies -------------------------------------------------------------

    async def WritePolicy(self, req: apb.WritePolicyRequest) -> apb.WritePolicyResponse:
        await self._need(req.write.token, Access.WRITE)
        doc = from_struct(req.policy)
        name = _str(doc, "Name")
        _check_name(name, "Policy")
        rules = _str(doc, "Rules")
        parse_rules(rules)
        description = _str(doc, "Description")
        if len(description) > MAX_DESCRIPTION:
            raise InvalidArgument(f"Description too long: at most {MAX_DESCRIPTION} characters")
        dcs = doc.get("Datacenters") or []
        if not isinstance(dcs, list) or not all(isinstance(d, str) for d in dcs):
            raise InvalidArgument("Datacenters must be a list of strings")
        policy_id = _str(doc, "ID")
        if req.create:
            if policy_id:
                raise InvalidArgument("Policy ID must be empty when creating a policy")
            policy_id = new_id()
        elif not is_uuid(policy_id):
            raise InvalidArgument(f"Invalid Policy ID {policy_id!r}")
        if policy_id == GLOBAL_MANAGEMENT_ID and (rules or name != "global-management"):
            raise InvalidArgument("Changing the Rules or Name of the builtin policy is not allowed")
        policy = {
            "ID": policy_id,
            "Name": name,
            "Description": description,
            "Rules": rules,
            "Datacenters": dcs,
        }
        written = await self.state.upsert_policy(policy, create=req.create)
        self.resolver.invalidate()
        return apb.WritePolicyResponse(policy=to_struct(written))

    async def ReadPolicy(self, req: apb.ReadPolicyRequest) -> apb.ReadPolicyResponse:
        await self._need(req.options.token, Access.READ)
        if req.id:
            if not is_uuid(req.id):
                raise InvalidArgument(f"Invalid Policy ID {req.id!r}: not a UUID")
            policy = await self.state.policy(req.id)
        else:
            policy = await self.state.policy_by_name(req.name)
        if policy is None:
            raise NotFound("ACL not found")
        return apb.ReadPolicyResponse(
            meta=self._meta(await self.state.index()), policy=to_struct(policy)
        )

    async def DeletePolicy(self, req: apb.DeletePolicyRequest) -> apb.DeletePolicyResponse:
        await self._need(req.write.token, Access.WRITE)
        if not is_uuid(req.id):
            raise InvalidArgument(f"Invalid Policy ID {req.id!r}: not a UUID")
        if await self.state.policy(req.id) is None:
            raise NotFound(f"Cannot find policy {req.id!r}")
        deleted = await self.state.delete_policy(req.id)
        self.resolver.invalidate()
        return apb.DeletePolicyResponse(deleted=deleted)

    async def ListPolicies(self, req: apb.ListPoliciesRequest) -> apb.ListPoliciesResponse:
        await self._need(req.options.token, Access.READ)
        read = await self.state.policies(query_opts(req.options))
        out = [to_struct({k: v for k, v in p.items() if k != "Rules"}) for p in read.value]
        return apb.ListPoliciesResponse(meta=self._meta(read.index), policies=out)

    # ----- roles ------------------------------------------------------------------

    async def WriteRole(self, req: apb.WriteRoleRequest) -> apb.WriteRoleResponse:
        await self._need(req.write.token, Access.WRITE)
        doc = from_struct(req.role)
        name = _str(doc, "Name")
        _check_name(name, "Role")
        role_id = _str(doc, "ID")
        if req.create:
            if role_id:
                raise InvalidArgument("Role ID must be empty when creating a role")
            role_id = new_id()
        elif not is_uuid(role_id):
            raise InvalidArgument(f"Invalid Role ID {role_id!r}")
        policies = []
        for link in _list(doc, "Policies"):
            pol = None
            if link.get("ID"):
                pol = await self.state.policy(str(link["ID"]))
            elif link.get("Name"):
                pol = await self.state.policy_by_name(str(link["Name"]))
            if pol is None:
                raise InvalidArgument(f"cannot find policy {link.get('ID') or link.get('Name')}")
            policies.append({"ID": pol["ID"], "Name": pol["Name"]})
        role = {
            "ID": role_id,
            "Name": name,
            "Description": _str(doc, "Description"),
            "Policies": policies,
            **self._identities(doc),
        }
        written = await self.state.upsert_role(role, create=req.create)
        self.resolver.invalidate()
        return apb.WriteRoleResponse(role=to_struct(written))

    async def ReadRole(self, req: apb.ReadRoleRequest) -> apb.ReadRoleResponse:
        await self._need(req.options.token, Access.READ)
        if req.id:
            if not is_uuid(req.id):
                raise InvalidArgument(f"Invalid Role ID {req.id!r}: not a UUID")
            role = await self.state.role(req.id)
        else:
            role = await self.state.role_by_name(req.name)
        if role is None:
            raise NotFound("ACL not found")
        return apb.ReadRoleResponse(meta=self._meta(await self.state.index()), role=to_struct(role))

    async def DeleteRole(self, req: apb.DeleteRoleRequest) -> apb.DeleteRoleResponse:
        await self._need(req.write.token, Access.WRITE)
        if not is_uuid(req.id):
            raise InvalidArgument(f"Invalid Role ID {req.id!r}: not a UUID")
        if await self.state.role(req.id) is None:
            raise NotFound(f"Cannot find role {req.id!r}")
        deleted = await self.state.delete_role(req.id)
        self.resolver.invalidate()
        return apb.DeleteRoleResponse(deleted=deleted)

    async def ListRoles(self, req: apb.ListRolesRequest) -> apb.ListRolesResponse:
        await self._need(req.options.token, Access.READ)
        read = await self.state.roles(query_opts(req.options))
        return apb.ListRolesResponse(
            meta=self._meta(read.index), roles=[to_struct(r) for r in read.value]
        )

    # ----- auth methods, binding rules, login ---------------------------------------

    async def WriteAuthMethod(self, req: apb.WriteAuthMethodRequest) -> apb.WriteAuthMethodResponse:
        await self._need(req.write.token, Access.WRITE)
        doc = validate_auth_method(from_struct(req.auth_method))
        doc.pop("_MaxTokenTTLSeconds", None)
        written = await self.state.upsert_auth_method(doc, create=req.create)
        return apb.WriteAuthMethodResponse(auth_method=to_struct(written))

    async def ReadAuthMethod(self, req: apb.ReadAuthMethodRequest) -> apb.ReadAuthMethodResponse:
        await self._need(req.options.token, Access.READ)
        doc = await self.state.auth_method(req.name)
        if doc is None:
            raise NotFound("ACL auth method not found")
        return apb.ReadAuthMethodResponse(
            meta=self._meta(await self.state.index()), auth_method=to_struct(doc)
        )

    async def DeleteAuthMethod(
        self, req: apb.DeleteAuthMethodRequest
    ) -> apb.DeleteAuthMethodResponse:
        await self._need(req.write.token, Access.WRITE)
        if await self.state.auth_method(req.name) is None:
            raise NotFound(f"Cannot find auth method {req.name!r}")
        return apb.DeleteAuthMethodResponse(deleted=await self.state.delete_auth_method(req.name))

    async def ListAuthMethods(self, req: apb.ListAuthMethodsRequest) -> apb.ListAuthMethodsResponse:
        await self._need(req.options.token, Access.READ)
        read = await self.state.auth_methods(query_opts(req.options))
        out = [to_struct({k: v for k, v in d.items() if k != "Config"}) for d in read.value]
        return apb.ListAuthMethodsResponse(meta=self._meta(read.index), auth_methods=out)

    async def WriteBindingRule(
        self, req: apb.WriteBindingRuleRequest
    ) -> apb.WriteBindingRuleResponse:
        await self._need(req.write.token, Access.WRITE)
        doc = validate_binding_rule(from_struct(req.binding_rule))
        if await self.state.auth_method(doc["AuthMethod"]) is None:
            raise InvalidArgument(f"Invalid Binding Rule: unknown AuthMethod {doc['AuthMethod']!r}")
        if req.create:
            if doc["ID"]:
                raise InvalidArgument("Binding Rule ID must be empty when creating a rule")
            doc["ID"] = new_id()
        elif not is_uuid(doc["ID"]):
            raise InvalidArgument(f"Invalid Binding Rule ID {doc['ID']!r}")
        written = await self.state.upsert_binding_rule(doc, create=req.create)
        return apb.WriteBindingRuleResponse(binding_rule=to_struct(written))

    async def ReadBindingRule(self, req: apb.ReadBindingRuleRequest) -> apb.ReadBindingRuleResponse:
        await self._need(req.options.token, Access.READ)
        if not is_uuid(req.id):
            raise InvalidArgument(f"Invalid Binding Rule ID {req.id!r}: not a UUID")
        doc = await self.state.binding_rule(req.id)
        if doc is None:
            raise NotFound("ACL binding rule not found")
        return apb.ReadBindingRuleResponse(
            meta=self._meta(await self.state.index()), binding_rule=to_struct(doc)
        )

    async def DeleteBindingRule(
        self, req: apb.DeleteBindingRuleRequest
    ) -> apb.DeleteBindingRuleResponse:
        await self._need(req.write.token, Access.WRITE)
        if not is_uuid(req.id):
            raise InvalidArgument(f"Invalid Binding Rule ID {req.id!r}: not a UUID")
        if await self.state.binding_rule(req.id) is None:
            raise NotFound(f"Cannot find binding rule {req.id!r}")
        return apb.DeleteBindingRuleResponse(deleted=await self.state.delete_binding_rule(req.id))

    async def ListBindingRules(
        self, req: apb.ListBindingRulesRequest
    ) -> apb.ListBindingRulesResponse:
        await self._need(req.options.token, Access.READ)
        read = await self.state.binding_rules(query_opts(req.options))
        rules = [r for r in read.value if not req.auth_method or r["AuthMethod"] == req.auth_method]
        return apb.ListBindingRulesResponse(
            meta=self._meta(read.index), binding_rules=[to_struct(r) for r in rules]
        )

    async def Login(self, req: apb.LoginRequest) -> apb.LoginResponse:
        self._enabled()
        method = await self.state.auth_method(req.auth_method)
        if method is None:
            raise NotFound(f"auth method {req.auth_method!r} not found")
        claims = verify_jwt(method, req.bearer_token)
        rules = await self.state.binding_rules(QueryOpts())
        granted = bindings(method, claims, rules.value)
        # Links by name must exist; missing ones are skipped, as Consul's.
        granted["Policies"] = [
            {"ID": p["ID"], "Name": p["Name"]}
            for link in granted["Policies"]
            if (p := await self.state.policy_by_name(link["Name"])) is not None
        ]
        granted["Roles"] = [
            {"ID": r["ID"], "Name": r["Name"]}
            for link in granted["Roles"]
            if (r := await self.state.role_by_name(link["Name"])) is not None
        ]
        if not any(granted.values()):
            raise PermissionDenied("Permission denied: no binding rule matched")
        meta = dict(req.meta)
        token: JSON = {
            "AccessorID": new_id(),
            "SecretID": new_id(),
            "Description": "token created via login"
            + (f": {json.dumps(meta, sort_keys=True)}" if meta else ""),
            "Local": method.get("TokenLocality", "local") != "global",
            "AuthMethod": method["Name"],
            "TemplatedPolicies": [],
            **granted,
        }
        for node in token["NodeIdentities"]:
            node["Datacenter"] = self.datacenter
        max_ttl = method.get("MaxTokenTTL")
        if max_ttl:
            seconds = parse_duration(max_ttl) if isinstance(max_ttl, str) else float(max_ttl)
            token["ExpirationTime"] = _iso(time.time() + seconds)
        written = await self.state.upsert_token(token, create=True)
        return apb.LoginResponse(token=to_struct(written))

    async def Logout(self, req: apb.LogoutRequest) -> apb.LogoutResponse:
        self._enabled()
        if not req.write.token:
            raise PermissionDenied("ACL not found")
        token = await self.state.token_by_secret(req.write.token)
        if token is None:
            raise PermissionDenied("ACL not found")
        if not token.get("AuthMethod"):
            raise PermissionDenied("Permission denied: token was not created by an auth method")
        await self.state.delete_token(token["AccessorID"])
        self.resolver.invalidate()
        return apb.LogoutResponse()

    # ----- resolve and authorize ----------------------------------------------------

    async def ResolveToken(self, req: apb.ResolveTokenRequest) -> apb.ResolveTokenResponse:
        self._enabled()
        secret = self.resolver.secret_of(req.options.token)
        asking = req.requesting_datacenter
        if asking and asking != self.datacenter:
            # Another datacenter asks for a global token: local ones stay home.
            token = await self.state.token_by_secret(secret)
            if token is None or token.get("Local") or token_expired(token, time.time()):
                raise ACLNotFound()
            ident = await self.tokens.identity_of(token, asking)
        else:
            ident = await self.tokens(secret)
        resp = apb.ResolveTokenResponse(
            accessor_id=ident.accessor,
            management=ident.management,
            rules=list(ident.rules),
            default_policy=self.resolver.config.default_policy,
        )
        if ident.expires is not None:
            resp.expiration_time.FromNanoseconds(int(ident.expires * 1e9))
        return resp

    async def Authorize(self, req: apb.AuthorizeRequest) -> apb.AuthorizeResponse:
        authz = await self._authz(req.options.token)
        if len(req.checks) > MAX_AUTHORIZE_CHECKS:
            raise InvalidArgument(
                f"Refusing to authorize more than {MAX_AUTHORIZE_CHECKS} resource requests"
            )
        results = []
        for check in req.checks:
            access = {"read": Access.READ, "list": Access.LIST, "write": Access.WRITE}.get(
                check.access
            )
            if access is None:
                raise InvalidArgument(f"Invalid access level {check.access!r}")
            plain = check.resource in ("acl", "operator", "keyring", "mesh", "peering")
            allow = authz.allowed(check.resource, None if plain else check.segment, access)
            results.append(apb.AuthorizeResult(check=check, allow=allow))
        return apb.AuthorizeResponse(results=results)


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat().replace("+00:00", "Z")
