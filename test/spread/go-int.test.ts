// Go's strconv.ParseInt/ParseUint with base 0, case by case: the base-0 cases of Go's own
// atoi_test.go, and its underscore rules (underscoreOK) as the Go source states them.
import t from 'tap';
import { parseGoInt, parseGoIntOrUint, parseGoUint, underscoresOk } from '../../src/spread/go-int.js';

/** [text, what Go's ParseInt(text, 0, 64) gives, or undefined for its syntax and range errors] */
const INT_CASES: Array<[string, bigint | undefined]> = [
  ['', undefined],
  ['0', 0n],
  ['-0', 0n],
  ['+0', 0n],
  ['1', 1n],
  ['-1', -1n],
  ['+7', 7n],
  ['12345', 12345n],
  ['-12345', -12345n],
  // a leading 0 is octal
  ['012345', 0o12345n],
  ['-012345', -0o12345n],
  ['010', 8n],
  ['08', undefined],
  ['0x12345', 0x12345n],
  ['-0X12345', -0x12345n],
  ['0xABCdef', 0xabcdefn],
  ['0o17', 0o17n],
  ['0O17', 0o17n],
  ['0o8', undefined],
  ['0b101', 0b101n],
  ['0B101', 0b101n],
  ['0b2', undefined],
  // the prefix alone is octal 0 followed by a letter
  ['0x', undefined],
  ['0X', undefined],
  ['0b', undefined],
  ['0o', undefined],
  ['12345x', undefined],
  ['-12345x', undefined],
  ['0xabcdefg123', undefined],
  ['1e3', undefined],
  ['1.0', undefined],
  [' 1', undefined],
  ['1 ', undefined],
  ['--1', undefined],
  ['+-1', undefined],
  ['-', undefined],
  ['+', undefined],
  ['9223372036854775807', 2n ** 63n - 1n],
  ['-9223372036854775808', -(2n ** 63n)],
  ['9223372036854775808', undefined],
  ['-9223372036854775809', undefined],
  ['0x7fffffffffffffff', 2n ** 63n - 1n],
  ['0x8000000000000000', undefined],
  // underscores: between digits, or between the base prefix and a digit
  ['1_000', 1000n],
  ['-1_000', -1000n],
  ['123_45', 12345n],
  ['0_1_2_3_4_5', 0o12345n],
  ['0x_1_2_3_4_5', 0x12345n],
  ['-0x_1_2_3', -0x123n],
  ['0b_1_0', 2n],
  ['0o_7', 7n],
  ['0x_ff', 0xffn],
  ['0xa_b', 0xabn],
  ['_12345', undefined],
  ['1__2345', undefined],
  ['12345_', undefined],
  ['0x_', undefined],
  ['0_', undefined],
  ['-_1', undefined],
  ['0_x1', undefined],
];

/** [text, what Go's ParseUint(text, 0, 64) gives, or undefined for its errors] */
const UINT_CASES: Array<[string, bigint | undefined]> = [
  ['18446744073709551615', 2n ** 64n - 1n],
  ['18446744073709551616', undefined],
  ['0xFFFFFFFFFFFFFFFF', 2n ** 64n - 1n],
  ['0x10000000000000000', undefined],
  ['01777777777777777777777', 2n ** 64n - 1n],
  ['01777777777777777777778', undefined],
  ['02000000000000000000000', undefined],
  ['0200000000000000000000', 2n ** 61n],
  // no sign at all
  ['-1', undefined],
  ['+1', undefined],
];

t.test("parseGoInt is Go's strconv.ParseInt(s, 0, 64)", async (t) => {
  for (const [text, want] of INT_CASES) t.equal(parseGoInt(text), want, JSON.stringify(text));
});

t.test("parseGoUint is Go's strconv.ParseUint(s, 0, 64)", async (t) => {
  for (const [text, want] of UINT_CASES) t.equal(parseGoUint(text), want, JSON.stringify(text));
  t.equal(parseGoInt('18446744073709551615'), undefined, 'past int64 only ParseUint takes it');
});

t.test('parseGoIntOrUint is ParseInt, else ParseUint, as yaml.v2 tries them', async (t) => {
  for (const [text] of [...INT_CASES, ...UINT_CASES, ['+18446744073709551615'], ['-18446744073709551615']]) {
    t.equal(parseGoIntOrUint(text), parseGoInt(text) ?? parseGoUint(text), JSON.stringify(text));
  }
});

t.test("underscoresOk is Go's underscoreOK, which ParseFloat applies too", async (t) => {
  for (const ok of ['1_000', '0x_ff', '.1_5', '.1_5e1_0', '1.5_0']) t.ok(underscoresOk(ok), ok);
  for (const bad of ['_1', '1_', '1__0', '._1', '.1_e5', '.5e_1', '1_.5', '0_x1']) t.notOk(underscoresOk(bad), bad);
});
