// A job's identity as plain names (for JSON output and the scheduler) and its region.
import type { Job } from './model.js';

interface JobParts {
  readonly name: string;
  readonly backend: string;
  readonly system: string;
  readonly suite: string;
  readonly task: string;
  readonly variant: string;
  readonly sample: number;
}

export function jobParts(job: Job): JobParts {
  return {
    name: job.name,
    backend: job.backend.name,
    system: job.system.name,
    suite: job.suite.name,
    task: job.task.name,
    variant: job.variant,
    sample: job.sample,
  };
}

/** The fleetcache `region:` of a job's machines: the system's, else the backend's. */
export function jobRegion(job: Job): string | undefined {
  return job.system.region ?? job.backend.region;
}
