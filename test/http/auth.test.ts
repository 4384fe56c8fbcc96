import { mkdtempSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBus } from '../../src/events.js';
import { silentLogger } from '../../src/log.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import { buildTestApp } from '../helpers/boot-service.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

let d: TestDaemon;
let uuid: string;
let other: string;
const tokens: Record<string, string> = {};

/** A request with the path sent exactly as written (fetch would resolve `.` and `..` first). */
function raw(method: string, p: string, token?: string, body?: string) {
  const u = new URL(d.url);
  return new Promise<{ status: number; text: string }>((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (token) headers.authorization = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const r = http.request({ host: u.hostname, port: u.port, method, path: p, headers }, (res) => {
      let text = '';
      res.on('data', (c) => {
        text += c;
      });
      res.on('end', () => resolve({ status: res.statusCode!, text }));
    });
    r.on('error', reject);
    r.end(body);
  });
}

const as =
  (role: string) =>
  (method: string, p: string, body?: unknown, headers: Record<string, string> = {}) =>
    d.api(method, p, body, { authorization: `Bearer ${tokens[role]}`, ...headers });

beforeAll(async () => {
  d = await startTestDaemon();
  expect((await d.api('POST', '/api/v1/params', { name: 'pw', schema: { type: 'string' }, secure: true })).status).toBe(
    201,
  );
  const m = await d.api('POST', '/api/v1/machines', {
    name: 'a1',
    macs: ['52:54:00:aa:10:01'],
    params: { pw: 's3cret' },
  });
  expect(m.status).toBe(201);
  uuid = m.body.uuid;
  other = (await d.api('POST', '/api/v1/machines', { name: 'a2', macs: ['52:54:00:aa:10:02'] })).body.uuid;
  for (const role of ['operator', 'viewer', 'machine']) {
    const r = await d.api('POST', '/api/v1/tokens', {
      name: `t-${role}`,
      role,
      ...(role === 'machine' ? { machine: uuid } : {}),
    });
    expect(r.status).toBe(201);
    tokens[role] = r.body.token;
  }
});
afterAll(async () => {
  await d.stop();
});

describe('the API cannot be reached around the token', () => {
  // [path, status without a token, status with the admin token]
  const table: [string, number, number][] = [
    ['/%61pi/v1/machines', 401, 200],
    ['/%61%70%69/v1/machines', 401, 200],
    ['/api/v1/%6dachines', 401, 200],
    ['/api/%761/machines?limit=5', 401, 200],
    ['/api/v1/%74okens', 401, 200],
    ['/%61pi/v1/audit', 401, 200],
    ['/%61pi/v1/prefs', 401, 200],
    ['/%61pi/v1/files', 401, 200],
    ['/%61pi/v1/machines/a1/params', 401, 200],
    ['/%61pi/v1/machines/a1/boots', 401, 200],
    ['/api/v1/machines/', 401, 200],
    ['/api/v1/machines?', 401, 200],
    ['http://evil.example/api/v1/machines', 401, 200],
    ['/api%2Fv1/machines', 404, 404],
    ['/api%2fv1%2fmachines', 404, 404],
    ['//api/v1/machines', 404, 404],
    ['/API/v1/machines', 404, 404],
    ['/Api/V1/Machines', 404, 404],
    ['/api/v1/./machines', 404, 404],
    ['/api/v1/x/../machines', 404, 404],
    ['/api/v1/info/../machines', 404, 404],
    ['/api/v1//machines', 404, 404],
    ['/api/v1/machines;x=1', 404, 404],
    ['/api/v1;/machines', 404, 404],
    ['/api/v1/machines%00', 404, 404],
    ['/api/v1/info%2F..%2Fmachines', 404, 404],
  ];
  it.each(table)('GET %s: %i without a token, %i with one', async (p, bare, authed) => {
    expect((await raw('GET', p)).status).toBe(bare);
    const r = await raw('GET', p, d.token);
    expect(r.status).toBe(authed);
    if (authed === 200) expect(r.text).not.toContain('Unauthorized');
  });

  it('HEAD and every write method through an encoded prefix need the token too, and change nothing', async () => {
    expect((await raw('HEAD', '/%61pi/v1/machines')).status).toBe(401);
    const body = JSON.stringify({ name: 'sneak' });
    expect((await raw('POST', '/%61pi/v1/machines', undefined, body)).status).toBe(401);
    expect((await raw('PUT', '/%61pi/v1/prefs', undefined, '{}')).status).toBe(401);
    expect((await raw('DELETE', `/%61pi/v1/machines/${other}`)).status).toBe(401);
    expect((await raw('PUT', '/%61pi/v1/files/x.html', undefined, '<script>')).status).toBe(401);
    expect((await raw('GET', '/%61pi/v1/events')).status).toBe(401);
    expect((await d.api('GET', '/api/v1/machines?name=sneak')).body).toEqual([]);
    expect((await d.api('GET', `/api/v1/machines/${other}`)).status).toBe(200);
  });

  it('the public routes stay public, whatever their spelling', async () => {
    expect((await raw('GET', '/api/v1/info')).status).toBe(200);
    expect((await raw('GET', '/api/v1/%69nfo')).status).toBe(200);
    expect((await raw('GET', '/api/v1/openapi.json')).status).toBe(200);
    expect((await raw('GET', '/ui')).status).toBe(200);
  });

  it('/metrics needs a token (a viewer one does)', async () => {
    expect((await raw('GET', '/metrics')).status).toBe(401);
    expect((await raw('GET', '/%6detrics')).status).toBe(401);
    const r = await raw('GET', '/metrics', tokens.viewer);
    expect(r.status).toBe(200);
    expect(r.text).toContain('plinth_');
  });
});

