// The date a benchmark's figures are recorded under in bench/RESULTS.md.

/** Today, YYYY-MM-DD (UTC). */
export function today(): string {
  return new Date().toISOString().slice(0, 10);
}
