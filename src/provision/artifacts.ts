/**
 * A bootenv pins its artifacts (kernel, initrd, image) by sha256: an immutable image is exactly the bytes it was
 * pinned to. One check, asked twice: before a render (the bootenv's own artifacts: refuse to boot it) and before
 * /files serves a file some bootenv pins (refuse to serve it).
 */
import type { Bus } from '../events.js';
import { fileInfo } from '../files/store-files.js';
import type { Logger } from '../log.js';
import type { BootEnv } from '../model/bootenv.js';
import type { Store } from '../store/store.js';

export type ArtifactDeps = { store: Store; bus: Bus; log: Logger; filesDir: string };
type Pin = { sha256: string; bootEnv: string };

export function artifactCheck(deps: ArtifactDeps) {
  const { store, log } = deps;
  /** undefined: the file has the pinned digest; else its digest (undefined when it is missing). */
  const mismatch = async (rel: string, sha256: string): Promise<{ actual?: string } | undefined> => {
    const info = await fileInfo(store, deps.filesDir, rel).catch(() => undefined);
    return info?.sha256 === sha256 ? undefined : { actual: info?.sha256 };
  };

  // Which bootenv pins which path, reloaded after any bootenv changes.
  let pins: Promise<Map<string, Pin>> | undefined;
  const off = deps.bus.on((e) => {
    if (e.type.startsWith('bootenvs.')) pins = undefined;
  });
  const loadPins = async () => {
    const { items } = await store.list('bootenvs');
    const m = new Map<string, Pin>();
    for (const b of items)
      for (const a of (b.doc.artifacts as { path: string; sha256: string }[]) ?? [])
        m.set(a.path, { sha256: a.sha256, bootEnv: b.key });
    return m;
  };

  return {
    /** What is wrong with a bootenv's artifacts, one sentence each; empty when all match. */
    async verify(be: BootEnv): Promise<string[]> {
      const bad: string[] = [];
      for (const a of be.artifacts) {
        const m = await mismatch(a.path, a.sha256);
        if (!m) continue;
        bad.push(m.actual ? `${a.path} has sha256 ${m.actual}, bootenv pins ${a.sha256}` : `${a.path} is missing`);
      }
      return bad;
    },

    /** Why /files must not serve `rel` (a pinned artifact whose bytes changed), or undefined. */
    async refuse(rel: string): Promise<string | undefined> {
      pins ??= loadPins().catch((err) => {
        pins = undefined;
        throw err;
      });
      const pin = (await pins).get(rel);
      if (!pin) return undefined;
      const m = await mismatch(rel, pin.sha256);
      if (!m) return undefined;
      log.error(
        { path: rel, bootEnv: pin.bootEnv, expected: pin.sha256, actual: m.actual },
        'artifact digest mismatch: not served',
      );
      return `artifact ${rel} of bootenv ${pin.bootEnv} has sha256 ${m.actual}, but the bootenv pins ${pin.sha256}: refusing to serve it`;
    },

    close: off,
  };
}
export type ArtifactCheck = ReturnType<typeof artifactCheck>;
