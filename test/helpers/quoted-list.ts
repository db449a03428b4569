// Reads back a list of reasons as src/quoted-reasons.ts writes it: JSON strings joined with "; ".

const QUOTED = String.raw`"(?:[^"\\]|\\.)*"`;

/** The reasons of `text`, a whole quoted list; undefined when it does not read so. */
export function readQuotedList(text: string): string[] | undefined {
  if (!new RegExp(`^${QUOTED}(?:; ${QUOTED})*$`, 's').test(text)) return undefined;
  return [...text.matchAll(new RegExp(QUOTED, 'g'))].map((m) => JSON.parse(m[0]) as string);
}
