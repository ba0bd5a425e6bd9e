"""``consul-grpc tls ca create`` / ``tls cert create``, and the agent's TLS flags.

Flags are Consul's (``-domain``, ``-days``, ``-dc``, ``-server``/``-client``/``-cli``,
``-additional-dnsname``, ``-additional-ipaddress``, ``-ca``, ``-key``, ``-node``),
accepted with one dash or two. Files land in the working directory, as Consul's.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from agent.errors import InvalidArgument
from agent.tls.certs import create_ca, create_cert

__all__ = ["add_agent_tls_flags", "add_tls_parser", "cmd_tls"]


class _PortAction(argparse.Action):
    """``-https-port N`` / ``-grpc-tls-port N`` into ``ports`` (the config file's key)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        ports = dict(getattr(namespace, "ports", None) or {})
        ports[self.metavar or ""] = values
        namespace.ports = ports


def add_agent_tls_flags(p: argparse.ArgumentParser) -> None:
    """The agent's TLS listener flags; the certificates come from the config file's ``tls``."""
    p.add_argument("--https-addr", dest="https_addr", help="HTTPS API address (tls.https)")
    p.add_argument(
        "--grpc-tls-addr", dest="grpc_tls_addr", help="agent gRPC API over TLS (tls.grpc)"
    )
    p.add_argument(
        "--https-port", "-https-port", dest="ports", metavar="https", type=int, action=_PortAction
    )
    p.add_argument(
        "--grpc-tls-port",
        "-grpc-tls-port",
        dest="ports",
        metavar="grpc_tls",
        type=int,
        action=_PortAction,
    )
    p.add_argument("--domain", "-domain", dest="domain", help="DNS domain (default consul)")


def add_tls_parser(sub: Any) -> None:
    t = sub.add_parser("tls", help="create a CA and agent certificates")
    tsub = t.add_subparsers(dest="tls_what", required=True)
    ca = tsub.add_parser("ca", help="the certificate authority")
    ca.add_argument("tls_op", choices=["create"])
    ca.add_argument("--days", "-days", type=int, default=1825)
    ca.add_argument("--domain", "-domain", default="consul")
    ca.add_argument("--common-name", "-common-name", default="")
    ca.add_argument("--name-constraint", "-name-constraint", action="store_true")
    ca.add_argument(
        "--additional-name-constraint", "-additional-name-constraint", action="append", default=[]
    )
    cert = tsub.add_parser("cert", help="agent and CLI certificates")
    cert.add_argument("tls_op", choices=["create"])
    cert.add_argument("--server", "-server", action="store_true")
    cert.add_argument("--client", "-client", action="store_true")
    cert.add_argument("--cli", "-cli", action="store_true")
    cert.add_argument("--dc", "-dc", default="dc1")
    cert.add_argument("--domain", "-domain", default="consul")
    cert.add_argument("--days", "-days", type=int, default=365)
    cert.add_argument("--node", "-node", default="")
    cert.add_argument("--ca", "-ca", default="", help="default <domain>-agent-ca.pem")
    cert.add_argument("--key", "-key", default="", help="default <domain>-agent-ca-key.pem")
    cert.add_argument("--additional-dnsname", "-additional-dnsname", action="append", default=[])
    cert.add_argument(
        "--additional-ipaddress", "-additional-ipaddress", action="append", default=[]
    )


async def cmd_tls(args: argparse.Namespace) -> int:
    here = Path.cwd()
    if args.tls_what == "ca":
        files = create_ca(
            here,
            domain=args.domain,
            days=args.days,
            common_name=args.common_name,
            name_constraint=args.name_constraint,
            additional_name_constraints=args.additional_name_constraint,
        )
        print(f"==> Saved {files.cert.name}")
        print(f"==> Saved {files.key.name}")
        return 0
    kinds = [k for k in ("server", "client", "cli") if getattr(args, k)]
    if len(kinds) != 1:
        raise InvalidArgument("Please provide either -server, -client, or -cli")
    ca_file = Path(args.ca) if args.ca else here / f"{args.domain}-agent-ca.pem"
    key_file = Path(args.key) if args.key else here / f"{args.domain}-agent-ca-key.pem"
    if kinds[0] == "server":
        print(
            "==> WARNING: Server Certificates grants authority to become a\n"
            "    server and access all state in the cluster including root keys\n"
            "    and all ACL tokens. Do not distribute them to production hosts\n"
            "    that are not server nodes. Store them as securely as CA keys."
        )
    print(f"==> Using {ca_file} and {key_file}")
    files = create_cert(
        here,
        kinds[0],
        datacenter=args.dc,
        domain=args.domain,
        days=args.days,
        node=args.node,
        ca_file=ca_file,
        ca_key_file=key_file,
        additional_dnsnames=args.additional_dnsname,
        additional_ipaddresses=args.additional_ipaddress,
    )
    print(f"==> Saved {files.cert.name}")
    print(f"==> Saved {files.key.name}")
    return 0
