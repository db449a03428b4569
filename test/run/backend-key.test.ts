// A backend's `key` reaches its provider as spread evaluates it: $(HOST:…) run and trimmed,
// and no key at all when that prints nothing (spread then falls back to the password).
import t, { type Test } from 'tap';
import { checkBackend } from '../../src/backends/registry.js';
import { withEvaluatedKey } from '../../src/run/providers.js';
import { findProject, loadProject, resolveProjectFields } from '../../src/spread/index.js';
import { project, spreadYaml } from './project.js';

/** The options the runner gives the adhoc backend `cloud` whose key is `keyText`. */
async function adhocOptions(t: Test, keyText: string): Promise<Readonly<Record<string, unknown>>> {
  const dir = await project(t, spreadYaml('keys', ['backends:', '  cloud:', '    type: adhoc', `    key: ${JSON.stringify(keyText)}`, '    allocate: ADDRESS 127.0.0.1:22', '    systems: [debian-12]']));
  const p = await loadProject(findProject(dir));
  const backend = p.backends.find((b) => b.name === 'cloud')!;
  return withEvaluatedKey(backend.options, resolveProjectFields(p).keys.get('cloud'));
}

t.test('a key from a host command is the command output, trimmed', async (t) => {
  const options = await adhocOptions(t, '$(HOST: echo "  keys/id_ed25519  ")');
  t.equal(options.key, 'keys/id_ed25519');
  t.equal(checkBackend('adhoc', options), null, 'the provider accepts the options');
});

t.test('a key whose host command prints nothing is no key, not the raw text', async (t) => {
  // The raw text names a file path: taken as the key, it would fail as a missing key file.
  const options = await adhocOptions(t, '$(HOST: cat /nonexistent/id_ed25519 2>/dev/null || true)');
  t.notOk('key' in options, 'no key is given to the provider');
  t.equal(checkBackend('adhoc', options), null, 'the provider accepts the options');
});

t.test('a literal key is kept as written', async (t) => {
  const options = await adhocOptions(t, 'keys/id_rsa');
  t.equal(options.key, 'keys/id_rsa');
});
