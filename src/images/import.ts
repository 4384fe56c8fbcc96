/**
 * A verified import: fetch a manifest's checksum files and check their OpenPGP signatures (gpgv, against the
 * operator's keyring), fetch each artifact to a temp file while hashing it, compare with the signed digest, and
 * only when every artifact passed keep them as blobs and create the bootenv pinning them. Any failure removes
 * every temp file: nothing half-imported is left in the files root or the blob store.
 */
import { randomUUID } from 'node:crypto';
import { readFile, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import type { Bus } from '../events.js';
import { confineLexical } from '../files/confine.js';
import { adoptFile } from '../files/store-files.js';
import { createDoc, replaceDoc } from '../inventory/crud.js';
import { inventoryResource } from '../inventory/resources.js';
import type { Logger } from '../log.js';
import { StateConflictError } from '../model/errors.js';
import type { Store } from '../store/store.js';
import { type Algorithm, type ChecksumEntry, digestFor, parseChecksums } from './checksums.js';
import { type Downloaded, download, TooLargeError } from './fetch.js';
import { checksumNameOf, type Manifest } from './manifest.js';
import { verifyClearsigned, verifyDetached } from './verify.js';

export type ImportDeps = { store: Store; bus: Bus; log: Logger; filesDir: string; dataDir: string };
export type ImportOptions = {
  replace?: boolean;
  allowUnsigned?: boolean;
  onProgress?(event: { url: string; bytes: number; total?: number }): void;
  signal?: AbortSignal;
  /** Each artifact is refused beyond this many bytes (default ARTIFACT_MAX). */
  maxArtifactBytes?: number;
};
/**
 * The most one artifact may be: a server that streams forever, or a wrong URL to a multi-terabyte file, must not
 * fill the data disk. The largest boot artifacts published (full-disk images, xz) are a few GiB.
 */
export const ARTIFACT_MAX = 16 * 1024 ** 3;
export type ImportedArtifact = { path: string; url: string; sha256: string; size: number; verifiedBy: string };
export type ImportResult = { bootEnv: string; artifacts: ImportedArtifact[]; signers: string[]; warnings: string[] };

/** Why an import was refused, for the operator: `problem` names the class (wrong digest, signature ...). */
export class ImportError extends Error {
  constructor(
    readonly problem: 'wrong-digest' | 'unsigned' | 'not-listed' | 'no-keyring' | 'too-large',
    message: string,
  ) {
    super(message);
  }
}

const CHECKSUM_MAX = 32 << 20;
const SIG_MAX = 1 << 20;

function keyringPath(deps: ImportDeps, m: Manifest): string | undefined {
  if (!m.keyring) return undefined;
  const c = confineLexical(path.join(deps.dataDir, 'keyrings'), m.keyring);
  if (!c.ok) throw new ImportError('no-keyring', `keyring '${m.keyring}': ${c.reason}`);
  return c.abs;
}

export async function importManifest(deps: ImportDeps, m: Manifest, o: ImportOptions = {}): Promise<ImportResult> {
  const exists = await deps.store.get('bootenvs', m.name);
  if (exists && !o.replace)
    throw new StateConflictError(`bootenv '${m.name}' already exists: import under another name, or replace it`, [
      { path: 'name', message: 'exists' },
    ]);
  const keyring = keyringPath(deps, m);
  if (keyring && !(await stat(keyring).catch(() => undefined))?.isFile())
    throw new ImportError(
      'no-keyring',
      `the keyring '${m.keyring}' is not in ${path.join(deps.dataDir, 'keyrings')}: put the vendor's key there (gpg --export FINGERPRINT > ${m.keyring}) after checking its fingerprint`,
    );
  // Beside the files root (same file system): a verified temp file becomes a blob by rename(2).
  const tmpDir = path.join(path.dirname(deps.filesDir), 'tmp');
  const temps: string[] = [];
  const fetchOne = async (url: string, maxBytes?: number, algorithms?: Algorithm[]): Promise<Downloaded> => {
    const d = await download(url, tmpDir, {
      maxBytes,
      algorithms,
      signal: o.signal,
      onProgress: (bytes, total) => o.onProgress?.({ url, bytes, total }),
    });
    temps.push(d.tmp);
    return d;
  };
  const warnings: string[] = [];
  const signers = new Set<string>();
  try {
    if (m.unsigned && !o.allowUnsigned)
      throw new ImportError(
        'unsigned',
        `manifest '${m.name}' has no OpenPGP signature to check (${m.notes ?? 'the vendor publishes none'}): import it only with allowUnsigned (--allow-unsigned), trusting the transport`,
      );
    const pool = await verifiedChecksums(m, keyring, fetchOne, signers, warnings);
    const done: (ImportedArtifact & { tmp: string })[] = [];
    for (const a of m.artifacts) {
      const name = checksumNameOf(a);
      const entry = a.sha256 ? undefined : digestFor(pool, name);
      if (!a.sha256 && !entry && !a.signature)
        throw new ImportError(
          'not-listed',
          `artifact ${a.url}: '${name}' is in none of the verified checksum files, and the manifest pins no sha256 for it`,
        );
      const limit = o.maxArtifactBytes ?? ARTIFACT_MAX;
      const d = await fetchOne(a.url, limit, entry ? [entry.algorithm] : []).catch((err) => {
        if (!(err instanceof TooLargeError)) throw err;
        throw new ImportError('too-large', `artifact ${err.message} (per artifact): refused, nothing was kept`);
      });
      const got = entry ? d.digests[entry.algorithm] : d.digests.sha256;
      const want = entry?.digest ?? a.sha256;
      if (want && got !== want)
        throw new ImportError(
          'wrong-digest',
          `artifact ${a.url} has ${entry?.algorithm ?? 'sha256'} ${got}, but ${entry ? 'the signed checksum file says' : 'the manifest pins'} ${want}: refused, nothing was kept`,
        );
      let verifiedBy = entry ? `${entry.algorithm} in a signed checksum file` : 'sha256 pinned by the manifest';
      if (a.signature) {
        const sig = await fetchOne(a.signature, SIG_MAX);
        signers.add(await verifyDetached(keyring!, sig.tmp, d.tmp, a.url, m.fingerprints));
        verifiedBy = entry || a.sha256 ? `${verifiedBy} and its own signature` : 'its own OpenPGP signature';
      }
      if (m.unsigned && !a.signature) verifiedBy += ' (unsigned: --allow-unsigned)';
      done.push({ path: a.path, url: a.url, sha256: d.digests.sha256!, size: d.size, verifiedBy, tmp: d.tmp });
    }
    for (const a of done) {
      await adoptFile(deps.store, deps.filesDir, a.path, a.tmp, a.sha256, a.size);
      temps.splice(temps.indexOf(a.tmp), 1);
    }
    const doc = bootEnvDoc(m, done);
    const res = inventoryResource('bootenvs');
    const inv = { store: deps.store, bus: deps.bus };
    if (exists) await replaceDoc(inv, res, m.name, doc);
    else await createDoc(inv, res, doc);
    deps.log.info({ bootEnv: m.name, artifacts: done.length, signers: [...signers] }, 'image imported');
    return { bootEnv: m.name, artifacts: done.map(({ tmp: _t, ...a }) => a), signers: [...signers], warnings };
  } finally {
    await Promise.all(temps.map((t) => unlink(t).catch(() => {})));
  }
}

/** The checksum files in order, each verified by its signature or by an earlier verified file; their entries. */
async function verifiedChecksums(
  m: Manifest,
  keyring: string | undefined,
  fetchOne: (url: string, maxBytes?: number, algorithms?: Algorithm[]) => Promise<Downloaded>,
  signers: Set<string>,
  warnings: string[],
): Promise<ChecksumEntry[]> {
  const pool: ChecksumEntry[] = [];
  for (const c of m.checksums) {
    const listed = c.listedAs ? digestFor(pool, c.listedAs) : undefined;
    const f = await fetchOne(c.url, CHECKSUM_MAX, listed ? [listed.algorithm] : []);
    let text: string;
    if (c.signature === 'inline') {
      // Named like an upload's temp file: one a crash leaves behind is removed at the next start.
      const out = path.join(path.dirname(f.tmp), `plinth-upload-${randomUUID()}.part`);
      try {
        signers.add(await verifyClearsigned(keyring!, f.tmp, out, c.url, m.fingerprints));
        text = await readFile(out, 'utf8');
      } finally {
        await unlink(out).catch(() => {});
      }
    } else if (c.signature) {
      const sig = await fetchOne(c.signature, SIG_MAX);
      signers.add(await verifyDetached(keyring!, sig.tmp, f.tmp, c.url, m.fingerprints));
      text = await readFile(f.tmp, 'utf8');
    } else if (c.listedAs) {
      if (!listed)
        throw new ImportError(
          'not-listed',
          `checksum file ${c.url}: '${c.listedAs}' is in none of the verified checksum files before it`,
        );
      if (f.digests[listed.algorithm] !== listed.digest)
        throw new ImportError(
          'wrong-digest',
          `checksum file ${c.url} has ${listed.algorithm} ${f.digests[listed.algorithm]}, but the signed file before it says ${listed.digest}`,
        );
      text = await readFile(f.tmp, 'utf8');
    } else if (m.unsigned) {
      warnings.push(`${c.url} is not signed: its digests are trusted as the transport delivered them`);
      text = await readFile(f.tmp, 'utf8');
    } else {
      throw new ImportError(
        'unsigned',
        `checksum file ${c.url} has no signature and is listed in no signed file: refused`,
      );
    }
    pool.push(...parseChecksums(c.format, text));
  }
  return pool;
}

function bootEnvDoc(m: Manifest, done: ImportedArtifact[]) {
  const at = (role: string) => m.artifacts.filter((a) => a.role === role).map((a) => a.path);
  return {
    name: m.name,
    description: m.description || `imported from a verified manifest by plinth bootenv import`,
    os: m.os,
    kernel: at('kernel')[0] ?? '',
    initrds: at('initrd'),
    bootParams: m.bootParams,
    artifacts: done.map((a) => ({ path: a.path, sha256: a.sha256, url: a.url })),
  };
}
