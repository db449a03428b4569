// RunLog while a shell has the terminal: every log line kept and written in order when it is
// released, script output (-vv) kept up to a bound, the oldest dropped past it and said so.
import t from 'tap';
import { RunLog } from '../../src/run/report.js';

t.test('held lines come out in order; held script output is bounded', async (t) => {
  const writes: string[] = [];
  const log = new RunLog((text) => void writes.push(text), 2);
  log.hold();
  log.line('first line');
  const MiB = 1024 * 1024;
  const chunk = (i: number): string => String.fromCharCode(65 + i).repeat(MiB); // A, B, ... L
  for (let i = 0; i < 12; i++) log.output(chunk(i)); // 12 MiB of output
  log.line('last line');
  t.same(writes, [], 'nothing written while held');
  log.release();
  const text = writes.join('');
  t.match(writes[0], / 4194304 characters of script output were dropped while a shell had the terminal/, 'the drop is said first');
  const at = (s: string): number => text.indexOf(s);
  for (let i = 0; i < 4; i++) t.equal(at(chunk(i)), -1, `the oldest output dropped (${chunk(i)[0]})`);
  t.ok(at('first line') < at(chunk(4)), 'the line logged first comes first');
  for (let i = 5; i < 12; i++) t.ok(at(chunk(i - 1)) < at(chunk(i)), `then the output in order (${chunk(i)[0]})`);
  t.ok(at(chunk(11)) < at('last line'), 'and the line logged after it');
  t.ok(writes.every((w) => w.length <= MiB + 200), 'written piece by piece, never joined into one string');
  log.line('after');
  t.match(writes.at(-1)!, /after\n$/, 'written at once once released');
});

t.test('a hold of many small pieces of output keeps the newest, in order, within the bound', async (t) => {
  const writes: string[] = [];
  const log = new RunLog((text) => void writes.push(text), 2);
  log.hold();
  const piece = (i: number): string => `${String(i).padStart(9, '0')}\n`; // 10 characters
  const pieces = 2_000_000; // 20 MB: more than twice the bound
  for (let i = 0; i < pieces; i++) {
    log.output(piece(i));
    if (i % 500_000 === 0) log.line(`line ${i}`);
  }
  log.release();
  const kept = writes.filter((w) => /^\d{9}\n$/.test(w));
  t.equal(kept.length, (8 * 1024 * 1024) / 10 | 0, 'as many of the newest pieces as the bound holds');
  t.equal(kept.at(-1), piece(pieces - 1), 'the last one kept');
  t.ok(kept.every((w, i) => i === 0 || Number(w) === Number(kept[i - 1]) + 1), 'in order, none missing between');
  t.match(writes[0], new RegExp(` ${(pieces - kept.length) * 10} characters of script output were dropped`));
  t.same(writes.filter((w) => / line \d+\n$/.test(w)).map((w) => / line (\d+)/.exec(w)![1]), ['0', '500000', '1000000', '1500000'], 'every log line kept');
});
