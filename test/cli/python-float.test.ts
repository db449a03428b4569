// Python's float() as tooltool's optparse applies it to `-s GB`: each case as python3's
// float() answered it (ValueError: undefined).
import t from 'tap';
import { pythonFloat } from '../../src/cli/python-float.js';

const CASES: Array<[string, number | undefined]> = [
  ['5', 5],
  [' 5 ', 5],
  ['\t5\n', 5],
  ['\u00a05\u3000', 5],
  ['\x855', 5],
  ['\ufeff5', undefined],
  ['\x1c5', undefined],
  ['2.5', 2.5],
  ['.5', 0.5],
  ['5.', 5],
  ['.', undefined],
  ['1e3', 1000],
  ['1E+3', 1000],
  ['1.5e-3', 0.0015],
  ['1e', undefined],
  ['e5', undefined],
  ['1e400', Infinity],
  ['1e-400', 0],
  ['-0', -0],
  ['-1', -1],
  ['+2', 2],
  ['+-1', undefined],
  ['1_000', 1000],
  ['1e1_0', 1e10],
  ['1__0', undefined],
  ['_1', undefined],
  ['1_', undefined],
  ['1_.5', undefined],
  ['1._5', undefined],
  ['inf', Infinity],
  ['+Infinity', Infinity],
  ['-iNF', -Infinity],
  ['infinit', undefined],
  ['nan', NaN],
  ['-NaN', NaN],
  ['0x10', undefined],
  ['0b1', undefined],
  ['', undefined],
  [' ', undefined],
  ['1 0', undefined],
  ['5GB', undefined],
];

t.test("pythonFloat is Python's float() of an ASCII number", async (t) => {
  for (const [text, want] of CASES) t.same(pythonFloat(text), want, JSON.stringify(text));
  t.ok(Object.is(pythonFloat('-0'), -0), '-0 keeps its sign (tooltool: 0, a full purge, all the same)');
});
