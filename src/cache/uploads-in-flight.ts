// The uploads (PUTs) a cache is forwarding, so that a stopping server can wait, once its
// close has cut them, for each to remove its temp file (see server.ts's onClose): a cache
// worker exits as soon as it is closed, which left them in tmp/ until the next start.
export class UploadsInFlight {
  readonly #running = new Set<Promise<unknown>>();

  /** Waits for `upload`, counted as running until it has settled. */
  async track<T>(upload: Promise<T>): Promise<T> {
    this.#running.add(upload);
    try {
      return await upload;
    } finally {
      this.#running.delete(upload);
    }
  }

  /** Resolves once every upload running now has settled, whichever way. */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.#running]);
  }
}
