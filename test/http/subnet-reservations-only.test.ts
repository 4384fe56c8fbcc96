/**
 * A subnet without a dynamic range through the API (issue 13): created with 201, a reservation in it too, its
 * range never counted in the overlap check; half a range is a 400 that says what to fix.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBus } from '../../src/events.js';
import { issueToken, newToken } from '../../src/inventory/tokens.js';
import { silentLogger } from '../../src/log.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';
import { buildTestApp } from '../helpers/boot-service.js';

let dir: string;
let store: Store;
let app: FastifyInstance;
const token = newToken();

beforeAll(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'plinth-resonly-'));
  store = openSqliteStore(path.join(dir, 'plinth.db'));
  await issueToken(store, token, { name: 'admin', role: 'admin', createdAt: new Date().toISOString() });
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
  rmSync(dir, { recursive: true, force: true });
});

async function call(method: 'POST' | 'GET', url: string, body?: unknown) {
  const r = await app.inject({
    method,
    url: `/api/v1${url}`,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { payload: JSON.stringify(body) } : {}),
  });
  return { status: r.statusCode, body: r.json() as any };
}

describe('subnets without a dynamic range (API)', () => {
  it('creates one (201), reads it back without a range, and takes a reservation in it', async () => {
    const c = await call('POST', '/subnets', { name: 'static', subnet: '10.55.0.0/24' });
    expect(c.status).toBe(201);
    const g = await call('GET', '/subnets/static');
    expect(g.status).toBe(200);
    expect(g.body.activeStart).toBeUndefined();
    expect(g.body.activeEnd).toBeUndefined();
    const o = await call('POST', '/subnets', { name: 'resonly', subnet: '10.56.0.0/24', onlyReservations: true });
    expect(o.status).toBe(201);
    const r = await call('POST', '/reservations', {
      address: '10.55.0.50',
      mac: '52:54:00:12:34:56',
      subnet: 'static',
    });
    expect(r.status).toBe(201);
    // Another subnet with a range next to it: no overlap to report.
    const n = await call('POST', '/subnets', {
      name: 'dyn',
      subnet: '10.57.0.0/24',
      activeStart: '10.57.0.10',
      activeEnd: '10.57.0.20',
    });
    expect(n.status).toBe(201);
  });

  it('refuses half a range with 400 and the field to fix', async () => {
    const h = await call('POST', '/subnets', { name: 'half', subnet: '10.58.0.0/24', activeStart: '10.58.0.10' });
    expect(h.status).toBe(400);
    expect(h.body.errors).toContainEqual({
      path: 'activeEnd',
      message:
        'set both activeStart and activeEnd for a dynamic range, or neither for a subnet that serves reservations only',
    });
  });
});
