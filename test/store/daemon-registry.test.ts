/**
 * Daemon identity (src/daemon-registry.ts, src/http/daemons-api.ts) on both backends: each daemon's heartbeat
 * document, GET /daemons listing every daemon on the inventory with whether it is alive (a clean stop says so, a
 * daemon that stops beating is not alive after three missed beats), and a warning when two live daemons share
 * one serverId.
 */
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { type DaemonDoc, listDaemons, startRegistry } from '../../src/daemon-registry.js';
import { registerDaemonRoutes } from '../../src/http/daemons-api.js';
import { silentLogger } from '../../src/log.js';
import { backends, skipUnavailable } from './backends.js';

const me = (serverId: string) => ({ serverId, version: 'test', backend: 'x', api: `http://${serverId}/api/v1` });

describe.each(backends(import.meta.filename))('daemon registry on $name', (b) => {
  skipUnavailable(b);

  it('two daemons on one inventory list each other; a clean stop is recorded; GET /daemons answers it', async () => {
    const db = await b.db();
    const [s1, s2] = [await db.open(), await db.open()];
    const r1 = await startRegistry(s1, me('rack-1'), silentLogger);
    const r2 = await startRegistry(s2, me('rack-2'), silentLogger);
    // SQLite: the first opener's journaled heartbeat reaches the file (and the second opener) once applied.
    await expect
      .poll(async () => (await listDaemons(s2)).map((d) => [d.serverId, d.alive, d.pid]))
      .toEqual([
        ['rack-1', true, process.pid],
        ['rack-2', true, process.pid],
      ]);
    await r1.close();
    await expect.poll(async () => (await listDaemons(s2)).find((d) => d.serverId === 'rack-1')?.alive).toBe(false);
    const app = Fastify();
    registerDaemonRoutes(app, { store: s2 });
    const res = await app.inject({ method: 'GET', url: '/daemons' });
    expect(res.statusCode).toBe(200);
    const listed = res.json() as (DaemonDoc & { alive: boolean })[];
    expect(listed.find((d) => d.serverId === 'rack-1')).toMatchObject({ alive: false, api: 'http://rack-1/api/v1' });
    expect(listed.find((d) => d.serverId === 'rack-1')?.stoppedAt).toBeDefined();
    expect(listed.find((d) => d.serverId === 'rack-2')?.alive).toBe(true);
    await app.close();
    await r2.close();
  });

  it('a daemon that stops beating is not alive after three missed beats', async () => {
    const s = await (await b.db()).open();
    const beatAt = new Date(Date.now() - 31_000).toISOString();
    const doc: DaemonDoc = {
      ...me('gone'),
      host: 'h',
      pid: 1,
      startedAt: beatAt,
      beatAt,
      beatSeconds: 10,
    };
    await s.putBatched('daemons', 'gone', doc);
    expect((await listDaemons(s))[0]?.alive).toBe(false);
    expect((await listDaemons(s, Date.parse(beatAt) + 29_000))[0]?.alive).toBe(true);
  });

  it('warns when another live daemon beats under the same serverId', async () => {
    const s = await (await b.db()).open();
    const now = new Date().toISOString();
    await s.putBatched('daemons', 'dup', {
      ...me('dup'),
      host: 'elsewhere',
      pid: 1,
      startedAt: now,
      beatAt: now,
      beatSeconds: 10,
    });
    const warnings: string[] = [];
    const log = {
      ...silentLogger,
      warn: (_o: unknown, msg: string) => warnings.push(msg),
    } as unknown as typeof silentLogger;
    const r = await startRegistry(s, me('dup'), log);
    expect(warnings.join('\n')).toMatch(/another live daemon beats under this serverId/);
    await r.close();
  });

  it('does not warn about its own fresh heartbeat left by a process of this host that is gone (a kill -9 restart)', async () => {
    const s = await (await b.db()).open();
    const gone = spawnSync(process.execPath, ['-e', '0']).pid!;
    const now = new Date().toISOString();
    const beat = { ...me('restarted'), host: os.hostname(), startedAt: now, beatAt: now, beatSeconds: 10 };
    const warnings: string[] = [];
    const log = {
      ...silentLogger,
      warn: (_o: unknown, msg: string) => warnings.push(msg),
    } as unknown as typeof silentLogger;
    await s.putBatched('daemons', 'restarted', { ...beat, pid: gone });
    await (await startRegistry(s, me('restarted'), log)).close();
    expect(warnings).toEqual([]);
    // The same record naming a live process of this host (the test runner's parent) is a duplicate.
    await s.putBatched('daemons', 'restarted', { ...beat, pid: process.ppid });
    await (await startRegistry(s, me('restarted'), log)).close();
    expect(warnings.join('\n')).toMatch(/another live daemon beats under this serverId/);
  });
});
