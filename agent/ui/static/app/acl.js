// Access control: the token login, and the Tokens, Policies and Roles pages.
//
// Whether ACLs are on is what GET /v1/acl/token/self answers: 200 (the
// caller's token, the anonymous one without a login) or 403 ("ACL not found":
// a token the servers do not know) when they are on, 401 "ACL support
// disabled" when they are off (aclMode in api.js). The pages appear in the
// navigation only when on, and this module is loaded only then (main.js).
//
// Routes: /ui/<dc>/acls/<tokens|policies|roles>            the list (live)
//         /ui/<dc>/acls/<tokens|policies|roles>/create     a new one
//         /ui/<dc>/acls/<tokens|policies|roles>/<id>       one, editable
import { useEffect, useRef, useState } from 'preact/hooks';
import { ApiError, api, getToken, setToken, useBlocking, useRead } from './api.js';
import {
  html, ACL_KINDS, Confirm, Empty, ErrorBox, Loading, PageHeader, navigate, uiPath,
} from './ui.js';

// The management policy every cluster has; its rules cannot be changed.
const GLOBAL_MANAGEMENT = '00000000-0000-0000-0000-000000000001';
const ANONYMOUS = '00000000-0000-0000-0000-000000000002';

function short(id) {
  return id ? id.slice(0, 8) : '';
}

// ----- login -----

// Anything may ask for the login dialog (an "Access denied" box does).
export function requestLogin() {
  document.dispatchEvent(new CustomEvent('consul-grpc:login'));
}

function LoginDialog({ dialogRef }) {
  const [secret, setSecret] = useState('');
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  async function submit(event) {
    event.preventDefault();
    const token = secret.trim();
    setError(null);
    if (!token) { setError(new Error('Enter a token (its SecretID).')); return; }
    setBusy(true);
    try {
      // Checked before it is kept: a token the servers do not know is refused here.
      await api('/v1/acl/token/self', { token });
      setSecret('');
      dialogRef.current.close();
      setToken(token);
    } catch (err) {
      setError(err);
    } finally { setBusy(false); }
  }
  return html`<dialog ref=${dialogRef} class="login" aria-labelledby="login-title" onClose=${() => { setError(null); setSecret(''); }}>
    <form onSubmit=${submit}>
      <h2 id="login-title">Log in with a token</h2>
      <p class="hint">The token's SecretID. It is kept in this browser and sent with every request as X-Consul-Token.</p>
      <label class="field">Token <input name="token" type="password" autocomplete="off" spellcheck=${false} value=${secret}
        aria-invalid=${error ? 'true' : 'false'} onInput=${(e) => setSecret(e.target.value)} /></label>
      ${error ? html`<div class="error" role="alert"><strong>${error.status === 403 ? 'Not logged in' : 'Could not log in'}</strong>
        <p>${error.message}</p></div>` : null}
      <div class="form-actions">
        <button type="submit" class="primary" disabled=${busy}>Log in</button>
        <button type="button" onClick=${() => dialogRef.current.close()}>Cancel</button>
      </div>
    </form>
  </dialog>`;
}

// The header's part: who is logged in (the token's description and AccessorID), and Log in / Log out.
export function LoginControl({ self }) {
  const dialog = useRef(null);
  const open = () => dialog.current && !dialog.current.open && dialog.current.showModal();
  useEffect(() => {
    document.addEventListener('consul-grpc:login', open);
    return () => document.removeEventListener('consul-grpc:login', open);
  }, []);
  const token = getToken();
  const me = self.data;
  return html`<div class="login-control">
    ${token && me ? html`<span class="whoami" data-accessor=${me.AccessorID}>
      <span class="sr-only">Logged in as </span><span class="who" title=${me.Description}>${me.Description || 'token'}</span> <code title=${`AccessorID ${me.AccessorID}`}>${short(me.AccessorID)}</code></span>` : null}
    ${token && self.error && self.error.status === 403 ? html`<span class="whoami invalid" title=${self.error.message}>Token not valid</span>` : null}
    ${token ? html`<button type="button" onClick=${() => setToken('')}>Log out</button>`
      : html`<button type="button" class="primary" onClick=${open}>Log in</button>`}
    <${LoginDialog} dialogRef=${dialog} />
  </div>`;
}

