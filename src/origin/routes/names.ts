// Named content: artifacts/{run}/{job}/{path}, projects/{p}/bases/{id}, projects/{p}/runs/{run}.
// A named blob is stored in the CAS and a small record points at it.
import { createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { errorMessage, FleetError, NotFoundError } from '../../errors.js';
import { checkWritePreconditions, checkReadPreconditions, replyWithBlob } from '../../http/blob-reply.js';
import { nameEtag } from '../../http/name-etag.js';
import { parseRunManifest, type RunManifest } from '../../project-upload/manifest.js';
import { parseDigestString, formatDigest, type Digest } from '../../store/digest.js';
import { isAbort, uploadAborted } from '../../store/blob-store.js';
import type { Grant } from '../../http/auth.js';
import { damagedRecord, type NameRecord } from '../../store/names.js';
import { checkSegment, parseNamePath } from '../../store/safe-name.js';
import { checkUploadHead, checkRead, isInternal, nameCacheControl, replacedRecord, visibilityOf, type OriginContext, type ReplacedRecord } from '../context.js';
import { blobOfRecord, replacedBlob, type NamedBlob } from '../replaced-blob.js';

/** The raw, still percent-encoded path after a prefix such as "/artifacts/". */
function rawTail(request: FastifyRequest, prefix: string): string {
  const path = request.url.split('?')[0]!;
  return path.slice(prefix.length);
}

/** The ETag a named blob is answered with: its digest, and a hash of its own fields (name-etag.ts). */
function blobNameEtag(record: NameRecord): string {
  return nameEtag(record.digest, record);
}

/** The ETag of a record read as JSON, undefined when it is no name record (a GET of it is a 500). */
function recordEtag(value: unknown): string | undefined {
  return blobOfRecord(value) && blobNameEtag(value as NameRecord);
}

/** The ETag of a JSON document (a run manifest, a bases listing): the digest of the text it is answered with. */
function jsonEtag(text: string): string {
  return `"sha256:${createHash('sha256').update(text).digest('hex')}"`;
}

/**
 * Answers a JSON document read by name under its ETag: a conditional GET of an unchanged
 * one is a 304, so that a cache revalidates it without fetching it again.
 */
function replyJson(ctx: OriginContext, request: FastifyRequest, reply: FastifyReply, text: string) {
  const etag = jsonEtag(text);
  const unchanged = checkReadPreconditions(request, etag, undefined); // a 412 goes out without the document's headers
  reply.header('etag', etag).header('cache-control', nameCacheControl(ctx)).type('application/json');
  if (unchanged) return reply.removeHeader('content-type').code(304).send(); // no representation metadata (RFC 9110 §15.4.5)
  // HEAD (fastify's, server.ts) runs this too: the same headers, no body sent.
  return reply.send(text);
}

/**
 * Checks If-Match / If-None-Match against the name's record, read as `text` (undefined: there
 * is none). A record that does not read as one of its kind (damaged: `etagOf` gives none, or
 * it is not JSON; a GET of it is a 500) is a current representation without an ETag (RFC 9110
 * §13.1.1, §13.1.2): If-Match of a tag and If-None-Match: * are false, a 412 that says so;
 * If-Match: * and If-None-Match of a tag hold, and the PUT writes over it as one without them
 * does (§13.2.1: those answered 2xx evaluate their conditions, not a 500).
 */
function checkNameConditions(ctx: OriginContext, request: FastifyRequest, segments: string[], text: string | undefined, etagOf: (current: unknown) => string | undefined): void {
  if (text === undefined) return checkWritePreconditions(request, undefined);
  let damage = 'not a record of its kind';
  let etag: string | undefined;
  try {
    etag = etagOf(JSON.parse(text));
  } catch (err) {
    damage = errorMessage(err);
  }
  if (etag !== undefined) return checkWritePreconditions(request, etag);
  try {
    checkWritePreconditions(request, undefined, true);
  } catch (err) {
    const name = segments.join('/');
    const file = ctx.names.fileOf(segments);
    request.log.warn({ name, file, damage }, `the record of the name ${name}, ${file}, is damaged (${damage}): a conditional PUT of it is refused (412); a PUT without If-Match and If-None-Match replaces it`);
    // the client is told the damage, not the server's path
    throw new FleetError('FC_ERR_PRECONDITION_FAILED', `${errorMessage(err)}: the name's record is damaged (a GET of it fails), so it has no ETag; a PUT without If-Match and If-None-Match, or with If-Match: *, replaces it`, { cause: err });
  }
}

/**
 * Writes a name when If-Match / If-None-Match allow it (checkNameConditions; `etagOf`: the
 * ETag of a record read, undefined for one not of its kind). They are checked before the body
 * is read (no upload only to be refused) and again, with the write, once it is: another PUT
 * may have changed the name meanwhile. `created`: the name had no record before (201, not
 * 200: RFC 9110 §9.3.4). `beforeWrite` runs in the name's lock, before the write, with the
 * text of the record it replaces.
 */
async function conditionalPut<T extends object>(
  ctx: OriginContext,
  request: FastifyRequest,
  segments: string[],
  etagOf: (current: unknown) => string | undefined,
  read: () => Promise<T>,
  beforeWrite?: (record: T, replaced: string | undefined) => Promise<void>,
): Promise<{ record: T; created: boolean }> {
  const conditional = request.headers['if-match'] !== undefined || request.headers['if-none-match'] !== undefined;
  /** The text of the name's record, undefined when there is none, after checking the conditions against it. */
  const check = async (): Promise<string | undefined> => {
    // a record that does not parse (damaged) exists, and is written over; one that cannot be
    // read (EIO, EACCES) fails the request, changing nothing
    const text = await ctx.names.text(segments);
    if (conditional) checkNameConditions(ctx, request, segments, text, etagOf);
    return text;
  };
  await check();
  const record = await read();
  // the record is read once in the lock: the check and beforeWrite (the blob it replaces) share its text
  const existed = await ctx.names.exclusive(segments, async () => {
    const before = await check();
    await beforeWrite?.(record, before);
    await ctx.names.put(segments, record);
    return before !== undefined;
  });
  return { record, created: !existed };
}

/** Whether a base's record is listed: it names a blob as a GET of it serves one (blobOfRecord), and says when it was made. */
function isListedBase(value: unknown): value is NameRecord {
  return blobOfRecord(value) !== undefined && Number.isFinite((value as { created?: unknown }).created);
}

/**
 * A named blob is served with the Content-Type (an HTML report stays viewable) and the
 * Content-Disposition its uploader sent, but never runs script in this server's origin: no
 * sniffing, and a sandbox.
 */
const NAMED_BLOB_HEADERS = { 'x-content-type-options': 'nosniff', 'content-security-policy': 'sandbox' };

/**
 * The digest a named upload states its body has (X-Fleetcache-Digest: sha256:<hex>): checked
 * before the blob is stored and the name published, as /cas checks its path's. Without it
 * the client can only compare digests once the name points at the blob. sha256 only: a name
 * records its blob's sha256 (the store hashes with the stated algorithm, and push, pull and
 * run manifests read bases by sha256).
 */
function statedDigest(request: FastifyRequest): Digest | undefined {
  const value = request.headers['x-fleetcache-digest'];
  if (value === undefined) return undefined;
  // Given twice, node joins the values with ", ": a malformed digest.
  const digest = parseDigestString(String(value).trim());
  if (digest.algo !== 'sha256') throw new FleetError('FC_ERR_BAD_DIGEST', `X-Fleetcache-Digest of a name must be sha256:<hex>, not ${digest.algo}`);
  return digest;
}

/**
 * The size of a base's plain tar its upload states (X-Fleetcache-Plain-Size, which push
 * sends): recorded and listed with the base, it bounds the gunzip of a push that fetches the
 * base (a gzip bomb stops there). Undefined when not stated (a push before it was sent).
 */
function statedPlainSize(request: FastifyRequest): number | undefined {
  const value = request.headers['x-fleetcache-plain-size'];
  if (value === undefined) return undefined;
  // Given twice, node joins the values with ", ": no size.
  const text = String(value).trim();
  const size = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(size)) throw new FleetError('FC_ERR_BAD_REQUEST', `X-Fleetcache-Plain-Size must be a size in bytes (digits only), not ${JSON.stringify(text)}`);
  return size;
}

