/**
 * Two Plinth daemons on one PostgreSQL inventory (issue 17), as operators start them: `--store postgres://...`,
 * each with its own data dir and port. What one writes through the API the other reads; a name taken through one
 * is a 409 through the other; /info names the backend; each registers its heartbeat; an event appended to the
 * shared log by another writer reaches a daemon's SSE subscribers; one daemon killed with SIGKILL loses nothing it
 * answered 201 for, and the other keeps serving. PostgreSQL only.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openPgStore, type PgStore } from '../../src/store/pg.js';
import { exited, freePort, spawnPlinth, stopChild, waitHttp } from '../helpers/proc.js';
import { adminQuery, backends, PG_URL, skipUnavailable } from './backends.js';

const pgBackend = backends(import.meta.filename).find((x) => x.name === 'postgres')!;
const TOKEN = 'pg-daemons-test-admin-token-0123456789abcdef';
const started: ReturnType<typeof spawnPlinth>[] = [];
const dirs: string[] = [];
afterAll(async () => {
  for (const p of started) await stopChild(p);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function daemon(storeUrl: string, serverId: string) {
  const dataDir = mkdtempSync(path.join(tmpdir(), 'plinth-pgd-'));
  dirs.push(dataDir);
  const port = await freePort();
  const p = spawnPlinth(
    ['--no-dhcp', '--no-tftp', '--http-address', '127.0.0.1', '--http-port', String(port), '--data-dir', dataDir],
    { PLINTH_STORE_URL: storeUrl, PLINTH_ADMIN_TOKEN: TOKEN, PLINTH_SERVER_ID: serverId },
  );
  started.push(p);
  await waitHttp(port, 60_000).catch((err) => {
    throw new Error(`${err.message}: ${p.output()}`);
  });
  const api = (method: string, url: string, body?: unknown) =>
    fetch(`http://127.0.0.1:${port}/api/v1${url}`, {
      method,
      headers: { authorization: `Bearer ${TOKEN}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
  return { p, port, api };
}

describe('two daemons on one PostgreSQL inventory', () => {
  skipUnavailable(pgBackend);

  it('share machines, uniqueness and etags; a SIGKILLed one loses nothing acknowledged', async () => {
    const { where: schema } = await pgBackend.db();
    const url = new URL(PG_URL!);
    url.searchParams.set('options', `-c search_path=${schema}`);
    const [a, b] = await Promise.all([daemon(url.toString(), 'rack-a'), daemon(url.toString(), 'rack-b')]);
    // Each registered its heartbeat under its own serverId.
    const beats = await adminQuery(`SELECT key, doc FROM ${schema}.daemons ORDER BY key`);
    expect(beats.rows.map((r) => [r.key, r.doc.backend])).toEqual([
      ['rack-a', 'postgres'],
      ['rack-b', 'postgres'],
    ]);

    const info = (await (await fetch(`http://127.0.0.1:${a.port}/api/v1/info`)).json()) as {
      store: { backend: string };
      daemon: { serverId: string };
    };
    expect(info.store.backend).toBe('postgres');
    expect(info.daemon.serverId).toBe('rack-a');
    // The URL's password or path never shows in the public /info.
    expect(JSON.stringify(info)).not.toContain(schema);

    const made = await a.api('POST', '/machines', { name: 'shared-1' });
    expect(made.status).toBe(201);
    const { uuid } = (await made.json()) as { uuid: string };
    const seen = await b.api('GET', `/machines/${uuid}`);
    expect(seen.status).toBe(200);
    expect(((await seen.json()) as { name: string }).name).toBe('shared-1');
    expect((await b.api('POST', '/machines', { name: 'shared-1' })).status).toBe(409);
    // An etag read from one daemon is checked by the other.
    const etag = seen.headers.get('etag')!;
    expect((await a.api('PATCH', `/machines/${uuid}`, { description: 'via a' })).status).toBe(200);
    const stale = await fetch(`http://127.0.0.1:${b.port}/api/v1/machines/${uuid}`, {
      method: 'PATCH',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json', 'if-match': etag },
      body: JSON.stringify({ description: 'via b' }),
    });
    expect(stale.status).toBe(412);

    // An event another daemon appends to the shared log reaches B's SSE subscribers (B follows the log).
    const stream = await b.api('GET', '/events');
    const reader = stream.body!.getReader();
    const outside = (await openPgStore(PG_URL!, { schema, serverId: 'outside' })) as PgStore;
    const bus = { type: 'subnets.created', key: 'from-outside', data: { name: 'from-outside' } };
    await outside.create('subnets', 'from-outside', {}, [], { event: { type: bus.type, key: bus.key, data: bus } });
    let sse = '';
    const readUntil = async (needle: string) => {
      const deadline = Date.now() + 10_000;
      while (!sse.includes(needle) && Date.now() < deadline) {
        const chunk = await Promise.race([
          reader.read(),
          new Promise<undefined>((r) => setTimeout(() => r(undefined), deadline - Date.now())),
        ]);
        if (!chunk || chunk.done) break;
        sse += Buffer.from(chunk.value).toString();
      }
    };
    await readUntil('from-outside');
    await outside.close();
    expect(sse).toMatch(/subnets\.created[\s\S]*from-outside/);
    // A change made through A's API reaches B's SSE subscribers, with the etag A's write stored.
    const viaA = await a.api('POST', '/machines', { name: 'via-a-sse' });
    expect(viaA.status).toBe(201);
    await readUntil('via-a-sse');
    await reader.cancel();
    const line = sse.split('\n').find((l) => l.startsWith('data:') && l.includes('via-a-sse'));
    expect(line, sse.slice(-2000)).toBeDefined();
    const published = JSON.parse(line!.slice(5)) as { type: string; data: { etag: string } };
    expect(published.type).toBe('machines.created');
    expect(published.data.etag).toBe(viaA.headers.get('etag')?.replace(/"/g, ''));
    // Both daemons are listed, alive, by either.
    const daemons = (await (await b.api('GET', '/daemons')).json()) as { serverId: string; alive: boolean }[];
    expect(daemons.map((d) => [d.serverId, d.alive])).toEqual([
      ['rack-a', true],
      ['rack-b', true],
    ]);

    // Daemon A creates machines until it is killed; B sees every one A acknowledged, and keeps serving.
    const acked: string[] = [];
    for (let i = 0; i < 40; i++) {
      const r = await a.api('POST', '/machines', { name: `burst-${i}` });
      if (r.status === 201) acked.push(((await r.json()) as { uuid: string }).uuid);
    }
    a.p.kill('SIGKILL');
    expect((await exited(a.p)).signal).toBe('SIGKILL');
    expect(acked).toHaveLength(40);
    const listed = (await (await b.api('GET', '/machines?limit=1000')).json()) as
      | { uuid: string }[]
      | {
          items: { uuid: string }[];
        };
    const items = Array.isArray(listed) ? listed : listed.items;
    const uuids = new Set(items.map((m) => m.uuid));
    expect(acked.filter((u) => !uuids.has(u))).toEqual([]);
    expect((await b.api('POST', '/machines', { name: 'after-kill' })).status).toBe(201);
    // B stops cleanly and says so; A, killed, did not.
    await stopChild(b.p);
    const after = await adminQuery(`SELECT key, doc FROM ${schema}.daemons ORDER BY key`);
    expect(after.rows.map((r) => [r.key, typeof r.doc.stoppedAt])).toEqual([
      ['rack-a', 'undefined'],
      ['rack-b', 'string'],
    ]);
  }, 120_000);
});
