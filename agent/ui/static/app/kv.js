// Key/Value: folder listing (live), search by prefix, editor, export/import.
//
// Routes: /ui/<dc>/kv/<folder/>         a folder ('' is the root)
//         /ui/<dc>/kv/<folder/>create   a new key or folder in it
//         /ui/<dc>/kv/<key>/edit        one key
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, decodeValue, encodeText, useBlocking } from './api.js';
import {
  html, Confirm, Empty, ErrorBox, Icon, Loading, PageHeader, navigate, segments, uiPath,
} from './ui.js';

// Consul's txn limit: at most 64 operations per transaction.
const TXN_OPS = 64;

function kvHref(dc, path, suffix = '') {
  return uiPath(dc, 'kv', segments(path) + suffix);
}

function parentOf(key) {
  const trimmed = key.endsWith('/') ? key.slice(0, -1) : key;
  const cut = trimmed.lastIndexOf('/');
  return cut < 0 ? '' : trimmed.slice(0, cut + 1);
}

function crumbs(dc, path, last) {
  const out = [['Key/Value', kvHref(dc, '')]];
  const parts = path.split('/').filter(Boolean);
  let acc = '';
  parts.forEach((p, i) => {
    acc += `${p}/`;
    const isLast = i === parts.length - 1 && last;
    out.push([p, isLast ? null : kvHref(dc, acc)]);
  });
  if (!last) out[out.length - 1] = [out[out.length - 1][0], null];
  return out;
}

export function KVFolder({ dc, folder }) {
  const listing = useBlocking(`/v1/kv/${segments(folder)}`, { dc, query: { keys: true, separator: '/' }, allow404: true });
  const [search, setSearch] = useState('');
  const [found, setFound] = useState(null);
  const [message, setMessage] = useState(null);
  const [error, setError] = useState(null);
  const fileInput = useRef(null);

  useEffect(() => {
    if (!search) { setFound(null); return undefined; }
    const ctl = new AbortController();
    const timer = setTimeout(() => {
      api(`/v1/kv/${segments(folder + search)}`, { dc, query: { keys: true }, allow404: true, signal: ctl.signal })
        .then((r) => setFound(r.data || []))
        .catch((err) => !ctl.signal.aborted && setError(err));
    }, 200);
    return () => { ctl.abort(); clearTimeout(timer); };
  }, [search, folder, dc]);

  const keys = (listing.data || []).filter((k) => k !== folder);
  const shown = found ?? keys;

  async function remove(key) {
    setError(null);
    try {
      await api(`/v1/kv/${segments(key)}`, { dc, method: 'DELETE', query: key.endsWith('/') ? { recurse: true } : {} });
      setMessage(`Deleted ${key}`);
    } catch (err) { setError(err); }
  }

  async function exportFolder() {
    setError(null);
    try {
      const r = await api(`/v1/kv/${segments(folder)}`, { dc, query: { recurse: true }, allow404: true });
      const body = (r.data || []).map((p) => ({ key: p.Key, flags: p.Flags, value: p.Value || '' }));
      const blob = new Blob([`${JSON.stringify(body, null, 2)}\n`], { type: 'application/json' });
      const a = document.createElement('a');
      a.href = URL.createObjectURL(blob);
      a.download = `kv-export${folder ? `-${folder.replace(/\/$/, '').replaceAll('/', '-')}` : ''}.json`;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 1000);
      setMessage(`Exported ${body.length} ${body.length === 1 ? 'key' : 'keys'}`);
    } catch (err) { setError(err); }
  }

  async function importFile(event) {
    const file = event.target.files[0];
    event.target.value = '';
    if (!file) return;
    setError(null);
    try {
      let entries;
      try { entries = JSON.parse(await file.text()); } catch (err) { throw new Error(`${file.name} is not JSON: ${err.message}`); }
      if (!Array.isArray(entries) || !entries.every((e) => e && typeof e.key === 'string')) {
        throw new Error(`${file.name} is not a "consul kv export" file: expected [{"key", "flags", "value"}, ...]`);
      }
      for (let i = 0; i < entries.length; i += TXN_OPS) {
        const ops = entries.slice(i, i + TXN_OPS).map((e) => ({
          KV: { Verb: 'set', Key: e.key, Value: e.value || '', Flags: Number(e.flags) || 0 },
        }));
        await api('/v1/txn', { dc, method: 'PUT', body: JSON.stringify(ops) });
      }
      setMessage(`Imported ${entries.length} ${entries.length === 1 ? 'key' : 'keys'}`);
    } catch (err) { setError(err); }
  }

  return html`
    <${PageHeader} title=${folder ? folder.split('/').filter(Boolean).pop() : 'Key/Value'} crumbs=${folder ? crumbs(dc, folder, false) : null}>
      <a class="button primary" href=${kvHref(dc, folder, 'create')}>Create</a>
      <button type="button" onClick=${exportFolder}>Export</button>
      <button type="button" onClick=${() => fileInput.current.click()}>Import</button>
      <input ref=${fileInput} type="file" accept="application/json,.json" hidden aria-label="Import file" onChange=${importFile} />
    </${PageHeader}>
    <form class="filters" role="search" onSubmit=${(e) => e.preventDefault()}>
      <div class="filter grow"><label for="f-search">Search by key prefix</label>
        <input id="f-search" type="search" data-search placeholder=${`${folder}…  ( / )`} value=${search}
          onInput=${(e) => setSearch(e.target.value)} /></div>
    </form>
    ${message ? html`<p class="notice" role="status">${message}</p>` : null}
    <${ErrorBox} error=${error || listing.error} what="keys" />
    ${listing.data === undefined && !listing.error ? html`<${Loading} what="keys" />` : shown.length ? html`
      <ul class="list kv" aria-label=${found ? 'Search results' : 'Keys'}>${shown.map((k) => {
        const name = found ? k : k.slice(folder.length);
        const isFolder = k.endsWith('/');
        return html`<li key=${k} class="row" data-key=${k}>
          <div class="row-main">
            <${Icon} name=${isFolder ? 'folder' : 'key'} />
            <a class="name" href=${isFolder ? kvHref(dc, k) : kvHref(dc, k, '/edit')}>${name}</a>
            <span class="sr-only">${isFolder ? 'folder' : 'key'}</span>
          </div>
          <div class="row-actions"><${Confirm} label=${`Delete`} onConfirm=${() => remove(k)} /></div>
        </li>`;
      })}</ul>` : html`<${Empty}>${found ? 'No key starts with that prefix.' : 'This folder is empty.'}</${Empty}>`}
  `;
}

