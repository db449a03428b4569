// spread's log lines and final summary (spread-spec §16), plus the transfer figures.
export type FailureKind =
  | 'task prepare'
  | 'task restore'
  | 'suite prepare'
  | 'suite restore'
  | 'backend prepare'
  | 'backend restore'
  | 'project prepare'
  | 'project restore';

const FAILURE_ORDER: readonly FailureKind[] = [
  'task prepare',
  'task restore',
  'suite prepare',
  'suite restore',
  'backend prepare',
  'backend restore',
  'project prepare',
  'project restore',
];

function stamp(d = new Date()): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/**
 * Script output (-vv) kept while a shell has the terminal, at most: past it the oldest is
 * dropped and counted (scripts can print gigabytes; the log lines are always kept).
 */
const HELD_OUTPUT_MAX = 8 * 1024 * 1024;

/**
 * Where a run's lines go: stdout by default, with spread's timestamp prefix; script output
 * too with -vv. While an interactive shell has the terminal, lines are held, then written.
 */
export class RunLog {
  /** Text kept while an interactive shell has the terminal (undefined: script output dropped). */
  #held: ({ text: string; output: boolean } | undefined)[] | undefined;
  /** Where the oldest script output still held may be: every entry before it is a log line or dropped. */
  #oldest = 0;
  /** Dropped entries still in #held (removed once they are most of it). */
  #holes = 0;
  /** Characters of script output in #held, and those dropped from it. */
  #heldOutput = 0;
  #droppedOutput = 0;

  constructor(readonly write: (text: string) => void = (t) => process.stdout.write(t), readonly verbose = 0) {}

  #emit(text: string, output = false): void {
    const held = this.#held;
    if (!held) return this.write(text);
    held.push({ text, output });
    if (!output) return;
    this.#heldOutput += text.length;
    // the oldest output goes first; #oldest only moves forward, so this is linear overall
    for (; this.#heldOutput > HELD_OUTPUT_MAX && this.#oldest < held.length; this.#oldest++) {
      const e = held[this.#oldest];
      if (!e?.output) continue;
      held[this.#oldest] = undefined;
      this.#holes++;
      this.#heldOutput -= e.text.length;
      this.#droppedOutput += e.text.length;
    }
    // the holes left go once they are most of the list (the log lines before them stay)
    if (this.#holes > 4096 && this.#holes * 2 > held.length) {
      const before = held.slice(0, this.#oldest).filter((e) => e !== undefined);
      this.#held = [...before, ...held.slice(this.#oldest)];
      this.#oldest = before.length;
      this.#holes = 0;
    }
  }

  line(text: string): void {
    this.#emit(`${stamp()} ${text}\n`);
  }

  /** A script's output under a title (blockText): one line on the title line, several framed by ----- lines (not re-prefixed). */
  block(title: string, body: string): void {
    this.#emit(blockText(title, body));
  }

  /** Script output as it arrives (-vv). */
  output(chunk: string): void {
    this.#emit(chunk, true);
  }

  /**
   * Keeps every line from now on until release(), which writes them in order with the
   * times they were logged at (spread's termLock): the other machines' lines do not land
   * in the middle of an interactive shell.
   */
  hold(): void {
    this.#held ??= [];
  }

  /** Writes what was held, piece by piece, and stops holding. */
  release(): void {
    const held = this.#held;
    const dropped = this.#droppedOutput;
    this.#held = undefined;
    this.#oldest = this.#holes = this.#heldOutput = this.#droppedOutput = 0;
    if (dropped > 0) this.line(`${dropped} characters of script output were dropped while a shell had the terminal (the last ${HELD_OUTPUT_MAX} are kept)`);
    for (const e of held ?? []) if (e) this.write(e.text);
  }
}

/**
 * spread's `(k/n)` of "Executing" lines (spec §16): a job's k is assigned when it starts
 * executing, or when it is finished without executing (aborted, failed prepare, -restore);
 * n is the number of selected jobs. A -repeat round keeps the job's k.
 */
export class JobCounter {
  readonly #numbers = new Map<string, number>();

  constructor(readonly total: number) {}

  /** The job's k, assigned now when it has none yet. */
  number(jobName: string): number {
    let k = this.#numbers.get(jobName);
    if (k === undefined) {
      k = this.#numbers.size + 1;
      this.#numbers.set(jobName, k);
    }
    return k;
  }
}

export class RunTally {
  successful = 0;
  readonly aborted: string[] = [];
  readonly failed: string[] = [];
  readonly failures = new Map<FailureKind, string[]>();
  /**
   * Jobs whose artifacts could not be sent (after every URL and pass): logged as spread
   * does ("Error fetching artifacts"), the run's outcome unchanged, listed last in the summary.
   */
  readonly artifactsLost: string[] = [];

  fail(kind: FailureKind, item: string): void {
    const list = this.failures.get(kind) ?? [];
    list.push(item);
    this.failures.set(kind, list);
  }

  get ok(): boolean {
    return this.aborted.length === 0 && this.failed.length === 0 && this.failures.size === 0;
  }

  /**
   * spread's summary as its log lines: the two counters, then each non-empty "Failed ..."
   * block as one line with its items below (spread prints each with one timestamp).
   */
  summaryLines(): string[] {
    const lines = [`Successful tasks: ${this.successful}`, `Aborted tasks: ${this.aborted.length}`];
    const block = (title: string, items: string[]) => {
      if (items.length === 0) return;
      lines.push([`${title}: ${items.length}`, ...[...items].sort().map((item) => `    - ${item}`)].join('\n'));
    };
    block('Failed tasks', this.failed);
    for (const kind of FAILURE_ORDER) block(`Failed ${kind}`, this.failures.get(kind) ?? []);
    block('Artifacts not sent', this.artifactsLost);
    return lines;
  }

  summary(): string {
    return this.summaryLines().join('\n');
  }
}

/**
 * A script's output as spread logs it (its outputErr): trimmed; one line goes on the stamped
 * title line (`Error executing … : + exit 1`), several between dashes below it.
 */
export function blockText(title: string, body: string): string {
  const text = body.trim();
  if (text !== '' && !text.includes('\n')) return `${stamp()} ${title} : ${text}\n`;
  return `${stamp()} ${title} :\n-----\n${text}\n-----\n`;
}

/** `backend:system:task[:variant]`: a job name without its #sample suffix, as spread lists failures. */
export function summaryItem(jobName: string): string {
  return jobName.replace(/#\d+$/, '');
}
