// The running-late warning's view of a script's output, as spread's client words it.
import t from 'tap';
import { lateWarning, OutputBuffer } from '../../src/backends/script.js';

const lines = (from: number, to: number): string => Array.from({ length: to - from + 1 }, (_, i) => `line ${from + i}\n`).join('');

t.test("a warning shows what is new since the last one, as spread's Since and tail do", async (t) => {
  const out = new OutputBuffer();
  t.same(out.warnTail(), { none: 'empty' });
  out.push(lines(1, 3));
  t.same(out.warnTail(), { tail: 'line 1\nline 2\nline 3' }, 'the first warning: all of it, trimmed');
  t.same(out.warnTail(), { none: 'unchanged' });
  out.push(lines(4, 5));
  t.equal(lateWarning('m (c)', out.warnTail()), 'WARNING: m (c) running late. Current output:\n-----\n(...)\nline 4\nline 5\n-----', 'a later one: the new lines under (...)');
  out.push('part');
  t.same(out.warnTail(), { tail: '(...)\npart' });
  out.push('ial\n');
  t.same(out.warnTail(), { tail: '(...)\npartial' }, 'a line shown in part is shown whole');
});

t.test('blank output is no output', async (t) => {
  const out = new OutputBuffer();
  out.push('\n \n');
  t.same(out.warnTail(), { none: 'empty' });
  out.push('\n');
  t.same(out.warnTail(), { none: 'unchanged' }, 'nor is a blank line after some');
});

t.test('of 14 lines or more, the last 10 under a count of the others (spread counts one short)', async (t) => {
  const thirteen = new OutputBuffer();
  thirteen.push(lines(1, 13));
  t.same(thirteen.warnTail(), { tail: lines(1, 13).trim() }, 'up to 13 lines whole');
  const many = new OutputBuffer();
  many.push(lines(1, 40));
  t.same(many.warnTail(), { tail: `(... 29 lines above ...)\n${lines(31, 40).trim()}` });
});