/**
 * A run token's upload takes its declared length from the run's budget before the body is
 * read (run-budget.ts). Returns the store's size limit for the body, and what to call once
 * the upload ended (whether its body was stored).
 */
async function takeFromRunBudget(ctx: OriginContext, request: FastifyRequest, run: string): Promise<{ maxSize: number; end: (stored: boolean) => void }> {
  const declared = request.headers['content-length'];
  if (declared === undefined) {
    throw new FleetError('FC_ERR_LENGTH_REQUIRED', 'an artifact upload with a run token must state its Content-Length (a run\'s uploads have a budget)');
  }
  const size = Number(declared);
  return { maxSize: size, end: await ctx.runBudget.reserve(run, size) };
}

/**
 * Records that no name points at the blob `blob` any more (or ever will), for the next prune
 * to free (context.ts replacedRecord). Not recorded (a full disk), its mark stays and a prune
 * frees it once this process is gone (naming-marks.ts): said, not failed, as the request's own
 * outcome stands. Resolves whether it was recorded (whether the caller may remove the mark).
 */
async function recordUnnamed(ctx: OriginContext, request: FastifyRequest, blob: { digest: string; size: number }, problem: string): Promise<boolean> {
  return ctx.names.put<ReplacedRecord>(replacedRecord(blob.digest), { size: blob.size, at: Date.now() }).then(() => true, (err: unknown) => {
    request.log.warn({ err, digest: blob.digest }, `${problem}; retention frees it only once this process is gone (its mark stays)`);
    return false;
  });
}

