// Process entry point of the CLI (bin/fleetcache.js loads the compiled copy of this file).
import { main } from './main.js';

process.exitCode = await main(process.argv.slice(2));
// A cache worker that failed before it could tell its primary (its command's module did not
// load): the IPC channel would keep it alive, and its primary waiting for it to listen. Not
// process.disconnect(): a cluster worker then exits 0.
if (process.exitCode !== 0 && process.connected) process.exit();
