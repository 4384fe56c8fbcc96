/**
 * Checksum files as vendors publish them, parsed into (name, algorithm, digest) entries. Untrusted input: a line
 * that is not an entry is skipped, never guessed at, and a name given twice with different digests is an error
 * (which one would we believe?).
 *
 * - `sha256sums`: coreutils `sha256sum` output, `<hex>  <name>` or `<hex> *<name>` (Debian's SHA256SUMS, Talos's
 *   sha256sum.txt, Fedora's CHECKSUM in its GNU form). The algorithm follows from the digest's length.
 * - `digests`: Gentoo catalyst's DIGESTS (Flatcar): `# SHA512 HASH` (or MD5, SHA1, SHA256 ...) section headers,
 *   each followed by `<hex>  <name>` lines.
 * - `debian-release`: a Debian Release/InRelease file: the `SHA256:` field's ` <hex> <size> <path>` lines.
 */
export type ChecksumFormat = 'sha256sums' | 'digests' | 'debian-release';
export type Algorithm = 'sha256' | 'sha512' | 'sha1' | 'md5';
export type ChecksumEntry = { name: string; algorithm: Algorithm; digest: string; size?: number };

export class ChecksumFileError extends Error {}

const BY_LENGTH: Record<number, Algorithm> = { 32: 'md5', 40: 'sha1', 64: 'sha256', 128: 'sha512' };
/** Strong enough to trust a download by: MD5 and SHA-1 have practical collisions. */
export const STRONG: readonly Algorithm[] = ['sha256', 'sha512'];

function add(out: ChecksumEntry[], e: ChecksumEntry) {
  const clash = out.find((x) => x.name === e.name && x.algorithm === e.algorithm && x.digest !== e.digest);
  if (clash)
    throw new ChecksumFileError(`the checksum file names '${e.name}' twice with different ${e.algorithm} digests`);
  out.push(e);
}

/** `./netboot/x` and `x` are the same name; a leading `*` marks binary mode in coreutils output. */
export function normalName(n: string): string {
  return n.replace(/^\*/, '').replace(/^(\.\/)+/, '');
}

function parseSums(text: string): ChecksumEntry[] {
  const out: ChecksumEntry[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const m = /^([0-9a-fA-F]{32,128})\s+(\*?\S.*)$/.exec(raw.trim());
    const algorithm = m ? BY_LENGTH[m[1]!.length] : undefined;
    if (!m || !algorithm) continue;
    add(out, { name: normalName(m[2]!.trim()), algorithm, digest: m[1]!.toLowerCase() });
  }
  return out;
}

function parseDigests(text: string): ChecksumEntry[] {
  const out: ChecksumEntry[] = [];
  let section: Algorithm | undefined;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    const h = /^#\s*([A-Z0-9]+)\s+HASH$/i.exec(line);
    if (h) {
      const name = h[1]!.toLowerCase();
      section = (['sha256', 'sha512', 'sha1', 'md5'] as const).find((a) => a === name);
      continue;
    }
    const m = /^([0-9a-fA-F]+)\s+(\*?\S.*)$/.exec(line);
    if (!m || !section || BY_LENGTH[m[1]!.length] !== section) continue;
    add(out, { name: normalName(m[2]!.trim()), algorithm: section, digest: m[1]!.toLowerCase() });
  }
  return out;
}

function parseRelease(text: string): ChecksumEntry[] {
  const out: ChecksumEntry[] = [];
  let inSha256 = false;
  for (const raw of text.split(/\r?\n/)) {
    if (/^\S/.test(raw)) {
      inSha256 = /^SHA256:\s*$/.test(raw);
      continue;
    }
    if (!inSha256) continue;
    const m = /^\s+([0-9a-fA-F]{64})\s+(\d+)\s+(\S+)\s*$/.exec(raw);
    if (m) add(out, { name: normalName(m[3]!), algorithm: 'sha256', digest: m[1]!.toLowerCase(), size: Number(m[2]) });
  }
  return out;
}

export function parseChecksums(format: ChecksumFormat, text: string): ChecksumEntry[] {
  const entries =
    format === 'sha256sums' ? parseSums(text) : format === 'digests' ? parseDigests(text) : parseRelease(text);
  if (entries.length === 0) throw new ChecksumFileError(`the ${format} checksum file holds no entries`);
  return entries;
}

/**
 * The strongest digest `entries` give for `name` (matched on the whole name, else on the entry's last path
 * segment): sha256 first, then sha512. MD5 and SHA-1 alone are refused.
 */
export function digestFor(entries: ChecksumEntry[], name: string): ChecksumEntry | undefined {
  const want = normalName(name);
  const same = entries.filter((e) => e.name === want);
  const pool = same.length ? same : entries.filter((e) => e.name.split('/').pop() === want);
  for (const a of STRONG) {
    const hit = pool.filter((e) => e.algorithm === a);
    if (hit.length > 1 && new Set(hit.map((h) => h.digest)).size > 1)
      throw new ChecksumFileError(`'${name}' matches several entries with different digests: name it in full`);
    if (hit[0]) return hit[0];
  }
  return undefined;
}
