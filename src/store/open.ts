/**
 * Which backend the daemon's inventory lives in: the SQLite file in the data dir (the default, one daemon), or
 * PostgreSQL when a `postgres://` URL is given (`--store`, PLINTH_STORE_URL), which several daemons may share.
 */
import path from 'node:path';
import { openPgStore, redactUrl } from './pg.js';
import type { IndexBuildNote } from './pg-index-build.js';
import { openSqliteStore } from './sqlite.js';
import { type Store, StoreError } from './store.js';

export type OpenedStore = Store & { schemaVersion: number; backend: 'sqlite' | 'postgres' };

/** True for a URL the PostgreSQL backend takes. */
export const isPgUrl = (s: string) => /^postgres(ql)?:\/\//.test(s);

/** Where the store is, as the start-up log and errors may name it (never a password). */
export function storeLabel(url: string | undefined, dataDir: string): string {
  return url ? redactUrl(url) : path.join(dataDir, 'plinth.db');
}

/**
 * `warn` hears what happens to idle PostgreSQL connections (the server restarted, the network dropped);
 * `durability`: when the SQLite store's lease writes count as durable (journal.ts), refused with PostgreSQL;
 * `onIndexBuild`: the background build of an upgrade's indexes on PostgreSQL (pg-index-build.ts).
 */
export async function openStore(
  url: string | undefined,
  dataDir: string,
  warn?: (err: Error) => void,
  serverId?: string,
  durability: 'disk' | 'kernel' = 'disk',
  onIndexBuild?: (n: IndexBuildNote) => void,
): Promise<OpenedStore> {
  if (url === undefined || url === '') {
    return Object.assign(openSqliteStore(path.join(dataDir, 'plinth.db'), { durability }), {
      backend: 'sqlite' as const,
    });
  }
  if (!isPgUrl(url))
    throw new StoreError(`--store ${url}: expected a postgres:// URL (or nothing for the SQLite file)`);
  if (durability !== 'disk')
    throw new StoreError(
      `--lease-durability ${durability} applies to the SQLite store: on PostgreSQL a lease is durable when its COMMIT is (the server's synchronous_commit)`,
    );
  return openPgStore(url, { onIdleError: warn, serverId, follow: { onError: warn }, onIndexBuild });
}
