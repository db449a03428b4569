// Where a job's artifacts live in the namespace, shared by the agent (upload) and
// `fleetcache artifacts get` (download): /artifacts/<run>/<job…>/<path…>, the job name split
// on "/" (spread job names such as "local:ubuntu-22.04:tests/main/foo" contain slashes) and
// every segment percent-encoded. Each job also gets an index, <job…>/_index.json.
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { joinUrl } from '../client/http.js';
import { FleetError } from '../errors.js';
import { artifactEntrySchema } from './entry.js';
import { redactUrl } from '../redact-url.js';
import { checkSegment } from '../store/safe-name.js';

export const INDEX_NAME = '_index.json';
export const INDEX_FORMAT = 'fleetcache-artifacts/1';

const artifactIndexSchema = Type.Object({
  format: Type.Literal(INDEX_FORMAT),
  run: Type.String(),
  job: Type.String(),
  files: Type.Array(artifactEntrySchema),
});
export type ArtifactIndex = Static<typeof artifactIndexSchema>;

/** Splits a "/"-separated name into validated segments ("a//b", "..", "." refused). */
export function nameSegments(name: string, what: string): string[] {
  return name.split('/').map((segment) => checkSegment(segment, `${what} "${name}"`));
}

function encodeSegments(segments: readonly string[]): string {
  return segments.map((s) => encodeURIComponent(s)).join('/');
}

/** The URL of a job's artifact directory (no trailing slash). */
function jobUrl(base: string, run: string, job: string): string {
  return joinUrl(base, `/artifacts/${encodeSegments([checkSegment(run, 'run'), ...nameSegments(job, 'job')])}`);
}

/** The URL of one artifact file, `path` relative to the job's directory with "/" separators. */
export function artifactUrl(base: string, run: string, job: string, path: string): string {
  return `${jobUrl(base, run, job)}/${encodeSegments(nameSegments(path, 'artifact path'))}`;
}

export function indexUrl(base: string, run: string, job: string): string {
  return `${jobUrl(base, run, job)}/${INDEX_NAME}`;
}

/** Validates a downloaded index (from the URL `source`); every path is checked segment by segment. */
export function parseArtifactIndex(value: unknown, source: string): ArtifactIndex {
  const shown = redactUrl(source);
  if (!Value.Check(artifactIndexSchema, value)) {
    const first = Value.Errors(artifactIndexSchema, value).First();
    throw new FleetError('FC_ERR_BAD_REQUEST', `${shown}: not an artifact index${first ? `: ${first.path || '/'} ${first.message}` : ''}`);
  }
  for (const file of value.files) nameSegments(file.path, `${shown}: artifact path`);
  return value;
}
