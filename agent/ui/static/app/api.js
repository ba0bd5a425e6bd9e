// The agent's HTTP API as the UI uses it: one fetch wrapper, and blocking queries.
//
// Every call carries ?dc= (the datacenter in the URL) and, once ACLs exist, the
// token kept in localStorage as X-Consul-Token: a login page only has to call
// setToken(). Errors come back as ApiError with the HTTP status (0 when the
// agent could not be reached), so pages can show them in place.
import { useEffect, useState } from 'preact/hooks';

const TOKEN_KEY = 'consul-grpc.token';

export function getToken() {
  try { return localStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}

const tokenListeners = new Set();

// Called after every login and logout (the app re-reads everything with the new token).
export function onTokenChange(fn) {
  tokenListeners.add(fn);
  return () => tokenListeners.delete(fn);
}

export function setToken(token) {
  if (token) localStorage.setItem(TOKEN_KEY, token); else localStorage.removeItem(TOKEN_KEY);
  for (const fn of tokenListeners) fn();
}

// Whether ACLs are on, from a read of /v1/acl/token/self: 'on' (200, or 403 for a
// token the servers do not know), 'off' (401 "ACL support disabled"), else 'unknown'.
export function aclMode(self) {
  if (self.data) return 'on';
  if (!self.error) return 'unknown';
  if (self.error.status === 403) return 'on';
  if (self.error.status === 401) return 'off';
  return 'unknown';
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
  get lost() { return this.status === 0; }
}

function url(path, dc, query) {
  const params = new URLSearchParams();
  if (dc) params.set('dc', dc);
  for (const [k, v] of Object.entries(query || {})) {
    if (v === undefined || v === null || v === false) continue;
    params.set(k, v === true ? '' : String(v));
  }
  const qs = params.toString().replace(/=(?=&|$)/g, '');
  return qs ? `${path}?${qs}` : path;
}

// One call. `allow404` answers a 404 as {data: null} (KV and nodes use it);
// `token` replaces the stored one (the login checks a token before keeping it).
export async function api(path, { dc, query, method = 'GET', body, signal, allow404, token = getToken() } = {}) {
  const headers = {};
  if (token) headers['X-Consul-Token'] = token;
  let response;
  try {
    response = await fetch(url(path, dc, query), { method, body, headers, signal });
  } catch (err) {
    if (signal && signal.aborted) throw err;
    throw new ApiError(0, 'Lost contact with the agent: is it still running?');
  }
  const index = Number(response.headers.get('X-Consul-Index') || 0);
  if (response.status === 404 && allow404) return { data: null, index, status: 404 };
  const text = await response.text();
  if (!response.ok) {
    let message = text.trim() || response.statusText;
    if (response.status === 403) message = `Permission denied: ${message}`;
    throw new ApiError(response.status, message);
  }
  let data = text;
  if ((response.headers.get('Content-Type') || '').includes('application/json')) {
    data = text ? JSON.parse(text) : null;
  }
  return { data, index, status: response.status };
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

// How long one blocking query may wait. Short enough that a query the agent
// keeps running after the page left it (the HTTP server does not cancel a
// handler when its client goes away) ends soon; long enough to cost nothing.
const BLOCK_WAIT = '60s';

// A live read: the first answer at once, then one blocking query at a time
// (?index=&wait=), so an open list costs one outstanding request. Errors are
// kept beside the last good data and retried with a growing delay (1 s .. 10 s).
export function useBlocking(path, { dc, query, allow404 = false } = {}) {
  const [state, setState] = useState({ data: undefined, error: null, index: 0 });
  const key = JSON.stringify([path, dc, query]);
  useEffect(() => {
    const ctl = new AbortController();
    setState({ data: undefined, error: null, index: 0 });
    (async () => {
      let index = 0;
      let backoff = 0;
      while (!ctl.signal.aborted) {
        const started = Date.now();
        try {
          const q = index ? { ...query, index, wait: BLOCK_WAIT } : query;
          const r = await api(path, { dc, query: q, signal: ctl.signal, allow404 });
          if (ctl.signal.aborted) return;
          backoff = 0;
          const same = r.index === index;
          // An index that went backwards means the servers were reset: start over.
          index = r.index < index ? 0 : r.index;
          setState({ data: r.data, error: null, index, status: r.status });
          // An answer that came back at once with the same index did not block
          // (no index support): do not spin.
          if (same && Date.now() - started < 1000) await sleep(1000, ctl.signal);
        } catch (err) {
          if (ctl.signal.aborted) return;
          setState((s) => ({ ...s, error: err }));
          backoff = Math.min(backoff ? backoff * 2 : 1000, 10000);
          await sleep(backoff, ctl.signal);
        }
      }
    })();
    return () => ctl.abort();
  }, [key]);
  return state;
}

// A one-shot read, refreshed when `deps` change or every `every` ms (for the
// few pages whose source has no index: agent self, members).
export function useRead(path, { dc, query, every = 0, allow404 = false, deps = [] } = {}) {
  const [state, setState] = useState({ data: undefined, error: null });
  const key = JSON.stringify([path, dc, query, every, ...deps]);
  useEffect(() => {
    const ctl = new AbortController();
    const load = () => api(path, { dc, query, signal: ctl.signal, allow404 })
      .then((r) => !ctl.signal.aborted && setState({ data: r.data, error: null }))
      .catch((err) => !ctl.signal.aborted && setState((s) => ({ ...s, error: err })));
    load();
    const timer = every ? setInterval(load, every) : 0;
    return () => { ctl.abort(); if (timer) clearInterval(timer); };
  }, [key]);
  return state;
}

// KV values are base64 of bytes; the editor shows UTF-8 text when they are text.
export function decodeValue(b64) {
  if (!b64) return { text: '', binary: false };
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  try {
    return { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes), binary: false };
  } catch {
    return { text: b64, binary: true };
  }
}

export function encodeText(text) {
  const bytes = new TextEncoder().encode(text);
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}
