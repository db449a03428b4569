// esbuild options shared by the two bundles of this package (scripts/build-cli.mjs,
// scripts/build-agent.mjs): ESM for Node 20.

/** Options for a bundle run by Node 20 as an ES module. */
export const NODE_ESM = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  // CommonJS dependencies call require() for node builtins; ESM output has no require.
  banner: { js: "import { createRequire as __fleetcacheCreateRequire } from 'node:module';\nconst require = __fleetcacheCreateRequire(import.meta.url);" },
  // Errors report new.target.name, and their names are in logs: never renamed (the CLI
  // checks its classes instead, see build-cli.mjs).
  keepNames: true,
  legalComments: 'none',
  logLevel: 'warning',
};
