// Filter arguments with spread's exact matching rules (spread-spec §7, NewFilter). The
// regular-expression syntax left live is Go's (RE2); where it differs from JavaScript's in
// what a filter may say, it is translated: inline flags at the start ("(?i)qemu"), and named
// groups "(?P<name>…)". Inline flags elsewhere, which JavaScript (Node 20) lacks, are refused.
import { projectError } from './yaml.js';

interface FilterExp {
  readonly re: RegExp;
  readonly firstSample: number;
  readonly lastSample: number;
}

interface Filter {
  /** True when no arguments were given. */
  readonly empty: boolean;
  pass(name: string, sample: number): boolean;
}

const SAMPLE = /^(.*)#(\d+)(?:\.\.(\d+))?$/;
const RUNS = /\.+|:+|#/g;
const COLON = '(?::.+)*:(?:.+:)*';
/** Go's inline flags at the start of an argument: i (case), m (multi-line), s (dot matches \n); U (ungreedy) has no JavaScript match. */
const LEADING_FLAGS = /^\(\?([imsU]+)\)/;

/** JavaScript's regular expression for the Go (RE2) expression `source`, made of a filter's argument. */
function goRegExp(source: string, flags: string, arg: string): RegExp {
  const translated = source.replace(/\(\?P</g, '(?<');
  if (/\(\?[imsU-]+[:)]/.test(translated)) throw projectError(`invalid filter string: ${JSON.stringify(arg)} (inline flags are only taken at the start, e.g. "(?i)qemu")`);
  try {
    return new RegExp(translated, flags);
  } catch {
    throw projectError(`invalid filter string: ${JSON.stringify(arg)}`);
  }
}

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
    const leading = LEADING_FLAGS.exec(body);
    if (leading?.[1]!.includes('U')) throw projectError(`invalid filter string: ${JSON.stringify(arg)} (the ungreedy flag U is not supported)`);
    const flags = leading ? [...new Set(leading[1])].join('') : '';
    if (leading) body = body.slice(leading[0].length);
    body = body.replace(RUNS, (run) => {
      if (run === '.') return '\\.';
      if (run === '...') return '[^:]*';
      if (run === ':') return COLON;
      throw projectError(`invalid filter string: ${JSON.stringify(run)}`);
    });
    if (body.startsWith(COLON) || body.startsWith('/')) body = '.+' + body;
    if (body.endsWith(':(?:.+:)*') || body.endsWith('/')) body += '.+';
    return { re: goRegExp(`(?:^|:)${body}(?:$|[:#])`, flags, arg), firstSample, lastSample };
  });
  return {
    empty: exps.length === 0,
    pass(name: string, sample: number): boolean {
      if (exps.length === 0) return true;
      return exps.some((e) => (e.firstSample === 0 || (sample >= e.firstSample && sample <= e.lastSample)) && e.re.test(name));
    },
  };
}
