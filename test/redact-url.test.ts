// URLs as messages and logs show them: credentials hidden, whether the URL parses or not.
import t from 'tap';
import { redactUrl } from '../src/redact-url.js';

t.test('a URL that does not parse (a port out of range) is shown without any of its password, an "@" in it too', async (t) => {
  for (const [url, shown] of [
    ['http://alice:p@ss@host:99999/x', 'http://***@host:99999/x'],
    ['http://alice:secret@host:99999/x', 'http://***@host:99999/x'],
  ] as const) {
    t.throws(() => new URL(url), 'not a URL the parser takes');
    t.equal(redactUrl(url), shown, url);
  }
  t.equal(redactUrl('http://host:99999/a@b'), 'http://host:99999/a@b', 'an "@" in the path is not taken for credentials');
});
