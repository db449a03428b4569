// Credentials in URLs (an upstream's user:password) never reach a log or a message.
/**
 * `url` as it may be logged or printed: a user name and password in it (credentials for an
 * upstream) replaced by "***". A string that is no URL is shown as redactMalformedUrl shows it.
 */
export function redactUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return redactMalformedUrl(url);
  }
  // a scheme it does not know (htps:/alice:pw@host) keeps them in its path: shown as a malformed one
  if (!u.username && !u.password) return redactMalformedUrl(url);
  if (u.username) u.username = '***';
  if (u.password) u.password = '***';
  return u.href;
}

/**
 * `url` as a message may name it when it may be a redirect's target: redactUrl's, and its
 * query string (a pre-signed URL's signature, a token) shown as "?…".
 */
export function redactUrlAndQuery(url: string): string {
  const shown = redactUrl(url);
  const query = shown.indexOf('?');
  return query === -1 ? shown : `${shown.slice(0, query)}?…`;
}

/**
 * `text`, given for a URL but refused as one (another scheme, none), as a message may echo
 * it: anything before the last "@" of what would be its authority hidden, whatever comes
 * before it: a scheme or not, a colon or not, any number of slashes ("htps://user:token@host",
 * "htps:/user:token@host", "htps//user:token@host"; with none, the scheme is hidden too:
 * "user:token@host:8080" has none), where
 * redactUrl, which parses it, finds no credentials in it. An "@" after the authority (in a
 * path) is left. A "?" or "#" does not end the authority here: one in a password is what
 * makes such a URL fail to parse ("https://alice:s3cr#t@host"); an "@" in a query with no
 * path before it ("https://host?to=a@b") hides the host too, which is the safe way to err.
 * Nor does a "/" or "\\" after "user:" (a base64 token's "/": "https://alice:p/ss@host"),
 * unless the slash comes first or after digits only after the colon: the "//" of a scheme, a
 * port ("http://host:99999/a@b"); a password starting so is shown, as a port would be.
 */
export function redactMalformedUrl(text: string): string {
  return text.replace(/^((?:[a-z][a-z0-9+.-]*:?)?[/\\]+)?(?:[^/\\]*|[^/\\@:[]*:(?!\d*[/\\])[^@]*)@/i, '$1***@');
}

/** The characters of a path a log line or message quotes; a longer one is cut, its length said. */
const MAX_LOGGED_PATH = 256;

/**
 * A URL as the logs show it: without its query string, which may carry a token or a signature
 * (a pre-signed URL's), and past MAX_LOGGED_PATH characters cut, with its length: a client
 * can send up to 16 KiB of path, which every log line about it would otherwise carry whole.
 */
export function loggedPath(url: string): string {
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  return path.length <= MAX_LOGGED_PATH ? path : `${path.slice(0, MAX_LOGGED_PATH)}… (${path.length} characters)`;
}
