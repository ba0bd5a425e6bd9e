// The app: header (navigation, datacenter switcher), routes, keyboard shortcuts.
import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { aclMode, getToken, onTokenChange, useRead } from './api.js';
import { ClusterPage } from './cluster.js';
import { KVEditor, KVFolder } from './kv.js';
import { NodePage, NodesPage } from './nodes.js';
import { ServicePage, ServicesPage } from './services.js';
import { html, ACL_KINDS, Loading, navigate, onNavigate, uiPath } from './ui.js';

// The login and the ACL pages (acl.js) are loaded only once they are needed:
// an agent without ACLs never fetches them.
let aclModule = null;
function useAclModule(needed) {
  const [mod, setMod] = useState(aclModule);
  useEffect(() => {
    if (!needed || mod) return;
    import('./acl.js').then((m) => { aclModule = m; setMod(m); }).catch(() => {});
  }, [needed]);
  return mod;
}

const SECTIONS = [['services', 'Services'], ['nodes', 'Nodes'], ['kv', 'Key/Value'], ['cluster', 'Cluster']];

// /ui/<dc>/<section>/<rest...> (each segment URI-decoded; KV keeps its slashes).
function parse(pathname) {
  const parts = pathname.replace(/^\/ui\/?/, '').split('/');
  const dc = decodeURIComponent(parts[0] || '');
  const section = parts[1] || '';
  const rest = parts.slice(2).map(decodeURIComponent);
  return { dc, section, rest, raw: parts.slice(2).join('/') };
}

function Page({ route, self }) {
  const { dc, section, rest } = route;
  if (section === 'acls') return html`<${AclSection} dc=${dc} rest=${rest} self=${self} />`;
  if (section === 'services') return rest[0] ? html`<${ServicePage} dc=${dc} name=${rest[0]} />` : html`<${ServicesPage} dc=${dc} />`;
  if (section === 'nodes') return rest[0] ? html`<${NodePage} dc=${dc} name=${rest[0]} />` : html`<${NodesPage} dc=${dc} />`;
  if (section === 'cluster') return html`<${ClusterPage} dc=${dc} />`;
  if (section === 'kv') {
    const path = rest.join('/');
    if (path.endsWith('/edit') || path === 'edit') return html`<${KVEditor} dc=${dc} keyPath=${path.slice(0, -'/edit'.length)} />`;
    if (path.endsWith('create') && (path === 'create' || path.endsWith('/create'))) {
      return html`<${KVEditor} dc=${dc} keyPath=${path.slice(0, -'create'.length)} creating=${true} />`;
    }
    return html`<${KVFolder} dc=${dc} folder=${path} />`;
  }
  return html`<div class="error" role="alert"><strong>Page not found</strong><p>There is no page at ${location.pathname}.</p>
    <p><a href=${uiPath(dc, 'services')}>Go to the services</a></p></div>`;
}

function AclSection(props) {
  const acl = useAclModule(true);
  return acl ? html`<${acl.AclPage} ...${props} />` : html`<${Loading} what="access controls" />`;
}

function Header({ route, self }) {
  const dcs = useRead('/v1/catalog/datacenters');
  const list = dcs.data && dcs.data.length ? dcs.data : [route.dc];
  const acl = aclMode(self);
  const aclUi = useAclModule(acl === 'on');
  // Tokens, Policies and Roles only when ACLs are on (/ui/<dc>/acls/<kind>).
  const sections = acl === 'on' ? [...SECTIONS, ...ACL_KINDS.map(([id, label]) => [`acls/${id}`, label])] : SECTIONS;
  const current = route.section === 'acls' ? `acls/${route.rest[0] || 'tokens'}` : route.section;
  function switchDc(event) {
    const dc = event.target.value;
    const section = ['services', 'nodes', 'kv', 'cluster'].includes(route.section) ? route.section : 'services';
    navigate(uiPath(dc, section, ''));
  }
  return html`<header class="top" data-acl=${acl}>
    <a class="skip" href="#main">Skip to content</a>
    <a class="brand" href=${uiPath(route.dc, 'services', '')}><span aria-hidden="true">◉</span> consul-grpc</a>
    <nav aria-label="Main"><ul>${sections.map(([id, label]) => html`<li>
      <a href=${uiPath(route.dc, id, '')} aria-current=${current === id ? 'page' : undefined}>${label}</a></li>`)}</ul></nav>
    <div class="dc"><label for="dc-switcher">Datacenter</label>
      <select id="dc-switcher" value=${route.dc} onChange=${switchDc}>
        ${list.map((dc) => html`<option value=${dc}>${dc}</option>`)}
      </select></div>
    ${acl === 'on' && aclUi ? html`<${aclUi.LoginControl} self=${self} />` : null}
  </header>`;
}

function App() {
  const [pathname, setPathname] = useState(location.pathname);
  // A login or logout re-reads everything with the new token (the pages are keyed by it).
  const [token, setTokenState] = useState(getToken());
  useEffect(() => onTokenChange(() => setTokenState(getToken())), []);
  const self = useRead('/v1/agent/self', { deps: [token] });
  const dcs = useRead('/v1/catalog/datacenters', { deps: [token] });
  const aclSelf = useRead('/v1/acl/token/self', { deps: [token] });
  useEffect(() => onNavigate(() => setPathname(location.pathname)), []);
  const route = parse(pathname);
  const first = useRef(true);
  useEffect(() => {
    // After a navigation (not the first load), move focus to the new page's
    // heading, so keyboard and screen-reader users land on it.
    const h1 = document.querySelector('main h1');
    if (!first.current && h1) h1.focus({ preventScroll: true });
    first.current = false;
    document.title = `${route.section ? `${route.section} · ` : ''}${route.dc || ''} · consul-grpc`;
  }, [pathname]);
  if (!route.dc || !route.section) {
    // The agent's own datacenter; under default deny an anonymous caller may not read
    // the agent, so the first known datacenter (the agent's own comes first) instead.
    const home = self.data ? self.data.Config.Datacenter : self.error && dcs.data && dcs.data[0];
    if (home) navigate(uiPath(home, 'services', ''), { replace: true });
    return html`<p class="boot">${self.error && dcs.error ? self.error.message : 'Loading…'}</p>`;
  }
  return html`<${Header} key=${`h${token}`} route=${route} self=${aclSelf} />
    <main id="main" tabindex="-1"><${Page} key=${`p${token}`} route=${route} self=${aclSelf} /></main>`;
}

// "/" jumps to the page's search box; Escape leaves it.
document.addEventListener('keydown', (event) => {
  const field = event.target.closest && event.target.closest('input, textarea, select');
  if (event.key === '/' && !field) {
    const search = document.querySelector('[data-search]');
    if (search) { event.preventDefault(); search.focus(); }
  } else if (event.key === 'Escape' && field && field.matches('[data-search]')) {
    field.blur();
  }
});

const root = document.getElementById('app');
root.textContent = ''; // the boot message
render(html`<${App} />`, root);
