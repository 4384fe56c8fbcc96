import { createHash, randomBytes } from 'node:crypto';
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { NotFoundError, type Store } from '../store/store.js';

export const ROLES = ['admin', 'operator', 'viewer', 'machine'] as const;
export type Role = (typeof ROLES)[number];

/**
 * Tokens are stored only as their sha256 (the store key): a copy of the database gives nobody API access.
 * `source` says who made it: 'env' (PLINTH_ADMIN_TOKEN, replaced at each start), 'file' (admin.token), 'api'
 * (POST /tokens), 'render' (a machine token put into a rendered boot file).
 */
export type TokenDoc = {
  name: string;
  role: Role;
  machine?: string;
  createdAt: string;
  expiresAt?: string;
  lastUsedAt?: string;
  source?: 'env' | 'file' | 'api' | 'render';
};

/** Shorter operator-supplied tokens are refused: a guessable word must not open the API. Generated ones are 43. */
export const MIN_TOKEN_LENGTH = 32;

export const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');
export const newToken = () => randomBytes(32).toString('base64url');
/** A token's public id: a prefix of its hash, enough to name it in a list or a DELETE. */
export const tokenId = (hash: string) => hash.slice(0, 16);

export async function issueToken(store: Store, token: string, doc: TokenDoc): Promise<void> {
  const h = hashToken(token);
  await store.putBatched('tokens', h, doc);
  tokenStored(store, h);
}

/** Thrown when the daemon cannot start with the token it was given; the message says what to do. */
export class AdminTokenError extends Error {}

const ENV_NAME = 'admin (PLINTH_ADMIN_TOKEN)';
const fromEnv = (d: TokenDoc) => d.source === 'env' || (d.role === 'admin' && d.name === ENV_NAME);

/** Every token document, a page at a time, so that a sweep stays bounded in memory. */
async function* allTokens(store: Store, role?: Role) {
  const page = 500;
  for (let offset = 0; ; offset += page) {
    const { items } = await store.list('tokens', {
      filters: role ? [{ field: 'role', value: role }] : [],
      limit: page,
      offset,
    });
    yield* items;
    if (items.length < page) return;
  }
}

/**
 * At start: PLINTH_ADMIN_TOKEN, when set, becomes the one environment admin token and every earlier environment
 * token is revoked (rotating the variable must lock out the old value); when unset, earlier environment tokens
 * are revoked too. With no admin token left, one is created and written to <dataDir>/admin.token (0600), and
 * the log says where it is (never the token itself).
 */
export async function bootstrapAdminToken(
  store: Store,
  dataDir: string,
  envToken: string | undefined,
): Promise<{ created: boolean; file?: string; fromEnv: boolean }> {
  const now = new Date().toISOString();
  if (envToken !== undefined && envToken !== '' && envToken.length < MIN_TOKEN_LENGTH) {
    throw new AdminTokenError(
      `PLINTH_ADMIN_TOKEN is ${envToken.length} characters long; it needs at least ${MIN_TOKEN_LENGTH}: ` +
        `generate one with "openssl rand -base64 32" or unset it to use <data-dir>/admin.token`,
    );
  }
  const keep = envToken ? hashToken(envToken) : undefined;
  const stale: string[] = [];
  for await (const s of allTokens(store, 'admin')) if (fromEnv(s.doc as TokenDoc) && s.key !== keep) stale.push(s.key);
  for (const key of stale) await revokeToken(store, key);
  if (envToken) {
    await issueToken(store, envToken, { name: ENV_NAME, role: 'admin', createdAt: now, source: 'env' });
    return { created: false, fromEnv: true };
  }
  const { total } = await store.list('tokens', { filters: [{ field: 'role', value: 'admin' }], limit: 1 });
  const file = path.join(dataDir, 'admin.token');
  if (total > 0) return { created: false, file, fromEnv: false };
  const token = newToken();
  // Written before the hash is stored: if the write fails we have not locked the operator out.
  await writeFile(file, `${token}\n`, { mode: 0o600 });
  await chmod(file, 0o600);
  await issueToken(store, token, { name: 'admin', role: 'admin', createdAt: now, source: 'file' });
  return { created: true, file, fromEnv: false };
}

export type Principal = { role: Role; machine?: string; name: string; id: string };

type Entry = { p: Principal | null; doc?: TokenDoc; etag?: string; until: number };
/**
 * One cache per store, shared by every checker on it (the API's and the boot routes'), so that a revoke clears
 * it for all of them at once.
 */
type Shared = { cache: Map<string, Entry>; lastWrite: Map<string, number>; revoked: Set<string> };
const shared = new WeakMap<Store, Shared>();
function sharedOf(store: Store): Shared {
  let s = shared.get(store);
  if (!s) {
    s = { cache: new Map(), lastWrite: new Map(), revoked: new Set() };
    shared.set(store, s);
  }
  return s;
}

/** lastUsedAt is written at most this often per token: an API at 10k req/s must not write per request. */
export const LAST_USED_EVERY_MS = 60_000;

