// A request to an absolute URL through a given dispatcher.
import type { Dispatcher } from 'undici';

/**
 * `dispatcher.request()` of `url` (its origin, its path and query), as undici's top-level
 * request() makes it: that function lives in undici's index.js, which the CLI's bundle
 * leaves out (scripts/build-cli.mjs: it loads fetch, WebSocket and more at every start).
 */
export function requestUrl(dispatcher: Dispatcher, url: string | URL, options: Omit<Dispatcher.RequestOptions, 'origin' | 'path'>): Promise<Dispatcher.ResponseData> {
  const { origin, pathname, search } = new URL(url);
  return dispatcher.request({ ...options, origin, path: `${pathname}${search}` });
}
