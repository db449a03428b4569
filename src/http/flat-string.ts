// A string built piece by piece (`+=`, a template literal) is, in V8, a tree of its pieces
// (a cons string), and writing it to a socket walks that tree again every time. The answers
// a server keeps and writes over and over (a small hit's head, the Date and Keep-Alive
// fields) are made flat once instead: a head of 15 fields cost about 0.4 µs more per write
// as a tree than flat (Buffer#write, 1e6 writes).

/** `text` (latin1: a header block) as one flat string, equal to it. */
export function flatLatin1(text: string): string {
  return Buffer.from(text, 'latin1').toString('latin1');
}
