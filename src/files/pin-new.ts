/**
 * Pinning, after the fact, a bootenv created before its files were indexed.
 */
import type { Bus } from '../events.js';
import { modifyDoc } from '../inventory/crud.js';
import { inventoryResource } from '../inventory/resources.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import { type Artifact, pinCurrentFiles } from './pins.js';
import type { FileInfo } from './store-files.js';

/**
 * Pins every bootenv created without artifacts to its kernel, initrds and named files (`artifacts["<path>"]`) as
 * the files root holds them then, right after the create (the bus tells us). The inventory's write hook (src/inventory/resources.ts `prepare`) already
 * pins, inside the create, what the upload index knows; this catches files the index did not know yet (copied
 * into the files root by hand), hashed here. Returns the unsubscribe function.
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
