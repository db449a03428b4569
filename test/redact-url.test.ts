// URLs as messages and logs show them: credentials hidden, whether the URL parses or not.
import t, { type Test } from 'tap';
import { redactMalformedUrl, redactUrl } from '../src/redact-url.js';

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

/** Each URL as redactMalformedUrl shows it, and redactUrl showing neither the user nor the password (pw). */
function checkHidden(t: Test, cases: ReadonlyArray<readonly [string, string]>): void {
  for (const [url, shown] of cases) {
    t.equal(redactMalformedUrl(url), shown, `${url}: redactMalformedUrl`);
    t.notMatch(redactUrl(url), /alice|pw/, `${url}: redactUrl`);
  }
}

t.test('a misspelt scheme, with one slash, none or three, a missing colon: the credentials hidden still, by redactUrl and redactMalformedUrl alike', async (t) => {
  checkHidden(t, [
    ['htps:/alice:pw@host', 'htps:/***@host'],
    ['htps:alice:pw@host/x', '***@host/x'],
    ['https:///alice:pw@host', 'https:///***@host'],
    ['htps//alice:pw@host', 'htps//***@host'],
    ['htps:\\\\alice:pw@host', 'htps:\\\\***@host'],
    ['alice:pw@host:8080', '***@host:8080'],
    ['ftp:/alice:pw@h/p?x=1@y', 'ftp:/***@h/p?x=1@y'],
  ]);
  for (const url of ['http://host/pkg@1.2/f', 'http://[::1]:80/a@b', 'https://host/x?to=a@b']) t.equal(redactUrl(url), url, `${url}: an "@" past the authority is left`);
});

t.test('a "#" or "?" in a password (which makes the URL fail to parse) shows neither it nor what is around it', async (t) => {
  checkHidden(t, [
    ['https://alice:p#w@127.0.0.1:9/', 'https://***@127.0.0.1:9/'],
    ['https://alice:p?w@host/x', 'https://***@host/x'],
    ['htps:/alice:p#w@host', 'htps:/***@host'],
    ['alice:p#w@host:8080', '***@host:8080'],
  ]);
});

t.test('a "/" or "\\" in a password (a base64 token\'s; the URL then fails to parse) shows neither it nor what is around it; a port and a path\'s "@" are left', async (t) => {
  checkHidden(t, [
    ['https://alice:p/w@host/x', 'https://***@host/x'],
    ['https://alice:p\\w@host/x', 'https://***@host/x'],
    ['https://alice:p/w@host:8080/x', 'https://***@host:8080/x'],
    ['htps:/alice:p/w#?@host', 'htps:/***@host'],
    ['alice:p/w@host:8080', '***@host:8080'],
  ]);
  for (const url of ['http://host:99999/a@b', 'http://host:8080/pkg@1.2/f']) t.equal(redactUrl(url), url, `${url}: an "@" past a port is left`);
});
