// Run manifests the origin accepts, for tests that PUT /projects/{project}/runs/{run}: the
// origin stores one only when it matches the schema, names the run of its URL, and its base
// (and delta) are stored already.
import { createHash } from 'node:crypto';
import { MANIFEST_FORMAT, type RunManifest } from '../../src/project-upload/manifest.js';

const digestOf = (bytes: Buffer) => `sha256:${createHash('sha256').update(bytes).digest('hex')}`;

/**
 * A manifest of `run` of `project` whose base is `base` (and delta `delta`, when given). The
 * result is the base's digest: the origin does not check it, machines do when they rebuild it.
 */
export function runManifest(project: string, run: string, base: Buffer, options: { baseId?: string; delta?: Buffer } = {}): RunManifest {
  const { baseId = 'b1', delta } = options;
  return {
    format: MANIFEST_FORMAT,
    project,
    run,
    created: '2026-01-01T00:00:00.000Z',
    base: { id: baseId, digest: digestOf(base), size: base.length },
    delta: delta ? { digest: digestOf(delta), size: delta.length, compression: 'none', vcdiffSize: delta.length } : null,
    result: { digest: digestOf(base), size: base.length },
  };
}

/**
 * Uploads a base blob to the origin at `url` and answers a manifest of `run` of `project` that
 * points at it. Its bytes are made of the names and `variant`: another variant gives another
 * manifest of the same run. Each is uploaded once (uploadBlob takes a second upload's 200 for
 * a failure).
 */
export async function uploadRunManifestBase(url: string, project: string, run: string, variant = ''): Promise<RunManifest> {
  // loaded here: origin.js loads the origin server, which the files that only make manifests do not
  const { uploadBlob } = await import('./origin.js');
  const base = Buffer.from(`base tar of ${project}/${run}${variant}`);
  await uploadBlob(url, base);
  return runManifest(project, run, base);
}
