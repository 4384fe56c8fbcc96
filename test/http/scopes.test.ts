import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBus } from '../../src/events.js';
import { openApiDocument } from '../../src/http/openapi.js';
import { issueToken } from '../../src/inventory/tokens.js';
import { silentLogger } from '../../src/log.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';
import { buildTestApp } from '../helpers/boot-service.js';

/*
 * The app's shape, pinned before the routes moved into fastify scopes (issue 12 item 8): for one request per
 * route, the route pattern it matched, the route's role flags and its status with no token and with the admin
 * token. The snapshot was generated from the code before the move; a route that changes scope, pattern, flags
 * or authentication changes it.
 */
const ADMIN = 'scopes-test-admin-token-0123456789abcdef';
const UUID = '0b6f9c1e-2a3b-4c5d-8e9f-0a1b2c3d4e5f';
const KINDS = ['machines', 'bootenvs', 'templates', 'subnets', 'reservations', 'leases', 'profiles', 'params'];

const requests: [string, string][] = [
  ['GET', '/'],
  ['GET', '/ui'],
  ['GET', '/api/docs'],
  ['GET', '/metrics'],
  ['GET', '/boot/ipxe'],
  ['GET', '/boot/ipxe/52-54-00-00-00-01'],
  ['GET', '/boot/ipxe/nonsense'],
  ['GET', '/files/x.txt'],
  ['GET', `/machines/${UUID}/boot.ipxe`],
  ['GET', '/api/v1/info'],
  ['GET', '/%61pi/v1/info'],
  ['GET', '/api/v1/openapi.json'],
  ['GET', '/api/v1/nope'],
  ['GET', '/%61pi/v1/nope'],
  // Trailing slashes and the bare prefix (checked against the code before the move when these rows were added).
  ['GET', '/api/v1'],
  ['GET', '/api/v1/'],
  ['GET', '/api/v1/machines/'],
  ['GET', '/api/v1/info/'],
  ['GET', '/metrics/'],
  ...KINDS.flatMap((k): [string, string][] => [
    ['GET', `/api/v1/${k}`],
    ['POST', `/api/v1/${k}`],
    ['GET', `/api/v1/${k}/x`],
    ['PUT', `/api/v1/${k}/x`],
    ['PATCH', `/api/v1/${k}/x`],
    ['DELETE', `/api/v1/${k}/x`],
  ]),
  ['GET', '/%61pi/v1/machines'],
  ['GET', `/api/v1/machines/${UUID}/params`],
  ['POST', `/api/v1/machines/${UUID}/callback`],
  ['GET', `/api/v1/machines/${UUID}/callback`],
  ['PUT', `/api/v1/machines/${UUID}/inventory`],
  ['POST', `/api/v1/machines/${UUID}/inventory`],
  ['GET', `/api/v1/machines/${UUID}/boots`],
  ['GET', '/api/v1/prefs'],
  ['PUT', '/api/v1/prefs'],
  ['PATCH', '/api/v1/prefs'],
  ['GET', '/api/v1/files'],
  ['GET', '/api/v1/files/a/b.txt'],
  ['DELETE', '/api/v1/files/a/b.txt'],
  ['GET', '/api/v1/tokens'],
  ['POST', '/api/v1/tokens'],
  ['GET', '/api/v1/tokens/0123456789abcdef'],
  ['DELETE', '/api/v1/tokens/0123456789abcdef'],
  ['GET', '/api/v1/audit'],
];

type Seen = { route?: string; flags: string };

async function appWith(metricsPublic: boolean) {
  const dir = mkdtempSync(path.join(tmpdir(), 'plinth-scopes-'));
  const store = openSqliteStore(':memory:');
  await issueToken(store, ADMIN, { name: 'admin', role: 'admin', createdAt: new Date().toISOString() });
  const app = await buildTestApp({
    store,
    bus: createBus(),
    log: silentLogger,
    dataDir: dir,
    filesDir: dir,
    info: () => ({}),
    version: 'test',
    metricsPublic,
  });
  let last: Seen | undefined;
  // Added after buildApp, as the daemon adds its plain-HTTP guard: it sees every route of every scope.
  app.addHook('onResponse', async (req) => {
    const c = (req.routeOptions.config ?? {}) as unknown as Record<string, unknown>;
    const flags = ['machineToken', 'operator', 'adminOnly'].filter((f) => c[f]).join(',');
    last = { route: req.routeOptions.url, flags };
  });
  await app.ready();
  const probe = async (method: string, url: string, token?: string) => {
    last = undefined;
    const r = await app.inject({
      method: method as 'GET',
      url,
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
    const seen = last as Seen | undefined;
    return { status: r.statusCode, ...seen };
  };
  return { app, store, probe };
}

async function table(metricsPublic: boolean) {
  const { app, store, probe } = await appWith(metricsPublic);
  const rows: string[] = [];
  for (const [method, url] of requests) {
    const anon = await probe(method, url);
    const admin = await probe(method, url, ADMIN);
    rows.push(
      `${method} ${url} -> ${anon.route ?? '(none)'} [${anon.flags ?? ''}] anon ${anon.status} admin ${admin.status}`,
    );
  }
  // The event stream never ends with a token: only its refusal is probed.
  const ev = await probe('GET', '/api/v1/events');
  rows.push(`GET /api/v1/events -> ${ev.route} [${ev.flags}] anon ${ev.status}`);
  await app.close();
  await store.close();
  return rows;
}

describe('the app keeps its routes, their flags and their authentication', () => {
  it('with a token for /metrics', async () => {
    expect(await table(false)).toMatchSnapshot();
  });
  it('with /metrics public', async () => {
    expect(await table(true)).toMatchSnapshot();
  });
});

describe('the OpenAPI document', () => {
  it('is pinned: a change to it is on purpose (regenerate with vitest -u and read the diff)', async () => {
    await expect(`${JSON.stringify(openApiDocument('test'), null, 2)}\n`).toMatchFileSnapshot(
      './__snapshots__/openapi-document.snap',
    );
  });

  let app: FastifyInstance;
  let store: Store;
  beforeAll(async () => {
    ({ app, store } = await appWith(false));
  });
  afterAll(async () => {
    await app.close();
    await store.close();
  });
  it('is served without a token at /api/v1/openapi.json', async () => {
    const r = await app.inject({ url: '/api/v1/openapi.json' });
    expect(r.statusCode).toBe(200);
    expect(r.json()).toEqual(openApiDocument('test'));
  });
});
