/**
 * Leadership among daemons on one PostgreSQL inventory (src/store/pg-leader.ts): exactly one of several leads; when
 * the leader's connection is killed (pg_terminate_backend) or cut off without a reset (a partition through a
 * paused relay), it learns it lost and another takes over within a bounded time, and at no moment do two count
 * themselves leader. A store without leadership (SQLite) leads alone; whileLeading starts and stops a duty with
 * the lead.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { soleLeadership, whileLeading } from '../../src/leader.js';
import { openPgStore } from '../../src/store/pg.js';
import type { Leadership, LeadershipOptions, Store } from '../../src/store/store.js';
import { adminQuery, backends, leaderPid, PG_URL, relay, skipUnavailable } from './backends.js';

const pgBackend = backends(import.meta.filename).find((x) => x.name === 'postgres')!;
const FAST: LeadershipOptions = { retryMs: 100, probeMs: 100, sessionTimeoutMs: 1500 };

const open: Leadership[] = [];
afterEach(async () => {
  for (const l of open.splice(0)) await l.close();
});

/** Polls `test` every 20 ms for at most `ms`; returns whether it held. */
async function until(test: () => boolean, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (test()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return test();
}

/** A leadership with the gains and losses it reported, in order. */
function watched(store: Store, o = FAST) {
  const l = store.leadership!(o);
  open.push(l);
  const seen: boolean[] = [];
  l.on((v) => seen.push(v));
  return { l, seen };
}

describe('leadership without a shared store', () => {
  it('the lone daemon leads, and a duty runs from the start until closed', async () => {
    const l = soleLeadership();
    expect(l.leader).toBe(true);
    let runs = 0;
    let stops = 0;
    const close = whileLeading(l, () => {
      runs++;
      return () => {
        stops++;
      };
    });
    await new Promise((r) => setTimeout(r, 10));
    expect([runs, stops]).toEqual([1, 0]);
    await close();
    expect([runs, stops]).toEqual([1, 1]);
  });
});

describe('PostgreSQL leadership', () => {
  skipUnavailable(pgBackend);

  it('exactly one of three leads; killing its connection moves the lead, and the old leader knows', async () => {
    const db = await pgBackend.db();
    const all = [watched(await db.open()), watched(await db.open()), watched(await db.open())];
    expect(await until(() => all.some((x) => x.l.leader))).toBe(true);
    // Give the others several retries: none may take a held lock.
    await new Promise((r) => setTimeout(r, 500));
    expect(all.filter((x) => x.l.leader)).toHaveLength(1);
    const first = all.find((x) => x.l.leader)!;
    expect(first.seen).toEqual([true]);

    const pid = await leaderPid(db.where);
    expect(pid).toBeDefined();
    await adminQuery('SELECT pg_terminate_backend($1)', [pid]);
    expect(await until(() => !first.l.leader && first.seen.at(-1) === false)).toBe(true);
    expect(await until(() => all.some((x) => x.l.leader))).toBe(true);
    await new Promise((r) => setTimeout(r, 300));
    expect(all.filter((x) => x.l.leader)).toHaveLength(1);
    expect(await leaderPid(db.where)).not.toBe(pid);
  }, 30_000);

  it('whileLeading moves a duty with the lead: stopped on the old leader before it runs on the new one', async () => {
    const db = await pgBackend.db();
    const log: string[] = [];
    const mk = async (name: string) => {
      const { l } = watched(await db.open());
      const close = whileLeading(l, () => {
        log.push(`${name} start`);
        return () => void log.push(`${name} stop`);
      });
      return { l, close };
    };
    const a = await mk('a');
    expect(await until(() => a.l.leader)).toBe(true);
    const b = await mk('b');
    await new Promise((r) => setTimeout(r, 300));
    expect(log).toEqual(['a start']);
    await adminQuery('SELECT pg_terminate_backend($1)', [await leaderPid(db.where)]);
    expect(await until(() => log.length >= 3)).toBe(true);
    // a may win the lock back on reconnect; whoever wins, a stopped first.
    expect(log.slice(0, 2)).toEqual(['a start', 'a stop']);
    expect(log[2]).toMatch(/^[ab] start$/);
    await a.close();
    await b.close();
  }, 30_000);

  it('a leader cut off without a reset gives up before the server lets another take over', async () => {
    const db = await pgBackend.db();
    const r = await relay();
    const url = new URL(PG_URL!);
    url.port = String(r.port);
    const cutOff = await openPgStore(url.toString(), { schema: db.where });
    const other = await db.open();
    try {
      const a = watched(cutOff);
      expect(await until(() => a.l.leader)).toBe(true);
      const b = watched(other);
      await new Promise((res) => setTimeout(res, 300));
      expect(b.l.leader).toBe(false);

      r.pause();
      // Sampled every 10 ms until b leads: never both at once.
      let both = 0;
      const end = Date.now() + 15_000;
      while (!b.l.leader && Date.now() < end) {
        if (a.l.leader && b.l.leader) both++;
        await new Promise((res) => setTimeout(res, 10));
      }
      expect(b.l.leader).toBe(true);
      expect(both).toBe(0);
      expect(a.l.leader).toBe(false);
      expect(a.seen).toEqual([true, false]);
    } finally {
      await cutOff.close().catch(() => {});
      await r.cut();
    }
  }, 30_000);
});
