// The dashboard page: one static document. Its script polls /-/stats, keeps the series
// in the page (nothing is stored server-side) and draws them with uPlot, which is served
// from the package under /-/ui/assets/. Both stats shapes are understood: the origin's
// ledger ({role, totals, kinds}) and the cache's ({region, total, kinds, store, inflightFills}).
// Every figure carries data-testid and its raw number in data-value (the browser test).
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>fleetcache</title>
<link rel="stylesheet" href="/-/ui/assets/uPlot.min.css">
<style>
  body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
  h1 { font-size: 1.3em; margin: 0 0 .8em; }
  .cards { display: flex; flex-wrap: wrap; gap: .8em; margin-bottom: 1.2em; }
  .card { border: 1px solid #ccc; border-radius: 6px; padding: .6em 1em; min-width: 9em; }
  .card .label { color: #666; font-size: .85em; }
  .card .value { font-size: 1.5em; font-variant-numeric: tabular-nums; }
  table { border-collapse: collapse; margin: .4em 0 1.2em; }
  th, td { border-bottom: 1px solid #ddd; padding: .25em .8em; text-align: right; font-variant-numeric: tabular-nums; }
  th:first-child, td:first-child { text-align: left; }
  .muted { color: #888; }
  #error { color: #b00; }
  .card .value[data-full="true"] { color: #b00; }
</style>
</head>
<body>
<h1>fleetcache <span data-testid="role"></span> <small class="muted" data-testid="updated"></small></h1>
<p id="error" data-testid="error"></p>
<div class="cards">
  <div class="card"><div class="label">hit ratio</div><div class="value" data-testid="hit-ratio">—</div></div>
  <div class="card"><div class="label">bytes served</div><div class="value" data-testid="bytes-served">—</div></div>
  <div class="card"><div class="label">bytes saved</div><div class="value" data-testid="bytes-saved">—</div></div>
  <div class="card"><div class="label">requests</div><div class="value" data-testid="requests">—</div></div>
  <div class="card"><div class="label">fills in progress</div><div class="value" data-testid="fills-inflight">—</div></div>
  <div class="card"><div class="label">disk</div><div class="value" data-testid="disk">—</div></div>
</div>
<h2>Bytes per second on each link</h2>
<div id="chart" data-testid="chart" data-points="0"></div>
<table data-testid="links"><thead><tr><th>link</th><th>bytes so far</th></tr></thead><tbody></tbody></table>
<h2>By kind of content</h2>
<table data-testid="kinds"><thead><tr><th>kind</th><th>bytes out</th><th>bytes in</th><th>requests</th></tr></thead><tbody></tbody></table>
<script src="/-/ui/assets/uPlot.iife.min.js"></script>
<script>
'use strict';
const params = new URLSearchParams(location.search);
const INTERVAL = Math.max(200, Number(params.get('interval')) || 5000);
const KEEP = 360;
const $ = (id) => document.querySelector('[data-testid="' + id + '"]');

function formatBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? String(n) : n.toFixed(2)) + ' ' + units[i];
}

// One normalised model from either stats shape.
function figures(s) {
  const f = { role: '', hitRatio: null, served: null, saved: null, requests: null, fills: null, disk: null, links: [], kinds: [] };
  if (s.total && 'bytesServed' in s.total) {
    const t = s.total;
    const lookups = t.hits + t.misses + t.collapsed;
    f.role = 'cache' + (s.region ? ' ' + s.region : '');
    // Answered without a fetch of their own: disk hits and requests that joined a fill.
    f.hitRatio = lookups ? (t.hits + t.collapsed) / lookups : null;
    f.served = t.bytesServed;
    // negative when the cache fetched more than it served, as /-/stats's savingsRatio (OPERATIONS.md)
    f.saved = t.bytesServed - t.bytesUpstream;
    f.requests = lookups;
    f.links = [{ id: 'clients', label: 'cache → clients', bytes: t.bytesServed }, { id: 'upstream', label: 'upstream → cache', bytes: t.bytesUpstream }];
    for (const [k, v] of Object.entries(s.kinds || {})) f.kinds.push({ kind: k, out: v.bytesServed, in: v.bytesUpstream, requests: v.hits + v.misses + v.collapsed });
  } else if (s.totals) {
    f.role = s.role || 'origin';
    f.served = s.totals.bytesOut;
    f.requests = s.totals.requests;
    f.links = [{ id: 'clients', label: 'origin → clients', bytes: s.totals.bytesOut }, { id: 'uploads', label: 'clients → origin', bytes: s.totals.bytesIn }];
    for (const [k, v] of Object.entries(s.kinds || {})) f.kinds.push({ kind: k, out: v.bytesOut, in: v.bytesIn, requests: v.requests });
  }
  if (typeof s.inflightFills === 'number') f.fills = s.inflightFills;
  // The cache's disk: what the index holds against its limit, what it evicted, and whether it refuses writes.
  if (s.store && typeof s.store.bytes === 'number') f.disk = { bytes: s.store.bytes, max: s.store.maxSize, evicted: s.store.evictedBytes || 0, full: s.store.full === true };
  return f;
}

function show(id, value, text) {
  const el = $(id);
  el.dataset.value = value === null ? '' : String(value);
  el.textContent = value === null ? '—' : text;
}

function rows(id, items, cells, testid) {
  const body = $(id).tBodies[0];
  body.replaceChildren();
  for (const item of items) {
    const tr = document.createElement('tr');
    const t = testid(item);
    for (const [k, v] of Object.entries(t.data)) tr.dataset[k] = String(v);
    tr.dataset.testid = t.id;
    for (const c of cells(item)) { const td = document.createElement('td'); td.textContent = c; tr.append(td); }
    body.append(tr);
  }
  if (items.length === 0) {
    const tr = document.createElement('tr');
    const td = document.createElement('td');
    td.colSpan = $(id).tHead.rows[0].cells.length;
    td.className = 'muted';
    td.textContent = 'none reported';
    tr.append(td);
    body.append(tr);
  }
}

const series = { t: [], links: new Map() };
let previous = null;
let plot = null;

function record(f, now) {
  if (previous) {
    const dt = (now - previous.at) / 1000;
    series.t.push(now / 1000);
    for (const l of f.links) {
      if (!series.links.has(l.id)) series.links.set(l.id, { label: l.label, rates: series.t.slice(1).map(() => null) });
      const before = previous.links.find((p) => p.id === l.id);
      series.links.get(l.id).rates.push(before && dt > 0 ? Math.max(0, (l.bytes - before.bytes) / dt) : null);
    }
    if (series.t.length > KEEP) { series.t.shift(); for (const s of series.links.values()) s.rates.shift(); }
  }
  previous = { at: now, links: f.links };
  draw();
}

function draw() {
  const el = document.getElementById('chart');
  el.dataset.points = String(series.t.length);
  if (series.t.length < 1 || typeof uPlot === 'undefined') return;
  const data = [series.t, ...[...series.links.values()].map((s) => s.rates)];
  if (!plot || plot.series.length !== data.length) {
    if (plot) plot.destroy();
    const colors = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728'];
    plot = new uPlot({
      width: Math.min(900, window.innerWidth - 40), height: 260,
      series: [{}, ...[...series.links.values()].map((s, i) => ({ label: s.label, stroke: colors[i % colors.length], width: 2, value: (u, v) => (v === null ? '—' : formatBytes(Math.round(v)) + '/s') }))],
      axes: [{}, { values: (u, vals) => vals.map((v) => formatBytes(v) + '/s'), size: 90 }],
    }, data, el);
  } else {
    plot.setData(data);
  }
}

function render(f) {
  $('role').textContent = f.role;
  show('hit-ratio', f.hitRatio, f.hitRatio === null ? '' : (f.hitRatio * 100).toFixed(1) + ' %');
  show('bytes-served', f.served, f.served === null ? '' : formatBytes(f.served));
  show('bytes-saved', f.saved, f.saved === null ? '' : formatBytes(f.saved));
  show('requests', f.requests, String(f.requests));
  show('fills-inflight', f.fills, String(f.fills));
  const d = f.disk;
  show('disk', d && d.bytes, d ? formatBytes(d.bytes) + ' of ' + formatBytes(d.max) + (d.evicted ? ', ' + formatBytes(d.evicted) + ' evicted' : '') + (d.full ? ', refusing writes' : '') : '');
  $('disk').dataset.full = String(Boolean(d && d.full));
  $('disk').dataset.evicted = String(d ? d.evicted : 0);
  rows('links', f.links, (l) => [l.label, formatBytes(l.bytes)], (l) => ({ id: 'link-' + l.id, data: { value: l.bytes } }));
  rows('kinds', f.kinds, (k) => [k.kind, formatBytes(k.out), formatBytes(k.in), String(k.requests)], (k) => ({ id: 'kind-' + k.kind, data: { out: k.out, in: k.in, requests: k.requests } }));
  $('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
}

async function poll() {
  try {
    const res = await fetch('/-/stats', { cache: 'no-store' });
    if (!res.ok) throw new Error('/-/stats answered ' + res.status);
    const f = figures(await res.json());
    render(f);
    record(f, Date.now());
    $('error').textContent = '';
  } catch (err) {
    $('error').textContent = String(err && err.message || err);
  } finally {
    setTimeout(poll, INTERVAL);
  }
}
poll();
</script>
</body>
</html>
`;
