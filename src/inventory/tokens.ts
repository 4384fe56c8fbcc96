import { createHash, randomBytes } from 'node:crypto';
import { chmod, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Store } from '../store/store.js';

/** Tokens are stored only as their sha256: a copy of the database gives nobody API access. */
export type TokenDoc = {
  name: string;
  role: 'admin' | 'machine';
  machine?: string;
  createdAt: string;
  expiresAt?: string;
};

export const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');
export const newToken = () => randomBytes(32).toString('base64url');

export async function issueToken(store: Store, token: string, doc: TokenDoc): Promise<void> {
  await store.putBatched('tokens', hashToken(token), doc);
}

/**
 * First start with an empty store: create the admin token, write it to <dataDir>/admin.token (0600), and say
 * where it is (never the token itself). PLINTH_ADMIN_TOKEN, when set, is accepted as an admin token instead.
 */
export async function bootstrapAdminToken(
  store: Store,
  dataDir: string,
  envToken: string | undefined,
): Promise<{ created: boolean; file?: string; fromEnv: boolean }> {
  const now = new Date().toISOString();
  if (envToken) {
    await issueToken(store, envToken, { name: 'admin (PLINTH_ADMIN_TOKEN)', role: 'admin', createdAt: now });
    return { created: false, fromEnv: true };
  }
  const { total } = await store.list('tokens', { filters: [{ field: 'role', value: 'admin' }], limit: 1 });
  const file = path.join(dataDir, 'admin.token');
  if (total > 0) return { created: false, file, fromEnv: false };
  const token = newToken();
  // Written before the hash is stored: if the write fails we have not locked the operator out.
  await writeFile(file, `${token}\n`, { mode: 0o600 });
  await chmod(file, 0o600);
  await issueToken(store, token, { name: 'admin', role: 'admin', createdAt: now });
  return { created: true, file, fromEnv: false };
}

export type Principal = { role: 'admin' | 'machine'; machine?: string; name: string };

/** Token -> principal, with a short cache so an API at 10k req/s does not hit the store per request. */
export function tokenChecker(store: Store, ttlMs = 5000) {
  const cache = new Map<string, { p: Principal | null; until: number }>();
  return async (token: string): Promise<Principal | null> => {
    const h = hashToken(token);
    const now = Date.now();
    const hit = cache.get(h);
    if (hit && hit.until > now) return hit.p;
    const s = await store.get('tokens', h);
    const d = s?.doc as TokenDoc | undefined;
    const p =
      d && (!d.expiresAt || Date.parse(d.expiresAt) > now) ? { role: d.role, machine: d.machine, name: d.name } : null;
    if (cache.size > 10_000) cache.clear();
    cache.set(h, { p, until: now + ttlMs });
    return p;
  };
}

/**
 * Machine tokens are issued per render of a template that carries one, so they pile up: delete the expired
 * ones. Admin tokens (no expiry) are never touched. Pages through the list so one sweep stays bounded in memory.
 */
export async function pruneExpiredTokens(store: Store, now = Date.now()): Promise<number> {
  let removed = 0;
  let offset = 0;
  const page = 500;
  for (;;) {
    const { items } = await store.list('tokens', {
      filters: [{ field: 'role', value: 'machine' }],
      limit: page,
      offset,
    });
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
