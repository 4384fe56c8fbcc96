import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashToken } from '../../src/inventory/tokens.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

let d: TestDaemon;
beforeAll(async () => {
  d = await startTestDaemon();
});
afterAll(async () => {
  await d.stop();
});

const withToken =
  (t: string) =>
  (method: string, p: string, body?: unknown, headers: Record<string, string> = {}) =>
    d.api(method, p, body, { authorization: `Bearer ${t}`, ...headers });

/** Polls (bounded: 50 x 20 ms) until the batched write has landed. */
async function eventually<T>(f: () => Promise<T>, ok: (v: T) => boolean): Promise<T> {
  let v = await f();
  for (let i = 0; i < 50 && !ok(v); i++) {
    await new Promise((r) => setTimeout(r, 20));
    v = await f();
  }
  return v;
}

describe('POST /api/v1/tokens', () => {
  it('returns the secret once; the list shows name, id, role and times, never the secret or its hash', async () => {
    const r = await d.api('POST', '/api/v1/tokens', { name: 'ci', role: 'operator', expiresIn: 3600 });
    expect(r.status).toBe(201);
    expect(r.headers.get('cache-control')).toBe('no-store');
    expect(r.body.token).toMatch(/^[\w-]{43}$/);
    expect(r.body.id).toBe(hashToken(r.body.token).slice(0, 16));
    expect(r.body.role).toBe('operator');
    expect(Date.parse(r.body.expiresAt) - Date.parse(r.body.createdAt)).toBe(3_600_000);
    const l = await d.api('GET', '/api/v1/tokens');
    expect(l.status).toBe(200);
    const mine = l.body.find((t: { name: string }) => t.name === 'ci');
    expect(mine).toMatchObject({ id: r.body.id, role: 'operator', source: 'api' });
    expect(l.text).not.toContain(r.body.token);
    expect(l.text).not.toContain(hashToken(r.body.token));
    expect(l.text).not.toContain(hashToken(d.token));
    expect(l.body.find((t: { name: string }) => t.name === 'admin')).toMatchObject({ role: 'admin', source: 'file' });
    expect((await d.api('GET', `/api/v1/tokens/${r.body.id}`)).body.name).toBe('ci');
  });

  it('takes an operator-chosen token of at least 32 characters', async () => {
    const secret = 'x'.repeat(31);
    const short = await d.api('POST', '/api/v1/tokens', { name: 'short', role: 'viewer', token: secret });
    expect(short.status).toBe(400);
    expect(short.body.errors[0].path).toBe('token');
    const ok = await d.api('POST', '/api/v1/tokens', { name: 'chosen', role: 'viewer', token: `${secret}yz` });
    expect(ok.status).toBe(201);
    expect((await withToken(`${secret}yz`)('GET', '/api/v1/machines')).status).toBe(200);
  });

  it.each([
    [{ role: 'viewer' }, 'name'],
    [{ name: 'n1' }, 'role'],
    [{ name: 'n2', role: 'root' }, 'role'],
    [{ name: 'n3', role: 'machine' }, 'machine'],
    [{ name: 'n4', role: 'viewer', machine: '00000000-0000-4000-8000-000000000001' }, 'machine'],
    [{ name: 'n5', role: 'viewer', expiresIn: 5 }, 'expiresIn'],
    [{ name: 'n6', role: 'viewer', expiresAt: '2001-01-01T00:00:00Z' }, 'expiresAt'],
    [{ name: 'n7', role: 'viewer', colour: 'red' }, 'colour'],
    [{ name: 'n8', role: 'machine', machine: '00000000-0000-4000-8000-000000000001' }, 'machine'],
  ])('refuses %j with 400 naming %s', async (body, field) => {
    const r = await d.api('POST', '/api/v1/tokens', body);
    expect(r.status).toBe(400);
    expect(r.body.errors.map((e: { path: string }) => e.path)).toContain(field);
  });

  it('refuses a second token with the same name (409)', async () => {
    expect((await d.api('POST', '/api/v1/tokens', { name: 'dup', role: 'viewer' })).status).toBe(201);
    expect((await d.api('POST', '/api/v1/tokens', { name: 'dup', role: 'viewer' })).status).toBe(409);
  });
});

describe('DELETE /api/v1/tokens/:id', () => {
  it('revokes at once, although the token was just used (and cached)', async () => {
    const r = await d.api('POST', '/api/v1/tokens', { name: 'gone', role: 'viewer' });
    const use = withToken(r.body.token);
    expect((await use('GET', '/api/v1/machines')).status).toBe(200);
    expect((await d.api('DELETE', `/api/v1/tokens/${r.body.id}`)).status).toBe(204);
    expect((await use('GET', '/api/v1/machines')).status).toBe(401);
    expect((await d.api('GET', `/api/v1/tokens/${r.body.id}`)).status).toBe(404);
    expect((await d.api('DELETE', `/api/v1/tokens/${r.body.id}`)).status).toBe(404);
    expect((await d.api('DELETE', '/api/v1/tokens/not-an-id')).status).toBe(400);
    // the name is free again
    expect((await d.api('POST', '/api/v1/tokens', { name: 'gone', role: 'viewer' })).status).toBe(201);
  });

  it('a revoked token stays revoked after its last-used time was being written', async () => {
    const r = await d.api('POST', '/api/v1/tokens', { name: 'racy', role: 'viewer' });
    const use = withToken(r.body.token);
    // first use queues a lastUsedAt upsert; the revoke right behind it must win
    const [a, del] = await Promise.all([
      use('GET', '/api/v1/machines'),
      d.api('DELETE', `/api/v1/tokens/${r.body.id}`),
    ]);
    expect(del.status).toBe(204);
    expect([200, 401]).toContain(a.status);
    await new Promise((res) => setTimeout(res, 100));
    expect(await d.daemon.store.get('tokens', hashToken(r.body.token))).toBeUndefined();
    expect((await use('GET', '/api/v1/machines')).status).toBe(401);
  });
});

