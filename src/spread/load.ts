// spread.yaml and task.yaml → Project (spread-spec §1–3): reading files, listing suite
// directories. `$(HOST:…)` commands are not run here but as jobs are made (host.ts), as
// spread does.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Node } from 'yaml';
import type { Project, Suite, Task } from './model.js';
import { decodeBackends, decodeScripts, decodeTimeouts, optionalStr } from './load-backend.js';
import { HostCommands } from './host.js';
import { VALID_NAME, VALID_SUITE, VALID_TASK, invalidSystem } from './values.js';
import { YamlFile, projectError, type Fields } from './yaml.js';
import { errorMessage } from '../errors.js';

const PROJECT_FILES = ['spread.yaml', '.spread.yaml'];

function projectFileIn(dir: string): string | undefined {
  for (const name of PROJECT_FILES) {
    const file = path.join(dir, name);
    if (existsSync(file) && statSync(file).isFile()) return file;
  }
  return undefined;
}

/** Finds spread.yaml or .spread.yaml in cwd or the nearest parent; returns its directory. */
export function findProject(cwd: string): string {
  const start = path.resolve(cwd);
  for (let dir = start; ; dir = path.dirname(dir)) {
    if (projectFileIn(dir)) return dir;
    if (path.dirname(dir) === dir) break;
  }
  throw projectError(`cannot load project file from ${start}: cannot find spread.yaml or .spread.yaml`);
}

/** Loads the project whose spread.yaml (or .spread.yaml) is in `dir`; runs none of its `$(HOST:…)` commands. */
export async function loadProject(dir: string): Promise<Project> {
  const baseDir = path.resolve(dir);
  const file = projectFileIn(baseDir);
  if (!file) throw projectError(`cannot load project file from ${baseDir}: cannot find spread.yaml or .spread.yaml`);
  const y = new YamlFile(path.basename(file), readFileSync(file, 'utf8'));
  const f = y.fields(y.root, 'spread.Project');
  f.known(['fleetcache']); // fleetcache's own key, read by run/fleet.ts

  const name = y.str(f.get('project'));
  // no name at all: said where the project's mapping starts
  if (!VALID_NAME.test(name)) throw y.fail(f.get('project') ?? y.root, `invalid project name: ${JSON.stringify(name)}`);
  const remotePath = y.str(f.get('path'));
  if (remotePath === '') throw y.fail(y.root, 'missing project path field with remote project location');
  const reroot = y.str(f.get('reroot'));
  const rootDir = reroot ? path.resolve(baseDir, reroot) : baseDir;

  const environment = y.env(f.get('environment'), 'project');
  const backends = decodeBackends(y, f.get('backends'));
  if (backends.length === 0) throw y.fail(y.root, 'must define at least one backend');
  const suitePairs = y.mapPairs(f.get('suites'), 'map[string]*spread.Suite');
  if (suitePairs.length === 0) throw y.fail(y.root, 'must define at least one task suite');
  const taskFiles: YamlFile[] = [];
  const suites = suitePairs.map((p) => loadSuite(y, rootDir, p.key, p.keyNode, p.value, taskFiles));
  const include = f.get('include') === undefined ? undefined : y.list(f.get('include'));

  const partial = {
    name,
    rootDir,
    file,
    remotePath,
    environment,
    backends,
    suites,
    ...decodeScripts(y, f),
    ...decodeTimeouts(y, f),
    repack: y.script(f.get('repack')),
    include,
    exclude: y.list(f.get('exclude')),
    rename: y.list(f.get('rename')),
    origin: y.origin(y.root),
    at: y.fieldOrigins(f, ['path', 'backends', 'environment']),
  };
  const ignoredKeys = [y, ...taskFiles].flatMap((file) => file.ignoredKeys());
  return { ...partial, ignoredKeys, hostCommands: new HostCommands() };
}

