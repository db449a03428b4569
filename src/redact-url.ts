// Credentials in URLs (an upstream's user:password) never reach a log or a message.
/**
 * `url` as it may be logged or printed: a user name and password in it (credentials for an
 * upstream) replaced by "***". A string that is no URL has anything before an "@" hidden.
 */
export function redactUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return url.replace(/\/\/[^/@]*@/, '//***@');
  }
  if (!u.username && !u.password) return url;
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
