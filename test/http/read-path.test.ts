/**
 * The API's read path after its CPU cuts (bench:api): a machine found by uuid, name or MAC with fewer lookups,
 * lists that send stored JSON unparsed unless a secure name may be in it, request log lines built from a
 * template, and the token check's cached answer.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueToken, revokeToken, tokenChecker } from '../../src/inventory/tokens.js';
import { infoLines } from '../../src/log.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

describe('machine reads and lists', () => {
  let d: TestDaemon;
  beforeAll(async () => {
    d = await startTestDaemon();
    expect(
      (await d.api('POST', '/api/v1/params', { name: 'pw', schema: { type: 'string' }, secure: true })).status,
    ).toBe(201);
  });
  afterAll(() => d.stop());

  it('finds one machine by uuid, name and MAC (any case); the 404 says the same for every shape of id', async () => {
    const m = await d.api('POST', '/api/v1/machines', { name: 'r1', macs: ['52:54:00:bb:00:01'] });
    expect(m.status).toBe(201);
    for (const id of [m.body.uuid, 'r1', '52:54:00:bb:00:01', '52:54:00:BB:00:01']) {
      const g = await d.api('GET', `/api/v1/machines/${id}`);
      expect(g.status).toBe(200);
      expect(g.body).toEqual(m.body);
    }
    const unknownUuid = '00000000-0000-4000-8000-000000000000';
    for (const id of [unknownUuid, 'no-such-name']) {
      const g = await d.api('GET', `/api/v1/machines/${id}`);
      expect(g.status).toBe(404);
      expect(g.body.detail).toBe(`machine '${id}' does not exist`);
    }
  });

  it('masks secure params in a list wherever they are, and sends every other machine as stored', async () => {
    const mk = async (name: string, extra: object) => {
      const r = await d.api('POST', '/api/v1/machines', { name, description: 'list-case', ...extra });
      expect(r.status).toBe(201);
      return r.body;
    };
    const secret = await mk('s1', { params: { pw: 'hunter2', rack: 'r1' } });
    // The secure name in text only (no such param), once plainly and once next to an escaped quote.
    const mention = await mk('s2', { params: { note: 'the "pw" param is elsewhere' } });
    const plain = await mk('s3', { params: { rack: 'r3' }, locked: false });
    const list = await d.api('GET', '/api/v1/machines?description=list-case');
    expect(list.status).toBe(200);
    const byName = Object.fromEntries(list.body.map((m: { name: string }) => [m.name, m]));
    expect(byName.s1.params).toEqual({ pw: '(secure)', rack: 'r1' });
    expect({ ...byName.s1, params: secret.params }).toEqual(secret);
    expect(byName.s2).toEqual(mention);
    expect(byName.s3).toEqual(plain);
    expect(list.text).not.toContain('hunter2');
  });
});

describe('infoLines', () => {
  const capture = (level = 'info') => {
    const writes: string[] = [];
    const log = pino({ level, base: { svc: 'plinth' } }, { write: (s: string) => void writes.push(s) });
    return { log, writes };
  };
  const turn = () => new Promise((r) => setImmediate(r));

  it('writes what log.info(fields, msg) writes, one line per write, at the end of the turn', async () => {
    const a = capture();
    const b = capture();
    const child = a.log.child({ reqId: 'req-7' });
    const line = infoLines(child, 'http');
    line('"method":"GET","url":"/a?b=\\"c\\"","status":200,"ms":0.4,"ip":"10.0.0.1"');
    line('"method":"PUT","url":"/x","status":204,"ms":1,"ip":"::1"');
    expect(a.writes).toEqual([]);
    await turn();
    b.log
      .child({ reqId: 'req-7' })
      .info({ method: 'GET', url: '/a?b="c"', status: 200, ms: 0.4, ip: '10.0.0.1' }, 'http');
    b.log.child({ reqId: 'req-7' }).info({ method: 'PUT', url: '/x', status: 204, ms: 1, ip: '::1' }, 'http');
    const noTime = (s: string) => s.replace(/"time":\d+/, '"time":0');
    expect(a.writes.map(noTime)).toEqual(b.writes.map(noTime));
    expect(a.writes.every((w) => w.endsWith('}\n') && JSON.parse(w).msg === 'http')).toBe(true);
  });

  it('writes nothing when info is below the level', async () => {
    const a = capture('warn');
    infoLines(a.log, 'http')('"status":200');
    await turn();
    expect(a.writes).toEqual([]);
  });

  it('on() follows the logger level as it changes, so callers build no fields below info', async () => {
    const a = capture('warn');
    const line = infoLines(a.log, 'http');
    expect(line.on()).toBe(false);
    a.log.level = 'info';
    expect(line.on()).toBe(true);
    line('"status":200');
    a.log.level = 'error';
    expect(line.on()).toBe(false);
    await turn();
    expect(a.writes).toHaveLength(1);
  });
});

describe('tokenChecker.cached', () => {
  it('answers from the cache only, and a revoke is refused at once', async () => {
    const store = openSqliteStore(path.join(mkdtempSync(path.join(tmpdir(), 'plinth-rp-')), 'plinth.db'));
    const token = 't'.repeat(40);
    await issueToken(store, token, { name: 'op', role: 'operator', createdAt: new Date().toISOString() });
    const check = tokenChecker(store);
    expect(check.cached(token)).toBeUndefined();
    expect(await check(token)).toMatchObject({ role: 'operator', name: 'op' });
    expect(check.cached(token)).toMatchObject({ role: 'operator', name: 'op' });
    expect(check.cached('u'.repeat(40))).toBeUndefined();
    const { hashToken } = await import('../../src/inventory/tokens.js');
    await revokeToken(store, hashToken(token));
    expect(check.cached(token)).toBeUndefined();
    expect(await check(token)).toBeNull();
    expect(check.cached(token)).toBeNull();
    await store.close();
  });
});
