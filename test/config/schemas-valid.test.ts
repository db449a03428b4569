// The configuration's validators skip checking their schemas against JSON Schema's
// meta-schema at every start (src/config/load.ts: validateSchema off); this checks each
// schema they compile once, so a malformed one still fails a test.
import { Ajv } from 'ajv';
import t from 'tap';
import { BACKENDS } from '../../src/backends/registry.js';
import { cacheConfigSchema } from '../../src/cache/config.js';
import { OriginConfigSchema } from '../../src/origin/config.js';
import { FleetSchema } from '../../src/run/fleet.js';

const schemas: Record<string, unknown> = {
  cache: cacheConfigSchema,
  origin: OriginConfigSchema,
  fleet: FleetSchema,
  ...Object.fromEntries(Object.entries(BACKENDS).map(([name, backend]) => [`backend ${name}`, backend.options])),
};

t.test('every configuration schema is valid JSON Schema', async (t) => {
  const ajv = new Ajv({ strict: false });
  t.ok(Object.keys(schemas).length > 4, 'the backends\' schemas among them');
  for (const [name, schema] of Object.entries(schemas)) {
    const valid = ajv.validateSchema(schema as object);
    t.ok(valid, valid ? name : `${name}: ${ajv.errorsText(ajv.errors)}`);
  }
});
