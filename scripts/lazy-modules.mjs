// Modules that packages require at load for what fleetcache never uses, each a large
// builtin to compile: undici's client.js takes its HTTP/2 client (client-h2.js, which
// requires node:http2 at once) for connections that negotiate h2 (allowH2, which src/ never
// sets); fastify's lib/server.js takes node:http2 and node:https (and with it node:tls) for
// servers made with `http2: true` or `https` options. This esbuild plugin hands each a
// stand-in that loads the real module when first used: a cache's start, and every transfer
// of the agent, compile neither http2 nor (plain HTTP) https and tls.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** CommonJS standing in for `target` (a path esbuild resolves, or a builtin): loads it on first call or property read. */
function standIn(target) {
  return `'use strict'
let real
const load = () => (real ??= require(${JSON.stringify(target)}))
module.exports = new Proxy(function () {}, {
  apply: (_, self, args) => Reflect.apply(load(), self, args),
  get: (_, name) => load()[name],
})
`;
}

/** What to stand in for: the importer (its path's end), the import, and the module to load instead, on first use. */
const LAZY = [
  { importer: '/undici/lib/dispatcher/client.js', path: './client-h2.js', target: require.resolve('undici/lib/dispatcher/client-h2.js') },
  { importer: '/fastify/lib/server.js', path: 'node:http2', target: 'node:http2' },
  { importer: '/fastify/lib/server.js', path: 'node:https', target: 'node:https' },
];

const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** An esbuild plugin giving each import of LAZY its stand-in. */
export const lazyModules = {
  name: 'lazy-modules',
  setup(build) {
    build.onResolve({ filter: new RegExp(`^(?:${[...new Set(LAZY.map(({ path }) => escape(path)))].join('|')})$`) }, ({ path, importer }) => {
      const lazy = LAZY.find((entry) => entry.path === path && importer.endsWith(entry.importer));
      return lazy ? { path: lazy.target, namespace: 'lazy-modules' } : undefined;
    });
    build.onLoad({ filter: /.*/, namespace: 'lazy-modules' }, ({ path }) => ({ contents: standIn(path), loader: 'js', resolveDir: process.cwd() }));
  },
};