// ----- shared pieces -----

function Tabs({ dc, kind }) {
  return html`<nav class="subnav" aria-label="Access controls"><ul>${ACL_KINDS.map(([id, label]) => html`<li>
    <a href=${uiPath(dc, 'acls', id)} aria-current=${kind === id ? 'page' : undefined}>${label}</a></li>`)}</ul></nav>`;
}

// A set of checkboxes: the policies (or roles) a token or role links to.
function Picker({ legend, items, selected, onToggle, name }) {
  return html`<fieldset class="picker"><legend>${legend}</legend>
    ${items === undefined ? html`<${Loading} what=${legend.toLowerCase()} />` : items.length ? html`<div class="picks">${items.map((it) => html`
      <label key=${it.ID}><input type="checkbox" name=${name} value=${it.ID} checked=${selected.includes(it.ID)}
        onChange=${() => onToggle(it.ID)} /> ${it.Name}</label>`)}</div>` : html`<${Empty}>None defined yet.</${Empty}>`}
  </fieldset>`;
}

function toggle(list, id) {
  return list.includes(id) ? list.filter((x) => x !== id) : [...list, id];
}

function Links({ dc, kind, items, label }) {
  if (!items || !items.length) return html`<span class="muted">none</span>`;
  return html`<ul class="tags" aria-label=${label}>${items.map((it) => html`<li key=${it.ID}>
    <a href=${uiPath(dc, 'acls', kind, encodeURIComponent(it.ID))}>${it.Name}</a></li>`)}</ul>`;
}

function ListPage({ dc, kind, title, path, render, what }) {
  const { data, error } = useBlocking(path, { dc });
  return html`
    <${Tabs} dc=${dc} kind=${kind} />
    <${PageHeader} title=${title} count=${data ? data.length : undefined}>
      <a class="button primary" href=${uiPath(dc, 'acls', kind, 'create')}>Create</a>
    </${PageHeader}>
    <${ErrorBox} error=${error} what=${what} />
    ${data === undefined ? (error ? null : html`<${Loading} what=${what} />`) : data.length
      ? html`<ul class="list" aria-label=${title}>${data.map(render)}</ul>` : html`<${Empty}>No ${what} yet.</${Empty}>`}
  `;
}

// One document (token, policy, role) for a detail page, read once (and after
// `reload()`); `null` while creating.
function useDoc(dc, path, creating) {
  const [state, setState] = useState({ data: creating ? null : undefined, error: null });
  const [generation, setGeneration] = useState(0);
  useEffect(() => {
    if (creating) { setState({ data: null, error: null }); return undefined; }
    const ctl = new AbortController();
    api(path, { dc, signal: ctl.signal })
      .then((r) => setState({ data: r.data, error: null }))
      .catch((err) => !ctl.signal.aborted && setState({ data: undefined, error: err }));
    return () => ctl.abort();
  }, [dc, path, creating, generation]);
  return { ...state, reload: () => setGeneration((g) => g + 1) };
}

// ----- tokens -----

export function TokensPage({ dc, self }) {
  const mine = self && self.data ? self.data.AccessorID : '';
  return html`<${ListPage} dc=${dc} kind="tokens" title="Tokens" path="/v1/acl/tokens" what="tokens"
    render=${(t) => html`<li key=${t.AccessorID} class="row" data-token=${t.AccessorID}>
      <div class="row-main">
        <a class="name" href=${uiPath(dc, 'acls', 'tokens', t.AccessorID)}>${t.Description || short(t.AccessorID)}</a>
        ${t.AccessorID === mine ? html`<span class="kind you">your token</span>` : null}
        ${t.Local ? html`<span class="kind">local</span>` : null}
      </div>
      <div class="row-detail"><code title="AccessorID">${t.AccessorID}</code>
        <${Links} dc=${dc} kind="policies" items=${t.Policies} label="Policies" />
        <${Links} dc=${dc} kind="roles" items=${t.Roles} label="Roles" /></div>
    </li>`} />`;
}

