/**
 * A bootenv pins its artifacts (kernel, initrd, image) by sha256, and what it boots is the blob of that digest
 * (src/files/blobs.ts), whatever its path holds today: an immutable image is exactly the bytes it was pinned to,
 * and assigning the previous bootenv really rolls back. One module, asked by the render (is the bootenv ready?),
 * by /files (may this path be served? which blob does a machine on this bootenv get?) and by the API (readiness).
 */

import { stat } from 'node:fs/promises';
import type { Bus } from '../events.js';
import { blobRel, digestOfBlobRel, ensureView, ingestPath } from '../files/blobs.js';
import { filesCluster } from '../files/cluster.js';
import { confineLexical } from '../files/confine.js';
import { fileInfo } from '../files/store-files.js';
import type { Logger } from '../log.js';
import { rateLimitedLog } from '../log-limit.js';
import type { BootEnv } from '../model/bootenv.js';
import type { Store } from '../store/store.js';

export type ArtifactDeps = { store: Store; bus: Bus; log: Logger; filesDir: string };

/** One pinned artifact as the API reports it: `present` (its blob has the pinned bytes), `missing`, `corrupt`. */
export type ArtifactState = {
  path: string;
  sha256: string;
  blob: string;
  state: 'present' | 'missing' | 'corrupt';
  size?: number;
  detail?: string;
};
export type Readiness = { ready: boolean; artifacts: ArtifactState[]; missing: string[] };

