// Services (the list, live) and Service (its instances and their checks).
import { useMemo, useState } from 'preact/hooks';
import { useBlocking } from './api.js';
import {
  html, CheckCounts, Empty, ErrorBox, Health, Loading, Meta, PageHeader, Tags, uiPath, worst,
} from './ui.js';

export function serviceHealth(s) {
  if (s.ChecksCritical) return 'critical';
  if (s.ChecksWarning) return 'warning';
  return 'passing';
}

// One row; memo-like: re-rendered only when its summary changed (the live list
// re-renders on every blocking answer, usually for one service).
function ServiceRow({ dc, s }) {
  const health = serviceHealth(s);
  return html`<li class="row" data-service=${s.Name} data-health=${health}>
    <div class="row-main">
      <${Health} status=${health} label="" />
      <a class="name" href=${uiPath(dc, 'services', encodeURIComponent(s.Name))}>${s.Name}</a>
      ${s.Kind ? html`<span class="kind">${s.Kind}</span>` : null}
    </div>
    <div class="row-detail">
      <${CheckCounts} passing=${s.ChecksPassing} warning=${s.ChecksWarning} critical=${s.ChecksCritical} />
      <span class="instances">${s.InstanceCount} ${s.InstanceCount === 1 ? 'instance' : 'instances'}</span>
      <${Tags} tags=${s.Tags} />
    </div>
  </li>`;
}

export function ServicesPage({ dc }) {
  const { data, error } = useBlocking('/v1/internal/ui/services', { dc });
  const [search, setSearch] = useState('');
  const [status, setStatus] = useState('');
  const [tag, setTag] = useState('');
  const services = data || [];
  const allTags = useMemo(() => [...new Set(services.flatMap((s) => s.Tags))].sort(), [data]);
  const needle = search.trim().toLowerCase();
  const shown = services.filter((s) => (!needle || s.Name.toLowerCase().includes(needle)
      || s.Tags.some((t) => t.toLowerCase().includes(needle)))
    && (!status || serviceHealth(s) === status)
    && (!tag || s.Tags.includes(tag)));
  return html`
    <${PageHeader} title="Services" count=${data ? services.length : undefined} />
    <form class="filters" role="search" onSubmit=${(e) => e.preventDefault()}>
      <div class="filter grow"><label for="f-search">Search</label>
        <input id="f-search" type="search" data-search placeholder="Name or tag  ( / )" value=${search}
          onInput=${(e) => setSearch(e.target.value)} /></div>
      <div class="filter"><label for="f-health">Health</label>
        <select id="f-health" value=${status} onChange=${(e) => setStatus(e.target.value)}>
          <option value="">All</option><option value="passing">Passing</option>
          <option value="warning">Warning</option><option value="critical">Critical</option>
        </select></div>
      <div class="filter"><label for="f-tag">Tag</label>
        <select id="f-tag" value=${tag} onChange=${(e) => setTag(e.target.value)}>
          <option value="">All</option>${allTags.map((t) => html`<option value=${t}>${t}</option>`)}
        </select></div>
    </form>
    <${ErrorBox} error=${error} what="services" />
    ${data === undefined ? (error ? null : html`<${Loading} what="services" />`) : shown.length ? html`
      <ul class="list" aria-label="Services">${shown.map((s) => html`<${ServiceRow} key=${s.Name} dc=${dc} s=${s} />`)}</ul>` : html`<${Empty}>${services.length ? 'No service matches these filters.' : 'No services registered yet.'}</${Empty}>`}
  `;
}

function maintenance(checks) {
  return checks.find((c) => c.CheckID === '_node_maintenance' || c.CheckID.startsWith('_service_maintenance:'));
}

export function CheckList({ checks }) {
  if (!checks.length) return html`<${Empty}>No checks.</${Empty}>`;
  return html`<ul class="checks">${checks.map((c) => html`
    <li key=${c.Node + c.CheckID} class="check" data-check=${c.CheckID}>
      <div class="check-head">
        <${Health} status=${c.Status} label="" />
        <span class="check-name">${c.Name}</span>
        <span class="muted">${c.ServiceID ? 'service check' : 'node check'}${c.Type ? ` · ${c.Type}` : ''}</span>
      </div>
      ${c.Notes ? html`<p class="notes">${c.Notes}</p>` : null}
      <pre class="output" aria-label=${`Output of ${c.Name}`}>${c.Output || 'No output'}</pre>
    </li>`)}</ul>`;
}

export function ServicePage({ dc, name }) {
  const { data, error, status } = useBlocking(`/v1/health/service/${encodeURIComponent(name)}`, { dc });
  const entries = data || [];
  const crumbs = [['Services', uiPath(dc, 'services')], [name]];
  return html`
    <${PageHeader} title=${name} crumbs=${crumbs} count=${data ? entries.length : undefined} />
    <${ErrorBox} error=${error} what="instances" />
    ${data === undefined ? (error ? null : html`<${Loading} what="instances" />`) : entries.length ? html`
      <ul class="cards" aria-label="Instances">${entries.map((e) => {
        const maint = maintenance(e.Checks);
        const st = maint ? 'maintenance' : worst(e.Checks.map((c) => c.Status));
        const address = `${e.Service.Address || e.Node.Address}${e.Service.Port ? `:${e.Service.Port}` : ''}`;
        return html`<li key=${e.Node.Node + e.Service.ID} class="card" data-instance=${e.Service.ID}>
          <div class="card-head">
            <${Health} status=${st} label=${st} />
            <h2>${e.Service.ID}</h2>
          </div>
          <dl class="facts">
            <div><dt>Node</dt><dd><a href=${uiPath(dc, 'nodes', encodeURIComponent(e.Node.Node))}>${e.Node.Node}</a></dd></div>
            <div><dt>Address</dt><dd><code>${address}</code></dd></div>
            ${maint ? html`<div><dt>Maintenance</dt><dd>${maint.Notes || maint.Output || 'in maintenance'}</dd></div>` : null}
          </dl>
          <${Tags} tags=${e.Service.Tags} />
          <${Meta} meta=${e.Service.Meta} label="Service metadata" />
          <h3>Checks</h3>
          <${CheckList} checks=${e.Checks} />
        </li>`;
      })}</ul>` : html`<${Empty}>No instances of ${name}${status === 200 ? '' : ''}.</${Empty}>`}
  `;
}
