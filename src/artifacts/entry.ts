// One stored file of a job's artifacts, as its index lists it: a file of its own, free of the
// HTTP client, because the agent checks its `artifacts` arguments with it before it loads the
// transfer code (test/agent/start.test.ts).
import { Type } from '@sinclair/typebox';

export const artifactEntrySchema = Type.Object({ path: Type.String(), size: Type.Integer({ minimum: 0 }), digest: Type.String({ pattern: '^sha256:[0-9a-f]{64}$' }) });
