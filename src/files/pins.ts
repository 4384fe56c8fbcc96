/**
 * What bootenvs pin: the digests gc must keep, and the pins a bootenv gets at creation when the operator gives
 * none (its kernel and initrds as the files root holds them then), so a later PUT of the same path changes what a
 * new bootenv boots, never what this one boots.
 */
import type { Bus } from '../events.js';
import { modifyDoc } from '../inventory/crud.js';
import { inventoryResource } from '../inventory/resources.js';
import type { Logger } from '../log.js';
import type { BootEnv } from '../model/bootenv.js';
import type { Doc, Store } from '../store/store.js';
import type { FileInfo } from './store-files.js';

type Artifact = BootEnv['artifacts'][number];

/** Every digest any bootenv pins. */
export async function pinnedDigests(store: Store): Promise<Set<string>> {
  const { items } = await store.list('bootenvs');
  const out = new Set<string>();
  for (const b of items) for (const a of (b.doc.artifacts as Artifact[] | undefined) ?? []) out.add(a.sha256);
  return out;
}

/**
 * The bootenv document with `artifacts` filled from the current files when it has none: its kernel and each
 * initrd that exists gets a pin. `infoOf` says what the files root holds at a path (the upload index, or
 * fileInfo). A bootenv with pins of its own is returned as it is: the operator's pins are the truth.
 */
export async function pinCurrentFiles(
  doc: Doc,
  infoOf: (rel: string) => Promise<Pick<FileInfo, 'sha256'> | undefined>,
): Promise<Doc> {
  const given = (doc.artifacts as Artifact[] | undefined) ?? [];
  if (given.length > 0) return doc;
  const paths = [doc.kernel as string | undefined, ...((doc.initrds as string[] | undefined) ?? [])].filter(
    (p): p is string => typeof p === 'string' && p.length > 0,
  );
  const artifacts: Artifact[] = [];
  for (const p of [...new Set(paths)]) {
    const info = await infoOf(p).catch(() => undefined);
    if (info) artifacts.push({ path: p, sha256: info.sha256 });
  }
  return artifacts.length ? { ...doc, artifacts } : doc;
}

/** `infoOf` from the store's index of uploads (what a write hook has: the store, not the files root). */
export function indexedInfo(store: Store): (rel: string) => Promise<{ sha256: string } | undefined> {
  return async (rel) => {
    const d = (await store.get('files', rel))?.doc as { sha256?: string } | undefined;
    return d?.sha256 ? { sha256: d.sha256 } : undefined;
  };
}

/**
 * Pins every bootenv created without artifacts to its kernel and initrds as the files root holds them then, right
 * after the create (the bus tells us). The inventory's write hook for bootenvs (src/inventory/resources.ts
 * `prepare`) is the place to do this inside the create itself; until it calls `pinCurrentFiles`, this does it
 * a moment later. Returns the unsubscribe function.
 */
export function pinNewBootenvs(deps: {
  store: Store;
  bus: Bus;
  log: Logger;
  infoOf: (rel: string) => Promise<Pick<FileInfo, 'sha256'> | undefined>;
}): () => void {
  return deps.bus.on((e) => {
    if (e.type !== 'bootenvs.created' || !e.key) return;
    const key = e.key;
    (async () => {
      const s = await deps.store.get('bootenvs', key);
      if (!s || ((s.doc.artifacts as unknown[] | undefined) ?? []).length > 0) return;
      const pinned = await pinCurrentFiles(s.doc, deps.infoOf);
      const artifacts = pinned.artifacts as Artifact[] | undefined;
      if (!artifacts?.length) return;
      await modifyDoc({ store: deps.store, bus: deps.bus }, inventoryResource('bootenvs'), key, (d) =>
        ((d.artifacts as unknown[] | undefined) ?? []).length > 0 ? d : { ...d, artifacts },
      );
      deps.log.info({ bootEnv: key, artifacts: artifacts.map((a) => a.path) }, 'bootenv pinned to its current files');
    })().catch((err) =>
      deps.log.warn({ err: (err as Error).message, bootEnv: key }, 'bootenv: its current files could not be pinned'),
    );
  });
}