describe('lastUsedAt', () => {
  it('is set when the token is used', async () => {
    const r = await d.api('POST', '/api/v1/tokens', { name: 'used', role: 'viewer' });
    const before = Date.now();
    expect((await withToken(r.body.token)('GET', '/api/v1/bootenvs')).status).toBe(200);
    const t = await eventually(
      async () => (await d.api('GET', `/api/v1/tokens/${r.body.id}`)).body,
      (b) => !!b.lastUsedAt,
    );
    expect(Date.parse(t.lastUsedAt)).toBeGreaterThanOrEqual(before - 1000);
  });
});

describe('expiry', () => {
  it('an expired token is refused', async () => {
    const r = await d.api('POST', '/api/v1/tokens', {
      name: 'brief',
      role: 'viewer',
      expiresAt: new Date(Date.now() + 1500).toISOString(),
    });
    expect(r.status).toBe(201);
    const use = withToken(r.body.token);
    expect((await use('GET', '/api/v1/machines')).status).toBe(200);
    await new Promise((res) => setTimeout(res, 1600));
    expect((await use('GET', '/api/v1/machines')).status).toBe(401);
  });
});

describe('the audit log', () => {
  it('records writes made with a token (accepted and refused), not reads nor requests without a valid token', async () => {
    const op = await d.api('POST', '/api/v1/tokens', { name: 'audited-op', role: 'operator' });
    const vw = await d.api('POST', '/api/v1/tokens', { name: 'audited-viewer', role: 'viewer' });
    const m = await withToken(op.body.token)('POST', '/api/v1/machines', { name: 'aud1' });
    expect(m.status).toBe(201);
    await withToken(op.body.token)('PATCH', `/api/v1/machines/${m.body.uuid}`, { bootEnv: 'local' });
    expect((await withToken(vw.body.token)('DELETE', `/api/v1/machines/${m.body.uuid}`)).status).toBe(403);
    await withToken('not-a-token-at-all-0123456789abcdef')('DELETE', `/api/v1/machines/${m.body.uuid}`);
    await withToken(op.body.token)('GET', '/api/v1/machines');

    const a = await eventually(
      async () => await d.api('GET', '/api/v1/audit?who=audited-op'),
      (r) => r.body?.length === 2,
    );
    expect(a.status).toBe(200);
    expect(a.body[0]).toMatchObject({
      who: 'audited-op',
      tokenId: op.body.id,
      role: 'operator',
      method: 'PATCH',
      route: '/api/v1/machines/:id',
      id: m.body.uuid,
      status: 200,
      ip: '127.0.0.1',
    });
    expect(a.body[1]).toMatchObject({ method: 'POST', route: '/api/v1/machines', status: 201 });
    expect(Date.parse(a.body[0].at)).toBeGreaterThanOrEqual(Date.parse(a.body[1].at));
    // Each audit entry is its own batched write: wait for the viewer's as for the operator's.
    const v = await eventually(
      async () => await d.api('GET', '/api/v1/audit?who=audited-viewer'),
      (r) => r.body?.length === 1,
    );
    expect(v.body).toEqual([expect.objectContaining({ method: 'DELETE', status: 403, role: 'viewer' })]);
    const all = await d.api('GET', '/api/v1/audit?limit=1000');
    expect(all.body.some((e: { status: number }) => e.status === 401)).toBe(false);
    // the admin's own token writes are there too (the tokens it created)
    expect(
      all.body.some((e: { route: string; who: string }) => e.route === '/api/v1/tokens' && e.who === 'admin'),
    ).toBe(true);
  });

  it('pages newest first and filters by since', async () => {
    const p1 = await d.api('GET', '/api/v1/audit?limit=2');
    expect(p1.body).toHaveLength(2);
    expect(Number(p1.headers.get('x-total-count'))).toBeGreaterThan(2);
    const p2 = await d.api('GET', '/api/v1/audit?limit=2&offset=1');
    expect(p2.body[0]).toEqual(p1.body[1]);
    const future = await d.api('GET', `/api/v1/audit?since=${new Date(Date.now() + 60_000).toISOString()}`);
    expect(future.body).toEqual([]);
    const since = await d.api('GET', `/api/v1/audit?since=${encodeURIComponent(p1.body[1].at)}`);
    expect(since.body.length).toBeGreaterThanOrEqual(2);
    for (const e of since.body) expect(e.at >= p1.body[1].at).toBe(true);
    expect((await d.api('GET', '/api/v1/audit?since=yesterday')).status).toBe(400);
    expect((await d.api('GET', '/api/v1/audit?colour=red')).status).toBe(400);
  });
});