export function TokenPage({ dc, id, self }) {
  const creating = id === 'create';
  const doc = useDoc(dc, `/v1/acl/token/${encodeURIComponent(id)}`, creating);
  const policies = useRead('/v1/acl/policies', { dc });
  const roles = useRead('/v1/acl/roles', { dc });
  const [form, setForm] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [reveal, setReveal] = useState(false);
  const token = doc.data;
  useEffect(() => {
    if (token === undefined) return;
    setForm({
      Description: token ? token.Description : '',
      Policies: token ? (token.Policies || []).map((p) => p.ID) : [],
      Roles: token ? (token.Roles || []).map((r) => r.ID) : [],
      Local: token ? token.Local : false,
    });
  }, [token]);

  async function save(event) {
    event.preventDefault();
    setError(null);
    setBusy(true);
    const body = {
      Description: form.Description,
      Policies: form.Policies.map((ID) => ({ ID })),
      Roles: form.Roles.map((ID) => ({ ID })),
      Local: form.Local,
    };
    try {
      const r = await api(creating ? '/v1/acl/token' : `/v1/acl/token/${encodeURIComponent(id)}`,
        { dc, method: 'PUT', body: JSON.stringify(body) });
      if (creating) navigate(uiPath(dc, 'acls', 'tokens', r.data.AccessorID)); else doc.reload();
    } catch (err) { setError(err); }
    setBusy(false);
  }

  async function remove() {
    setBusy(true);
    try {
      await api(`/v1/acl/token/${encodeURIComponent(id)}`, { dc, method: 'DELETE' });
      navigate(uiPath(dc, 'acls', 'tokens'));
    } catch (err) { setError(err); setBusy(false); }
  }

  const title = creating ? 'New token' : token ? (token.Description || short(token.AccessorID)) : short(id);
  const crumbs = [['Tokens', uiPath(dc, 'acls', 'tokens')], [creating ? 'New' : short(id)]];
  const mine = self && self.data && token && self.data.AccessorID === token.AccessorID;
  return html`
    <${Tabs} dc=${dc} kind="tokens" />
    <${PageHeader} title=${title} crumbs=${crumbs}>
      ${token && token.SecretID && !mine && token.AccessorID !== ANONYMOUS ? html`<button type="button" onClick=${() => setToken(token.SecretID)}>Log in with this token</button>` : null}
      ${token && token.AccessorID !== ANONYMOUS ? html`<${Confirm} label="Delete" busy=${busy} onConfirm=${remove} />` : null}
    </${PageHeader}>
    <${ErrorBox} error=${doc.error} what="the token" />
    ${token ? html`<dl class="facts">
      <div><dt>AccessorID</dt><dd><code data-field="accessor">${token.AccessorID}</code></dd></div>
      <div class="wide"><dt>SecretID</dt><dd><code data-field="secret">${reveal ? token.SecretID : '••••••••-••••-••••-••••-••••••••••••'}</code>
        <button type="button" class="small" aria-pressed=${reveal ? 'true' : 'false'} onClick=${() => setReveal(!reveal)}>${reveal ? 'Hide' : 'Show'}</button></dd></div>
      <div><dt>Scope</dt><dd>${token.Local ? 'this datacenter' : 'global'}</dd></div>
      ${token.CreateTime ? html`<div><dt>Created</dt><dd>${new Date(token.CreateTime).toLocaleString()}</dd></div>` : null}
    </dl>` : null}
    ${form ? html`<form class="editor" onSubmit=${save}>
      <label class="field">Description <input name="description" value=${form.Description}
        onInput=${(e) => setForm({ ...form, Description: e.target.value })} /></label>
      <${Picker} legend="Policies" name="policy" items=${policies.data} selected=${form.Policies}
        onToggle=${(pid) => setForm({ ...form, Policies: toggle(form.Policies, pid) })} />
      <${Picker} legend="Roles" name="role" items=${roles.data} selected=${form.Roles}
        onToggle=${(rid) => setForm({ ...form, Roles: toggle(form.Roles, rid) })} />
      ${creating ? html`<label class="check-field"><input type="checkbox" checked=${form.Local}
        onChange=${(e) => setForm({ ...form, Local: e.target.checked })} /> Local to this datacenter</label>` : null}
      <${ErrorBox} error=${error || policies.error || roles.error} what="policies and roles" />
      <div class="form-actions">
        <button type="submit" class="primary" disabled=${busy}>${creating ? 'Create' : 'Save'}</button>
        <a class="button" href=${uiPath(dc, 'acls', 'tokens')}>Cancel</a>
      </div>
    </form>` : doc.error ? null : html`<${Loading} what="the token" />`}
  `;
}

