// Filter arguments with spread's exact matching rules (spread-spec §7, NewFilter).
import { projectError } from './yaml.js';

interface FilterExp {
  readonly re: RegExp;
  readonly firstSample: number;
  readonly lastSample: number;
}

export interface Filter {
  /** True when no arguments were given. */
  readonly empty: boolean;
  pass(name: string, sample: number): boolean;
}

const SAMPLE = /^(.*)#(\d+)(?:\.\.(\d+))?$/;
const RUNS = /\.+|:+|#/g;
const COLON = '(?::.+)*:(?:.+:)*';

/** Builds one regular expression per argument; a job passes when any matches. */
export function compileFilter(args: readonly string[]): Filter {
  const exps: FilterExp[] = args.map((arg) => {
    let body = arg;
    let firstSample = 0;
    let lastSample = 0;
    const m = SAMPLE.exec(arg);
    if (m) {
      body = m[1]!;
      firstSample = Number(m[2]);
      lastSample = m[3] === undefined ? firstSample : Number(m[3]);
      if (firstSample < 1 || lastSample < firstSample) throw projectError(`invalid sample range in filter string: ${JSON.stringify(arg)}`);
    }
    body = body.replace(RUNS, (run) => {
      if (run === '.') return '\\.';
      if (run === '...') return '[^:]*';
      if (run === ':') return COLON;
      throw projectError(`invalid filter string: ${JSON.stringify(run)}`);
    });
    if (body.startsWith(COLON) || body.startsWith('/')) body = '.+' + body;
    if (body.endsWith(':(?:.+:)*') || body.endsWith('/')) body += '.+';
    let re: RegExp;
    try {
      re = new RegExp(`(?:^|:)${body}(?:$|[:#])`);
    } catch {
      throw projectError(`invalid filter string: ${JSON.stringify(arg)}`);
    }
    return { re, firstSample, lastSample };
  });
  return {
    empty: exps.length === 0,
    pass(name: string, sample: number): boolean {
      if (exps.length === 0) return true;
      return exps.some((e) => (e.firstSample === 0 || (sample >= e.firstSample && sample <= e.lastSample)) && e.re.test(name));
    },
  };
}
