// When V8 optimizes the WebAssembly a process runs. V8 compiles a wasm function with its
// baseline compiler (Liftoff) at its first call, and again with its optimizing one (TurboFan),
// in a background thread, once it has spent a budget of about as many bytes of code executed
// (--wasm-tiering-budget: 1.8 million in Node 20's V8). undici parses HTTP/1.1 with llhttp in
// wasm, whose main function is one state machine of 33 KB: every byte of a response's head
// costs it about its size, so the first response a process reads spends the budget, and
// TurboFan then spent ~0.25 s of CPU (over a second on a loaded machine) on that one function,
// for the few responses a one-shot process reads: a `fleetcache run` of one task paid it
// twice (the runner and the machine's agent), a fifth of the CPU of the whole run.
//
// With a budget a hundred times larger, llhttp is optimized after about a hundred responses,
// in a process that lives to read more (a cache's upstream fills). xdelta3's encoder (the
// delta of a push) runs small loops, which spend a budget by their own size: it is optimized
// a few milliseconds later than before, which an encode of seconds does not notice (a 45 MB
// delta took the same CPU). Set at the start, before the process makes any wasm instance:
// each takes its budget when made.
import { setFlagsFromString } from 'node:v8';

/** 100 times Node 20's default. */
const TIERING_BUDGET = 180_000_000;

/** Defers the optimization of this process's wasm (see above). */
export function deferWasmTierUp(): void {
  setFlagsFromString(`--wasm-tiering-budget=${TIERING_BUDGET}`);
}