// ----- policies -----

export function PoliciesPage({ dc }) {
  return html`<${ListPage} dc=${dc} kind="policies" title="Policies" path="/v1/acl/policies" what="policies"
    render=${(p) => html`<li key=${p.ID} class="row" data-policy=${p.Name}>
      <div class="row-main"><a class="name" href=${uiPath(dc, 'acls', 'policies', p.ID)}>${p.Name}</a>
        ${p.ID === GLOBAL_MANAGEMENT ? html`<span class="kind">built in</span>` : null}</div>
      <div class="row-detail">${p.Description ? html`<span>${p.Description}</span>` : null}
        <span>${p.Datacenters && p.Datacenters.length ? p.Datacenters.join(', ') : 'all datacenters'}</span></div>
    </li>`} />`;
}

// The servers answer a rule syntax error with its place: "Failed to parse ACL rules: At 2:6: syntax error".
export function rulePosition(message) {
  const m = /At (\d+):(\d+)/.exec(message || '');
  return m ? { line: Number(m[1]), column: Number(m[2]) } : null;
}

function offsetOf(text, { line, column }) {
  const lines = text.split('\n');
  let offset = 0;
  for (let i = 0; i < Math.min(line - 1, lines.length); i += 1) offset += lines[i].length + 1;
  return Math.min(offset + Math.max(column - 1, 0), text.length);
}