describe('a machine token', () => {
  it('reads its own record by uuid (header or ?token=), nothing else', async () => {
    const own = await as('machine')('GET', `/api/v1/machines/${uuid}`);
    expect(own.status).toBe(200);
    expect(own.body.params.pw).toBe('s3cret'); // the machine's own secret is its own
    expect((await fetch(`${d.url}/api/v1/machines/${uuid}?token=${tokens.machine}`)).status).toBe(200);
    expect((await fetch(`${d.url}/%61pi/v1/machines/${uuid}?token=${tokens.machine}`)).status).toBe(200);
    for (const p of [
      `/api/v1/machines/${other}`,
      '/api/v1/machines/a1',
      '/api/v1/machines',
      `/api/v1/machines/${uuid}/params`,
    ]) {
      expect((await as('machine')('GET', p)).status, p).toBe(403);
    }
    expect((await as('machine')('PATCH', `/api/v1/machines/${uuid}`, { bootEnv: 'local' })).status).toBe(403);
    expect((await as('machine')('GET', '/api/v1/tokens')).status).toBe(403);
    // its own callback, not another machine's; a viewer may not call back at all
    const cb = (id: string, t: string) =>
      fetch(`${d.url}/api/v1/machines/${id}/callback`, {
        method: 'POST',
        headers: { authorization: `Bearer ${t}`, 'content-type': 'application/json' },
        body: '{"event":"progress"}',
      });
    expect((await cb(uuid, tokens.machine!)).status).toBe(200);
    expect((await cb(other, tokens.machine!)).status).toBe(403);
    expect((await cb(uuid, tokens.viewer!)).status).toBe(403);
    expect((await cb(uuid, tokens.operator!)).status).toBe(200);
    // ?token= is for the machine routes only
    expect((await fetch(`${d.url}/api/v1/machines?token=${d.token}`)).status).toBe(401);
  });
});