/** `taskFiles`: each task file read is added there. */
function loadSuite(y: YamlFile, rootDir: string, key: string, keyNode: Node, node: Node | undefined, taskFiles: YamlFile[]): Suite {
  if (!key.endsWith('/')) throw y.fail(keyNode, `invalid suite name (must end with /): ${JSON.stringify(key)}`);
  if (!VALID_SUITE.test(key)) throw y.fail(keyNode, `invalid suite name: ${JSON.stringify(key)}`);
  const name = key;
  const label = `suite ${name}`;
  const f = y.fields(node, 'spread.Suite');
  const summary = y.str(f.get('summary')).trim();
  if (summary === '') throw y.fail(keyNode, `${label} is missing a summary`);
  const selection = decodeSelection(y, f, label);

  const dir = path.join(rootDir, name.slice(0, -1));
  let entries: string[];
  try {
    entries = readdirSync(dir).sort();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const reason = e.code === 'ENOENT' ? 'no such file or directory' : e.code === 'ENOTDIR' ? 'not a directory' : e.message;
    throw y.fail(keyNode, `cannot list ${label}: open ${dir}: ${reason}`);
  }
  const tasks: Task[] = [];
  for (const entry of entries) {
    const taskDir = path.join(dir, entry);
    if (!statSync(taskDir, { throwIfNoEntry: false })?.isDirectory()) continue;
    const taskFile = path.join(taskDir, 'task.yaml');
    let text: string;
    try {
      text = readFileSync(taskFile, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw projectError(`cannot read ${path.relative(rootDir, taskFile)}: ${errorMessage(err)}`);
    }
    const file = new YamlFile(path.relative(rootDir, taskFile), text);
    taskFiles.push(file);
    tasks.push(loadTask(file, name, entry, taskDir));
  }

  return {
    name,
    dir,
    summary,
    ...selection,
    ...decodeScripts(y, f),
    tasks,
    origin: y.origin(keyNode),
  };
}

function loadTask(y: YamlFile, suite: string, entry: string, dir: string): Task {
  const f = y.fields(y.root, 'spread.Task');
  const name = suite + entry;
  if (!VALID_TASK.test(name)) throw y.fail(y.root, `invalid task name: ${JSON.stringify(name)}`);
  const summary = y.str(f.get('summary')).trim();
  if (summary === '') throw y.fail(y.root, `${name} is missing a summary`);
  const samples = y.int(f.get('samples')) ?? 0;
  const selection = decodeSelection(y, f, name);

  const artifacts = y.list(f.get('artifacts')).map((p) => {
    // A trailing slash is accepted and normalised (README uses it; spec §17.5).
    const trimmed = p.length > 1 ? p.replace(/\/+$/, '') : p;
    if (path.isAbsolute(trimmed) || trimmed !== path.normalize(trimmed) || trimmed === '..' || trimmed.startsWith('../') || trimmed === '') {
      throw y.fail(f.get('artifacts'), `${name} has improper artifact path: ${p}`);
    }
    return trimmed;
  });

  return {
    name,
    suite,
    dir,
    summary,
    details: y.str(f.get('details')),
    ...selection,
    samples: samples === 0 ? 1 : samples,
    prepare: y.script(f.get('prepare')),
    execute: y.script(f.get('execute')),
    restore: y.script(f.get('restore')),
    debug: y.script(f.get('debug')),
    artifacts,
    origin: y.origin(y.root),
  };
}

/** The fields a suite and a task both have: where their jobs run, with what environment and limits. `label` names the suite or task in errors. */
function decodeSelection(y: YamlFile, f: Fields, label: string): Pick<Task, 'systems' | 'backends' | 'variants' | 'environment' | 'warnTimeout' | 'killTimeout' | 'priority' | 'manual' | 'assets' | 'at'> {
  const environment = y.env(f.get('environment'), label);
  const systems = y.list(f.get('systems'));
  const bad = invalidSystem(systems);
  if (bad !== undefined) throw y.fail(f.get('systems'), `${label} refers to invalid system name: ${JSON.stringify(bad)}`);
  return {
    systems,
    backends: y.list(f.get('backends')),
    variants: y.list(f.get('variants')),
    environment,
    ...decodeTimeouts(y, f),
    priority: y.int(f.get('priority'), 'int64'),
    manual: y.bool(f.get('manual')),
    assets: optionalStr(y, f.get('assets')),
    at: y.fieldOrigins(f, ['systems', 'backends', 'variants', 'environment']),
  };
}
