// eddy web UI: polls this node's JSON API about every second and renders
// it. All data goes into the DOM as text nodes, never parsed as HTML.
// The only write is "cancel job", sent with the token from the header field.
'use strict';

const POLL_MS = 1000;
const FETCH_TIMEOUT_MS = 8000;
const HISTORY_ROWS = 50;
const CHECKPOINT_ROWS = 20;
const ERROR_ROWS = 30;
const CONFIRM_MS = 5000;
const TOKEN_KEY = 'eddy.token';

const state = {
  polls: 0,
  armed: null, // {job, until}: a cancel button clicked once, waiting for the confirming click
  apiErrors: [], // {ms, where, error}: failed API calls, newest last
};

// --- DOM helpers ---

const $ = (id) => document.getElementById(id);

// el builds an element: attrs go to dataset (keys starting with "data-"),
// to className ("class") or to properties; children are nodes or text.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k.startsWith('data-')) e.setAttribute(k, String(v));
    else if (k === 'class') e.className = v;
    else e[k] = v;
  }
  for (const c of children) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const td = (text, cls) => el('td', cls ? { class: cls } : null, text);
const badge = (text, kind) => el('span', { class: 'badge ' + (kind || text) }, text);

// rows replaces the rows of tbody, unless they are equal to the new ones
// (so that an unchanged table keeps its nodes: text selection, a click
// between two polls).
function rows(tbody, list, cols, empty) {
  if (list.length === 0) list = [el('tr', { class: 'empty' }, el('td', { colSpan: cols }, empty))];
  const old = tbody.children;
  if (old.length === list.length && list.every((r, i) => r.isEqualNode(old[i]))) return;
  tbody.replaceChildren(...list);
}

// --- formatting ---

function fmtTime(ms) {
  if (!ms) return '–';
  return new Date(ms).toISOString().replace('T', ' ').slice(0, 19) + 'Z';
}

function fmtAgo(date) {
  const s = Math.max(0, Math.round((Date.now() - new Date(date).getTime()) / 1000));
  if (!isFinite(s)) return '–';
  if (s < 90) return s + 's ago';
  if (s < 5400) return Math.round(s / 60) + 'm ago';
  return Math.round(s / 3600) + 'h ago';
}

const fmtNum = (n) => (n === undefined || n === null || n < 0 ? '–' : Number(n).toLocaleString('en-US'));

function fmtDuration(ms) {
  if (ms === null || ms < 0) return '–';
  return ms < 1000 ? ms + ' ms' : (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + ' s';
}

function fmtBytes(b) {
  if (b === null) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return (i === 0 ? b : b.toFixed(1)) + ' ' + units[i];
}

// snapshotBytes reads the size from a snapshot reference "key#bytes#crc32c".
function snapshotBytes(ref) {
  const parts = String(ref || '').split('#');
  const n = parts.length >= 3 ? Number(parts[parts.length - 2]) : NaN;
  return Number.isFinite(n) ? n : null;
}

// --- API ---

function token() { return $('token').value.trim(); }

async function api(path, opts) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
  try {
    const resp = await fetch(path, { ...opts, signal: ctl.signal, cache: 'no-store' });
    const body = await resp.json().catch(() => null);
    if (!resp.ok) {
      const msg = body && body.error ? body.error : 'HTTP ' + resp.status;
      throw new Error(msg + (body && body.code ? ' [' + body.code + ']' : ''));
    }
    return body;
  } catch (e) {
    throw new Error(e.name === 'AbortError' ? 'timed out after ' + FETCH_TIMEOUT_MS / 1000 + 's' : e.message);
  } finally {
    clearTimeout(timer);
  }
}

function noteError(where, err) {
  const last = state.apiErrors[state.apiErrors.length - 1];
  if (last && last.where === where && last.error === err.message) { last.ms = Date.now(); return; }
  state.apiErrors.push({ ms: Date.now(), where, error: err.message });
  state.apiErrors = state.apiErrors.slice(-ERROR_ROWS);
}

const ENDPOINTS = {
  members: '/v1/cluster/members',
  raft: '/v1/cluster/raft',
  jobs: '/v1/jobs',
  partitions: '/v1/partitions',
  checkpoints: '/v1/checkpoints',
  history: '/v1/leases/history?limit=' + HISTORY_ROWS,
};

