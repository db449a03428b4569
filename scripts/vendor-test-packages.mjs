// Bundles the heavy packages that the compiled tests import (scripts/build-tests.mjs) into
// .test-build/node_modules/, where Node finds them before the repository's node_modules:
// it resolves a bare import by walking up from the importing file, and every file of
// .test-build/src and .test-build/test is below it. No import is rewritten.
//
// Node's loader resolves, reads and compiles a package's files one by one: typebox's ESM
// build is 200 files, undici 112, fastify with pino and ajv about 150, each a lookup and a
// read. A test process importing the cache's server spent about 0.85 s of CPU on that; one
// bundle per package, whose shared dependencies are in chunks of their own (splitting), is
// read in a few files. One copy of each module still: fastify and src/log.ts get the same
// pino (a logger's symbols are its own), typebox and typebox/value the same registries.
//
// Each package gets a package.json whose `exports` are the subpaths .test-build imports,
// resolved as Node resolves them there ("import" condition, `main` only); an ES module is
// re-exported as it is; a CommonJS one is default-exported (its module.exports) with the
// named exports Node gives it, taken from Node's own import of it.
//
// tap, as the test files import it, is a bundle of its own (bundleTap): its ~200 modules
// cost every test process about 0.2 s of CPU to load one by one. The runner and the
// modules it hands each test process (--import of @tapjs/processinfo) stay the repository's.
//
// Left out: packages that read files beside themselves at run time (ssh2's native module,
// xdelta3-wasm's .wasm), and small ones that bundling gains nothing on.
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { NODE_ESM } from './esbuild-node.mjs';

/** The packages bundled: those costing a test process the most to load. */
const VENDORED = ['@sinclair/typebox', 'undici', 'fastify', 'prom-client', 'ajv', 'pino', 'yaml', '@aws-sdk/client-s3', '@aws-sdk/lib-storage', 'tar-stream', 'yauzl', 'commander'];

/** The package of a bare specifier: `@scope/name` or `name`. */
const packageOf = (specifier) => specifier.split('/').slice(0, specifier.startsWith('@') ? 2 : 1).join('/');

/** Every specifier of a VENDORED package that a compiled file of `out` imports (esbuild writes them double-quoted). */
function importedSpecifiers(out) {
  const specifiers = new Set();
  for (const dir of ['src', 'test']) {
    for (const entry of readdirSync(join(out, dir), { withFileTypes: true, recursive: true })) {
      if (!entry.isFile() || !entry.name.endsWith('.js')) continue;
      const code = readFileSync(join(entry.parentPath, entry.name), 'utf8');
      for (const m of code.matchAll(/(?:\bfrom|\bimport)\s*\(?\s*"((?:@[\w.-]+\/)?[\w.-]+(?:\/[\w./-]*)?)"/g)) {
        if (VENDORED.includes(packageOf(m[1]))) specifiers.add(m[1]);
      }
    }
  }
  return [...specifiers].sort();
}

/** Whether Node loads `file` as an ES module: by its extension, or the `type` of its package.json. */
function isModule(file) {
  if (file.endsWith('.mjs')) return true;
  if (file.endsWith('.cjs')) return false;
  for (let dir = dirname(file); dir !== dirname(dir); dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) return JSON.parse(readFileSync(manifest, 'utf8')).type === 'module';
  }
  return false;
}

/** The module re-exporting `specifier` as Node gives it to an importer of the repository. */
async function entryModule(specifier) {
  const file = fileURLToPath(import.meta.resolve(specifier));
  const names = Object.keys(await import(specifier));
  if (isModule(file)) {
    return `export * from ${JSON.stringify(file)};\n${names.includes('default') ? `export { default } from ${JSON.stringify(file)};\n` : ''}`;
  }
  // Node's default export of CommonJS is module.exports; its named exports, those its lexer finds
  const named = names.filter((name) => name !== 'default');
  return [
    `const m = require(${JSON.stringify(file)});`,
    'export default m;',
    `const { ${named.map((name, i) => `${JSON.stringify(name)}: e${i}`).join(', ')} } = m;`,
    `export { ${named.map((name, i) => `e${i} as ${JSON.stringify(name)}`).join(', ')} };`,
    '',
  ].join('\n');
}

