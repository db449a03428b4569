// undici and prom-client come into both bundles (scripts/build-cli.mjs, scripts/build-agent.mjs)
// through scripts/undici-core.cjs and scripts/prom-client-core.cjs, not their index.js:
// undici's also loads and runs fetch, WebSocket, cookies, the cache stores and the mocks
// (none of which src/ uses), about a tenth of the CPU a cache takes to start, and a third of
// the agent's bytes; prom-client's runs its default metrics, which load @opentelemetry/api
// (the origin's only). checkCores fails the build when src/ imports from either a value its
// file does not give as index.js does.
import { readdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The text of every module in and below `dir` (its .ts files). */
async function readSources(dir) {
  const texts = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) texts.push(...(await readSources(path)));
    else if (entry.name.endsWith('.ts')) texts.push(await readFile(path, 'utf8'));
  }
  return texts;
}

let sources;
/** The text of every module of src/, read once for the checks of a build. */
export function sourceTexts() {
  return (sources ??= readSources(join(ROOT, 'src')));
}

/** Each package that src/ imports through a file of its own (see the top of this file), and that file. */
const CORES = new Map([
  ['undici', join(ROOT, 'scripts/undici-core.cjs')],
  ['prom-client', join(ROOT, 'scripts/prom-client-core.cjs')],
]);

/**
 * The values (not the types) that the modules of src/ import from `pkg`, by name. Any other
 * form of import of it (a namespace, a default, import()) fails the build: what it takes
 * could not be checked against the package's file.
 */
async function valuesImported(pkg) {
  const names = new Set();
  for (const text of await sourceTexts()) {
    for (const m of text.matchAll(new RegExp(`^import (?!type )([^;]*?)\\s*from '${pkg}';|\\bimport\\(\\s*'${pkg}'`, 'gm'))) {
      const named = m[1]?.match(/^\{([^}]*)\}$/);
      if (!named) throw new Error(`build: src/ imports ${pkg} as \`${m[0]}\`: only \`import { … } from '${pkg}'\` can be checked against ${CORES.get(pkg)}`);
      for (const item of named[1].split(',').map((name) => name.trim())) if (item && !item.startsWith('type ')) names.add(item.split(/\s+as\s+/)[0]);
    }
  }
  return names;
}

/**
 * Fails unless every value src/ imports from a package of CORES is in its file, the very
 * object the package's index.js exports, and undici's index.js adds nothing more to the
 * Dispatcher's prototype than undici-core.cjs does (what an upgrade could change).
 */
export async function checkCores() {
  const require = createRequire(import.meta.url);
  const prototype = require('undici/lib/dispatcher/dispatcher').prototype;
  const cores = new Map([...CORES].map(([pkg, file]) => [pkg, require(file)]));
  const methods = Object.keys(prototype).join(' ');
  for (const [pkg, core] of cores) {
    const index = require(pkg);
    for (const name of await valuesImported(pkg)) {
      if (!(name in core) || core[name] !== index[name]) throw new Error(`build: src/ imports ${name} from ${pkg}, which ${CORES.get(pkg)} does not give as its index.js does: add it there`);
    }
  }
  if (Object.keys(prototype).join(' ') !== methods) throw new Error(`build: undici's index.js adds to the Dispatcher's prototype what ${CORES.get('undici')} does not (${methods} before it): do it there too`);
}

/** An esbuild plugin resolving src/'s imports of the packages of CORES to their files. */
export const cores = {
  name: 'cores',
  setup(build) {
    build.onResolve({ filter: new RegExp(`^(?:${[...CORES.keys()].join('|')})$`) }, ({ path }) => ({ path: CORES.get(path) }));
  },
};
