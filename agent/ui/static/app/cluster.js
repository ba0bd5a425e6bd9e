// Cluster: the servers and leader, this agent's routers (consul-grpc's own:
// server order per datacenter, offline flag, next rebalance) and membership.
// Agent self and members have no index to block on: refreshed every 5 s while open.
import { useRead } from './api.js';
import { html, Empty, ErrorBox, Loading, PageHeader, relativeTime } from './ui.js';

const MEMBER_STATUS = { 0: 'none', 1: 'alive', 2: 'leaving', 3: 'left', 4: 'failed' };
const REFRESH_MS = 5000;

export function ClusterPage({ dc }) {
  const self = useRead('/v1/agent/self', { every: REFRESH_MS });
  const leader = useRead('/v1/status/leader', { dc, every: REFRESH_MS });
  const peers = useRead('/v1/status/peers', { dc, every: REFRESH_MS });
  const members = useRead('/v1/agent/members', { every: REFRESH_MS });
  const memberByAddr = new Map((members.data || []).map((m) => [`${m.Addr}:${m.Port}`, m]));
  const cfg = self.data && self.data.Config;
  const debug = (self.data && self.data.DebugConfig) || {};
  const routers = debug.Routers || [];
  return html`
    <${PageHeader} title="Cluster" />
    <${ErrorBox} error=${self.error || leader.error || peers.error || members.error} what="the cluster state" />
    ${cfg ? html`<section aria-labelledby="this-agent"><h2 id="this-agent">This agent</h2>
      <dl class="facts">
        <div><dt>Node</dt><dd>${cfg.NodeName}</dd></div>
        <div><dt>Role</dt><dd>${cfg.Server ? 'server' : 'client'}</dd></div>
        <div><dt>Datacenter</dt><dd>${cfg.Datacenter}</dd></div>
        <div><dt>Version</dt><dd>${cfg.Version}</dd></div>
        ${debug.StartTime ? html`<div><dt>Started</dt><dd>${relativeTime(debug.StartTime)}</dd></div>` : null}
      </dl></section>` : self.error ? null : html`<${Loading} what="the agent" />`}
    <section aria-labelledby="servers"><h2 id="servers">Servers of ${dc}</h2>
      ${peers.data ? (peers.data.length ? html`<ol class="servers">${peers.data.map((addr) => {
        const m = memberByAddr.get(addr);
        return html`<li key=${addr} data-server=${addr}><span class="name">${m ? m.Name : addr}</span> <code>${addr}</code>
          ${addr === leader.data ? html`<span class="leader">★ Leader</span>` : null}</li>`;
      })}</ol>` : html`<${Empty}>No servers known.</${Empty}>`) : null}
      ${leader.data === '' ? html`<p class="error" role="alert">No cluster leader</p>` : null}
    </section>
    <section aria-labelledby="routers"><h2 id="routers">Routers of this agent</h2>
      <p class="hint">Each datacenter's server list in the order this agent uses it: requests go to the first; a failure rotates it to the end.</p>
      ${routers.length ? html`<div class="router-grid">${routers.map((r) => html`
        <div class="card" key=${r.Datacenter} data-router=${r.Datacenter}>
          <div class="card-head"><h3>${r.Datacenter}</h3>
            ${r.Offline ? html`<span class="health critical">offline</span>` : html`<span class="health passing">online</span>`}</div>
          <p class="muted">Next rebalance ${relativeTime(r.NextRebalance) || '—'}</p>
          ${r.Servers.length ? html`<ol class="servers">${r.Servers.map((s, i) => html`<li key=${s.Name}>
            <span class="name">${s.Name}</span> <code>${s.Address}</code>${i === 0 ? html` <span class="kind">in use</span>` : null}</li>`)}</ol>`
            : html`<${Empty}>No servers.</${Empty}>`}
        </div>`)}</div>` : html`<${Empty}>This agent has no router state to show.</${Empty}>`}
    </section>
    <section aria-labelledby="members"><h2 id="members">Members (LAN)</h2>
      ${members.data ? html`<table class="table"><thead><tr><th scope="col">Name</th><th scope="col">Address</th>
        <th scope="col">Role</th><th scope="col">Datacenter</th><th scope="col">Status</th></tr></thead>
        <tbody>${members.data.map((m) => html`<tr key=${m.Name}><td data-label="Name">${m.Name}</td><td data-label="Address"><code>${m.Addr}:${m.Port}</code></td>
          <td data-label="Role">${m.Tags.role === 'consul' ? 'server' : 'client'}</td><td data-label="Datacenter">${m.Tags.dc}</td>
          <td data-label="Status"><span class=${`health ${m.Status === 1 ? 'passing' : m.Status === 4 ? 'critical' : 'warning'}`}>${MEMBER_STATUS[m.Status] || m.Status}</span></td></tr>`)}
        </tbody></table>` : null}
    </section>
  `;
}
