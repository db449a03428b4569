// Process entry point of the CLI (bin/fleetcache.js loads its bundle, dist/cli/bin.js).
import { main } from './main.js';
import { deferWasmTierUp } from '../wasm-tiering.js';

// undici's HTTP parser (wasm) is optimized only in a process that reads many responses
deferWasmTierUp();

// A reader that stops early (`| head`) closes the pipe: what is left to print has nowhere to
// go, which is no reason to crash, nor to stop a run before its machines are discarded.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  process.stdout.destroy(); // the rest is dropped
});

process.exitCode = await main(process.argv.slice(2));
// A cache worker that failed before it could tell its primary (its command's module did not
// load): the IPC channel would keep it alive, and its primary waiting for it to listen. Not
// process.disconnect(): a cluster worker then exits 0.
if (process.exitCode !== 0 && process.connected) process.exit();