async function putNamedBlob(ctx: OriginContext, request: FastifyRequest, reply: FastifyReply, segments: string[], kind: string, plainSize?: number) {
  let grant: Grant = { scope: 'write' };
  if (segments[0] === 'artifacts') grant = ctx.auth.requireArtifacts(request, segments[1]);
  else ctx.auth.require(request);
  checkUploadHead(request, ctx.maxBlobSize);
  // A name is read as its blob is: its upload cannot make it internal (a cache forwards the
  // header), which would leave it readable by anyone. The blob can be, uploaded to /cas first.
  if (visibilityOf(request) === 'internal') {
    throw new FleetError('FC_ERR_BAD_REQUEST', 'X-Fleetcache-Visibility: internal is refused on a name, which is readable as its blob is: upload the bytes to /cas/<algo>/<hex> as internal first, then name them');
  }
  const expected = statedDigest(request);
  const budget = grant.scope === 'run' ? await takeFromRunBudget(ctx, request, grant.run) : undefined;
  let release = (): void => undefined;
  let stored = false;
  /** The blob this upload stored anew (not found stored already): no one else accounts for it. */
  let storedNew: { digest: string; size: number } | undefined;
  /** The mark written before the blob became visible, until the name (or its absence) is recorded (naming-marks.ts). */
  let mark: string | undefined;
  /** The blob the name pointed at before (replaced-blob.ts), read in its lock. */
  let previous: NamedBlob | undefined;
  /** The mark of that blob, written with the new record, until that blob is recorded as named by nothing. */
  let previousMark: string | undefined;
  /** Removes a mark; left, it keeps nothing: a later prune finds the blob named (or frees it), once this process is gone. */
  const removeMark = (file: string): Promise<void> => ctx.marks.remove(file).catch((err: unknown) => request.log.warn({ err, mark: file }, 'cannot remove the mark of a named upload'));
  const unmark = async (): Promise<void> => {
    if (mark === undefined) return;
    await removeMark(mark);
    mark = undefined;
  };
  const { record, created } = await conditionalPut<NameRecord>(ctx, request, segments, recordEtag, async () => {
    const result = await ctx.store.put(request.raw, {
      maxSize: budget?.maxSize ?? ctx.maxBlobSize,
      ...(expected ? { expected } : {}),
      beforeCommit: async (digest) => void (mark = await ctx.marks.mark(digest)),
    });
    stored = true;
    // held from the moment it is stored until the name points at it (references.ts)
    const digest = formatDigest(result.digest);
    if (result.created) storedNew = { digest, size: result.size };
    else await unmark(); // stored before: someone else's to account for
    release = ctx.references.hold([digest]);
    await ctx.references.confirm(ctx.store, [digest]);
    ctx.ledger.bytesIn(kind, result.size);
    const contentType = request.headers['content-type'];
    const contentDisposition = request.headers['content-disposition'];
    return { digest, size: result.size, created: Date.now(), ...(contentType ? { contentType } : {}), ...(contentDisposition ? { contentDisposition } : {}), ...(plainSize === undefined ? {} : { plainSize }) };
  }, async (next, replaced) => {
    // The blob the name points at until now, named by nothing once it is written: marked
    // until recorded so below, or a kill in between leaves it to no prune (naming-marks.ts).
    // A write that fails keeps the mark (it may have failed after the rename, its directory's
    // fsync): a prune once this process is gone finds the blob named, or frees it.
    previous = replaced === undefined ? undefined : await replacedBlob(ctx, request.log, segments, replaced);
    if (previous && previous.digest !== next.digest) previousMark = await ctx.marks.mark(parseDigestString(previous.digest));
  })
    .catch(async (err: unknown) => {
      // Stored and then not named (a 412 once another PUT changed the name, a 507 for its
      // record): no name will ever free the blob, the next prune does (retention.ts), unless
      // something names it by then. Bytes found stored already are someone else's to free.
      // Not recorded, the mark stays, for a prune after this process is gone.
      if (!storedNew || (await recordUnnamed(ctx, request, storedNew, 'cannot record a blob stored for a name not written'))) await unmark();
      throw err;
    })
    .finally(() => {
      release();
      // A blob stored and then not named stays counted: it was on disk, or a run token
      // could store without end.
      budget?.end(stored);
    });
  await unmark(); // named
  // The blob the name pointed at before, which no expiring name will free any more: the next
  // prune does (retention.ts).
  if (previous && previous.digest !== record.digest) {
    const recorded = await recordUnnamed(ctx, request, previous, 'cannot record the blob a name no longer points at');
    if (recorded && previousMark !== undefined) await removeMark(previousMark);
  }
  // The ETag of the new representation lets a cache keep what it forwarded (RFC 9110 §9.3.4).
  // The headers its GETs get: a cache that keeps what it forwarded serves them too (cache/put.ts).
  const cacheControl = nameCacheControl(ctx, isInternal(ctx, parseDigestString(record.digest)));
  return reply.code(created ? 201 : 200).header('etag', blobNameEtag(record)).header('cache-control', cacheControl).headers(NAMED_BLOB_HEADERS).send({ digest: record.digest, size: record.size });
}

