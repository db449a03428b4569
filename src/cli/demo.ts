// `fleetcache demo`: the README's first command. Runs the main job on the embedded
// default (local disk under cache/, loopback ports) and prints what happened.
import { createHash, randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { Readable } from 'node:stream';
import type { Command } from 'commander';
import { httpGet, httpPut, joinUrl } from '../client/http.js';
import { formatBytes } from '../config/units.js';
import { FleetError } from '../errors.js';
import { buildOrigin } from '../origin/server.js';
import { resolveOriginTokens } from './origin.js';

interface DemoFlags {
  data: string;
}

async function runDemo(flags: DemoFlags): Promise<void> {
  const dataDir = resolve(flags.data, 'demo-origin');
  const { tokens } = resolveOriginTokens(undefined, dataDir);
  const { app, context } = await buildOrigin({ dataDir, tokens, logLevel: 'warn' });
  await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const addr = app.server.address();
    const origin = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
    const say = (line: string) => process.stdout.write(`${line}\n`);
    say(`origin listening ${origin} (data in ${dataDir})`);

    const blob = randomBytes(4 * 1024 * 1024);
    const hex = createHash('sha256').update(blob).digest('hex');
    const put = await httpPut<{ digest: string; size: number }>(joinUrl(origin, `/cas/sha256/${hex}`), Readable.from([blob]), { token: tokens[0] });
    say(`uploaded ${formatBytes(put.size)} as ${put.digest}`);

    const res = await httpGet(joinUrl(origin, `/cas/sha256/${hex}`));
    const back = createHash('sha256');
    let size = 0;
    for await (const chunk of res.body) {
      back.update(chunk as Buffer);
      size += (chunk as Buffer).length;
    }
    const backHex = back.digest('hex');
    if (backHex !== hex) throw new FleetError('FC_ERR_DIGEST_MISMATCH', `fetched content hashes to ${backHex}, expected ${hex}`);
    say(`fetched back ${formatBytes(size)}, sha256 verified (etag ${res.headers.etag})`);

    const stats = context.ledger.snapshot();
    say(`origin counted ${formatBytes(stats.totals.bytesIn)} in, ${formatBytes(stats.totals.bytesOut)} out`);
  } finally {
    await app.close();
  }
}

export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('Run the main job on the embedded default: an origin on local disk, an upload and a verified download')
    .option('--data <dir>', 'where the demo keeps its data', 'cache')
    .action(runDemo);
}
