import t from 'tap';
import tar from 'tar-stream';
import { entryHeader, type EntryFields } from '../../src/pack/tar-header.js';

/** The header bytes tar-stream writes for the same entry (as the packer's header, before its body): the first `length` bytes it pushes. */
async function tarStreamHeader(entry: EntryFields, length: number): Promise<Buffer> {
  const pack = tar.pack();
  const { linkname, ...rest } = entry;
  pack.entry({ ...rest, ...(linkname === undefined ? {} : { linkname }), mtime: new Date(946_684_800_000), uid: 0, gid: 0, uname: '', gname: '' });
  const chunks: Buffer[] = [];
  let got = 0;
  for await (const chunk of pack) {
    chunks.push(chunk as Buffer);
    got += (chunk as Buffer).length;
    if (got >= length) break;
  }
  return Buffer.concat(chunks).subarray(0, length);
}

const FILE = 0o100644;
const DIR = 0o40755;
const LINK = 0o120777;

/** ustar names, names split into prefix and name, and every reason for a pax header (with its records' lengths crossing 100 and 1000). */
const entries: EntryFields[] = [
  { name: 'a.txt', mode: FILE, type: 'file', size: 0 },
  { name: 'run.sh', mode: 0o104755, type: 'file', size: 2000 },
  { name: 'none', mode: 0o100000, type: 'file', size: 1 },
  { name: 'src/', mode: DIR, type: 'directory', size: 0 },
  { name: `${'x'.repeat(100)}/`, mode: DIR, type: 'directory', size: 0 },
  { name: `${'d'.repeat(60)}/${'n'.repeat(70)}-long-name-over-100-bytes.txt`, mode: FILE, type: 'file', size: 5 },
  { name: `${'p'.repeat(160)}/short`, mode: FILE, type: 'file', size: 5 },
  { name: 'n'.repeat(101), mode: FILE, type: 'file', size: 5 },
  { name: 'héllo wörld ✓.txt', mode: FILE, type: 'file', size: 7 },
  { name: 'link', mode: LINK, type: 'symlink', size: 0, linkname: 'a/b/c/x.sh' },
  { name: 'uml', mode: LINK, type: 'symlink', size: 0, linkname: 'ü'.repeat(50) },
  { name: 'uml-over', mode: LINK, type: 'symlink', size: 0, linkname: 'ü'.repeat(51) },
  { name: 'é/link', mode: LINK, type: 'symlink', size: 0, linkname: 't'.repeat(101) },
  { name: 'big.img', mode: FILE, type: 'file', size: 8 * 1024 ** 3 },
  ...Array.from({ length: 12 }, (_, i): EntryFields => ({ name: `é/${'a'.repeat(84 + i)}`, mode: FILE, type: 'file', size: 3 })),
  ...Array.from({ length: 12 }, (_, i): EntryFields => ({ name: `é/${'b/'.repeat(490)}${'c'.repeat(5 + i)}`, mode: FILE, type: 'file', size: 3 })),
];

t.test('every header is byte for byte the one tar-stream writes, so a tree packs to the same tar as before', async (t) => {
  for (const entry of entries) {
    const ours = entryHeader(entry);
    t.same(ours, await tarStreamHeader(entry, ours.length), `${entry.type} ${entry.name.slice(0, 40)} (${entry.name.length} characters)`);
  }
});
