"""The JWT auth method and binding rules: ``/v1/acl/login`` turns a JWT into a token.

An auth method of ``Type: "jwt"`` holds, in ``Config`` (Consul's keys):
``JWTValidationPubKeys`` (PEM public keys; a JWT must verify against one),
``JWTSupportedAlgs`` (default RS256), ``BoundIssuer``, ``BoundAudiences``,
``ClaimMappings`` / ``ListClaimMappings`` (claim -> attribute), and leeways
(``ExpirationLeeway``, ``NotBeforeLeeway``, ``ClockSkewLeeway``, seconds).
Signatures, ``exp``/``nbf``/``iss``/``aud`` are checked by PyJWT.

Login maps the claims to ``value.<attribute>`` and ``list.<attribute>``, then
every binding rule of the method whose ``Selector`` (a bexpr, as ``?filter``)
matches adds what its ``BindType`` names, with ``${value.x}`` in ``BindName``
filled in: ``service`` (a service identity), ``node`` (a node identity),
``role`` or ``policy`` (linked by name, skipped when missing). No binding: 403.
"""

from __future__ import annotations

import re
from typing import Any

import jwt
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from agent.durations import parse_duration
from agent.errors import InvalidArgument, PermissionDenied
from agent.filter import apply_filter

__all__ = ["BIND_TYPES", "bindings", "validate_auth_method", "validate_binding_rule", "verify_jwt"]

BIND_TYPES = ("service", "node", "role", "policy")
_SUPPORTED_ALGS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "EdDSA")
_VAR = re.compile(r"\$\{([a-zA-Z0-9_.]+)\}")
#: A JWT longer than this is refused before parsing.
MAX_JWT = 16 * 1024

JSON = dict[str, Any]


def _seconds(value: Any, what: str) -> float:
    if value in (None, ""):
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        return parse_duration(value)
    raise InvalidArgument(f"Invalid {what}: {value!r}")


def validate_auth_method(doc: JSON) -> JSON:
    """A clean auth method document, or ``InvalidArgument``."""
    name = doc.get("Name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", name):
        raise InvalidArgument(f"Invalid Auth Method: invalid Name {name!r}")
    if doc.get("Type") != "jwt":
        raise InvalidArgument(f"Invalid Auth Method: unsupported Type {doc.get('Type')!r} (jwt)")
    config = doc.get("Config") or {}
    if not isinstance(config, dict):
        raise InvalidArgument("Invalid Auth Method: Config must be an object")
    if config.get("JWKSURL") or config.get("OIDCDiscoveryURL"):
        raise InvalidArgument("Invalid Auth Method: only JWTValidationPubKeys is supported")
    keys = config.get("JWTValidationPubKeys") or []
    if not keys or not all(isinstance(k, str) for k in keys):
        raise InvalidArgument("Invalid Auth Method: JWTValidationPubKeys is required")
    for key in keys:
        try:
            load_pem_public_key(key.encode())
        except (ValueError, TypeError):
            raise InvalidArgument(
                "Invalid Auth Method: JWTValidationPubKeys must be PEM public keys"
            ) from None
    algs = config.get("JWTSupportedAlgs") or ["RS256"]
    if any(a not in _SUPPORTED_ALGS for a in algs):
        raise InvalidArgument(f"Invalid Auth Method: unsupported JWTSupportedAlgs {algs}")
    for field in ("ExpirationLeeway", "NotBeforeLeeway", "ClockSkewLeeway"):
        _seconds(config.get(field), field)
    max_ttl = _seconds(doc.get("MaxTokenTTL"), "MaxTokenTTL")
    locality = doc.get("TokenLocality") or "local"
    if locality not in ("local", "global"):
        raise InvalidArgument(f"Invalid Auth Method: TokenLocality {locality!r}")
    return {
        "Name": name,
        "Type": "jwt",
        "DisplayName": str(doc.get("DisplayName") or ""),
        "Description": str(doc.get("Description") or ""),
        "MaxTokenTTL": doc.get("MaxTokenTTL") or "",
        "TokenLocality": locality,
        "Config": {**config, "JWTSupportedAlgs": algs},
        "_MaxTokenTTLSeconds": max_ttl,
    }


