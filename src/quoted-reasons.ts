// Reasons joined into one message, each quoted (a JSON string): a reason of its own may hold
// the separator ("; ", " / ": a server's message, a URL, errors joined), which then cannot be
// taken for the next reason.

/** `reason` as one entry of a list of reasons. */
export function quotedReason(reason: string): string {
  return JSON.stringify(reason);
}

/** `reasons`, each quoted, joined with "; ". */
export function quotedReasons(reasons: readonly string[]): string {
  return reasons.map(quotedReason).join('; ');
}