export function PolicyPage({ dc, id }) {
  const creating = id === 'create';
  const doc = useDoc(dc, `/v1/acl/policy/${encodeURIComponent(id)}`, creating);
  const users = useRead('/v1/acl/tokens', { dc, query: { policy: creating ? undefined : id }, deps: [creating] });
  const [form, setForm] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const rules = useRef(null);
  const policy = doc.data;
  const builtin = id === GLOBAL_MANAGEMENT;
  useEffect(() => {
    if (policy === undefined) return;
    setForm({
      Name: policy ? policy.Name : '',
      Description: policy ? policy.Description : '',
      Rules: policy ? policy.Rules || '' : '',
      Datacenters: policy ? (policy.Datacenters || []).join(', ') : '',
    });
  }, [policy]);

  async function save(event) {
    event.preventDefault();
    setError(null);
    if (!form.Name.trim()) { setError(new Error('Give the policy a name.')); return; }
    setBusy(true);
    const body = {
      Name: form.Name.trim(),
      Description: form.Description,
      Rules: form.Rules,
      Datacenters: form.Datacenters.split(',').map((s) => s.trim()).filter(Boolean),
    };
    try {
      await api(creating ? '/v1/acl/policy' : `/v1/acl/policy/${encodeURIComponent(id)}`,
        { dc, method: 'PUT', body: JSON.stringify(body) });
      navigate(uiPath(dc, 'acls', 'policies'));
    } catch (err) {
      setError(err);
      setBusy(false);
      const at = err instanceof ApiError ? rulePosition(err.message) : null;
      if (at && rules.current) {
        // Put the caret where the servers found the problem.
        const offset = offsetOf(form.Rules, at);
        rules.current.focus();
        rules.current.setSelectionRange(offset, offset);
      }
    }
  }

  async function remove() {
    setBusy(true);
    try {
      await api(`/v1/acl/policy/${encodeURIComponent(id)}`, { dc, method: 'DELETE' });
      navigate(uiPath(dc, 'acls', 'policies'));
    } catch (err) { setError(err); setBusy(false); }
  }

  const title = creating ? 'New policy' : policy ? policy.Name : short(id);
  const crumbs = [['Policies', uiPath(dc, 'acls', 'policies')], [creating ? 'New' : title]];
  const at = error && error.status === 400 ? rulePosition(error.message) : null;
  const ruleError = error && error.status === 400 && /rule/i.test(error.message);
  return html`
    <${Tabs} dc=${dc} kind="policies" />
    <${PageHeader} title=${title} crumbs=${crumbs}>
      ${policy && !builtin ? html`<${Confirm} label="Delete" busy=${busy} onConfirm=${remove} />` : null}
    </${PageHeader}>
    <${ErrorBox} error=${doc.error} what="the policy" />
    ${form ? html`<form class="editor" onSubmit=${save}>
      ${builtin ? html`<p class="hint">The built-in management policy grants everything; it cannot be changed.</p>` : null}
      <label class="field">Name <input name="name" required value=${form.Name} readonly=${builtin}
        onInput=${(e) => setForm({ ...form, Name: e.target.value })} /></label>
      <label class="field">Description <input name="description" value=${form.Description} readonly=${builtin}
        onInput=${(e) => setForm({ ...form, Description: e.target.value })} /></label>
      <label class="field">Rules <span class="hint">(HCL or JSON, as <code>service "web" { policy = "read" }</code>)</span>
        <textarea ref=${rules} name="rules" rows="10" spellcheck=${false} readonly=${builtin}
          aria-invalid=${ruleError ? 'true' : 'false'} aria-describedby=${ruleError ? 'rules-error' : undefined}
          value=${form.Rules} onInput=${(e) => setForm({ ...form, Rules: e.target.value })}></textarea></label>
      ${ruleError ? html`<div id="rules-error" class="error" role="alert"><strong>The rules do not parse${at ? ` (line ${at.line}, column ${at.column})` : ''}</strong>
        <p>${error.message}</p></div>` : html`<${ErrorBox} error=${error} what="the policy" />`}
      <label class="field">Datacenters <span class="hint">(comma-separated; empty: all)</span>
        <input name="datacenters" value=${form.Datacenters} readonly=${builtin}
          onInput=${(e) => setForm({ ...form, Datacenters: e.target.value })} /></label>
      ${builtin ? null : html`<div class="form-actions">
        <button type="submit" class="primary" disabled=${busy}>${creating ? 'Create' : 'Save'}</button>
        <a class="button" href=${uiPath(dc, 'acls', 'policies')}>Cancel</a>
      </div>`}
    </form>` : doc.error ? null : html`<${Loading} what="the policy" />`}
    ${creating || !users.data ? null : html`<section aria-labelledby="policy-users"><h2 id="policy-users">Tokens with this policy</h2>
      ${users.data.length ? html`<ul class="tags">${users.data.map((t) => html`<li key=${t.AccessorID}>
        <a href=${uiPath(dc, 'acls', 'tokens', t.AccessorID)}>${t.Description || short(t.AccessorID)}</a></li>`)}</ul>`
        : html`<${Empty}>No token links it directly.</${Empty}>`}</section>`}
  `;
}

// ----- roles -----