/** Where a specifier's bundle goes under node_modules/: `<package>/<subpath or index>`. */
const entryName = (specifier) => {
  const name = packageOf(specifier);
  return `${name}/${specifier.slice(name.length + 1) || 'index'}`;
};

/** Package resolution as Node's: no "module" condition, no `module` field. */
const AS_NODE_RESOLVES = { conditions: [], mainFields: ['main'] };

/** Bundles the packages the compiled tree `out` imports into `out`/node_modules. */
export async function vendorTestPackages(out) {
  const specifiers = importedSpecifiers(out);
  const entries = new Map(await Promise.all(specifiers.map(async (specifier) => [specifier, await entryModule(specifier)])));
  const modules = join(out, 'node_modules');
  await build({
    ...NODE_ESM,
    entryPoints: Object.fromEntries(specifiers.map((specifier) => [entryName(specifier), `vendor:${specifier}`])),
    outdir: modules,
    outExtension: { '.js': '.mjs' },
    splitting: true,
    chunkNames: '.vendored/[name]-[hash]',
    ...AS_NODE_RESOLVES,
    plugins: [
      {
        name: 'vendor-entries',
        setup(build) {
          build.onResolve({ filter: /^vendor:/ }, ({ path }) => ({ path: path.slice('vendor:'.length), namespace: 'vendor' }));
          build.onLoad({ filter: /.*/, namespace: 'vendor' }, ({ path }) => ({ contents: entries.get(path), loader: 'js', resolveDir: out }));
        },
      },
    ],
  });
  for (const name of new Set(specifiers.map(packageOf))) {
    const exports = Object.fromEntries(specifiers.filter((specifier) => packageOf(specifier) === name).map((specifier) => [`.${specifier.slice(name.length)}`, `./${entryName(specifier).slice(name.length + 1)}.mjs`]));
    writePackage(modules, name, exports);
  }
  await bundleTap(modules);
}

function writePackage(modules, name, exports) {
  mkdirSync(join(modules, name), { recursive: true });
  writeFileSync(join(modules, name, 'package.json'), `${JSON.stringify({ name, type: 'module', exports }, null, 2)}\n`);
}

/** tcompare's module that loads react-element-to-jsx-string (and React) as it is imported, for formatting React elements. */
const TCOMPARE_REACT = /[\\/]tcompare[\\/]dist[\\/]esm[\\/]react-element-to-jsx-string\.js$/;

/**
 * tap in one file, `modules`/tap/index.mjs, apart from the other packages' chunks: it
 * shares no state with them. Its test class is the one `tap build` made for the plugins of
 * package.json (test-build-stamp counts it among the build's inputs).
 */
async function bundleTap(modules) {
  await build({
    ...NODE_ESM,
    // @tapjs/stack leaves tap's own frames out of the stacks it reports (the `at` of a
    // failure is the test's line either way) by the path of the packages they are in:
    // the bundle's is node_modules/tap.
    stdin: {
      contents: "import { addIgnoredPackage } from '@tapjs/stack';\naddIgnoredPackage('tap');\nexport * from 'tap';\nexport { default } from 'tap';\n",
      resolveDir: dirname(modules),
      loader: 'js',
    },
    outfile: join(modules, 'tap', 'index.mjs'),
    ...AS_NODE_RESOLVES,
    minifyWhitespace: true,
    plugins: [
      {
        // loaded on first use instead (a test never formats a React element): ~25 ms of every test
        // process. Not scripts/lazy-modules.mjs's stand-ins: tcompare loads the package with a
        // require() of its own (createRequire) at run time, which esbuild leaves alone.
        name: 'lazy-react-formatting',
        setup(build) {
          build.onLoad({ filter: TCOMPARE_REACT }, ({ path }) => ({
            contents: `import { createRequire } from 'node:module';\nconst require = createRequire(${JSON.stringify(path)});\nexport default (...args) => require('react-element-to-jsx-string').default(...args);\n`,
            loader: 'js',
          }));
        },
      },
    ],
  });
  writePackage(modules, 'tap', { '.': './index.mjs' });
}
