/**
 * The store's leaseDurability (`--lease-durability`): 'disk' (default) fdatasyncs each journal group before its
 * writes resolve, 'kernel' resolves them once written (native/journal.c's `sync`), refused on PostgreSQL, where a
 * COMMIT decides. That a 'kernel' write survives a kill -9 is journal.test.ts's, for both settings.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { native } from '../../src/native/index.js';
import { openStore } from '../../src/store/open.js';
import { openSqliteStore } from '../../src/store/sqlite.js';

const addon = native.leaseJournal;

/** The `sync` argument the store's first journaled write opened the journal's thread with. */
async function syncOf(durability: 'disk' | 'kernel' | undefined): Promise<unknown> {
  const calls: unknown[][] = [];
  const seen = {
    ...addon!,
    journalOpen: (...a: Parameters<NonNullable<typeof addon>['journalOpen']>) => {
      calls.push(a);
      return addon!.journalOpen(...a);
    },
  };
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'plinth-durability-')), 'plinth.db');
  const store = openSqliteStore(file, { ...(durability ? { durability } : {}), addon: seen });
  try {
    await store.putBatched('leases', '10.0.0.1', { address: '10.0.0.1' });
    expect((await store.get('leases', '10.0.0.1'))?.doc).toEqual({ address: '10.0.0.1' });
  } finally {
    await store.close();
  }
  expect(calls).toHaveLength(1);
  return calls[0]![7];
}

describe.skipIf(!addon)('lease durability', () => {
  it('opens the journal fdatasyncing by default and with disk, writing only with kernel', async () => {
    expect(await syncOf(undefined)).toBe(1);
    expect(await syncOf('disk')).toBe(1);
    expect(await syncOf('kernel')).toBe(0);
  });
});

describe('--lease-durability', () => {
  it('is disk unless set, takes kernel, and refuses anything else naming the setting', () => {
    expect((loadConfig([], {}) as { leaseDurability?: string }).leaseDurability).toBe('disk');
    const c = loadConfig(['--lease-durability', 'kernel'], {}) as { leaseDurability?: string };
    expect(c.leaseDurability).toBe('kernel');
    expect(
      (loadConfig([], { PLINTH_LEASE_DURABILITY: 'kernel' }) as { leaseDurability?: string }).leaseDurability,
    ).toBe('kernel');
    expect(() => loadConfig(['--lease-durability', 'fast'], {})).toThrow(ConfigError);
    expect(() => loadConfig(['--lease-durability', 'fast'], {})).toThrow(/lease-durability/);
  });

  it('is refused with a PostgreSQL store, before any connection', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'plinth-durability-'));
    await expect(openStore('postgres://nobody@127.0.0.1:1/none', dir, undefined, undefined, 'kernel')).rejects.toThrow(
      /--lease-durability kernel applies to the SQLite store/,
    );
  });
});