export function RolesPage({ dc }) {
  return html`<${ListPage} dc=${dc} kind="roles" title="Roles" path="/v1/acl/roles" what="roles"
    render=${(r) => html`<li key=${r.ID} class="row" data-role=${r.Name}>
      <div class="row-main"><a class="name" href=${uiPath(dc, 'acls', 'roles', r.ID)}>${r.Name}</a></div>
      <div class="row-detail">${r.Description ? html`<span>${r.Description}</span>` : null}
        <${Links} dc=${dc} kind="policies" items=${r.Policies} label="Policies" /></div>
    </li>`} />`;
}

export function RolePage({ dc, id }) {
  const creating = id === 'create';
  const doc = useDoc(dc, `/v1/acl/role/${encodeURIComponent(id)}`, creating);
  const policies = useRead('/v1/acl/policies', { dc });
  const [form, setForm] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const role = doc.data;
  useEffect(() => {
    if (role === undefined) return;
    setForm({
      Name: role ? role.Name : '',
      Description: role ? role.Description : '',
      Policies: role ? (role.Policies || []).map((p) => p.ID) : [],
    });
  }, [role]);

  async function save(event) {
    event.preventDefault();
    setError(null);
    if (!form.Name.trim()) { setError(new Error('Give the role a name.')); return; }
    setBusy(true);
    const body = { Name: form.Name.trim(), Description: form.Description, Policies: form.Policies.map((ID) => ({ ID })) };
    try {
      await api(creating ? '/v1/acl/role' : `/v1/acl/role/${encodeURIComponent(id)}`,
        { dc, method: 'PUT', body: JSON.stringify(body) });
      navigate(uiPath(dc, 'acls', 'roles'));
    } catch (err) { setError(err); setBusy(false); }
  }

  async function remove() {
    setBusy(true);
    try {
      await api(`/v1/acl/role/${encodeURIComponent(id)}`, { dc, method: 'DELETE' });
      navigate(uiPath(dc, 'acls', 'roles'));
    } catch (err) { setError(err); setBusy(false); }
  }

  const title = creating ? 'New role' : role ? role.Name : short(id);
  const crumbs = [['Roles', uiPath(dc, 'acls', 'roles')], [creating ? 'New' : title]];
  return html`
    <${Tabs} dc=${dc} kind="roles" />
    <${PageHeader} title=${title} crumbs=${crumbs}>
      ${role ? html`<${Confirm} label="Delete" busy=${busy} onConfirm=${remove} />` : null}
    </${PageHeader}>
    <${ErrorBox} error=${doc.error} what="the role" />
    ${form ? html`<form class="editor" onSubmit=${save}>
      <label class="field">Name <input name="name" required value=${form.Name}
        onInput=${(e) => setForm({ ...form, Name: e.target.value })} /></label>
      <label class="field">Description <input name="description" value=${form.Description}
        onInput=${(e) => setForm({ ...form, Description: e.target.value })} /></label>
      <${Picker} legend="Policies" name="policy" items=${policies.data} selected=${form.Policies}
        onToggle=${(pid) => setForm({ ...form, Policies: toggle(form.Policies, pid) })} />
      <${ErrorBox} error=${error || policies.error} what="the role" />
      <div class="form-actions">
        <button type="submit" class="primary" disabled=${busy}>${creating ? 'Create' : 'Save'}</button>
        <a class="button" href=${uiPath(dc, 'acls', 'roles')}>Cancel</a>
      </div>
    </form>` : doc.error ? null : html`<${Loading} what="the role" />`}
  `;
}

export function AclPage({ dc, rest, self }) {
  const [kind, id] = rest;
  if (kind === 'tokens') return id ? html`<${TokenPage} key=${id} dc=${dc} id=${id} self=${self} />` : html`<${TokensPage} dc=${dc} self=${self} />`;
  if (kind === 'policies') return id ? html`<${PolicyPage} key=${id} dc=${dc} id=${id} />` : html`<${PoliciesPage} dc=${dc} />`;
  if (kind === 'roles') return id ? html`<${RolePage} key=${id} dc=${dc} id=${id} />` : html`<${RolesPage} dc=${dc} />`;
  return html`<${TokensPage} dc=${dc} self=${self} />`;
}
