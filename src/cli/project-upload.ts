// The project upload commands: pack, delta, apply, push, pull.
import type { Command } from 'commander';
import { registerApply } from './apply.js';
import { registerDelta } from './delta.js';
import { registerPack } from './pack.js';
import { registerPull } from './pull.js';
import { registerPush } from './push.js';

export function registerProjectUpload(program: Command): void {
  registerPack(program);
  registerDelta(program);
  registerApply(program);
  registerPush(program);
  registerPull(program);
}
