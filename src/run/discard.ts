// `fleetcache run --discard` (spread -discard): releases the machines earlier runs kept.
import { join } from 'node:path';
import type { MachineRecord } from '../backends/backend.js';
import { errorMessage, FleetError } from '../errors.js';
import { findProject, loadProject, resolveProjectFields } from '../spread/index.js';
import { createProviders } from './providers.js';
import { RunLog } from './report.js';
import { ReusePool, RunningMachines, sameMachine } from './reuse.js';
import { DEFAULT_DATA_DIR } from './state-dir.js';

/**
 * spread -discard: releases the machines an earlier -reuse run kept, running nothing on them
 * and reaching none (Provider.discardRecord). Returns how many were discarded; throws after
 * trying them all when some could not be, their records kept for the next try.
 */
export async function discardKeptMachines(o: { cwd: string; log?: RunLog; dataRoot?: string }): Promise<number> {
  const log = o.log ?? new RunLog();
  const project = await loadProject(findProject(o.cwd));
  const pool = await ReusePool.load(project.rootDir);
  const stateDir = o.dataRoot ?? join(project.rootDir, DEFAULT_DATA_DIR);
  // also the machines of runs killed before they could discard them (a -reuse run's are in both)
  const orphans = await RunningMachines.orphans(stateDir);
  const kept = pool.drain();
  const records = [...kept];
  for (const r of orphans.records) if (!records.some((k) => sameMachine(k, r))) records.push(r);
  const backends = new Set(project.backends.filter((b) => records.some((r) => r.backend === b.name)));
  const fields = resolveProjectFields(project);
  const providers = await createProviders(backends, fields, {
    projectRoot: project.rootDir,
    remotePath: fields.remotePath,
    password: '',
    stateDir,
    log: (line) => log.line(line),
  });
  const failed: MachineRecord[] = [];
  for (const record of records) {
    const label = `${record.backend}:${record.system} at ${record.address}`;
    const provider = providers.get(record.backend);
    try {
      if (!provider) throw new Error('backend no longer in spread.yaml');
      log.line(`Discarding ${label}...`);
      await provider.discardRecord(record, { name: record.system, ...(record.username ? { username: record.username } : {}), ...(record.password ? { password: record.password } : {}) });
    } catch (err) {
      log.line(`Cannot discard ${label}: ${errorMessage(err)}`);
      failed.push(record);
      if (kept.includes(record)) pool.keep(record);
    }
  }
  await pool.save();
  await RunningMachines.prune(orphans.files, failed);
  if (failed.length > 0) {
    throw new FleetError('FC_ERR_UNAVAILABLE', `${failed.length} of ${records.length} machine(s) could not be discarded; they stay on record for the next run --discard`);
  }
  return records.length;
}
