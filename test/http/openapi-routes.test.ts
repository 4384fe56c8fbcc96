import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createBus } from '../../src/events.js';
import { setFilesCluster } from '../../src/files/cluster.js';
import { openApiDocument } from '../../src/http/openapi.js';
import { silentLogger } from '../../src/log.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';
import { buildTestApp } from '../helpers/boot-service.js';

/*
 * Every route the app registers is in the OpenAPI document, with its method (issue 14: the machine API, /events,
 * /boot/*, the public /files/* and /metrics were missing). The routes are collected with an onRoute hook on the
 * root instance buildApp creates (fastify's constructor is wrapped to add it first, so the hook sees every scope),
 * and both lists are compared in their pattern form: `:id`, `{id}` and a wildcard are one parameter.
 */
const seen = vi.hoisted(() => [] as { method: string; url: string }[]);
vi.mock('fastify', async (importOriginal) => {
  const mod = await importOriginal<typeof import('fastify')>();
  const create = ((opts?: object) => {
    const app = mod.default(opts);
    app.addHook('onRoute', (r) => {
      for (const m of [r.method].flat()) seen.push({ method: String(m), url: r.url });
    });
    return app;
  }) as unknown as typeof mod.default;
  return { ...mod, default: Object.assign(create, mod.default) };
});

/** Swagger UI's own assets (its page and document are documented): not API, rebuilt by each plugin release. */
const UNDOCUMENTED = [/^\/api\/docs\/static\//, /^\/api\/docs\/\*$/];
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

/** `/machines/:uuid/*` and `/machines/{uuid}/{file}` are the same pattern: `/machines/{}/{}`. */
const pattern = (url: string) =>
  url
    .replace(/:[A-Za-z0-9_]+/g, '{}')
    .replace(/\{[^}]*\}/g, '{}')
    .replace(/\*/g, '{}')
    .replace(/(.)\/$/, '$1');

function documented(doc: Record<string, any>) {
  const set = new Set<string>();
  for (const [p, item] of Object.entries(doc.paths as Record<string, Record<string, unknown>>))
    for (const m of Object.keys(item)) if (METHODS.includes(m)) set.add(`${m.toUpperCase()} ${pattern(p)}`);
  return set;
}

let store: Store;
beforeAll(async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'plinth-openapi-routes-'));
  store = openSqliteStore(':memory:');
  // As a daemon sharing its inventory: the peer blob route (/peer/v1/blobs) is registered only then.
  setFilesCluster(dir, {
    serverId: 'openapi-test',
    secret: 'unused',
    resolve: async () => undefined,
    ensureBlob: async () => Promise.reject(new Error('not in this test')),
    localBlob: async () => undefined,
  });
  const app = await buildTestApp({
    store,
    bus: createBus(),
    log: silentLogger,
    dataDir: dir,
    filesDir: dir,
    info: () => ({}),
    version: 'test',
  });
  await app.ready();
  await app.close();
  setFilesCluster(dir, undefined);
});
afterAll(async () => {
  await store.close();
});

describe('the OpenAPI document covers every route', () => {
  it('the hook saw the routes of every scope', () => {
    const urls = new Set(seen.map((r) => r.url));
    for (const u of [
      '/ui',
      '/api/v1/info',
      '/api/v1/machines/:id',
      '/boot/ipxe/:mac',
      '/files/*',
      '/metrics',
      '/peer/v1/blobs/:sha256',
    ])
      expect(urls).toContain(u);
    expect(seen.length).toBeGreaterThan(60);
  });

  it('has a path and method for each registered route (HEAD: fastify adds one to each GET)', () => {
    const doc = documented(openApiDocument('test'));
    const gets = new Set(seen.filter((r) => r.method === 'GET').map((r) => pattern(r.url)));
    const missing = seen
      .filter((r) => !UNDOCUMENTED.some((re) => re.test(r.url)))
      .filter((r) => !(r.method === 'HEAD' && gets.has(pattern(r.url))))
      .map((r) => `${r.method} ${pattern(r.url)}`)
      .filter((k) => !doc.has(k));
    expect([...new Set(missing)]).toEqual([]);
  });

  it('documents no route the app does not have', () => {
    const routes = new Set(seen.map((r) => `${r.method} ${pattern(r.url)}`));
    expect([...documented(openApiDocument('test'))].filter((k) => !routes.has(k))).toEqual([]);
  });

  it("declares each path's parameters, by the name the path uses", () => {
    const bad: string[] = [];
    for (const [p, item] of Object.entries(openApiDocument('test').paths as Record<string, Record<string, any>>)) {
      const names = [...p.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
      for (const m of Object.keys(item).filter((k) => METHODS.includes(k))) {
        const params = [...(item.parameters ?? []), ...(item[m].parameters ?? [])];
        const declared = params.filter((x: any) => x.in === 'path').map((x: any) => x.name);
        if (declared.sort().join() !== [...names].sort().join()) bad.push(`${m} ${p}: ${declared} vs ${names}`);
      }
    }
    expect(bad).toEqual([]);
  });
});
