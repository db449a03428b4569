// The origin's configuration: one TypeBox schema gives the type and the validation.
import { Type, type Static } from '@sinclair/typebox';

export const OriginConfigSchema = Type.Object(
  {
    listen: Type.String({ default: '127.0.0.1:8080', description: 'HOST:PORT; port 0 picks a free one' }),
    data: Type.String({ default: 'cache/origin', description: 'data directory (blobs, names)' }),
    tokenFile: Type.Optional(Type.String({ description: 'file holding the write token(s), one per line' })),
    readAccess: Type.Union([Type.Literal('public'), Type.Literal('token')], { default: 'public' }),
    limits: Type.Object(
      {
        maxBlobSize: Type.Union([Type.String(), Type.Integer({ minimum: 1 })], { default: '20GiB' }),
        maxRecordSize: Type.Union([Type.String(), Type.Integer({ minimum: 1 })], { default: '1MiB' }),
        maxHeaders: Type.Integer({ minimum: 8, default: 64 }),
      },
      { additionalProperties: false, default: {} },
    ),
    storage: Type.Object(
      { type: Type.Literal('disk', { default: 'disk' }) },
      { additionalProperties: false, default: { type: 'disk' } },
    ),
    logLevel: Type.String({ default: 'info' }),
  },
  { additionalProperties: false },
);

export type OriginConfig = Static<typeof OriginConfigSchema>;

/** What buildOriginServer needs, already resolved (tokens read, sizes parsed). */
export interface OriginOptions {
  readonly dataDir: string;
  /** Accepted write tokens; writes are refused when empty. */
  readonly tokens: readonly string[];
  readonly readAccess?: 'public' | 'token';
  readonly maxBlobSize?: number;
  readonly maxRecordSize?: number;
  readonly maxHeaders?: number;
  /** pino level, or false for no logs (tests). */
  readonly logLevel?: string | false;
}
