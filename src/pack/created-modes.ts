// The mode of the regular files an unpack creates, set with one fchmod fewer per file where
// creation already gives it. open(2)'s mode, less the umask (or masked by the target's
// default ACL), is what a new file gets: that depends on the mode asked for alone, the same
// everywhere below the target (it was empty, so every directory in it was made by the
// unpack and inherits the same default ACL). One fstat per distinct mode tells whether
// creation keeps it; a project's files have few modes (0644, 0755), so 20,000 files cost
// two fstat calls instead of 20,000 fchmod calls.
import { fchmodSync, fstatSync } from 'node:fs';

/** One per unpack: what it learns holds for the files created below one target directory. */
export class CreatedFileModes {
  /** For each mode asked of open(2): whether the file it created had exactly that mode. */
  readonly #kept = new Map<number, boolean>();

  /** Gives the file just created at `fd` by open(…, `mode`) that mode, with fchmod only where creation did not. */
  settle(fd: number, mode: number): void {
    let kept = this.#kept.get(mode);
    if (kept === undefined) {
      kept = (fstatSync(fd).mode & 0o7777) === mode;
      this.#kept.set(mode, kept);
    }
    if (!kept) fchmodSync(fd, mode);
  }
}
