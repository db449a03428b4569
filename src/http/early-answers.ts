// The error answers a server gives before a request is routed: on the socket (a request
// Node's parser refused, a CONNECT, a connection over maxConnections) or by fastify's
// frameworkErrors (a URL that does not decode). None of them reaches the hooks and error
// handlers that count the others, so each is told here, to the counter its server names.
// Only these refusals call it: a request that is routed costs nothing more.
import type { Server } from 'node:http';
import type { FleetError } from '../errors.js';

/** Counts one early answer; `method`: the request's, undefined when its line was not parsed. */
type EarlyAnswerCounter = (fe: FleetError, method: string | undefined) => void;

/** The method a count names for a request whose line was not parsed (a method Node does not know, a malformed line). */
export const UNPARSED_METHOD = 'unparsed';

const counters = new WeakMap<Server, EarlyAnswerCounter>();

/** Has `count` told of each error answer `server` gives before routing. */
export function countEarlyAnswers(server: Server, count: EarlyAnswerCounter): void {
  counters.set(server, count);
}

/** `server` answered `fe` before routing (to a request of `method`, when known). */
export function earlyAnswered(server: Server, fe: FleetError, method?: string): void {
  counters.get(server)?.(fe, method);
}
