// The run manifest: what a machine needs to rebuild the project tar of one run. Stored by the
// origin at /projects/{project}/runs/{run}, which first checks it against this schema, its URL,
// and that its base and delta are stored (routes/names.ts); every digest in it is a /cas blob.
import { Type, type Static } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import { FleetError } from '../errors.js';
import { COMPRESSIONS } from '../delta/compress.js';

export const MANIFEST_FORMAT = 'fleetcache-run/1';

const Sha256 = Type.String({ pattern: '^sha256:[0-9a-f]{64}$' });
const Size = Type.Integer({ minimum: 0 });

const RunManifestSchema = Type.Object({
  format: Type.Literal(MANIFEST_FORMAT),
  project: Type.String({ minLength: 1 }),
  run: Type.String({ minLength: 1 }),
  created: Type.String(),
  /** The full tar the delta applies to. */
  base: Type.Object({
    id: Type.String({ minLength: 1 }),
    digest: Sha256,
    size: Size,
    /**
     * The size of the base's plain tar, which bounds its gunzip on machines (a gzip bomb
     * stops there). Absent from the manifests of pushes before it was recorded.
     */
    plainSize: Type.Optional(Size),
  }),
  /** null when the run's tar is the base itself (first upload, a re-base, or a tree unchanged since a base). */
  delta: Type.Union([
    Type.Object({
      digest: Sha256,
      size: Size,
      compression: Type.Union(COMPRESSIONS.map((c) => Type.Literal(c))),
      /** Size of the raw VCDIFF inside. */
      vcdiffSize: Size,
    }),
    Type.Null(),
  ]),
  /** The project tar the machine must end up with; checked before anything is unpacked. */
  result: Type.Object({ digest: Sha256, size: Size }),
});

export type RunManifest = Static<typeof RunManifestSchema>;

/**
 * Validates a manifest (fetched from a server, or uploaded to the origin); the message names
 * the field. Only the schema's fields are kept (Value.Clean drops the others without looking
 * into them): what the origin stores and serves is a manifest, not whatever else the body
 * carried (a value nested thousands deep made its JSON.stringify overflow the stack).
 */
export function parseRunManifest(value: unknown, source: string): RunManifest {
  if (Value.Check(RunManifestSchema, value)) return Value.Clean(RunManifestSchema, value) as RunManifest;
  const first = Value.Errors(RunManifestSchema, value).First();
  const where = first ? `${first.path || '/'}: ${first.message}` : 'invalid';
  throw new FleetError('FC_ERR_BAD_REQUEST', `${source}: not a run manifest (${where})`);
}
