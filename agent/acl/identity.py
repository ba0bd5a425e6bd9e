"""Rules synthesized from a token's identities and templated policies, as Consul's.

- a service identity ``web``: write on ``web`` and ``web-sidecar-proxy``,
  read on every service and node (to discover its upstreams);
- a node identity ``n1``: write on node ``n1``, read on every service;
- templated policies ``builtin/service`` and ``builtin/node`` (the same two,
  named by ``TemplateVariables.Name``) and ``builtin/dns`` (read on nodes,
  services and prepared queries, for a DNS server).
"""

from __future__ import annotations

from typing import Any

from agent.errors import InvalidArgument

__all__ = ["TEMPLATES", "node_identity_rules", "service_identity_rules", "templated_rules"]


def service_identity_rules(name: str) -> str:
    return (
        f'service "{name}" {{ policy = "write" }}\n'
        f'service "{name}-sidecar-proxy" {{ policy = "write" }}\n'
        'service_prefix "" { policy = "read" }\n'
        'node_prefix "" { policy = "read" }\n'
    )


def node_identity_rules(name: str) -> str:
    return f'node "{name}" {{ policy = "write" }}\nservice_prefix "" {{ policy = "read" }}\n'


_DNS = (
    'node_prefix "" { policy = "read" }\n'
    'service_prefix "" { policy = "read" }\n'
    'query_prefix "" { policy = "read" }\n'
)

#: Consul's builtin templated policies: name -> (needs a Name variable, description).
TEMPLATES: dict[str, tuple[bool, str]] = {
    "builtin/service": (True, "Gives the token or role permissions to register a service"),
    "builtin/node": (True, "Gives the token or role permissions for a register an agent/node"),
    "builtin/dns": (False, "Gives the token or role permissions for the Consul DNS"),
}


def templated_rules(template: str, variables: dict[str, Any] | None) -> str:
    if template not in TEMPLATES:
        raise InvalidArgument(f"Invalid templated policy: no such template {template!r}")
    needs_name, _ = TEMPLATES[template]
    name = str((variables or {}).get("Name", ""))
    if needs_name and not name:
        raise InvalidArgument(f"Invalid templated policy: {template} needs TemplateVariables.Name")
    if template == "builtin/service":
        return service_identity_rules(name)
    if template == "builtin/node":
        return node_identity_rules(name)
    return _DNS
