/**
 * Boot timelines written by several daemons on one inventory (issue 17): two recorders, each on its own store
 * connection to one database (PostgreSQL, or two openers of one SQLite file), racing entries on one machine; every
 * entry is in the timeline at the end. One recorder alone reads the stored boot once, never per entry. Each entry
 * names the daemon that recorded it, each boot the daemon that started it.
 */
import { describe, expect, it } from 'vitest';
import { type Boot, bootRecorder, MAX_ATTEMPTS } from '../../src/inventory/boots.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';
import { BackendError, PreconditionError } from '../../src/store/store.js';
import { capturedLog } from '../dhcp/helpers.js';
import { backends, skipUnavailable } from '../store/backends.js';

const M = 'machine-1';

async function timeline(store: Store): Promise<Boot[]> {
  const { items } = await store.list('boots', { filters: [{ field: 'machine', value: M }] });
  return items.map((i) => i.doc as Boot);
}
const details = (boots: Boot[]) => boots.flatMap((b) => b.events.map((e) => e.detail)).sort();

/** Counts the reads a recorder makes through `store`. */
function counting(store: Store) {
  const reads = { n: 0 };
  const s: Store = {
    ...store,
    get: (...a) => {
      reads.n++;
      return store.get(...a);
    },
    list: (...a) => {
      reads.n++;
      return store.list(...a);
    },
  };
  return { store: s, reads };
}

describe.each(backends(import.meta.filename))('boot timeline across daemons ($name)', (b) => {
  skipUnavailable(b);

  // Several daemons share a PostgreSQL inventory only; one SQLite file is one daemon's (its writes are batched).
  const shared = b.name === 'postgres' ? it : it.skip;

  shared(
    'keeps every entry two daemons record on one machine at once',
    async () => {
      const db = await b.db();
      const [s1, s2] = [await db.open(), await db.open()];
      const [r1, r2] = [bootRecorder(s1), bootRecorder(s2)];
      await r1.record(M, { kind: 'dhcp', detail: 'start' }, { firmwareStart: true });
      const N = 60;
      const want = ['start'];
      const writes: Promise<unknown>[] = [];
      // Both daemons write in the same event-loop turns: every write of one may meet the other's in between.
      for (let i = 0; i < N; i++) {
        for (const [name, r] of [
          ['a', r1],
          ['b', r2],
        ] as const) {
          want.push(`${name}${i}`);
          writes.push(r.record(M, { kind: 'http', detail: `${name}${i}` }));
        }
        if (i % 4 === 3) await Promise.all(writes.splice(0));
      }
      await Promise.all(writes);
      const boots = await timeline(s1);
      expect(details(boots)).toEqual(want.sort());
      expect(boots).toHaveLength(1);
    },
    60_000,
  );

  shared('moves the other daemon to the boot one of them started, losing nothing on either', async () => {
    const db = await b.db();
    const [s1, s2] = [await db.open(), await db.open()];
    const [r1, r2] = [bootRecorder(s1), bootRecorder(s2)];
    await r1.record(M, { kind: 'render', detail: 'rendered' }, { firmwareStart: true });
    await r2.record(M, { kind: 'http', detail: 'b-before' });
    // Daemon 1 sees the firmware start over (a new boot); daemon 2 still holds the old one.
    const first = await r1.record(M, { kind: 'dhcp', detail: 'a-restart' }, { firmwareStart: true });
    const after = await r2.record(M, { kind: 'http', detail: 'b-after' });
    expect(after.id).toBe(first.id);
    const boots = await timeline(s1);
    expect(details(boots)).toEqual(['a-restart', 'b-after', 'b-before', 'rendered']);
    expect(boots).toHaveLength(2);
  });

  it('each entry names the daemon that recorded it, and each boot the daemon that started it', async () => {
    const db = await b.db();
    const store = await db.open();
    // One after another (SQLite's one daemon's batched writes are not conditional): each recorder reads the boot.
    await bootRecorder(store, { serverId: 'rack-a' }).record(M, { kind: 'dhcp', detail: 'a' }, { firmwareStart: true });
    await bootRecorder(b.name === 'postgres' ? await db.open() : store, { serverId: 'rack-b' }).record(M, {
      kind: 'http',
      detail: 'b',
    });
    await bootRecorder(store).record(M, { kind: 'callback', detail: 'unnamed' }, { result: 'booted' });
    const [boot, ...more] = await timeline(store);
    expect(more).toHaveLength(0);
    expect(boot!.serverId).toBe('rack-a');
    expect(boot!.events.map((e) => [e.detail, e.serverId])).toEqual([
      ['a', 'rack-a'],
      ['b', 'rack-b'],
      ['unnamed', undefined],
    ]);
    // A new boot started by rack-b is rack-b's.
    const next = await bootRecorder(store, { serverId: 'rack-b' }).record(
      M,
      { kind: 'dhcp', detail: 'again' },
      { firmwareStart: true },
    );
    expect(next.id).not.toBe(boot!.id);
    expect(next.serverId).toBe('rack-b');
  });

  it('reads the stored boot once when one daemon records alone', async () => {
    const db = await b.db();
    const { store, reads } = counting(await db.open());
    const r = bootRecorder(store);
    await r.record(M, { kind: 'dhcp', detail: 'start' }, { firmwareStart: true });
    const before = reads.n;
    await Promise.all(Array.from({ length: 20 }, (_, i) => r.record(M, { kind: 'http', detail: `e${i}` })));
    expect(reads.n - before).toBe(0);
    expect((await timeline(store))[0]!.events).toHaveLength(21);
  });
});

describe('boot timeline under a store that keeps changing', () => {
  it(`gives an entry up after ${MAX_ATTEMPTS} refused writes, with a warning and a BackendError`, async () => {
    const real = openSqliteStore(':memory:');
    let replaces = 0;
    const store: Store = {
      ...real,
      sharedLeases: true, // conditional writes: what several daemons on one inventory do
      replace: async (kind, key) => {
        replaces++;
        throw new PreconditionError(kind, key);
      },
    };
    const { log, lines } = capturedLog();
    const r = bootRecorder(store, { log });
    await r.record(M, { kind: 'dhcp', detail: 'start' }, { firmwareStart: true });
    await expect(r.record(M, { kind: 'http', detail: 'lost' })).rejects.toBeInstanceOf(BackendError);
    expect(replaces).toBe(MAX_ATTEMPTS);
    expect(lines.join('\n')).toContain('entry given up');
    await real.close();
  });
});
