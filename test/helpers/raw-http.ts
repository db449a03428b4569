// Requests written byte for byte on a raw socket, for what an HTTP client library would not
// send (too many fields, a refused transfer coding, an Expect with no body to follow).
import { connect } from 'node:net';

/**
 * Writes `text` to the server of `url` and gathers its answer: resolves with what arrived
 * once `complete` says it is enough (the socket is then closed), or when the server closes.
 */
export function exchange(url: string, text: (host: string) => string, complete: (answer: string) => boolean = () => false): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(text(`${hostname}:${port}`)));
    let answer = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      answer += chunk;
      if (!complete(answer)) return;
      socket.destroy();
      resolve(answer);
    });
    socket.on('end', () => resolve(answer));
    socket.on('error', reject);
  });
}

/** The status of an answer `exchange` gathered (0 when there is none). */
export function statusOf(answer: string): number {
  return Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0);
}
