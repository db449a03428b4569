// One shell word for any text: what the runner, the SSH client and the hints printed to the
// user quote paths and arguments with (POSIX sh: single quotes, each ' written as '\'').

/** One shell word, whatever the text. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}
