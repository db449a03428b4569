// Job names and their order (spread-spec §6).

/** `backend:system:suite/task[:variant][#sample]`; sample 0 = task without samples. */
export function jobName(backend: string, system: string, task: string, variant: string, sample: number): string {
  let name = `${backend}:${system}:${task}`;
  if (variant !== '') name += `:${variant}`;
  if (sample > 0) name += `#${sample}`;
  return name;
}

interface Sortable {
  readonly name: string;
  readonly backend: { readonly name: string };
  readonly system: { readonly name: string };
  readonly task: { readonly name: string; readonly samples: number };
  readonly variant: string;
  readonly sample: number;
}

/**
 * A key whose plain string order is spread's job order: by name, byte-wise, except that
 * jobs of one backend, system and task go by sample number (then by variant, where
 * spread's order is random). The character right after `backend:system:task` is kept,
 * so the order between tasks is exactly the order of their names.
 */
function sortKey(job: Sortable): string {
  if (job.task.samples <= 1) return job.name;
  const prefix = `${job.backend.name}:${job.system.name}:${job.task.name}`;
  return `${prefix}${job.variant === '' ? '#' : ':'}${String(job.sample).padStart(10, '0')}:${job.variant}`;
}

/** Sorts jobs in spread's order (fast path: plain string sort of keys). */
export function sortJobs<J extends Sortable>(jobs: readonly J[]): J[] {
  const byKey = new Map<string, J>();
  for (const job of jobs) byKey.set(sortKey(job), job);
  return [...byKey.keys()].sort().map((k) => byKey.get(k)!);
}
