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
  readonly backend: object;
  readonly system: object;
  readonly task: object;
  readonly variant: string;
  readonly sample: number;
}

/**
 * By name, byte-wise; jobs of the same backend, system and task by sample number,
 * then by variant (spread leaves variants in random order; any order is compatible).
 */
export function compareJobs(a: Sortable, b: Sortable): number {
  if (a.backend === b.backend && a.system === b.system && a.task === b.task) {
    if (a.sample !== b.sample) return a.sample - b.sample;
    return a.variant < b.variant ? -1 : a.variant > b.variant ? 1 : 0;
  }
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}