export function artifactCheck(deps: ArtifactDeps) {
  const { store, log, filesDir } = deps;
  // A pinned blob no source has is asked for at every readiness check and boot (peers.ts's failure memo keeps
  // that from refetching, not from logging): one line per digest per minute, counting the ones left out.
  const limited = rateLimitedLog(log, 60_000);
  const info = (rel: string) => fileInfo(store, filesDir, rel).catch(() => undefined);

  /**
   * The state of one pin. A blob that is absent while the path still holds the pinned bytes (a file copied in by
   * hand, or uploaded before the blob store) is taken into the store here, by a hard link: no copy.
   */
  const stateOf = async (a: { path: string; sha256: string }): Promise<ArtifactState> => {
    const blob = blobRel(a.sha256);
    const b = await info(blob);
    if (b?.sha256 === a.sha256) return { ...a, blob, state: 'present', size: b.size };
    if (b)
      return { ...a, blob, state: 'corrupt', detail: `${a.path} has sha256 ${b.sha256}, bootenv pins ${a.sha256}` };
    const p = await info(a.path);
    if (p?.sha256 === a.sha256) {
      const c = confineLexical(filesDir, a.path);
      if (c.ok) {
        try {
          await ingestPath(filesDir, c.abs, a.sha256);
          return { ...a, blob, state: 'present', size: p.size };
        } catch (err) {
          log.warn({ err: (err as Error).message, path: a.path }, 'artifact: cannot link the file into the blob store');
        }
      }
    }
    // Several daemons (issue 17): a digest no daemon recorded may still be at the configured origin
    // (`--files-origin`) or on a peer that holds it under another path: fetched now, on first use, and verified.
    const fetched = await fetchPinned(a.sha256);
    if (fetched !== undefined) return { ...a, blob, state: 'present', size: fetched };
    const detail = p ? `${a.path} has sha256 ${p.sha256}, bootenv pins ${a.sha256}` : `${a.path} is missing`;
    return { ...a, blob, state: 'missing', detail };
  };

  /** The size of the blob of `sha256` once a peer or the origin gave it; undefined for a lone daemon or none. */
  const fetchPinned = async (sha256: string): Promise<number | undefined> => {
    const cluster = filesCluster(filesDir);
    if (!cluster) return undefined;
    try {
      return (await stat(await cluster.ensureBlob(sha256))).size;
    } catch (err) {
      limited(
        'warn',
        `pinned:${sha256}`,
        { err: (err as Error).message, sha256 },
        'artifact: no peer or origin gave its pinned blob',
      );
      return undefined;
    }
  };

  /** Where /files serves a pinned path: the path while it holds the pinned bytes, else the view of the blob. */
  const servedRel = async (pin: { path: string; sha256: string }) => {
    if ((await info(pin.path))?.sha256 === pin.sha256) return pin.path;
    try {
      return await ensureView(filesDir, pin.sha256, pin.path);
    } catch (err) {
      log.warn({ err: (err as Error).message, path: pin.path }, 'artifact: cannot link the view of its pinned blob');
      return blobRel(pin.sha256);
    }
  };

  // Which digests the bootenvs pin at each path, reloaded after any bootenv changes.
  let pins: Promise<Map<string, Map<string, string>>> | undefined;
  const off = deps.bus.on((e) => {
    if (e.type.startsWith('bootenvs.')) pins = undefined;
  });
  const loadPins = async () => {
    const { items } = await store.list('bootenvs');
    const m = new Map<string, Map<string, string>>();
    for (const b of items)
      for (const a of (b.doc.artifacts as { path: string; sha256: string }[]) ?? []) {
        if (!m.has(a.path)) m.set(a.path, new Map());
        m.get(a.path)!.set(a.sha256, b.key);
      }
    return m;
  };
  const currentPins = () =>
    (pins ??= loadPins().catch((err) => {
      pins = undefined;
      throw err;
    }));

  return {
    /** Every pin's state, and whether the bootenv can boot (all present). */
    async readiness(be: Pick<BootEnv, 'artifacts'>): Promise<Readiness> {
      const artifacts = await Promise.all(be.artifacts.map(stateOf));
      const bad = artifacts.filter((a) => a.state !== 'present');
      return { ready: bad.length === 0, artifacts, missing: bad.map((a) => a.path) };
    },

    /** What is wrong with a bootenv's artifacts, one sentence each; empty when every pinned blob is there. */
    async verify(be: Pick<BootEnv, 'artifacts'>): Promise<string[]> {
      const states = await Promise.all(be.artifacts.map(stateOf));
      return states.filter((s) => s.state !== 'present').map((s) => s.detail!);
    },

    /**
     * The name under /files that serves each of `paths` (a bootenv's kernel, initrds and the files its text
     * names) for this bootenv: a pinned path whose bytes are still the pinned ones is served as itself; one
     * overwritten since (a later PUT) by the view of its pinned blob, `.blobs/views/<digest>/<path>`, which keeps
     * the file name for iPXE and TFTP. So what a render names is what the bootenv pinned, and assigning the previous
     * bootenv rolls back every file it names. A path the bootenv does not pin is served as the path is.
     */
    async served(be: Pick<BootEnv, 'artifacts'>, paths: readonly string[]): Promise<Record<string, string>> {
      const pinned = new Map(be.artifacts.map((a) => [a.path, a]));
      const all = [...new Set([...pinned.keys(), ...paths])];
      const rels = await Promise.all(all.map((p) => (pinned.has(p) ? servedRel(pinned.get(p)!) : p)));
      return Object.fromEntries(all.map((p, i) => [p, rels[i]!]));
    },

    /**
     * Why /files must not serve `rel`, or undefined: a blob whose bytes no longer match its name, or a pinned path
     * whose bytes match none of the digests the bootenvs pin there.
     */
    async refuse(rel: string): Promise<string | undefined> {
      const named = digestOfBlobRel(rel);
      if (named) {
        const b = await info(rel);
        if (!b || b.sha256 === named) return undefined;
        log.error({ path: rel, actual: b.sha256 }, 'blob digest mismatch: not served');
        return `blob ${rel} has sha256 ${b.sha256}: its bytes were altered, refusing to serve it`;
      }
      const at = (await currentPins()).get(rel);
      if (!at) return undefined;
      const actual = (await info(rel))?.sha256;
      if (actual && at.has(actual)) return undefined;
      const [sha256, bootEnv] = [...at.entries()][0]!;
      log.error({ path: rel, bootEnv, expected: sha256, actual }, 'artifact digest mismatch: not served');
      return `artifact ${rel} of bootenv ${bootEnv} has sha256 ${actual}, but the bootenv pins ${sha256}: refusing to serve it`;
    },

    close: off,
  };
}
export type ArtifactCheck = ReturnType<typeof artifactCheck>;
