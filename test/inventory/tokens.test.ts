import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  AdminTokenError,
  bootstrapAdminToken,
  hashToken,
  issueToken,
  LAST_USED_EVERY_MS,
  pruneExpiredTokens,
  revokeToken,
  tokenChecker,
} from '../../src/inventory/tokens.js';
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

describe('bootstrapAdminToken', () => {
  const A = 'a'.repeat(32);
  const B = 'b'.repeat(40);
  let store: Store;
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'plinth-tok-'));
    store = openSqliteStore(path.join(dir, 'plinth.db'));
  });
  afterAll(() => store.close());

  it('a new PLINTH_ADMIN_TOKEN replaces the previous one (which a restart used to leave valid)', async () => {
    const check = tokenChecker(store);
    expect(await bootstrapAdminToken(store, dir, A)).toEqual({ created: false, fromEnv: true });
    expect(await check(A)).toMatchObject({ role: 'admin' });
    await bootstrapAdminToken(store, dir, B);
    expect(await check(A)).toBeNull(); // at once, although the checker had it cached
    expect(await tokenChecker(store)(A)).toBeNull();
    expect(await check(B)).toMatchObject({ role: 'admin' });
    expect(existsSync(path.join(dir, 'admin.token'))).toBe(false);
  });

  it('an environment token from before this change (no source mark) is replaced too', async () => {
    const legacy = 'legacy-env-token-0123456789abcdefghij';
    await issueToken(store, legacy, { name: 'admin (PLINTH_ADMIN_TOKEN)', role: 'admin', createdAt: 'x' });
    await bootstrapAdminToken(store, dir, B);
    expect(await tokenChecker(store)(legacy)).toBeNull();
    expect(await tokenChecker(store)(B)).toMatchObject({ role: 'admin' });
  });

  it('unset, the environment token goes and admin.token is created', async () => {
    const r = await bootstrapAdminToken(store, dir, undefined);
    expect(r).toMatchObject({ created: true, fromEnv: false });
    expect(await tokenChecker(store)(B)).toBeNull();
    expect(existsSync(path.join(dir, 'admin.token'))).toBe(true);
  });

  it('refuses a PLINTH_ADMIN_TOKEN shorter than 32 characters, saying what to do', async () => {
    const err = await bootstrapAdminToken(store, dir, 'short-token').catch((e) => e);
    expect(err).toBeInstanceOf(AdminTokenError);
    expect(err.message).toMatch(/PLINTH_ADMIN_TOKEN is 11 characters long; it needs at least 32/);
  });

  it("the e2e suites' admin tokens are long enough", async () => {
    for (const t of [
      'e2e-admin-token-0123456789abcdefghijkl',
      'e2e-proxy-token-0123456789abcdefghijkl',
      'e2e-lab-token-0123456789abcdefghijkl',
    ]) {
      await expect(bootstrapAdminToken(store, dir, t)).resolves.toMatchObject({ fromEnv: true });
    }
  });
});

describe('tokenChecker', () => {
  let store: Store;
  let writes = 0;
  beforeAll(() => {
    const real = openSqliteStore(':memory:');
    store = {
      ...real,
      replace: (kind, key, doc, uniques, opts) => {
        if (kind === 'tokens') writes++;
        return real.replace(kind, key, doc, uniques, opts);
      },
    };
  });
  afterAll(() => store.close());

  it('writes lastUsedAt once a minute per token at most', async () => {
    await issueToken(store, 'tok-1', { name: 't', role: 'viewer', createdAt: new Date().toISOString() });
    writes = 0;
    const check = tokenChecker(store, 0); // no cache: every call reads the store
    for (let i = 0; i < 200; i++) expect(await check('tok-1')).toMatchObject({ role: 'viewer', name: 't' });
    expect(writes).toBe(1);
    await new Promise((r) => setTimeout(r, 20));
    const d = (await store.get('tokens', hashToken('tok-1')))!.doc as { lastUsedAt: string };
    expect(Date.now() - Date.parse(d.lastUsedAt)).toBeLessThan(LAST_USED_EVERY_MS);
    // a second checker (the boot routes have their own) shares the throttle
    await tokenChecker(store)('tok-1');
    expect(writes).toBe(1);
  });

  it('forgets a revoked token at once, in every checker on the store', async () => {
    await issueToken(store, 'tok-2', { name: 't2', role: 'operator', createdAt: new Date().toISOString() });
    const one = tokenChecker(store, 60_000);
    const two = tokenChecker(store, 60_000);
    expect(await one('tok-2')).not.toBeNull();
    expect(await two('tok-2')).not.toBeNull();
    await revokeToken(store, hashToken('tok-2'));
    expect(await one('tok-2')).toBeNull();
    expect(await two('tok-2')).toBeNull();
    expect(await store.get('tokens', hashToken('tok-2'))).toBeUndefined();
  });

  it("another daemon's lastUsedAt write never brings back a token revoked meanwhile (shared inventory)", async () => {
    // Two daemons on one inventory: the same database, each with its own store object and so its own cache.
    const daemonB = { ...store };
    const t0 = Date.now();
    await issueToken(store, 'tok-3', { name: 't3', role: 'viewer', createdAt: new Date(t0).toISOString() });
    const onB = tokenChecker(daemonB, 10 * 60_000);
    expect(await onB('tok-3')).not.toBeNull(); // B caches it, writing lastUsedAt now
    await new Promise((r) => setTimeout(r, 20));
    await revokeToken(store, hashToken('tok-3')); // revoked through daemon A
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(t0 + LAST_USED_EVERY_MS + 1000);
      // Still in B's cache (its TTL), and a minute on: B writes lastUsedAt again, conditionally on what it read.
      expect(await onB('tok-3')).not.toBeNull();
    } finally {
      vi.useRealTimers();
    }
    await new Promise((r) => setTimeout(r, 50));
    expect(await store.get('tokens', hashToken('tok-3'))).toBeUndefined();
  });
});
