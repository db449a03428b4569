// Modules that packages require at load for what fleetcache never uses, each a large
// builtin to compile or a package to evaluate: undici's client.js takes its HTTP/2 client
// (client-h2.js, which requires node:http2 at once) for connections that negotiate h2
// (allowH2, which src/ never sets); fastify's lib/server.js takes node:http2 and node:https
// (and with it node:tls) for servers made with `http2: true` or `https` options. Every
// fastify() takes its schema compilers: fast-json-stringify (for routes with a response
// schema) and ajv's JTD flavour (for `mode: 'JTD'`), which no route of src/ has; its
// plugin-utils.js takes semver, which it runs for plugins that name the fastify versions
// they need (src/ registers none), and whose load alone compiles a hundred regexps. pino
// takes thread-stream (its worker thread) for transports, which src/ never configures.
// prom-client's CPU metric (the origin's default metrics) takes @opentelemetry/api for
// exemplars, which src/ never enables.
// This esbuild plugin hands each a stand-in that loads the real module when first used: a
// cache's start, and every transfer of the agent, compile neither http2 nor (plain HTTP)
// https and tls, and a server's start evaluates none of the rest.
import { createRequire } from 'node:module';

/** CommonJS standing in for `target` (a file's path, or a builtin): loads it on first call, `new` or property read. */
function standIn(target) {
  return `'use strict'
let real
const load = () => (real ??= require(${JSON.stringify(target)}))
module.exports = new Proxy(function () {}, {
  apply: (_, self, args) => Reflect.apply(load(), self, args),
  construct: (_, args) => Reflect.construct(load(), args),
  get: (_, name) => load()[name],
})
`;
}

/** What to stand in for: the importer (its path's end) and the import, loaded on first use. */
const LAZY = [
  { importer: '/undici/lib/dispatcher/client.js', path: './client-h2.js' },
  { importer: '/fastify/lib/server.js', path: 'node:http2' },
  { importer: '/fastify/lib/server.js', path: 'node:https' },
  { importer: '/@fastify/fast-json-stringify-compiler/standalone.js', path: 'fast-json-stringify' },
  { importer: '/@fastify/ajv-compiler/lib/validator-compiler.js', path: 'ajv/dist/jtd' },
  { importer: '/@fastify/ajv-compiler/lib/serializer-compiler.js', path: 'ajv/dist/jtd' },
  { importer: '/fastify/lib/plugin-utils.js', path: 'semver' },
  { importer: '/pino/lib/transport.js', path: 'thread-stream' },
  { importer: '/prom-client/lib/metrics/processCpuTotal.js', path: '@opentelemetry/api' },
];

const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** An esbuild plugin giving each import of LAZY its stand-in. */
export const lazyModules = {
  name: 'lazy-modules',
  setup(build) {
    build.onResolve({ filter: new RegExp(`^(?:${[...new Set(LAZY.map(({ path }) => escape(path)))].join('|')})$`) }, ({ path, importer }) => {
      const lazy = LAZY.find((entry) => entry.path === path && importer.endsWith(entry.importer));
      // the module the importer's require() would load: a builtin, or a file found from the importer
      return lazy ? { path: path.startsWith('node:') ? path : createRequire(importer).resolve(path), namespace: 'lazy-modules' } : undefined;
    });
    build.onLoad({ filter: /.*/, namespace: 'lazy-modules' }, ({ path }) => ({ contents: standIn(path), loader: 'js', resolveDir: process.cwd() }));
  },
};
