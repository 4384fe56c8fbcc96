import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBus } from '../../src/events.js';
import { issueToken } from '../../src/inventory/tokens.js';
import { silentLogger } from '../../src/log.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';
import { buildTestApp } from '../helpers/boot-service.js';

/*
 * What curl scripts send (issue 14): `Content-Type: application/json` on every request, a DELETE with no body
 * included. An empty body under a JSON media type is no body; a route that needs one still refuses it.
 */
const ADMIN = 'json-body-test-admin-token-0123456789abcdef';
let app: FastifyInstance;
let store: Store;
const json = { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' };

beforeAll(async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'plinth-json-body-'));
  store = openSqliteStore(':memory:');
  await issueToken(store, ADMIN, { name: 'admin', role: 'admin', createdAt: new Date().toISOString() });
  app = await buildTestApp({
    store,
    bus: createBus(),
    log: silentLogger,
    dataDir: dir,
    filesDir: dir,
    info: () => ({}),
    version: 'test',
  });
  await app.ready();
});
afterAll(async () => {
  await app.close();
  await store.close();
});

describe('a JSON content type with no body', () => {
  it('DELETE is accepted (204), as without the header', async () => {
    const made = await app.inject({ method: 'POST', url: '/api/v1/profiles', headers: json, payload: { name: 'p1' } });
    expect(made.statusCode).toBe(201);
    const r = await app.inject({ method: 'DELETE', url: '/api/v1/profiles/p1', headers: json });
    expect(r.statusCode, r.body).toBe(204);
    expect((await app.inject({ url: '/api/v1/profiles/p1', headers: json })).statusCode).toBe(404);
  });

  it('under a +json media type too (merge patch of nothing changes nothing)', async () => {
    await app.inject({ method: 'POST', url: '/api/v1/profiles', headers: json, payload: { name: 'p2' } });
    const r = await app.inject({
      method: 'DELETE',
      url: '/api/v1/profiles/p2',
      headers: { ...json, 'content-type': 'application/merge-patch+json' },
    });
    expect(r.statusCode, r.body).toBe(204);
  });

  it('a POST that needs a body is still refused with problem+json naming it', async () => {
    const r = await app.inject({ method: 'POST', url: '/api/v1/profiles', headers: json });
    expect(r.statusCode).toBe(400);
    expect(r.headers['content-type']).toMatch(/application\/problem\+json/);
    expect(r.json().errors?.[0]?.path).toBe('name');
  });

  it('a body that is not JSON is still a 400', async () => {
    const r = await app.inject({ method: 'POST', url: '/api/v1/profiles', headers: json, payload: '{nope' });
    expect(r.statusCode).toBe(400);
  });
});
