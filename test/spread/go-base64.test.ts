// Go's base64.StdEncoding.DecodeString, as yaml.v2 decodes a !!binary scalar.
import t from 'tap';
import { decodeGoBase64 } from '../../src/spread/go-base64.js';

t.test('what Go decodes: padded groups of four, line breaks anywhere skipped', async (t) => {
  const decoded: Array<[string, string]> = [
    ['aGVsbG8=', 'hello'],
    ['aGk=', 'hi'],
    ['aA==', 'h'],
    ['', ''],
    ['aGVs\nbG8=', 'hello'],
    ['aGVs\r\nbG8=\n', 'hello'],
    ['aA=\n=', 'h'],
  ];
  for (const [text, want] of decoded) t.equal(decodeGoBase64(text)?.toString('utf8'), want, JSON.stringify(text));
});

t.test('what Go refuses: missing or extra padding, spaces, other alphabets', async (t) => {
  for (const text of ['aGVsbG8', 'aGk', 'aGVsbG8==', 'aGVs bG8=', ' aGk=', 'aGk=\t', '=', 'a===', 'aGk=aGk=', '-_-_', 'aGVsbG8=x']) {
    t.equal(decodeGoBase64(text), undefined, JSON.stringify(text));
  }
});