def validate_binding_rule(doc: JSON) -> JSON:
    bind_type = doc.get("BindType")
    if bind_type not in BIND_TYPES:
        raise InvalidArgument(f"Invalid Binding Rule: unknown BindType {bind_type!r}")
    bind_name = doc.get("BindName")
    if not isinstance(bind_name, str) or not bind_name:
        raise InvalidArgument("Invalid Binding Rule: no BindName is set")
    selector = doc.get("Selector") or ""
    if not isinstance(selector, str):
        raise InvalidArgument("Invalid Binding Rule: Selector must be a string")
    if selector:
        try:
            apply_filter(selector, [{"value": {}, "list": {}}], lambda r: r)
        except InvalidArgument as exc:
            raise InvalidArgument(
                f"Invalid Binding Rule: invalid Selector: {exc.message}"
            ) from None
    return {
        "ID": str(doc.get("ID") or ""),
        "Description": str(doc.get("Description") or ""),
        "AuthMethod": str(doc.get("AuthMethod") or ""),
        "Selector": selector,
        "BindType": bind_type,
        "BindName": bind_name,
    }


def verify_jwt(method: JSON, bearer: str) -> JSON:
    """The claims of ``bearer`` if it verifies against ``method``; else 403."""
    if not bearer or len(bearer) > MAX_JWT:
        raise InvalidArgument("Missing or oversized BearerToken")
    config = method.get("Config") or {}
    algs = list(config.get("JWTSupportedAlgs") or ["RS256"])
    leeway = _seconds(config.get("ClockSkewLeeway"), "ClockSkewLeeway") + max(
        _seconds(config.get("ExpirationLeeway"), "ExpirationLeeway"),
        _seconds(config.get("NotBeforeLeeway"), "NotBeforeLeeway"),
    )
    audiences = config.get("BoundAudiences") or None
    issuer = config.get("BoundIssuer") or None
    last: Exception | None = None
    for key in config.get("JWTValidationPubKeys") or []:
        try:
            claims: JSON = jwt.decode(
                bearer,
                key,
                algorithms=algs,
                audience=audiences,
                issuer=issuer,
                leeway=leeway,
                options={"verify_aud": audiences is not None, "require": ["exp"]},
            )
            return claims
        except jwt.InvalidSignatureError as exc:
            last = exc  # try the next key
        except jwt.PyJWTError as exc:
            raise PermissionDenied(f"Permission denied: invalid JWT: {exc}") from None
        except ValueError as exc:  # an unusable key
            last = exc
    raise PermissionDenied(f"Permission denied: invalid JWT: {last or 'no key verifies it'}")


def _vars(method: JSON, claims: JSON) -> JSON:
    config = method.get("Config") or {}
    values: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    for claim, attr in (config.get("ClaimMappings") or {}).items():
        value = claims.get(claim)
        if isinstance(value, str | int | float | bool):
            values[str(attr)] = str(value)
    for claim, attr in (config.get("ListClaimMappings") or {}).items():
        value = claims.get(claim)
        if isinstance(value, list):
            lists[str(attr)] = [str(v) for v in value]
    return {"value": values, "list": lists}


def _fill(template: str, variables: JSON) -> str | None:
    missing = False

    def one(match: re.Match[str]) -> str:
        nonlocal missing
        scope, _, name = match.group(1).partition(".")
        value = variables.get(scope, {}).get(name) if scope == "value" else None
        if value is None:
            missing = True
            return ""
        return str(value)

    out = _VAR.sub(one, template)
    return None if missing or not out else out


def bindings(method: JSON, claims: JSON, rules: list[JSON]) -> JSON:
    """What the matching rules grant: token fields (Policies, Roles, identities)."""
    variables = _vars(method, claims)
    out: JSON = {"Policies": [], "Roles": [], "ServiceIdentities": [], "NodeIdentities": []}
    for rule in rules:
        if rule.get("AuthMethod") != method["Name"]:
            continue
        selector = rule.get("Selector") or ""
        if selector and not apply_filter(selector, [variables], lambda r: r):
            continue
        name = _fill(str(rule["BindName"]), variables)
        if name is None:
            continue
        kind = rule["BindType"]
        if kind == "service":
            out["ServiceIdentities"].append({"ServiceName": name})
        elif kind == "node":
            out["NodeIdentities"].append({"NodeName": name})
        elif kind == "role":
            out["Roles"].append({"Name": name})
        else:
            out["Policies"].append({"Name": name})
    return out
