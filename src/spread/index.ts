// The spread-compatible project model: load a project, expand its jobs, read a job's
// environment and scripts. See spread-spec.md for the behaviour followed.
export type { Backend, Job, Project } from './model.js';
export { findProject, loadProject } from './load.js';
export { expandJobs } from './expand.js';
export { jobEnvironment } from './env.js';
export { repackEnvironment, resolveProjectFields, type ResolvedFields } from './resolve.js';
export { jobDebug, jobPrepare, jobRestore, levelTimeouts, scriptTimeouts, type ScriptLevel } from './scripts.js';
export { jobParts, jobRegion } from './parts.js';
