import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBus } from '../../src/events.js';
import type { buildApp } from '../../src/http/app.js';
import { INVENTORY_RESOURCES } from '../../src/inventory/resources.js';
import { issueToken } from '../../src/inventory/tokens.js';
import { silentLogger } from '../../src/log.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import { buildTestApp } from '../helpers/boot-service.js';
import { breakableStore } from '../helpers/broken-store.js';

const inner = openSqliteStore(':memory:');
const valid: Record<string, object> = {
  machines: { name: 'x' },
  bootenvs: { name: 'x' },
  templates: { id: 'x', contents: '' },
  subnets: { name: 'x', subnet: '10.0.0.0/24', activeStart: '10.0.0.10', activeEnd: '10.0.0.20' },
  reservations: { address: '10.0.0.5', mac: '52:54:00:00:00:01', subnet: 'x' },
  profiles: { name: 'x' },
  params: { name: 'x' },
};
const store = breakableStore(inner);
let app: Awaited<ReturnType<typeof buildApp>>;
const dir = mkdtempSync(path.join(tmpdir(), 'plinth-broken-'));

beforeAll(async () => {
  await issueToken(inner, 't0k3n', { name: 'admin', role: 'admin', createdAt: new Date().toISOString() });
  app = await buildTestApp({
    store,
    bus: createBus(),
    log: silentLogger,
    dataDir: dir,
    filesDir: path.join(dir, 'files'),
    info: () => ({}),
    version: 'test',
  });
  await app.ready();
});
afterAll(async () => {
  await app.close();
});

describe('every API path reports a failing store as problem+json 503', () => {
  it('reads and writes of every resource', async () => {
    // Authenticate once while the store works (the token check is cached), then break the store.
    const auth = { authorization: 'Bearer t0k3n' };
    expect((await app.inject({ method: 'GET', url: '/api/v1/machines', headers: auth })).statusCode).toBe(200);
    store.broken = true;
    for (const res of INVENTORY_RESOURCES) {
      const calls = [
        { method: 'GET' as const, url: `/api/v1/${res.kind}` },
        { method: 'GET' as const, url: `/api/v1/${res.kind}/x` },
        { method: 'DELETE' as const, url: `/api/v1/${res.kind}/x` },
        ...(res.readOnly
          ? []
          : [
              { method: 'POST' as const, url: `/api/v1/${res.kind}`, payload: valid[res.kind] },
              { method: 'PUT' as const, url: `/api/v1/${res.kind}/x`, payload: {} },
              { method: 'PATCH' as const, url: `/api/v1/${res.kind}/x`, payload: {} },
            ]),
      ];
      for (const c of calls) {
        const r = await app.inject({ ...c, headers: auth });
        expect(r.statusCode, `${c.method} ${c.url}`).toBe(503);
        expect(r.headers['content-type']).toMatch(/problem\+json/);
        expect(r.json().detail).toContain('nothing was changed');
        expect(r.body).not.toMatch(/\.ts:\d+/);
      }
    }
    for (const url of ['/api/v1/prefs', '/api/v1/machines/x/params']) {
      const r = await app.inject({ method: 'GET', url, headers: auth });
      expect(r.statusCode, url).toBe(503);
    }
    store.broken = false;
  });
});
