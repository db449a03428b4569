// The end of `origin --help` and `cache --help`: what a server prints, where its logs go
// and how to make them quieter or louder (there is no --log-level flag).

export const SERVER_HELP =
  '\nPrints "listening http://HOST:PORT" on stdout when ready; logs are JSON lines on stderr, at the\n' +
  "configuration's logLevel: (default info), or $FLEETCACHE_LOG_LEVEL, which overrides it\n" +
  '(fatal, error, warn, info, debug, trace or silent; deploy/OPERATIONS.md, "Logs").\n' +
  'Stops cleanly on SIGINT or SIGTERM.';
