"""Consul's ACL system: rules, authorizers, the resolver, enforcement, the ACL endpoint.

- ``rules``: the rule language (HCL or JSON) parsed into ``Rules``;
- ``authorizer``: ``Authorizer``, a token's decisions with Consul's precedence;
- ``identity``: rules of service/node identities and templated policies;
- ``resolver``: token secret -> authorizer, cached, with ``down_policy``;
- ``enforce``: the permission each RPC needs, and the read filters;
- ``endpoint``: the server's ACLService;
- ``wiring``: what an agent composes (kept out of the composition roots).
"""

from __future__ import annotations

from agent.acl.authorizer import Authorizer, Decision
from agent.acl.rules import Access, Rules, parse_rules

__all__ = ["Access", "Authorizer", "Decision", "Rules", "parse_rules"]