async function getNamedBlob(ctx: OriginContext, request: FastifyRequest, reply: FastifyReply, segments: string[], kind: string) {
  checkRead(ctx, request);
  const record = await ctx.names.get(segments);
  // a record hand-edited into another shape: the server's damage (500), not a bad digest the client sent (400)
  if (!blobOfRecord(record)) throw damagedRecord(ctx.names.fileOf(segments), new TypeError('not a name record (a digest "<algo>:<hex>" and a size)'));
  const digest = parseDigestString(record.digest);
  // A name reads its blob as /cas would: an internal one (uploaded so to /cas, then named) needs a token.
  const internal = isInternal(ctx, digest);
  if (internal) checkRead(ctx, request, true);
  return replyWithBlob(request, reply, ctx.store, digest, {
    kind,
    ledger: ctx.ledger,
    cacheControl: nameCacheControl(ctx, internal),
    etag: blobNameEtag(record),
    contentType: record.contentType,
    modifiedMs: record.created,
    extraHeaders: record.contentDisposition ? { ...NAMED_BLOB_HEADERS, 'content-disposition': record.contentDisposition } : NAMED_BLOB_HEADERS,
  });
}

/**
 * A run manifest's body, refused (400, nothing stored) unless machines could pull the run:
 * it matches RunManifestSchema (the message names the first wrong field), names the run of
 * its URL, and the blobs it points at that push uploads before it, the base and the delta,
 * are stored with the sizes it gives. The result is not checked: machines rebuild it.
 * Only a writer gets here (the token is checked first), so whether a blob is stored tells
 * no one what a HEAD of /cas with that token would not; an internal blob stays internal.
 */
