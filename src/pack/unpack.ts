// tar → directory, refusing anything that would land outside it: absolute names, `..`
// components, and writes through a symlink the archive itself created. The target must be
// missing or empty (as spread requires), so every entry is created exclusively and an
// archive cannot overwrite what is already there. Regular files, directories and symlinks
// only; other entry types are refused.
import { createWriteStream } from 'node:fs';
import { chmod, mkdir, readdir, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { FleetError } from '../errors.js';

function refuse(name: string, why: string): never {
  throw new FleetError('FC_ERR_BAD_NAME', `tar entry "${name}" refused: ${why}`);
}

/** The entry's path as safe components relative to the target directory. */
export function safeEntryPath(name: string): string {
  if (name.includes('\0')) refuse(name, 'contains NUL');
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name) || name.includes('\\')) refuse(name, 'absolute or with backslashes');
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length === 0) refuse(name, 'empty name');
  if (parts.includes('..')) refuse(name, 'escapes the target directory');
  return parts.join('/');
}

async function ensureEmptyDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true });
  const existing = await readdir(dir);
  if (existing.length > 0) throw new FleetError('FC_ERR_BAD_NAME', `${dir} is not empty; refusing to unpack into it`);
}

export interface UnpackSummary {
  readonly entries: number;
}

/** Unpacks a tar stream into `dir` (created when missing; must be empty). */
export async function unpackTar(input: Readable, dir: string): Promise<UnpackSummary> {
  await ensureEmptyDir(dir);
  const extract = tar.extract();
  const feeding = pipeline(input, extract);
  feeding.catch(() => undefined); // reported through the iteration below
  const symlinks = new Set<string>();
  const dirModes: Array<[string, number]> = [];
  let entries = 0;
  for await (const entry of extract) {
    const { header } = entry;
    const rel = safeEntryPath(header.name);
    const parts = rel.split('/');
    for (let i = 1; i < parts.length; i++) {
      if (symlinks.has(parts.slice(0, i).join('/'))) refuse(header.name, 'would be written through a symlink');
    }
    const abs = join(dir, rel);
    const mode = (header.mode ?? 0o644) & 0o7777;
    if (parts.length > 1) await mkdir(join(dir, ...parts.slice(0, -1)), { recursive: true });
    if (header.type === 'directory') {
      await mkdir(abs, { recursive: true });
      dirModes.push([abs, mode]);
      entry.resume();
    } else if (header.type === 'symlink') {
      await symlink(header.linkname ?? '', abs);
      symlinks.add(rel);
      entry.resume();
    } else if (header.type === 'file' || header.type === 'contiguous-file') {
      await pipeline(entry, createWriteStream(abs, { flags: 'wx', mode: 0o600 }));
      await chmod(abs, mode);
    } else {
      refuse(header.name, `entry type ${header.type ?? 'unknown'} is not supported`);
    }
    entries++;
  }
  await feeding;
  // directory modes last, so a read-only directory does not block its own contents
  for (const [abs, mode] of dirModes.reverse()) await chmod(abs, mode);
  return { entries };
}
