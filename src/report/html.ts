// A self-contained HTML page for a ledger: bars of bytes per link (actual against naive)
// and the hit ratio of each cache, drawn as inline SVG (nothing loaded from elsewhere).
import { BASELINE, cacheName, coverageNote, interruptedNote, linkFigures, lookupCounts, machinesText, withoutFigures, type Ledger } from './ledger.js';
import { formatBytes } from '../config/units.js';
import { escapeHtml as esc } from '../escape-html.js';

/** A coordinate to a tenth of a pixel: the page carries no 15-digit figures (nor a float's 0.30000000000000004). */
function tenth(n: number): number {
  return Math.round(n * 10) / 10;
}

function bars(rows: Array<{ label: string; values: Array<{ v: number; color: string; text: string }> }>, max: number): string {
  const rowH = 44;
  const width = 760;
  const left = 260;
  const scale = (v: number) => (max === 0 ? 0 : ((width - left - 90) * v) / max);
  const body = rows
    .map((r, i) => {
      const y = i * rowH + 6;
      const rects = r.values
        .map((val, j) => `<rect x="${left}" y="${y + j * 16}" width="${tenth(scale(val.v))}" height="14" fill="${val.color}"/>` +
          `<text x="${tenth(left + scale(val.v) + 6)}" y="${y + j * 16 + 11}" font-size="11">${esc(val.text)}</text>`)
        .join('');
      return `<text x="0" y="${y + 18}" font-size="12">${esc(r.label)}</text>${rects}`;
    })
    .join('');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${rows.length * rowH + 10}" role="img">${body}</svg>`;
}

export function ledgerHtml(l: Ledger): string {
  const max = Math.max(1, ...l.links.flatMap((k) => [k.actualBytes ?? 0, k.naiveBytes]));
  const linkChart = bars(
    l.links.map((k) => ({
      label: k.link,
      values: [
        { v: k.actualBytes ?? 0, color: '#2b7bb9', text: `actual ${linkFigures(k).actual}` },
        { v: k.naiveBytes, color: '#c8c8c8', text: `naive ${formatBytes(k.naiveBytes)}` },
      ],
    })),
    max,
  );
  const hitChart = bars(
    l.caches.map((c) => {
      const note = coverageNote(c);
      // as the text report: no ratio, and no bar, for a cache whose figures could not be read
      const text = withoutFigures(c) ? note : `${(100 * c.hitRatio).toFixed(1)}% (${lookupCounts(c)}${note ? `; ${note}` : ''})`;
      return { label: cacheName(l, c), values: [{ v: withoutFigures(c) ? 0 : c.hitRatio, color: '#3a9a5b', text }] };
    }),
    1,
  );
  const { actual, naive } = l.originEgress;
  // With no naive bytes, the text report's "-": not 0.0%, which reads as all of it saved.
  const share = (n: number): string => (naive === 0
    ? 'with no naive figure to compare it to (no machine pulled the project or used assets)'
    : `${((100 * n) / naive).toFixed(1)}% of the ${formatBytes(naive)} that every machine pulling from the origin would have cost`);
  const egress = actual === null
    ? 'unknown (the origin restarted during the run or could not be read)'
    : `<strong data-testid="origin-egress">${formatBytes(actual)}</strong>, ${share(actual)}`;
  const interrupted = interruptedNote(l);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fleetcache — run ${esc(l.run)}</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}h1{font-size:1.4em}table{border-collapse:collapse}td,th{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}td:first-child,th:first-child{text-align:left}</style>
</head><body>
<h1>Run ${esc(l.run)} of ${esc(l.project)}: ${esc(machinesText(l))}</h1>
${interrupted ? `<p><strong>${esc(interrupted)}.</strong></p>\n` : ''}<p>Origin egress: ${egress}.</p>
<p>${esc(BASELINE)}.</p>
<h2>Bytes per link, actual against naive</h2>
${linkChart}
<h2>Hit ratio per cache</h2>
${hitChart}
<h2>Figures</h2>
<table><tr><th>link</th><th>actual (bytes)</th><th>naive (bytes)</th></tr>
${l.links.map((k) => `<tr><td>${esc(k.link)}</td><td>${k.actualBytes === null ? '?' : `${k.partial ? '≥ ' : ''}${k.actualBytes}`}</td><td>${k.naiveBytes}</td></tr>`).join('\n')}
</table>
</body></html>
`;
}