async function poll() {
  const names = Object.keys(ENDPOINTS);
  const results = await Promise.allSettled(names.map((n) => api(ENDPOINTS[n])));
  const data = {};
  let failed = 0;
  results.forEach((r, i) => {
    if (r.status === 'fulfilled') data[names[i]] = r.value;
    else { failed++; noteError('GET ' + ENDPOINTS[names[i]], r.reason); }
  });
  render(data, failed, names.length);
  setTimeout(poll, POLL_MS);
}

// --- rendering ---

function render(d, failed, total) {
  state.polls++;
  const conn = $('conn');
  conn.textContent = failed === 0 ? 'live' : failed === total ? 'node unreachable' : failed + ' of ' + total + ' requests failed';
  conn.className = 'badge ' + (failed === 0 ? 'ok' : 'bad');
  $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
  if (d.raft) renderRaft(d.raft);
  if (d.members) renderMembers(d.members);
  if (d.jobs) renderJobs(d.jobs);
  if (d.partitions) renderPartitions(d.partitions);
  if (d.checkpoints) renderCheckpoints(d.checkpoints);
  if (d.history) renderHistory(d.history);
  renderErrors(d.jobs || [], d.checkpoints || []);
  document.body.dataset.polls = state.polls;
}

function renderRaft(r) {
  $('node').textContent = 'node ' + r.id + ' (' + r.state + ')';
  const leader = r.leader_id ? 'leader ' + r.leader_id : 'no leader';
  $('raft-summary').textContent = leader + ' · term ' + r.term + ' · commit ' + r.commit_index +
    ' · applied ' + r.applied_index + ' · ' + (r.voters || []).length + ' voters';
}

function renderMembers(members) {
  const list = members.slice().sort((a, b) => a.id.localeCompare(b.id)).map((m) => {
    const role = (m.leader ? 'leader · ' : '') + m.raft + (m.leaving ? ' · leaving' : '');
    return el('tr', { 'data-member': m.id, 'data-status': m.status, 'data-raft': m.raft, 'data-leader': m.leader },
      td(m.id, 'id'), el('td', null, badge(m.status)), td(role), td(m.http_addr), td(fmtAgo(m.since)));
  });
  rows($('members'), list, 5, 'no members known');
}

function renderJobs(jobs) {
  const list = jobs.slice().sort((a, b) => a.name.localeCompare(b.name)).map((j) => {
    const st = j.status || {};
    const count = st.partition_count || j.partitions || 0;
    const cell = el('td');
    if (j.state !== 'cancelled') {
      const armed = state.armed && state.armed.job === j.name && state.armed.until > Date.now();
      cell.append(el('button', {
        type: 'button', class: armed ? 'danger armed' : 'danger', 'data-action': 'cancel', 'data-job': j.name,
        textContent: armed ? 'click again to cancel' : 'cancel',
        title: 'stop the job on every node (needs the API token when the cluster has one)',
      }));
    }
    return el('tr', { 'data-job': j.name, 'data-state': j.state },
      td(j.name, 'id'), el('td', null, badge(j.state)), td(count || '–', 'num'),
      td(j.modify_index || st.revision || '–', 'num'), td(fmtTime(st.submitted_ms)), cell);
  });
  rows($('jobs'), list, 6, 'no jobs');
}

function renderPartitions(parts) {
  const owners = {};
  const states = {};
  const list = parts.map((p) => {
    const pr = p.progress || {};
    if (p.owner) owners[p.owner] = (owners[p.owner] || 0) + 1;
    states[p.state] = (states[p.state] || 0) + 1;
    const moving = p.desired && p.owner !== p.desired;
    return el('tr', { 'data-partition': p.job + '/' + p.partition, 'data-owner': p.owner || '', 'data-state': p.state },
      td(p.job), td(p.partition, 'num'), td(p.owner || '–', 'id'),
      td(p.desired || '–', moving ? 'muted moving' : 'muted'), td(p.epoch || '–', 'num'),
      el('td', null, badge(p.state)), td(fmtNum(pr.offset), 'num'), td(fmtNum(pr.lag), 'num'),
      td(pr.watermark_ms ? fmtTime(pr.watermark_ms) : '–'));
  });
  rows($('partitions'), list, 9, 'no partitions');
  const by = (o) => Object.keys(o).sort().map((k) => k + ' ' + o[k]).join(', ');
  $('partition-summary').textContent = parts.length ? parts.length + ' · ' + by(states) + ' · owners: ' + (by(owners) || 'none') : '';
}