/** Token -> principal, with a short cache so an API at 10k req/s does not hit the store per request. */
export function tokenChecker(store: Store, ttlMs = 5000) {
  const sh = sharedOf(store);
  // token -> its sha256, for the tokens seen lately: the hash was a tenth of an API GET's CPU time. Only the
  // hash is remembered here, never an answer: what a token may do is decided below, from the shared cache that
  // a revoke clears, so a revoke stays immediate.
  const hashes = new Map<string, string>();
  const hashOf = (token: string) => {
    let h = hashes.get(token);
    if (h === undefined) {
      h = hashToken(token);
      if (hashes.size >= 10_000) hashes.clear();
      hashes.set(token, h);
    }
    return h;
  };
  // The cached answer, once its entry is fresh: the principal, null for a refused or expired token.
  const settle = (h: string, hit: Entry, now: number): Principal | null => {
    // The cache may hold a token past its expiry for up to ttlMs; the expiry itself is exact.
    if (hit.doc?.expiresAt && Date.parse(hit.doc.expiresAt) <= now) return null;
    if (hit.p && hit.doc) touch(store, sh, h, hit, now);
    return hit.p;
  };
  const check = async (token: string): Promise<Principal | null> => {
    const h = hashOf(token);
    const now = Date.now();
    let hit = sh.cache.get(h);
    if (!hit || hit.until <= now) {
      const s = await store.get('tokens', h);
      const d = s?.doc as TokenDoc | undefined;
      const live = d && !sh.revoked.has(h) && (!d.expiresAt || Date.parse(d.expiresAt) > now);
      hit = live
        ? {
            p: { role: d.role, machine: d.machine, name: d.name, id: tokenId(h) },
            doc: d,
            etag: s?.etag,
            until: now + ttlMs,
          }
        : { p: null, until: now + ttlMs };
      if (sh.cache.size > 10_000) sh.cache.clear();
      sh.cache.set(h, hit);
    }
    return settle(h, hit, now);
  };
  /** The answer without a store read when the cache has a fresh one (the API's hot path); else undefined. */
  const cached = (token: string): Principal | null | undefined => {
    const h = hashOf(token);
    const now = Date.now();
    const hit = sh.cache.get(h);
    return hit && hit.until > now ? settle(h, hit, now) : undefined;
  };
  return Object.assign(check, { cached });
}

function touch(store: Store, sh: Shared, h: string, hit: Entry, now: number) {
  const doc = hit.doc as TokenDoc;
  const last = sh.lastWrite.get(h) ?? (doc.lastUsedAt ? Date.parse(doc.lastUsedAt) : 0);
  if (now - last < LAST_USED_EVERY_MS || sh.revoked.has(h) || !hit.etag) return;
  if (sh.lastWrite.size > 10_000) sh.lastWrite.clear();
  sh.lastWrite.set(h, now);
  const next = { ...doc, lastUsedAt: new Date(now).toISOString() };
  // An update of the version this daemon read (If-Match), never an upsert: on an inventory several daemons share,
  // another daemon may have revoked the token since, and an upsert of the cached document would bring it back.
  // A token gone or changed since is left as it is. API tokens keep their unique name.
  const uniques = doc.source === 'api' ? [{ field: 'name', value: doc.name }] : [];
  store
    .replace('tokens', h, next, uniques, { ifMatch: hit.etag })
    .then((stored) => {
      hit.doc = next;
      hit.etag = stored.etag;
    })
    .catch(() => sh.lastWrite.delete(h));
}

/**
 * Revokes at once on this daemon: every checker on this store forgets the token before this returns. The row
 * (and its unique name) goes in a transaction, then once more through the batched queue, behind any batched
 * write of it already queued (issueToken's). A lastUsedAt update is conditional on the version read, so none
 * can bring it back, on this daemon or another sharing the inventory; another daemon's cache forgets the token
 * within its TTL (5 s).
 */
export async function revokeToken(store: Store, hash: string): Promise<void> {
  const sh = sharedOf(store);
  sh.revoked.add(hash);
  sh.cache.delete(hash);
  try {
    await store.remove('tokens', hash).catch((err) => {
      if (!(err instanceof NotFoundError)) throw err;
    });
    await store.putBatched('tokens', hash, null);
  } finally {
    // A hash is never reissued (it is the sha256 of a fresh secret), so the mark only needs to outlive the queue.
    setTimeout(() => sh.revoked.delete(hash), 2 * LAST_USED_EVERY_MS).unref();
  }
}

/** A token just stored: forget any earlier answer about it (a refusal cached, a revoke of the same value). */
export function tokenStored(store: Store, hash: string): void {
  const sh = sharedOf(store);
  sh.revoked.delete(hash);
  sh.cache.delete(hash);
}

/** The stored token whose id (hash prefix) is `id`; undefined when none or more than one match. */
export async function findTokenById(store: Store, id: string): Promise<{ hash: string; doc: TokenDoc } | undefined> {
  let found: { hash: string; doc: TokenDoc } | undefined;
  for await (const s of allTokens(store)) {
    if (!s.key.startsWith(id)) continue;
    if (found) return undefined;
    found = { hash: s.key, doc: s.doc as TokenDoc };
  }
  return found;
}

/**
 * Machine tokens are issued per render of a template that carries one, so they pile up: delete the expired
 * ones (and expired API tokens). Tokens without an expiry are never touched. Pages through the list so one sweep
 * stays bounded in memory.
 */
export async function pruneExpiredTokens(store: Store, now = Date.now()): Promise<number> {
  let removed = 0;
  let offset = 0;
  const page = 500;
  for (;;) {
    const { items } = await store.list('tokens', { limit: page, offset });
    let kept = 0;
    for (const i of items) {
      const exp = (i.doc as TokenDoc).expiresAt;
      if (exp && Date.parse(exp) <= now) {
        await store.remove('tokens', i.key).catch(() => undefined); // gone already: another sweep won
        removed++;
      } else kept++;
    }
    if (items.length < page) return removed;
    offset += kept;
  }
}
