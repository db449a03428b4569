// The `adhoc` backend's options: their schema and the checks the schema cannot make, apart
// from the provider (adhoc.ts), which loads ssh2: a run loads that only when it uses the backend.
import { resolve } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { durationMs, durationOption as duration, rebootKeys, rebootSettings } from './ssh-reboot.js';

export const adhocOptions = Type.Object(
  {
    allocate: Type.String({ minLength: 1 }),
    discard: Type.Optional(Type.String()),
    /**
     * spread's backend `key` (credentials), evaluated by the runner ($(HOST:…), trimmed): an SSH
     * private key itself (PEM), or a private key file relative to the project root, used
     * instead of the password. Anything else, a cloud credential, is ignored, as spread's
     * adhoc backend ignores `key`.
     */
    key: Type.Optional(Type.String({ minLength: 1 })),
    /** Pause between allocate attempts after ERROR or a failure (spread: 5s). */
    'retry-delay': Type.Optional(duration),
    /** Give up allocating after this long, then waiting for the SSH port after as long again (spread: 5m each). */
    'allocate-timeout': Type.Optional(duration),
    ...rebootKeys,
  },
  { additionalProperties: true },
);
export type AdhocOptions = Static<typeof adhocOptions>;

export function verify(options: AdhocOptions): void {
  durationMs(options['retry-delay'], 'retry-delay', 0);
  durationMs(options['allocate-timeout'], 'allocate-timeout', 0);
  rebootSettings(options);
}

/** Whether a backend `key` is a private key itself (PEM), not the name of its file. */
export function isKeyText(key: string): boolean {
  return key.startsWith('-----BEGIN ');
}

/** The private key file the backend's `key` names, if it names one (registry.ts keyFiles). */
export function keyFiles(options: AdhocOptions, projectRoot: string): string[] {
  return options.key && !isKeyText(options.key) ? [resolve(projectRoot, options.key)] : [];
}
