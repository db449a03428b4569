// What a file system error means for a store: only a path that is not there is an absence.
// Anything else (EACCES after a restore under another owner, EIO) is an error: taken for an
// absence, it would unmark an internal asset or serve it as public, or forget a blob.

/** Whether a file system error says the path is not there (a file where a directory would be, too). */
export function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}