async function checkRunManifest(ctx: OriginContext, value: unknown, project: string, run: string, hold: (release: () => void) => void): Promise<RunManifest> {
  const manifest = parseRunManifest(value, 'run manifest');
  for (const [field, named, wanted] of [['project', manifest.project, project], ['run', manifest.run, run]] as const) {
    if (named !== wanted) {
      throw new FleetError('FC_ERR_BAD_REQUEST', `run manifest: /${field} is ${JSON.stringify(named)} but the URL names ${JSON.stringify(wanted)}`, { details: { field: `/${field}` } });
    }
  }
  const blobs: Array<[string, { digest: string; size: number }]> = [['/base', manifest.base]];
  if (manifest.delta) blobs.push(['/delta', manifest.delta]);
  // held before they are looked at, until the manifest is written (references.ts)
  const digests = blobs.map(([, blob]) => blob.digest);
  hold(ctx.references.hold(digests));
  for (const [field, blob] of blobs) {
    const stored = await ctx.store.stat(parseDigestString(blob.digest)).catch((err: unknown) => {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    });
    if (!stored) {
      throw new FleetError('FC_ERR_BAD_REQUEST', `run manifest: ${field}/digest ${blob.digest} is not stored at the origin; upload it before the manifest`, {
        details: { field: `${field}/digest`, digest: blob.digest },
      });
    }
    if (stored.size !== blob.size) {
      throw new FleetError('FC_ERR_BAD_REQUEST', `run manifest: ${field}/size is ${blob.size} but ${blob.digest} is stored with ${stored.size} bytes`, {
        details: { field: `${field}/size`, digest: blob.digest },
      });
    }
  }
  await ctx.references.confirm(ctx.store, digests);
  return manifest;
}

async function readSmallBody(request: FastifyRequest, limit: number): Promise<Buffer> {
  checkUploadHead(request, limit);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of request.raw as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > limit) throw new FleetError('FC_ERR_TOO_LARGE', `body exceeds the limit of ${limit} bytes`);
      chunks.push(chunk);
    }
  } catch (err) {
    // The client went away mid-body: its own doing, not the server's error (as blob uploads say).
    if (isAbort(err)) throw uploadAborted(err);
    throw err;
  }
  return Buffer.concat(chunks);
}