describe('roles', () => {
  it('viewer: reads, secure values masked; writes nothing', async () => {
    const v = as('viewer');
    expect((await v('GET', '/api/v1/machines')).status).toBe(200);
    const one = await v('GET', `/api/v1/machines/${uuid}`);
    expect(one.status).toBe(200);
    expect(one.body.params.pw).toBe('(secure)');
    expect((await v('GET', `/api/v1/machines/${uuid}/params`)).body.pw).toBe('(secure)');
    expect((await v('PATCH', `/api/v1/machines/${uuid}`, { bootEnv: 'local' })).status).toBe(403);
    expect((await v('POST', '/api/v1/machines', { name: 'v1' })).status).toBe(403);
    expect((await v('GET', '/api/v1/tokens')).status).toBe(403);
    expect((await v('GET', '/api/v1/audit')).status).toBe(403);
  });

  it('operator: writes machines, not prefs, tokens, params, bootenvs, files; secure values masked', async () => {
    const o = as('operator');
    const p = await o(
      'PATCH',
      `/api/v1/machines/${uuid}`,
      { bootEnv: 'local' },
      {
        'content-type': 'application/merge-patch+json',
      },
    );
    expect(p.status).toBe(200);
    expect(p.body.params.pw).toBe('(secure)');
    expect((await d.api('GET', `/api/v1/machines/${uuid}`)).body.params.pw).toBe('s3cret'); // stored, not masked
    const c = await o('POST', '/api/v1/machines', { name: 'op1' });
    expect(c.status).toBe(201);
    expect((await o('DELETE', `/api/v1/machines/${c.body.uuid}`)).status).toBe(204);
    expect((await o('PUT', '/api/v1/prefs', {})).status).toBe(403);
    expect((await o('POST', '/api/v1/tokens', { name: 'x', role: 'admin' })).status).toBe(403);
    expect((await o('GET', '/api/v1/tokens')).status).toBe(403);
    expect((await o('POST', '/api/v1/params', { name: 'p2', schema: {} })).status).toBe(403);
    expect((await o('POST', '/api/v1/bootenvs', { name: 'b2' })).status).toBe(403);
    const f = await fetch(`${d.url}/api/v1/files/op.txt`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${tokens.operator}` },
      body: 'x',
    });
    expect(f.status).toBe(403);
  });
});

describe('JSON bodies', () => {
  it('refuses a body nested deeper than 64 with 400, before it reaches the store', async () => {
    const deep = `${'['.repeat(5000)}${']'.repeat(5000)}`;
    const r = await d.api('POST', '/api/v1/machines', `{"name":"deep","inventory":${deep}}`);
    expect(r.status).toBe(400);
    expect(r.body.detail).toContain('deeper than 64');
    const p = await d.api('PATCH', `/api/v1/machines/${uuid}`, `{"x":${deep}}`, {
      'content-type': 'application/merge-patch+json',
    });
    expect(p.status).toBe(400);
    // Brackets inside strings are not nesting.
    const s = await d.api('POST', '/api/v1/machines', { name: 'brackets', params: { pw: `"[{${'['.repeat(200)}` } });
    expect(s.status).toBe(201);
  });

  it('still refuses __proto__ keys like fastify does', async () => {
    const r = await d.api('POST', '/api/v1/machines', '{"name":"proto","__proto__":{"x":1}}');
    expect(r.status).toBe(400);
  });
});

describe('routes under the API prefix outside the authenticated scope', () => {
  it('need a token all the same (fails closed); the callback routes take a machine token', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'plinth-auth-'));
    const store = openSqliteStore(':memory:');
    const app = await buildTestApp({
      store,
      bus: createBus(),
      log: silentLogger,
      dataDir: dir,
      filesDir: dir,
      info: () => ({}),
      version: 'test',
      metricsPublic: true,
    });
    app.get('/api/v1/stray', async () => 'reached');
    await app.ready();
    expect((await app.inject({ url: '/api/v1/stray' })).statusCode).toBe(401);
    expect((await app.inject({ url: '/%61pi/v1/stray' })).statusCode).toBe(401);
    expect((await app.inject({ method: 'POST', url: `/api/v1/machines/${uuid}/callback` })).statusCode).toBe(401);
    // metricsPublic: /metrics without a token
    expect((await app.inject({ url: '/metrics' })).statusCode).toBe(200);
    await app.close();
    await store.close();
  });
});
