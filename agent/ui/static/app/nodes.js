// Nodes (live, with the leader marked) and Node (services, checks, sessions).
import { useState } from 'preact/hooks';
import { useBlocking, useRead } from './api.js';
import { CheckList } from './services.js';
import {
  html, Empty, ErrorBox, Health, Loading, Meta, PageHeader, Tags, uiPath, worst,
} from './ui.js';

// The leader's RPC address (/v1/status/leader) is a member's Addr:Port; its
// member name is the node name (LAN), or "node.dc" (WAN: only servers answer
// ?wan, and only the WAN pool knows another datacenter's servers).
export function useLeaderName(dc) {
  const leader = useRead('/v1/status/leader', { dc, every: 10000 });
  const lan = useRead('/v1/agent/members', { every: 10000 });
  const wan = useRead('/v1/agent/members', { query: { wan: true }, every: 10000 });
  const addr = leader.data || '';
  const found = (lan.data || []).find((m) => `${m.Addr}:${m.Port}` === addr);
  if (found) return found.Name;
  const far = (wan.data || []).find((m) => `${m.Addr}:${m.Port}` === addr);
  return far ? far.Name.replace(new RegExp(`\\.${dc}$`), '') : '';
}

export function NodesPage({ dc }) {
  const { data, error } = useBlocking('/v1/internal/ui/nodes', { dc });
  const leader = useLeaderName(dc);
  const [search, setSearch] = useState('');
  const nodes = data || [];
  const needle = search.trim().toLowerCase();
  const shown = nodes.filter((n) => !needle || n.Node.toLowerCase().includes(needle) || n.Address.includes(needle));
  return html`
    <${PageHeader} title="Nodes" count=${data ? nodes.length : undefined} />
    <form class="filters" role="search" onSubmit=${(e) => e.preventDefault()}>
      <div class="filter grow"><label for="f-search">Search</label>
        <input id="f-search" type="search" data-search placeholder="Name or address  ( / )" value=${search}
          onInput=${(e) => setSearch(e.target.value)} /></div>
    </form>
    <${ErrorBox} error=${error} what="nodes" />
    ${data === undefined ? (error ? null : html`<${Loading} what="nodes" />`) : shown.length ? html`
      <ul class="list" aria-label="Nodes">${shown.map((n) => {
        const st = worst(n.Checks.map((c) => c.Status));
        return html`<li key=${n.Node} class="row" data-node=${n.Node}>
          <div class="row-main">
            <${Health} status=${st} label="" />
            <a class="name" href=${uiPath(dc, 'nodes', encodeURIComponent(n.Node))}>${n.Node}</a>
            ${n.Node === leader ? html`<span class="leader" title="Raft leader">★ Leader</span>` : null}
          </div>
          <div class="row-detail">
            <code>${n.Address}</code>
            <span>${n.Services.length} ${n.Services.length === 1 ? 'service' : 'services'}</span>
            <span>${n.Checks.length} ${n.Checks.length === 1 ? 'check' : 'checks'}</span>
            <${Tags} tags=${Object.entries(n.Meta || {}).map(([k, v]) => `${k}=${v}`)} />
          </div>
        </li>`;
      })}</ul>` : html`<${Empty}>No nodes.</${Empty}>`}
  `;
}

export function NodePage({ dc, name }) {
  const node = useBlocking(`/v1/internal/ui/node/${encodeURIComponent(name)}`, { dc, allow404: true });
  const sessions = useRead(`/v1/session/node/${encodeURIComponent(name)}`, { dc, deps: [node.index] });
  const leader = useLeaderName(dc);
  const n = node.data;
  const crumbs = [['Nodes', uiPath(dc, 'nodes')], [name]];
  if (node.data === undefined) {
    return html`<${PageHeader} title=${name} crumbs=${crumbs} />
      <${ErrorBox} error=${node.error} what="the node" />${node.error ? null : html`<${Loading} what="the node" />`}`;
  }
  if (n === null) {
    return html`<${PageHeader} title=${name} crumbs=${crumbs} />
      <div class="error" role="alert"><strong>Node not found</strong><p>${name} is not in the catalog of ${dc}.</p></div>`;
  }
  const st = worst(n.Checks.map((c) => c.Status));
  return html`
    <${PageHeader} title=${n.Node} crumbs=${crumbs}>
      ${n.Node === leader ? html`<span class="leader">★ Leader</span>` : null}
      <${Health} status=${st} />
    </${PageHeader}>
    <${ErrorBox} error=${node.error} what="the node" />
    <dl class="facts">
      <div><dt>Address</dt><dd><code>${n.Address}</code></dd></div>
      <div><dt>Node ID</dt><dd><code>${n.ID || '—'}</code></dd></div>
      <div><dt>Network coordinate</dt><dd class="muted">not known (no Serf coordinates here)</dd></div>
    </dl>
    <${Meta} meta=${n.Meta} label="Node metadata" />
    <section aria-labelledby="node-checks"><h2 id="node-checks">Health checks</h2><${CheckList} checks=${n.Checks} /></section>
    <section aria-labelledby="node-services"><h2 id="node-services">Services</h2>
      ${n.Services.length ? html`<table class="table"><thead><tr><th scope="col">Service</th><th scope="col">ID</th><th scope="col">Address</th><th scope="col">Tags</th></tr></thead>
      <tbody>${n.Services.map((s) => html`<tr key=${s.ID}>
        <td data-label="Service"><a href=${uiPath(dc, 'services', encodeURIComponent(s.Service))}>${s.Service}</a></td>
        <td data-label="ID">${s.ID}</td><td data-label="Address"><code>${(s.Address || n.Address) + (s.Port ? `:${s.Port}` : '')}</code></td>
        <td data-label="Tags"><${Tags} tags=${s.Tags} /></td></tr>`)}</tbody></table>` : html`<${Empty}>No services on this node.</${Empty}>`}
    </section>
    <section aria-labelledby="node-sessions"><h2 id="node-sessions">Sessions</h2>
      <${ErrorBox} error=${sessions.error} what="sessions" />
      ${(sessions.data || []).length ? html`<table class="table"><thead><tr><th scope="col">ID</th><th scope="col">Name</th><th scope="col">Behavior</th><th scope="col">TTL</th><th scope="col">Lock delay</th></tr></thead>
      <tbody>${sessions.data.map((s) => html`<tr key=${s.ID}><td data-label="ID"><code>${s.ID}</code></td><td data-label="Name">${s.Name || '—'}</td>
        <td data-label="Behavior">${s.Behavior}</td><td data-label="TTL">${s.TTL || '—'}</td>
        <td data-label="Lock delay">${Math.round(s.LockDelay / 1e9)}s</td></tr>`)}</tbody></table>`
        : html`<${Empty}>No sessions.</${Empty}>`}
    </section>
  `;
}