// renderCheckpoints shows the newest CHECKPOINT_ROWS checkpoints and every
// savepoint (kept until deleted, so possibly older).
function renderCheckpoints(cps) {
  const order = (a, b) => a.job.localeCompare(b.job) || b.id - a.id;
  const newest = cps.filter((c) => !c.savepoint).sort(order).slice(0, CHECKPOINT_ROWS);
  const sorted = newest.concat(cps.filter((c) => c.savepoint)).sort(order);
  const list = sorted.map((c) => {
    const st = c.complete ? 'complete' : c.aborted ? 'aborted' : 'pending';
    const kind = c.savepoint ? 'savepoint' : 'checkpoint';
    let size = 0;
    for (const a of c.acks || []) {
      const b = snapshotBytes(a.snapshot);
      size = size === null || b === null ? null : size + b;
    }
    const dur = c.complete && c.completed_ms && c.started_ms ? c.completed_ms - c.started_ms : null;
    return el('tr', { 'data-checkpoint': c.job + '/' + c.id, 'data-state': st, 'data-kind': kind, title: c.abort_reason || '' },
      td(c.job), td(c.id, 'num'), td(kind, c.savepoint ? 'id' : 'muted'), el('td', null, badge(st)), td((c.acks || []).length + '/' + c.partitions, 'num'),
      td(fmtDuration(dur), 'num'), td(c.acks && c.acks.length ? fmtBytes(size) : '–', 'num'), td(fmtTime(c.completed_ms)));
  });
  rows($('checkpoints'), list, 8, 'no checkpoints');
}

function renderHistory(events) {
  const list = events.slice(-HISTORY_ROWS).reverse().map((e) =>
    el('tr', { 'data-lease-event': e.index, 'data-kind': e.kind },
      td(fmtTime(e.time_ms)), td(e.index, 'num'), el('td', null, badge(e.kind)), td(e.job + '/' + e.partition),
      td(e.owner, 'id'), td(e.prev_owner || '', 'muted'), td(e.epoch, 'num')));
  rows($('lease-history'), list, 7, 'no lease events');
}

// renderErrors lists partition failures from the jobs' status, aborted
// checkpoints and this page's failed API calls, newest first.
function renderErrors(jobs, cps) {
  const errs = [];
  for (const j of jobs) {
    for (const p of (j.status && j.status.partitions) || []) {
      if (p.error) errs.push({ ms: p.error_ms, where: j.name + '/' + p.partition + ' on ' + p.owner + (p.restarts ? ' (' + p.restarts + ' restarts)' : ''), error: p.error });
    }
  }
  for (const c of cps) {
    if (c.aborted) errs.push({ ms: c.started_ms, where: 'checkpoint ' + c.job + '/' + c.id, error: 'aborted: ' + (c.abort_reason || 'no reason given') });
  }
  for (const e of state.apiErrors) errs.push({ ms: e.ms, where: 'this page: ' + e.where, error: e.error });
  errs.sort((a, b) => (b.ms || 0) - (a.ms || 0));
  const list = errs.slice(0, ERROR_ROWS).map((e) =>
    el('tr', { 'data-error': e.where }, td(fmtTime(e.ms)), td(e.where), td(e.error, 'error')));
  rows($('errors'), list, 3, 'no errors');
}

// --- the one action ---

async function cancelJob(btn) {
  const job = btn.dataset.job;
  if (!state.armed || state.armed.job !== job || state.armed.until < Date.now()) {
    state.armed = { job, until: Date.now() + CONFIRM_MS };
    btn.textContent = 'click again to cancel';
    btn.classList.add('armed');
    return;
  }
  state.armed = null;
  btn.disabled = true;
  const action = $('action');
  const headers = token() ? { Authorization: 'Bearer ' + token() } : {};
  try {
    await api('/v1/jobs/' + encodeURIComponent(job) + '/cancel', { method: 'POST', headers });
    action.textContent = 'job ' + job + ' cancelled';
    action.dataset.result = 'ok';
  } catch (e) {
    action.textContent = 'cancel ' + job + ' failed: ' + e.message;
    action.dataset.result = 'error';
  } finally {
    btn.disabled = false;
    btn.textContent = 'cancel';
    btn.classList.remove('armed');
  }
}

document.addEventListener('DOMContentLoaded', () => {
  const input = $('token');
  input.value = sessionStorage.getItem(TOKEN_KEY) || '';
  input.addEventListener('input', () => {
    if (token()) sessionStorage.setItem(TOKEN_KEY, token());
    else sessionStorage.removeItem(TOKEN_KEY);
  });
  $('token-form').addEventListener('submit', (e) => e.preventDefault());
  $('jobs').addEventListener('click', (e) => {
    const btn = e.target.closest('button[data-action="cancel"]');
    if (btn) cancelJob(btn);
  });
  poll();
});
