// flatLatin1 gives back the same text: a header block's obs-text (bytes 0x80-0xff, which
// node writes in latin1) included, so a stored field value goes out byte for byte.
import t from 'tap';
import { flatLatin1 } from '../../src/http/flat-string.js';

t.test('a header block built piece by piece comes back equal, obs-text included', async (t) => {
  let head = 'HTTP/1.1 200 OK';
  for (let i = 0; i < 15; i++) head += `\r\nx-field-${i}: value ${i} \xe9\xff`;
  const flat = flatLatin1(head);
  t.equal(flat, head);
  t.equal(Buffer.byteLength(flat, 'latin1'), head.length, 'one byte per character');
});
