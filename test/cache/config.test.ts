// The cache's YAML configuration: `workers` and the message for a value that matches no
// branch of a union (file, line, field, and every accepted form).
import t from 'tap';
import { parseCacheConfig, resolveCacheConfig } from '../../src/cache/config.js';

t.test('workers: a number, or auto for one per CPU; default 1', async (t) => {
  const base = 'upstream: http://127.0.0.1:9\n';
  t.equal(resolveCacheConfig(parseCacheConfig(base, 'c.yaml')).workers, 1);
  t.equal(resolveCacheConfig(parseCacheConfig(`${base}workers: 3\n`, 'c.yaml')).workers, 3);
  t.ok(resolveCacheConfig(parseCacheConfig(`${base}workers: auto\n`, 'c.yaml')).workers! >= 1);
  t.throws(() => parseCacheConfig(`${base}workers: many\n`, 'c.yaml'), { code: 'FC_ERR_CONFIG', message: 'c.yaml:2: workers: must be integer or "auto"' });
  t.throws(() => parseCacheConfig(`${base}maxSize: [1]\n`, 'c.yaml'), { code: 'FC_ERR_CONFIG', message: 'c.yaml:2: maxSize: must be string or integer' });
  t.throws(() => parseCacheConfig(`${base}workers: 0\n`, 'c.yaml'), { code: 'FC_ERR_CONFIG', message: 'c.yaml:2: workers: must be >= 1 or "auto"' });
});
