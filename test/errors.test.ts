// Every error code is documented in docs/errors.md, and the document names no stale code.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { ConfigError, DigestMismatchError, ERROR_CODES, EXIT, FleetError, toFleetError, UpstreamError, withDetails } from '../src/errors.js';
import { errorAnswer } from '../src/http/errors.js';
import { notPublicKind } from '../src/cache/redirect-targets.js';
import { REPO_ROOT } from './helpers/processes.js';

const doc = readFileSync(`${REPO_ROOT}docs/errors.md`, 'utf8');

t.test('docs/errors.md documents every code with its status and exit code', async (t) => {
  for (const [code, spec] of Object.entries(ERROR_CODES)) {
    const row = doc.split('\n').find((l) => l.startsWith(`| \`${code}\``));
    t.ok(row, `${code} is documented`);
    if (row) {
      const cells = row.split('|').map((c) => c.trim());
      t.equal(cells[2], String(spec.status), `${code} status`);
      t.equal(cells[3], String(spec.exit), `${code} exit code`);
    }
  }
  const documented = [...doc.matchAll(/^\| `(FC_ERR_[A-Z_]+)`/gm)].map((m) => m[1]);
  t.same(documented.filter((c) => !(c! in ERROR_CODES)), [], 'no stale codes');
});

t.test('FleetError carries status and exit code from the catalogue', async (t) => {
  const e = new FleetError('FC_ERR_DIGEST_MISMATCH', 'x');
  t.equal(e.status, 400);
  t.equal(e.exitCode, EXIT.integrity);
  t.same(e.toJSON(), { code: 'FC_ERR_DIGEST_MISMATCH', message: 'x' });
});

t.test('withDetails keeps the error\'s class, code, status and exit code, and adds its details', async (t) => {
  const upstream = new UpstreamError('origin answered 503', { status: 503 });
  const errors = [upstream, new DigestMismatchError('sha256:aa', 'sha256:bb'), new ConfigError('bad field', 'spread.yaml', 3, 'backends.x')];
  for (const original of errors) {
    const added = withDetails(original, { skipped: ['http://cache-a/'] });
    t.ok(added instanceof original.constructor, `${original.name} stays a ${original.name}`);
    t.ok(added instanceof FleetError, `${original.name} stays a FleetError`);
    t.same([added.name, added.code, added.message, added.status, added.exitCode], [original.name, original.code, original.message, ERROR_CODES[original.code].status, ERROR_CODES[original.code].exit], `${original.name}: name, code, message, status and exit code`);
    t.same(added.toJSON(), { ...original.toJSON(), skipped: ['http://cache-a/'] }, `${original.name}: its details and the added ones`);
    t.notOk('skipped' in (original.details ?? {}), `${original.name}: the original is left as it was`);
  }
  const kept = withDetails(upstream, { skipped: [] });
  t.ok(kept instanceof UpstreamError && kept.upstreamStatus === upstream.upstreamStatus, 'an upstream error keeps its upstream status');
  t.equal(withDetails(Object.assign(new Error('ECONNRESET'), { code: 'ECONNRESET' }), {}) instanceof UpstreamError, true, 'a raw network error becomes an UpstreamError, as toFleetError makes it');
});

t.test('an error answer carries no unexpected error message (it may name server paths)', async (t) => {
  const fs = Object.assign(new Error("ENAMETOOLONG: name too long, open '/srv/fleetcache/names.v1/x'"), { code: 'ENAMETOOLONG' });
  t.same(errorAnswer(toFleetError(fs), 'req-7'), { code: 'FC_ERR_INTERNAL', message: 'internal error (request req-7); the server log has the details', requestId: 'req-7' });
  t.notMatch(JSON.stringify(errorAnswer(toFleetError(fs))), /srv/, 'nor without a request id');
  const known = new FleetError('FC_ERR_BAD_NAME', 'name too long');
  t.same(errorAnswer(known), known.toJSON(), 'a catalogued error is answered as it is');
  t.same(errorAnswer(known, 'req-7'), { ...known.toJSON(), requestId: 'req-7' }, 'with its request id');
});

t.test('a full disk or quota is the machine\'s state (507, exit 1), not an internal error', async (t) => {
  for (const code of ['ENOSPC', 'EDQUOT', 'EFBIG']) {
    const fe = toFleetError(Object.assign(new Error(`${code}: write`), { code }));
    t.same([fe.code, fe.status, fe.exitCode], ['FC_ERR_INSUFFICIENT_STORAGE', 507, EXIT.failure], code);
  }
  t.equal(toFleetError(Object.assign(new Error('EIO'), { code: 'EIO' })).code, 'FC_ERR_INTERNAL', 'anything else stays internal');
});

t.test('a connection that fails raw (while a body streams) is an upstream error (exit 6), its timeouts 504', async (t) => {
  const of = (code: string) => toFleetError(Object.assign(new Error(code), { code })).code;
  t.same(['UND_ERR_SOCKET', 'ECONNRESET', 'EPIPE'].map(of), ['FC_ERR_UPSTREAM', 'FC_ERR_UPSTREAM', 'FC_ERR_UPSTREAM']);
  t.same(['UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT'].map(of), ['FC_ERR_UPSTREAM_TIMEOUT', 'FC_ERR_UPSTREAM_TIMEOUT']);
  t.equal(toFleetError(Object.assign(new Error('x'), { code: 'UND_ERR_BODY_TIMEOUT' })).exitCode, EXIT.unavailable);
  t.same(['UND_ERR_ABORTED', 'UND_ERR_INVALID_ARG'].map(of), ['FC_ERR_INTERNAL', 'FC_ERR_INTERNAL'], 'an abort or a bad argument is not the network');
});

t.test('FC_ERR_UPSTREAM names every kind of address a redirect is refused to, in the catalogue and the document', async (t) => {
  const row = doc.split('\n').find((l) => l.startsWith('| `FC_ERR_UPSTREAM`'))!;
  // one address of each kind the cache refuses, Teredo (its client 127.0.0.1) and 2001::/23's reserved part among them
  const refused = ['127.0.0.1', '10.0.0.1', '169.254.169.254', '0.0.0.0', '224.0.0.1', '240.0.0.1', '2001:0:4136:e378:8000:63bf:80ff:fffe', '2001:2::1'];
  const kinds = new Set(refused.map((address) => notPublicKind(address)));
  t.notOk(kinds.has(undefined), 'each address is refused');
  for (const kind of kinds) {
    t.match(ERROR_CODES.FC_ERR_UPSTREAM.summary, kind!, `src/errors.ts names ${kind}`);
    t.match(row, kind!, `docs/errors.md names ${kind}`);
  }
});
