/**
 * `plinth backup FILE` against a running daemon, then `plinth restore FILE` with it stopped: the restored data dir
 * serves what was confirmed before the backup and not what came after it.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type Daemon, startDaemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { testConfig } from '../helpers/daemon.js';
import { cli } from './run.js';

const dir = mkdtempSync(path.join(tmpdir(), 'plinth-cli-backup-'));
const dataDir = path.join(dir, 'var');
let d: Daemon | undefined;
afterAll(async () => {
  await d?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A daemon on this data dir (kept across restarts, unlike startTestDaemon's), and how to call it. */
async function daemon() {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  d = await startDaemon(testConfig(dataDir), silentLogger, {});
  const url = `http://127.0.0.1:${d.httpPort}`;
  const token = readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
  const api = (method: string, p: string, body?: unknown) =>
    fetch(url + p, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  return { url, token, api };
}

describe('plinth backup and plinth restore', () => {
  it('round-trips the inventory through a file, with the daemon serving during the backup', async () => {
    let c = await daemon();
    expect((await c.api('POST', '/api/v1/machines', { name: 'before', macs: ['52:54:00:cc:00:01'] })).status).toBe(201);
    const file = path.join(dir, 'plinth.backup');
    const env = { PLINTH_ENDPOINT: c.url, PLINTH_TOKEN: c.token };
    const b = await cli(['backup', file], { env });
    expect(b.code, b.stderr).toBe(0);
    expect(statSync(file).mode & 0o077).toBe(0);
    expect((await c.api('POST', '/api/v1/machines', { name: 'after', macs: ['52:54:00:cc:00:02'] })).status).toBe(201);

    // Refused while the daemon holds the database.
    const busy = await cli(['restore', file, '--data-dir', dataDir]);
    expect(busy.code).toBe(1);
    await d!.close();
    d = undefined;
    const r = await cli(['restore', file, '--data-dir', dataDir]);
    expect(r.code, r.stderr).toBe(0);

    c = await daemon();
    const names = ((await (await c.api('GET', '/api/v1/machines')).json()) as { name: string }[]).map((m) => m.name);
    expect(names).toContain('before');
    expect(names).not.toContain('after');
  });
});
