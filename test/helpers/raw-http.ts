// Requests written byte for byte on a raw socket, for what an HTTP client library would not
// send (too many fields, a refused transfer coding, an Expect with no body to follow).
import { connect, type Socket } from 'node:net';

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

/**
 * A PUT of `path` to the server of `url` that announces a body of `length` bytes with
 * `Expect: 100-continue`, and sends none: resolves with its socket (the test destroys it, or
 * writes the body) once the server asked for the body. `answer()`: what the server sent since.
 */
export function headOnlyPut(url: string, path: string, token: string, length: number): Promise<{ socket: Socket; answer: () => string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(`PUT ${path} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nAuthorization: Bearer ${token}\r\nContent-Length: ${length}\r\nExpect: 100-continue\r\n\r\n`));
    let answer = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      answer += chunk;
      if (answer.startsWith('HTTP/1.1 100 ')) resolve({ socket, answer: () => answer });
    });
    socket.on('error', reject);
    socket.on('close', () => reject(new Error(`${url} closed the connection before it asked for the body: ${JSON.stringify(answer)}`)));
  });
}
