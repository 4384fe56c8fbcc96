import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashToken, issueToken, pruneExpiredTokens, tokenChecker } from '../../src/inventory/tokens.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';

describe('pruneExpiredTokens', () => {
  let store: Store;
  beforeAll(async () => {
    store = openSqliteStore(path.join(mkdtempSync(path.join(tmpdir(), 'plinth-tok-')), 'plinth.db'));
  });
  afterAll(() => store.close());

  it('deletes expired machine tokens only, across pages, and keeps live and admin tokens', async () => {
    // tokenChecker compares with the real clock: the test's 'now' must be the real one too.
    const now = Date.now();
    const at = (s: number) => new Date(now + s * 1000).toISOString();
    await issueToken(store, 'admin', { name: 'admin', role: 'admin', createdAt: at(-9999) });
    for (let i = 0; i < 1203; i++)
      await issueToken(store, `old-${i}`, {
        name: 'm',
        role: 'machine',
        machine: 'u',
        createdAt: at(-7200),
        expiresAt: at(-1 - i),
      });
    for (let i = 0; i < 7; i++)
      await issueToken(store, `live-${i}`, {
        name: 'm',
        role: 'machine',
        machine: 'u',
        createdAt: at(-10),
        expiresAt: at(3600),
      });

    expect(await pruneExpiredTokens(store, now)).toBe(1203);
    const { total } = await store.list('tokens');
    expect(total).toBe(8);
    expect(await store.get('tokens', hashToken('old-0'))).toBeUndefined();
    expect(await tokenChecker(store)('live-3')).toMatchObject({ role: 'machine' });
    expect(await tokenChecker(store)('admin')).toMatchObject({ role: 'admin' });
    expect(await pruneExpiredTokens(store, now)).toBe(0);
  });
});
