// The spread-compatible project model: load a project, expand its jobs, read a job's
// environment and scripts. See spread-spec.md for the behaviour followed.
export type { Backend, Env, EnvEntry, EnvLevels, HostResult, Job, LevelScripts, Origin, Project, Suite, System, Task, Timeouts } from './model.js';
export { DISABLED_TIMEOUT } from './model.js';
export { findProject, loadProject } from './load.js';
export { expandJobs, type ExpandOptions } from './expand.js';
export { compileFilter, type Filter } from './filter.js';
export { jobEnvironment, resolveVariant } from './env.js';
export { jobName, sortJobs } from './order.js';
export { repackEnvironment, resolveProjectFields, resolveRemotePath, type ResolvedFields } from './resolve.js';
export { jobDebug, jobPrepare, jobRestore, joinScripts, levelTimeouts, scriptTimeouts, type ScriptLevel } from './scripts.js';
export { jobParts, jobRegion, type JobParts } from './parts.js';