function validate(mode, text) {
  if (mode === 'json') {
    try { JSON.parse(text); return Promise.resolve(null); } catch (err) { return Promise.resolve(`Invalid JSON: ${err.message}`); }
  }
  if (mode === 'yaml') {
    // Loaded only here, so the first page stays small.
    return import('/ui/assets/vendor/js-yaml.mjs').then((yaml) => {
      try { yaml.load(text); return null; } catch (err) { return `Invalid YAML: ${err.message.split('\n')[0]}`; }
    });
  }
  return Promise.resolve(null);
}

export function KVEditor({ dc, keyPath, creating }) {
  const folder = creating ? keyPath : parentOf(keyPath);
  const [pair, setPair] = useState(creating ? { Key: '', Flags: 0, ModifyIndex: 0 } : undefined);
  const [name, setName] = useState('');
  const [text, setText] = useState('');
  const [binary, setBinary] = useState(false);
  const [flags, setFlags] = useState('0');
  const [mode, setMode] = useState('text');
  const [problem, setProblem] = useState(null);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    if (creating) return;
    api(`/v1/kv/${segments(keyPath)}`, { dc, allow404: true })
      .then((r) => {
        if (!r.data) { setPair(null); return; }
        const p = r.data[0];
        const value = decodeValue(p.Value);
        setPair(p); setText(value.text); setBinary(value.binary); setFlags(String(p.Flags));
        const t = value.text.trim();
        if (t.startsWith('{') || t.startsWith('[')) { try { JSON.parse(t); setMode('json'); } catch { /* text */ } }
      })
      .catch(setError);
  }, [keyPath, dc, creating]);

  useEffect(() => {
    let live = true;
    validate(mode, text).then((p) => live && setProblem(p));
    return () => { live = false; };
  }, [mode, text]);

  const fullKey = creating ? folder + name : keyPath;
  const isFolder = creating && name.endsWith('/');

  async function save(event) {
    event.preventDefault();
    setError(null);
    if (creating && !name) { setError(new Error('Give the key a name.')); return; }
    if (!/^\d+$/.test(flags)) { setError(new Error('Flags must be a whole number (0 to 2^64-1).')); return; }
    setBusy(true);
    try {
      const body = isFolder ? '' : (binary ? Uint8Array.from(atob(text), (c) => c.charCodeAt(0)) : text);
      const r = await api(`/v1/kv/${segments(fullKey)}`, {
        dc, method: 'PUT', body, query: { flags: isFolder ? undefined : flags, cas: pair.ModifyIndex },
      });
      if (r.data !== true) {
        throw new Error(creating ? `${fullKey} already exists.` : `${fullKey} was changed by someone else since you opened it; reload to see the new value.`);
      }
      navigate(kvHref(dc, isFolder ? fullKey : parentOf(fullKey)));
    } catch (err) { setError(err); setBusy(false); }
  }

  async function remove() {
    setBusy(true);
    try {
      await api(`/v1/kv/${segments(keyPath)}`, { dc, method: 'DELETE', query: { cas: pair.ModifyIndex } });
      navigate(kvHref(dc, folder));
    } catch (err) { setError(err); setBusy(false); }
  }

  const title = creating ? 'New key or folder' : keyPath.split('/').pop();
  const crumbList = creating ? [...crumbs(dc, folder, true), ['New']] : crumbs(dc, keyPath, false);
  if (pair === undefined) {
    return html`<${PageHeader} title=${title} crumbs=${crumbList} /><${ErrorBox} error=${error} what="the key" />${error ? null : html`<${Loading} what="the key" />`}`;
  }
  if (pair === null) {
    return html`<${PageHeader} title=${title} crumbs=${crumbList} />
      <div class="error" role="alert"><strong>Key not found</strong><p>${keyPath} does not exist (any more).</p></div>`;
  }
  return html`
    <${PageHeader} title=${title} crumbs=${crumbList}>
      ${creating ? null : html`<${Confirm} label="Delete" busy=${busy} onConfirm=${remove} />`}
    </${PageHeader}>
    <form class="editor" onSubmit=${save}>
      ${creating ? html`<label class="field">Key or folder <span class="hint">(end with / to create a folder)</span>
        <span class="prefixed"><span class="prefix">${folder}</span><input name="key" required autofocus value=${name}
          onInput=${(e) => setName(e.target.value)} /></span></label>` : null}
      ${isFolder ? null : html`
        <fieldset class="modes"><legend>View value as</legend>
          ${['text', 'json', 'yaml'].map((m) => html`<label><input type="radio" name="mode" value=${m} checked=${mode === m}
            onChange=${() => setMode(m)} /> ${m.toUpperCase() === 'TEXT' ? 'Text' : m.toUpperCase()}</label>`)}
        </fieldset>
        <label class="field">Value ${binary ? html`<span class="hint">(binary, shown as base64)</span>` : null}
          <textarea name="value" rows="12" spellcheck="false" class=${mode} aria-invalid=${problem ? 'true' : 'false'}
            aria-describedby="value-check" value=${text} onInput=${(e) => setText(e.target.value)}></textarea></label>
        <p id="value-check" class=${problem ? 'invalid' : 'valid'} aria-live="polite">${problem || (mode === 'text' ? '' : `Valid ${mode.toUpperCase()}`)}</p>
        <label class="field narrow">Flags <input name="flags" inputmode="numeric" value=${flags} onInput=${(e) => setFlags(e.target.value)} /></label>`}
      <${ErrorBox} error=${error} what="the key" />
      <div class="form-actions">
        <button type="submit" class="primary" disabled=${busy}>${creating ? 'Create' : 'Save'}</button>
        <a class="button" href=${kvHref(dc, folder)}>Cancel</a>
      </div>
    </form>
  `;
}