export async function nameRoutes(app: FastifyInstance, ctx: OriginContext): Promise<void> {
  // ---- artifacts ---------------------------------------------------------------
  const artifactSegments = (request: FastifyRequest) => ['artifacts', ...parseNamePath(rawTail(request, '/artifacts/'), 'artifact name', { min: 3 })];
  app.put('/artifacts/*', { config: { kind: 'artifacts' } }, (request, reply) => putNamedBlob(ctx, request, reply, artifactSegments(request), 'artifacts'));
  app.route({ method: ['GET', 'HEAD'], url: '/artifacts/*', config: { kind: 'artifacts' }, handler: (request, reply) => getNamedBlob(ctx, request, reply, artifactSegments(request), 'artifacts') });

  // ---- project bases -----------------------------------------------------------
  type BaseParams = { Params: { project: string; id: string } };
  const baseSegments = (p: BaseParams['Params']) => ['projects', checkSegment(p.project, 'project'), 'bases', checkSegment(p.id, 'base id')];
  app.put<BaseParams>('/projects/:project/bases/:id', { config: { kind: 'projects' } }, (request, reply) =>
    putNamedBlob(ctx, request, reply, baseSegments(request.params), 'projects', statedPlainSize(request)),
  );
  app.route<BaseParams>({
    method: ['GET', 'HEAD'],
    url: '/projects/:project/bases/:id',
    config: { kind: 'projects' },
    handler: (request, reply) => getNamedBlob(ctx, request, reply, baseSegments(request.params), 'projects'),
  });
  app.get<{ Params: { project: string } }>('/projects/:project/bases/', { config: { kind: 'projects' } }, async (request, reply) => {
    checkRead(ctx, request);
    const project = checkSegment(request.params.project, 'project');
    // A base whose record is damaged (a GET of it is a 500) is left out, not answered as a 500
    // for all: a push picks among the others, or uploads a new base, where a digest it cannot
    // parse, listed, failed every push of the project.
    const damaged = (segments: string[], file: string, problem: string): void => {
      const name = segments.join('/');
      request.log.warn({ name, file, problem }, `the record of the base ${name}, ${file}, is damaged (${problem}): left out of the listing; uploading the base again replaces it`);
    };
    const bases = (await ctx.names.list(['projects', project, 'bases'], isListedBase, damaged))
      .map(([id, rec]) => ({ id, digest: rec.digest, size: rec.size, created: rec.created, ...(rec.plainSize === undefined ? {} : { plainSize: rec.plainSize }) }))
      .sort((a, b) => b.created - a.created || (a.id < b.id ? 1 : -1));
    return replyJson(ctx, request, reply, JSON.stringify({ project, bases }));
  });

  // ---- run manifests (small JSON documents) ------------------------------------
  type RunParams = { Params: { project: string; run: string } };
  const runSegments = (p: RunParams['Params']) => ['projects', checkSegment(p.project, 'project'), 'runs', checkSegment(p.run, 'run id')];
  app.put<RunParams>('/projects/:project/runs/:run', { config: { kind: 'projects' } }, async (request, reply) => {
    ctx.auth.require(request);
    const segments = runSegments(request.params);
    let size = 0;
    let release = (): void => undefined;
    const { created } = await conditionalPut<object>(ctx, request, segments, (current) => jsonEtag(JSON.stringify(current)), async () => {
      const body = await readSmallBody(request, ctx.maxRecordSize);
      size = body.length;
      let manifest: unknown;
      try {
        manifest = JSON.parse(body.toString('utf8'));
      } catch (err) {
        throw new FleetError('FC_ERR_BAD_REQUEST', `run manifest is not JSON: ${errorMessage(err)}`);
      }
      return checkRunManifest(ctx, manifest, segments[1]!, segments[3]!, (r) => (release = r));
    }).finally(() => release());
    ctx.ledger.bytesIn('projects', size);
    return reply.code(created ? 201 : 200).send({ project: segments[1], run: segments[3], size });
  });
  app.get<RunParams>('/projects/:project/runs/:run', { config: { kind: 'projects' } }, async (request, reply) => {
    checkRead(ctx, request);
    const manifest = await ctx.names.get<object>(runSegments(request.params));
    return replyJson(ctx, request, reply, JSON.stringify(manifest));
  });
}
