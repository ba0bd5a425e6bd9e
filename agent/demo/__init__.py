"""``consul-grpc demo``: the Compose topology as local processes, and a guided scenario.

The demo starts, on loopback and free ports, in a temporary directory:

- etcd (one member) when the ``etcd`` binary is installed (``$ETCD_BIN``,
  ``etcd`` on PATH, or /usr/bin/etcd); otherwise it says how to get it
  (``apt-get install etcd-server``) and runs dc1 as ONE server on the memory
  store, which holds exactly one server per datacenter;
- three dc1 servers sharing that etcd;
- one dc2 server on the memory store, joined to dc1 with ``--retry-join-wan``;
- two dc1 client agents, each with ``--retry-join`` to every dc1 server.

It prints each agent's addresses and commands to try, then runs the scenario,
every step a bounded poll (no fixed sleeps):

1. register ``web`` with a TTL check through client-1's AgentService and pass
   the TTL (a heartbeat, the "application", keeps passing it);
2. discover ``web`` through client-2 (HealthService.ServiceHealth, passing only);
3. kill -9 the server client-2 uses (the first of its router, from
   AgentService.Self): discovery through client-2 keeps working while the dead
   server is FAILED and leaves client-2's router (skipped with one server);
4. register ``api`` on the dc2 server and query it from client-1 with
   ``datacenter=dc2``.

``--once`` exits after the summary (CI); otherwise the cluster keeps running
until Ctrl-C. Exit status: 0 when the scenario succeeded, 1 when a step or the
start-up failed (with the reason and the tail of the agents' logs), 130 when
interrupted before the scenario finished.

Shutdown, at any point, on SIGINT or SIGTERM: SIGINT to the client agents
(they leave while the servers still answer), then to the servers, SIGKILL to
whatever outlives its grace period, etcd stopped (SIGTERM, then SIGKILL), the
temporary directory removed. Every wait is bounded, so the whole teardown takes
at most about 25 s, and usually one or two; a second Ctrl-C skips the grace
periods. Children run in their own sessions (a terminal's Ctrl-C reaches only
the demo, which stops them in order) and, on Linux, are killed by the kernel
if the demo itself dies (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

from agent.demo.cluster import DemoCluster, DemoError
from agent.demo.procs import etcd_binary
from agent.demo.run import DemoOptions, add_demo_parser, cmd_demo, run_demo

__all__ = [
    "DemoCluster",
    "DemoError",
    "DemoOptions",
    "add_demo_parser",
    "cmd_demo",
    "etcd_binary",
    "run_demo",
]
