// Shared pieces: html templates, client-side navigation, health badges, errors.
import { h } from 'preact';
import { useState } from 'preact/hooks';
import htm from 'htm';

export const html = htm.bind(h);

// ----- navigation (History API; every in-app link is a plain <a href>) -----

const listeners = new Set();

export function onNavigate(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function navigate(href, { replace = false } = {}) {
  if (replace) history.replaceState(null, '', href); else history.pushState(null, '', href);
  for (const fn of listeners) fn();
}

// Left clicks on same-origin /ui/ links navigate in place; modified clicks
// (new tab, download) keep the browser's behaviour.
document.addEventListener('click', (event) => {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const a = event.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const target = new URL(a.href, location.href);
  if (target.origin !== location.origin || !target.pathname.startsWith('/ui/')) return;
  if (target.hash && target.pathname === location.pathname) return; // in-page (skip link)
  event.preventDefault();
  navigate(target.pathname + target.search);
});
window.addEventListener('popstate', () => { for (const fn of listeners) fn(); });

// The access-control pages: /ui/<dc>/acls/<kind>.
export const ACL_KINDS = [['tokens', 'Tokens'], ['policies', 'Policies'], ['roles', 'Roles']];

// Path segments are encoded one by one, so keys and names with spaces or '?' survive.
export function segments(path) {
  return path.split('/').map(encodeURIComponent).join('/');
}

export function uiPath(dc, ...parts) {
  return `/ui/${encodeURIComponent(dc)}/${parts.join('/')}`;
}

// ----- health -----

const RANK = { passing: 0, warning: 1, critical: 2, maintenance: 3 };

export function worst(statuses) {
  let out = 'passing';
  for (const s of statuses) if ((RANK[s] ?? 2) > RANK[out]) out = s in RANK ? s : 'critical';
  return out;
}

const SYMBOL = { passing: '✓', warning: '!', critical: '✕', maintenance: '‖' };

// A status badge; with label="" only the symbol shows, and screen readers still hear the status.
export function Health({ status, label }) {
  const text = label ?? status;
  return html`<span class="health ${status}" title=${status}>
    <span aria-hidden="true">${SYMBOL[status] || '?'}</span>${text ? ` ${text}` : html`<span class="sr-only">${status}</span>`}</span>`;
}

export function CheckCounts({ passing = 0, warning = 0, critical = 0 }) {
  return html`<span class="counts">
    <span class="sr-only">${`Checks: ${passing} passing, ${warning} warning, ${critical} critical`}</span>
    <span class="health passing" aria-hidden="true">✓ ${passing}</span>
    ${warning ? html`<span class="health warning" aria-hidden="true">! ${warning}</span>` : null}
    ${critical ? html`<span class="health critical" aria-hidden="true">✕ ${critical}</span>` : null}
  </span>`;
}

export function Tags({ tags }) {
  if (!tags || !tags.length) return null;
  return html`<ul class="tags" aria-label="Tags">${tags.map((t) => html`<li>${t}</li>`)}</ul>`;
}

export function Meta({ meta, label = 'Metadata' }) {
  const entries = Object.entries(meta || {});
  if (!entries.length) return null;
  return html`<dl class="meta" aria-label=${label}>
    ${entries.map(([k, v]) => html`<div><dt>${k}</dt><dd>${v}</dd></div>`)}
  </dl>`;
}

// Icons drawn inline (no icon font, no emoji font needed).
export function Icon({ name }) {
  const paths = {
    folder: 'M2 4.5A1.5 1.5 0 0 1 3.5 3h3l1.5 2h4.5A1.5 1.5 0 0 1 14 6.5v5A1.5 1.5 0 0 1 12.5 13h-9A1.5 1.5 0 0 1 2 11.5z',
    key: 'M10 2.5a3.5 3.5 0 1 1-2.9 5.46L3 12.06V14H1.5v-2.5l4.54-4.54A3.5 3.5 0 0 1 10 2.5zm1 2a1 1 0 1 0 0 2 1 1 0 0 0 0-2z',
  };
  return html`<svg class="icon" viewBox="0 0 16 16" width="16" height="16" aria-hidden="true" focusable="false">
    <path d=${paths[name]} fill="currentColor" /></svg>`;
}

// ----- states -----

// A delete button that asks once more, in place.
export function Confirm({ label, onConfirm, busy }) {
  const [asking, setAsking] = useState(false);
  if (!asking) return html`<button type="button" class="danger" onClick=${() => setAsking(true)}>${label}</button>`;
  return html`<span class="confirm" role="group" aria-label="Confirm">
    <span>Sure?</span>
    <button type="button" class="danger" disabled=${busy} onClick=${onConfirm}>Yes, delete</button>
    <button type="button" onClick=${() => setAsking(false)}>Cancel</button></span>`;
}


export function ErrorBox({ error, what }) {
  if (!error) return null;
  // ApiError carries an HTTP status; anything else is a problem found here (a bad file, a lost CAS).
  let title = error.status === undefined ? 'Not done' : `Could not load ${what}`;
  if (error.lost) title = 'Agent unreachable';
  else if (error.status === 403) title = 'Access denied';
  return html`<div class="error" role="alert">
    <strong>${title}</strong>
    <p>${error.message}</p>
    ${error.lost || error.status >= 500 ? html`<p class="hint">Retrying…</p>` : null}
    ${error.status === 403 ? html`<p class="hint">Your token may not read this.
      <button type="button" class="link" onClick=${() => document.dispatchEvent(new CustomEvent('consul-grpc:login'))}>Log in with another token</button></p>` : null}
  </div>`;
}

export function Loading({ what }) {
  return html`<p class="loading" role="status">Loading ${what}…</p>`;
}

export function Empty({ children }) {
  return html`<p class="empty">${children}</p>`;
}

export function PageHeader({ title, count, children, crumbs }) {
  return html`<header class="page-header">
    ${crumbs ? html`<nav aria-label="Breadcrumb" class="crumbs"><ol>${crumbs.map(
      ([label, href]) => html`<li>${href ? html`<a href=${href}>${label}</a>` : html`<span aria-current="page">${label}</span>`}</li>`,
    )}</ol></nav>` : null}
    <div class="title-row">
      <h1 tabindex="-1">${title}${count !== undefined ? html` <span class="count">${count}</span>` : null}</h1>
      <div class="actions">${children}</div>
    </div>
  </header>`;
}

export function relativeTime(iso) {
  if (!iso) return '';
  const seconds = Math.round((Date.parse(iso) - Date.now()) / 1000);
  const abs = Math.abs(seconds);
  const text = abs < 90 ? `${abs}s` : abs < 5400 ? `${Math.round(abs / 60)}m` : `${Math.round(abs / 3600)}h`;
  return seconds >= 0 ? `in ${text}` : `${text} ago`;
}
