// A directory tree as a comparable record: each path → "dir", "link <target>" or
// "file <mode> <sha256>", so that tests can check a tree was rebuilt exactly.
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

/** `dirModes` adds each directory's permission bits ("dir 755"). */
export function describeTree(dir: string, { dirModes = false } = {}, rel = ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of readdirSync(join(dir, rel)).sort()) {
    const p = rel ? `${rel}/${name}` : name;
    const st = lstatSync(join(dir, p));
    if (st.isSymbolicLink()) out[p] = `link ${readlinkSync(join(dir, p))}`;
    else if (st.isDirectory()) Object.assign(out, { [p]: dirModes ? `dir ${st.mode & 0o777}` : 'dir' }, describeTree(dir, { dirModes }, p));
    else out[p] = `file ${st.mode & 0o777} ${createHash('sha256').update(readFileSync(join(dir, p))).digest('hex')}`;
  }
  return out;
}
