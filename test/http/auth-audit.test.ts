import { describe, expect, it } from 'vitest';
import { type AuditEntry, auditLog } from '../../src/http/audit.js';
import { jsonTooDeep } from '../../src/http/json-body.js';
import { silentLogger } from '../../src/log.js';
import { openSqliteStore } from '../../src/store/sqlite.js';

const entry = (i: number): AuditEntry => ({
  at: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
  who: `t${i}`,
  tokenId: '0123456789abcdef',
  role: 'admin',
  method: 'POST',
  route: '/api/v1/machines',
  status: 201,
  ip: '127.0.0.1',
});

describe('auditLog', () => {
  it('stays bounded: the oldest entries beyond the cap are deleted, the newest kept', async () => {
    const store = openSqliteStore(':memory:');
    const audit = auditLog(store, silentLogger, { max: 10, pruneEvery: 7 });
    for (let i = 0; i < 45; i++) audit.record(entry(i));
    await new Promise((r) => setTimeout(r, 50)); // the batched writes land
    await audit.prune();
    await new Promise((r) => setTimeout(r, 50));
    const { items, total } = await store.list('audit', { sort: { field: 'at', desc: true } });
    expect(total).toBe(10);
    expect(items.map((i) => (i.doc as AuditEntry).who)).toEqual(Array.from({ length: 10 }, (_, k) => `t${44 - k}`));
    await store.close();
  });
});

describe('jsonTooDeep', () => {
  it('counts nesting, not brackets inside strings', () => {
    expect(jsonTooDeep(`${'['.repeat(65)}${']'.repeat(65)}`)).toBe(true);
    expect(jsonTooDeep(`${'['.repeat(64)}${']'.repeat(64)}`)).toBe(false);
    expect(jsonTooDeep(`{"a":"${'[{'.repeat(500)}"}`)).toBe(false);
    expect(jsonTooDeep(`{"a":"\\"${'['.repeat(500)}"}`)).toBe(false);
    expect(jsonTooDeep(`${'{"a":'.repeat(65)}1${'}'.repeat(65)}`)).toBe(true);
  });
});
