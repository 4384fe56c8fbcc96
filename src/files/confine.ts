import { realpath } from 'node:fs/promises';
import path from 'node:path';

/**
 * Paths that arrive from the network (TFTP RRQ, HTTP /files/..., API uploads) are untrusted.
 * `confine` turns one into an absolute path under `root`, or says why it is refused.
 * Refused: empty, NUL bytes, backslashes (Windows-style traversal "..\\..\\x"), absolute paths,
 * any "." or ".." segment, and (with `resolveLinks`) anything whose real path leaves the root via a symlink.
 */
export type Confined = { ok: true; abs: string; rel: string } | { ok: false; reason: string };

export function confineLexical(root: string, requested: string): Confined {
  if (requested.length === 0) return { ok: false, reason: 'empty path' };
  if (requested.includes('\0')) return { ok: false, reason: 'NUL byte in path' };
  if (requested.includes('\\')) return { ok: false, reason: 'backslash in path' };
  if (requested.startsWith('/')) return { ok: false, reason: 'absolute path' };
  const segments = requested.split('/');
  for (const s of segments) {
    if (s === '..' || s === '.') return { ok: false, reason: `"${s}" segment in path` };
  }
  const rel = segments.filter((s) => s.length > 0).join('/');
  if (rel.length === 0) return { ok: false, reason: 'empty path' };
  const abs = path.join(root, rel);
  // Belt and braces: path.join normalises, so check the prefix too.
  const rootWithSep = root.endsWith(path.sep) ? root : root + path.sep;
  if (!abs.startsWith(rootWithSep)) return { ok: false, reason: 'path leaves its root' };
  return { ok: true, abs, rel };
}

/**
 * Lexical check, then the real path of the deepest existing ancestor (or the file itself) must stay under the
 * real root: a symlink inside the root that points out is refused.
 */
export async function confine(root: string, requested: string): Promise<Confined> {
  const lex = confineLexical(root, requested);
  if (!lex.ok) return lex;
  const realRoot = await realpath(root);
  let probe = lex.abs;
  for (;;) {
    try {
      const real = await realpath(probe);
      if (real !== realRoot && !real.startsWith(realRoot + path.sep)) {
        return { ok: false, reason: 'symlink leaves its root' };
      }
      return lex;
    } catch (err) {
      // ENOTDIR: a file stands where a directory would be; its own real path is checked one level up.
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') return { ok: false, reason: 'path cannot be resolved' };
      const parent = path.dirname(probe);
      if (parent === probe || !parent.startsWith(root)) return lex;
      probe = parent;
    }
  }
}
