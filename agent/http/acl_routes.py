"""``/v1/acl/*`` and ``/v1/internal/acl/authorize``, and the token middleware.

``token_middleware`` reads the caller's token once per request (``?token=``,
``X-Consul-Token``, ``Authorization: Bearer``) into ``agent.rpc.token`` so the
agent's own endpoints (which carry no QueryOptions) are checked with it too.

The ACL endpoints send ACLService calls to the servers; documents come and go
in Consul's JSON shapes. With ACLs disabled the servers answer 401
``ACL support disabled``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from google.protobuf import json_format, struct_pb2

from agent.acl.identity import TEMPLATES
from agent.errors import InvalidArgument
from agent.filter import apply_filter
from agent.http.base import Handler, context, json_response
from agent.http.params import decode_json, query_options, read_body, token, write_options
from agent.rpc.token import request_token
from generated.consul.acl.v1 import acl_pb2 as apb

__all__ = ["add_acl_routes", "token_middleware"]

_ACL = "/consul.acl.v1.ACLService/"
#: A policy, token or role body is small; rules are capped at 64 KiB by the parser.
MAX_ACL_BODY = 256 * 1024


@web.middleware
async def token_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_token.set(token(request))
    return await handler(request)


def _doc(msg: struct_pb2.Struct) -> dict[str, Any]:
    out: dict[str, Any] = json_format.MessageToDict(msg)
    for key in ("CreateIndex", "ModifyIndex"):
        if key in out:
            out[key] = int(out[key])
    return out


async def _body(request: web.Request) -> struct_pb2.Struct:
    raw = await read_body(request, MAX_ACL_BODY, "ACL body")
    data = decode_json(raw) if raw.strip() else {}
    if not isinstance(data, dict):
        raise InvalidArgument("Request body must be a JSON object")
    out = struct_pb2.Struct()
    try:
        out.update(data)
    except (ValueError, TypeError, OverflowError) as exc:  # 1e400 or a 400-digit integer
        raise InvalidArgument(f"Request decode failed: {exc}") from None
    return out


async def bootstrap(request: web.Request) -> web.StreamResponse:
    resp = await context(request).call(
        _ACL + "Bootstrap",
        apb.BootstrapRequest(write=write_options(request)),
        apb.BootstrapResponse,
    )
    return json_response(request, _doc(resp.token))


async def token_create(request: web.Request) -> web.StreamResponse:
    req = apb.WriteTokenRequest(
        write=write_options(request), token=await _body(request), create=True
    )
    resp = await context(request).call(_ACL + "WriteToken", req, apb.WriteTokenResponse)
    return json_response(request, _doc(resp.token))


async def token_update(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    accessor = request.match_info["id"]
    given = body.fields.get("AccessorID")
    if given is not None and given.string_value and given.string_value != accessor:
        raise InvalidArgument("Token Accessor ID in URL and payload do not match")
    body["AccessorID"] = accessor
    req = apb.WriteTokenRequest(write=write_options(request), token=body)
    resp = await context(request).call(_ACL + "WriteToken", req, apb.WriteTokenResponse)
    return json_response(request, _doc(resp.token))


async def token_clone(request: web.Request) -> web.StreamResponse:
    body = await _body(request)
    req = apb.WriteTokenRequest(
        write=write_options(request), token=body, clone_of=request.match_info["id"]
    )
    resp = await context(request).call(_ACL + "WriteToken", req, apb.WriteTokenResponse)
    return json_response(request, _doc(resp.token))


async def token_read(request: web.Request) -> web.StreamResponse:
    req = apb.ReadTokenRequest(options=query_options(request), accessor_id=request.match_info["id"])
    resp = await context(request).call(_ACL + "ReadToken", req, apb.ReadTokenResponse)
    return json_response(request, _doc(resp.token), meta=resp.meta)


async def token_self(request: web.Request) -> web.StreamResponse:
    req = apb.ReadTokenRequest(options=query_options(request))
    resp = await context(request).call(_ACL + "ReadToken", req, apb.ReadTokenResponse)
    return json_response(request, _doc(resp.token), meta=resp.meta)


async def token_delete(request: web.Request) -> web.StreamResponse:
    req = apb.DeleteTokenRequest(write=write_options(request), accessor_id=request.match_info["id"])
    resp = await context(request).call(_ACL + "DeleteToken", req, apb.DeleteTokenResponse)
    return json_response(request, resp.deleted)


def _filtered(request: web.Request, docs: list[Any]) -> list[Any]:
    """``?filter`` over a list's JSON rows, as Consul's ACL list endpoints apply it."""
    return apply_filter(request.query.get("filter", ""), docs, lambda d: d)


async def token_list(request: web.Request) -> web.StreamResponse:
    req = apb.ListTokensRequest(
        options=query_options(request),
        policy=request.query.get("policy", ""),
        role=request.query.get("role", ""),
    )
    resp = await context(request).call(_ACL + "ListTokens", req, apb.ListTokensResponse)
    return json_response(
        request, _filtered(request, [_doc(t) for t in resp.tokens]), meta=resp.meta
    )


def _write_named(kind: str, create: bool) -> Handler:
    table: dict[str, tuple[str, Any, Any]] = {
        "policy": ("WritePolicy", apb.WritePolicyRequest, apb.WritePolicyResponse),
        "role": ("WriteRole", apb.WriteRoleRequest, apb.WriteRoleResponse),
    }
    method, request_type, response_type = table[kind]

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        if not create:
            doc_id = request.match_info["id"]
            given = body.fields.get("ID")
            if given is not None and given.string_value and given.string_value != doc_id:
                raise InvalidArgument(f"{kind.title()} ID in URL and payload do not match")
            body["ID"] = doc_id
        req: Any = request_type(write=write_options(request), create=create)
        getattr(req, kind).CopyFrom(body)
        resp: Any = await context(request).call(_ACL + method, req, response_type)
        return json_response(request, _doc(getattr(resp, kind)))

    return handle


def _read_named(kind: str, by_name: bool) -> Handler:
    table: dict[str, tuple[str, Any, Any]] = {
        "policy": ("ReadPolicy", apb.ReadPolicyRequest, apb.ReadPolicyResponse),
        "role": ("ReadRole", apb.ReadRoleRequest, apb.ReadRoleResponse),
    }
    method, request_type, response_type = table[kind]

    async def handle(request: web.Request) -> web.StreamResponse:
        req: Any = request_type(options=query_options(request))
        if by_name:
            req.name = request.match_info["name"]
        else:
            req.id = request.match_info["id"]
        resp: Any = await context(request).call(_ACL + method, req, response_type)
        return json_response(request, _doc(getattr(resp, kind)), meta=resp.meta)

    return handle


def _delete_named(kind: str) -> Handler:
    table: dict[str, tuple[str, Any, Any]] = {
        "policy": ("DeletePolicy", apb.DeletePolicyRequest, apb.DeletePolicyResponse),
        "role": ("DeleteRole", apb.DeleteRoleRequest, apb.DeleteRoleResponse),
    }
    method, request_type, response_type = table[kind]

    async def handle(request: web.Request) -> web.StreamResponse:
        req: Any = request_type(write=write_options(request), id=request.match_info["id"])
        resp: Any = await context(request).call(_ACL + method, req, response_type)
        return json_response(request, resp.deleted)

    return handle


async def policy_list(request: web.Request) -> web.StreamResponse:
    req = apb.ListPoliciesRequest(options=query_options(request))
    resp = await context(request).call(_ACL + "ListPolicies", req, apb.ListPoliciesResponse)
    return json_response(
        request, _filtered(request, [_doc(p) for p in resp.policies]), meta=resp.meta
    )


async def role_list(request: web.Request) -> web.StreamResponse:
    req = apb.ListRolesRequest(options=query_options(request))
    resp = await context(request).call(_ACL + "ListRoles", req, apb.ListRolesResponse)
    return json_response(request, _filtered(request, [_doc(r) for r in resp.roles]), meta=resp.meta)


async def templated_policies(request: web.Request) -> web.StreamResponse:
    # Asks the servers first: acl:read is needed, and a disabled ACL system
    # answers 401, as Consul's.
    await context(request).call(
        _ACL + "ListPolicies",
        apb.ListPoliciesRequest(options=query_options(request)),
        apb.ListPoliciesResponse,
    )
    out = {
        name: {
            "TemplateName": name,
            "Schema": '{"type":"object","properties":{"name":{"type":"string"}}}' if named else "",
            "Template": "",
            "Description": description,
        }
        for name, (named, description) in TEMPLATES.items()
    }
    return json_response(request, out)


async def authorize(request: web.Request) -> web.StreamResponse:
    raw = await read_body(request, MAX_ACL_BODY, "authorization requests")
    data = decode_json(raw)
    if not isinstance(data, list):
        raise InvalidArgument("Request body must be a list of authorization requests")
    checks = []
    for item in data:
        if not isinstance(item, dict):
            raise InvalidArgument("Each authorization request must be an object")
        folded = {str(k).lower(): v for k, v in item.items()}
        checks.append(
            apb.AuthorizeCheck(
                resource=str(folded.get("resource", "")),
                segment=str(folded.get("segment", "")),
                access=str(folded.get("access", "")),
            )
        )
    req = apb.AuthorizeRequest(options=query_options(request), checks=checks)
    resp = await context(request).call(_ACL + "Authorize", req, apb.AuthorizeResponse)
    return json_response(
        request,
        [
            {
                "Resource": r.check.resource,
                "Segment": r.check.segment,
                "Access": r.check.access,
                "Allow": r.allow,
            }
            for r in resp.results
        ],
    )


def _auth_write(create: bool) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        if not create:
            name = request.match_info["name"]
            given = body.fields.get("Name")
            if given is not None and given.string_value and given.string_value != name:
                raise InvalidArgument("Auth Method Name in URL and payload do not match")
            body["Name"] = name
        req = apb.WriteAuthMethodRequest(
            write=write_options(request), auth_method=body, create=create
        )
        resp = await context(request).call(
            _ACL + "WriteAuthMethod", req, apb.WriteAuthMethodResponse
        )
        return json_response(request, _doc(resp.auth_method))

    return handle


async def auth_read(request: web.Request) -> web.StreamResponse:
    req = apb.ReadAuthMethodRequest(options=query_options(request), name=request.match_info["name"])
    resp = await context(request).call(_ACL + "ReadAuthMethod", req, apb.ReadAuthMethodResponse)
    return json_response(request, _doc(resp.auth_method), meta=resp.meta)


async def auth_delete(request: web.Request) -> web.StreamResponse:
    req = apb.DeleteAuthMethodRequest(write=write_options(request), name=request.match_info["name"])
    resp = await context(request).call(_ACL + "DeleteAuthMethod", req, apb.DeleteAuthMethodResponse)
    return json_response(request, resp.deleted)


async def auth_list(request: web.Request) -> web.StreamResponse:
    req = apb.ListAuthMethodsRequest(options=query_options(request))
    resp = await context(request).call(_ACL + "ListAuthMethods", req, apb.ListAuthMethodsResponse)
    return json_response(
        request, _filtered(request, [_doc(m) for m in resp.auth_methods]), meta=resp.meta
    )


def _rule_write(create: bool) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        if not create:
            rule_id = request.match_info["id"]
            given = body.fields.get("ID")
            if given is not None and given.string_value and given.string_value != rule_id:
                raise InvalidArgument("Binding Rule ID in URL and payload do not match")
            body["ID"] = rule_id
        req = apb.WriteBindingRuleRequest(
            write=write_options(request), binding_rule=body, create=create
        )
        resp = await context(request).call(
            _ACL + "WriteBindingRule", req, apb.WriteBindingRuleResponse
        )
        return json_response(request, _doc(resp.binding_rule))

    return handle


async def rule_read(request: web.Request) -> web.StreamResponse:
    req = apb.ReadBindingRuleRequest(options=query_options(request), id=request.match_info["id"])
    resp = await context(request).call(_ACL + "ReadBindingRule", req, apb.ReadBindingRuleResponse)
    return json_response(request, _doc(resp.binding_rule), meta=resp.meta)


async def rule_delete(request: web.Request) -> web.StreamResponse:
    req = apb.DeleteBindingRuleRequest(write=write_options(request), id=request.match_info["id"])
    resp = await context(request).call(
        _ACL + "DeleteBindingRule", req, apb.DeleteBindingRuleResponse
    )
    return json_response(request, resp.deleted)


async def rule_list(request: web.Request) -> web.StreamResponse:
    req = apb.ListBindingRulesRequest(
        options=query_options(request), auth_method=request.query.get("authmethod", "")
    )
    resp = await context(request).call(_ACL + "ListBindingRules", req, apb.ListBindingRulesResponse)
    return json_response(
        request, _filtered(request, [_doc(r) for r in resp.binding_rules]), meta=resp.meta
    )


async def login(request: web.Request) -> web.StreamResponse:
    body = json_format.MessageToDict(await _body(request))
    folded = {k.lower(): v for k, v in body.items()}
    meta = folded.get("meta") or {}
    if not isinstance(meta, dict):
        raise InvalidArgument("Meta must be an object of strings")
    req = apb.LoginRequest(
        write=write_options(request),
        auth_method=str(folded.get("authmethod") or ""),
        bearer_token=str(folded.get("bearertoken") or ""),
        meta={str(k): str(v) for k, v in meta.items()},
    )
    if not req.auth_method:
        raise InvalidArgument("Missing AuthMethod")
    resp = await context(request).call(_ACL + "Login", req, apb.LoginResponse)
    return json_response(request, _doc(resp.token))


async def logout(request: web.Request) -> web.StreamResponse:
    await context(request).call(
        _ACL + "Logout", apb.LogoutRequest(write=write_options(request)), apb.LogoutResponse
    )
    return web.Response(status=200)


def add_acl_routes(router: web.UrlDispatcher) -> None:
    router.add_put("/v1/acl/bootstrap", bootstrap)
    router.add_put("/v1/acl/token", token_create)
    router.add_get("/v1/acl/token/self", token_self)
    router.add_put("/v1/acl/token/{id}/clone", token_clone)
    router.add_get("/v1/acl/token/{id}", token_read)
    router.add_put("/v1/acl/token/{id}", token_update)
    router.add_delete("/v1/acl/token/{id}", token_delete)
    router.add_get("/v1/acl/tokens", token_list)
    for kind in ("policy", "role"):
        router.add_put(f"/v1/acl/{kind}", _write_named(kind, create=True))
        router.add_get(f"/v1/acl/{kind}/name/{{name}}", _read_named(kind, by_name=True))
        router.add_get(f"/v1/acl/{kind}/{{id}}", _read_named(kind, by_name=False))
        router.add_put(f"/v1/acl/{kind}/{{id}}", _write_named(kind, create=False))
        router.add_delete(f"/v1/acl/{kind}/{{id}}", _delete_named(kind))
    router.add_get("/v1/acl/policies", policy_list)
    router.add_get("/v1/acl/roles", role_list)
    router.add_get("/v1/acl/templated-policies", templated_policies)
    router.add_post("/v1/internal/acl/authorize", authorize)
    router.add_put("/v1/acl/auth-method", _auth_write(create=True))
    router.add_get("/v1/acl/auth-method/{name}", auth_read)
    router.add_put("/v1/acl/auth-method/{name}", _auth_write(create=False))
    router.add_delete("/v1/acl/auth-method/{name}", auth_delete)
    router.add_get("/v1/acl/auth-methods", auth_list)
    router.add_put("/v1/acl/binding-rule", _rule_write(create=True))
    router.add_get("/v1/acl/binding-rule/{id}", rule_read)
    router.add_put("/v1/acl/binding-rule/{id}", _rule_write(create=False))
    router.add_delete("/v1/acl/binding-rule/{id}", rule_delete)
    router.add_get("/v1/acl/binding-rules", rule_list)
    router.add_post("/v1/acl/login", login)
    router.add_post("/v1/acl/logout", logout)
