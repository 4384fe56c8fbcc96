/**
 * An image manifest: where an OS's boot artifacts are published, which checksum files vouch for them, which
 * OpenPGP keys sign those, and the bootenv to create from them. YAML or JSON, from the operator or shipped in
 * assets/manifests/. Nothing in it is trusted by itself: digests come from checksum files whose signature gpgv
 * checked, or from the manifest's own `sha256` pins (the operator's word).
 */
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { zodIssues } from '../inventory/zod.js';
import { BootEnvOs } from '../model/bootenv.js';
import { Name } from '../model/common.js';
import { InvalidError } from '../model/errors.js';

const RelPath = z
  .string()
  .min(1)
  .max(1024)
  .refine(
    (p) =>
      !p.startsWith('/') &&
      !p.split('/').some((s) => s === '..' || s === '.' || s === '') &&
      !p.includes('\0') &&
      !p.includes('\\') &&
      !p.startsWith('.blobs/'),
    {
      message: 'expected a relative path under the files root, without "." or ".." segments, outside .blobs/',
    },
  );
const Url = z.url({ protocol: /^https?$/ }).max(4096);
const Fingerprint = z
  .string()
  .transform((f) => f.replace(/\s+/g, '').toUpperCase())
  .pipe(
    z.string().regex(/^[0-9A-F]{40}([0-9A-F]{24})?$/, 'expected an OpenPGP fingerprint: 40 (v4) or 64 (v6) hex digits'),
  );

export const ChecksumFileSpec = z.strictObject({
  url: Url,
  format: z.enum(['sha256sums', 'digests', 'debian-release']),
  /** A detached signature's URL, or `inline` for a clear-signed file (InRelease, DIGESTS.asc). */
  signature: z.union([Url, z.literal('inline')]).optional(),
  /** Not signed itself: listed under this name in a checksum file verified before it (Debian's SHA256SUMS). */
  listedAs: z.string().min(1).max(1024).optional(),
});

export const ArtifactSpec = z.strictObject({
  role: z.enum(['kernel', 'initrd', 'rootfs', 'image', 'other']),
  url: Url,
  /** Where it appears under the files root (the operator's view); the bytes are the blob of its digest. */
  path: RelPath,
  /** Its name in the checksum files (default: the last segment of its URL). */
  checksumName: z.string().min(1).max(1024).optional(),
  /** A detached OpenPGP signature over the artifact itself (Fedora CoreOS publishes these). */
  signature: Url.optional(),
  /** Pinned by the manifest's author instead of (or as well as) a checksum file. */
  sha256: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
});

export const Manifest = z
  .strictObject({
    name: Name,
    description: z.string().max(4096).default(''),
    os: BootEnvOs,
    bootParams: z.string().max(16384).default(''),
    /** A keyring file in <data-dir>/keyrings/ (binary, as `gpg --export` or `gpg --dearmor` writes it). */
    keyring: z
      .string()
      .min(1)
      .max(255)
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'a file name in <data-dir>/keyrings/')
      .optional(),
    /** The signer must be one of these (primary key or signing subkey); empty: any key in the keyring. */
    fingerprints: z.array(Fingerprint).max(16).default([]),
    checksums: z.array(ChecksumFileSpec).max(8).default([]),
    artifacts: z.array(ArtifactSpec).min(1).max(32),
    /** The vendor publishes no OpenPGP signature: an import needs `allowUnsigned` and says so. */
    unsigned: z.boolean().default(false),
    notes: z.string().max(8192).optional(),
  })
  .superRefine((m, ctx) => {
    const kernels = m.artifacts.filter((a) => a.role === 'kernel');
    if (kernels.length > 1) ctx.addIssue({ code: 'custom', path: ['artifacts'], message: 'at most one kernel' });
    const paths = new Set<string>();
    for (const [i, a] of m.artifacts.entries()) {
      if (paths.has(a.path))
        ctx.addIssue({ code: 'custom', path: ['artifacts', i, 'path'], message: `path '${a.path}' given twice` });
      paths.add(a.path);
    }
    const signed = m.checksums.some((c) => c.signature) || m.artifacts.some((a) => a.signature);
    if (signed && !m.keyring) ctx.addIssue({ code: 'custom', path: ['keyring'], message: 'signatures need a keyring' });
  });
export type Manifest = z.infer<typeof Manifest>;

/** A manifest from YAML or JSON text (JSON is YAML). Errors name the field. */
export function parseManifest(text: string): Manifest {
  let raw: unknown;
  try {
    raw = parseYaml(text, { maxAliasCount: 50 });
  } catch (err) {
    throw new InvalidError(`the manifest is not YAML or JSON: ${(err as Error).message}`, []);
  }
  return validateManifest(raw);
}

export function validateManifest(raw: unknown): Manifest {
  const r = Manifest.safeParse(raw);
  if (!r.success) throw new InvalidError('the manifest is not valid', zodIssues(r.error));
  return r.data;
}

/** An artifact's name in checksum files: given, else its URL's last path segment. */
export function checksumNameOf(a: z.infer<typeof ArtifactSpec>): string {
  return a.checksumName ?? decodeURIComponent(new URL(a.url).pathname.split('/').pop() ?? '');
}
