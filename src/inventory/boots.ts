import { randomUUID } from 'node:crypto';
import type { Logger } from '../log.js';
import { BackendError, ConflictError, NotFoundError, PreconditionError, type Store } from '../store/store.js';

/**
 * Every boot of a machine as a timeline: the DHCP exchange (what was offered and why), each TFTP and HTTP fetch,
 * each render (and its error), the bootEnv and the artifact digests served, and how it ended. An operator can
 * tell which image a machine runs and why a boot failed without a packet capture.
 */
export type BootEventKind =
  | 'dhcp'
  | 'tftp'
  | 'http'
  | 'render'
  | 'refused'
  | 'callback'
  | 'discovery'
  | 'power'
  | 'reprovision';
/** `serverId`: the daemon that recorded the entry (issue 17), when its recorder was given one. */
export type BootEvent = {
  at: string;
  kind: BootEventKind;
  detail: string;
  data?: Record<string, unknown>;
  serverId?: string;
};
export type Boot = {
  id: string;
  machine: string;
  /** The daemon that started this boot (recorded its first entry), when its recorder was given a serverId. */
  serverId?: string;
  startedAt: string;
  updatedAt: string;
  bootEnv?: string;
  artifacts: { path: string; sha256: string }[];
  result?: 'booted' | 'failed';
  events: BootEvent[];
  /** The id of the boot that followed this one: a daemon still writing to this one re-reads instead. */
  next?: string;
};

const MAX_EVENTS = 200;
const STALE_MS = 15 * 60 * 1000;

export type BootRecorder = ReturnType<typeof bootRecorder>;

/** Conditional writes tried per entry before it is given up (each conflict re-reads the stored boot). */
export const MAX_ATTEMPTS = 8;

type Entry = {
  at: string;
  event: Omit<BootEvent, 'at'>;
  opts: RecordOptions;
};
export type RecordOptions = {
  firmwareStart?: boolean;
  bootEnv?: string;
  artifacts?: Boot['artifacts'];
  result?: Boot['result'];
};
/** `serverId`: this daemon's, recorded with each entry and each boot it starts (none: not recorded). */
export type RecorderOptions = { now?: () => Date; log?: Logger; serverId?: string };
/** A boot as this daemon last wrote or read it, with the etag of that version. */
type Known = { boot: Boot; etag: string };

// Another daemon (or an API delete) changed the stored boot since this daemon's copy: re-read and apply again.
const conflict = (err: unknown) =>
  err instanceof PreconditionError || err instanceof NotFoundError || err instanceof ConflictError;

/**
 * Keeps each machine's current boot in memory, with the etag of the version written, and on a shared inventory
 * (PostgreSQL) writes each entry conditionally on it (If-Match): one daemon alone never reads before a write; on
 * SQLite, one daemon's file, each entry goes through the store's batched writes as before. Several daemons share one
 * inventory (issue 17): the leader records a reprovision's steps while another answers the machine's DHCP and
 * callback. A write that finds the stored boot changed re-reads it and applies the entry again, up to
 * MAX_ATTEMPTS times, so no daemon's entry is overwritten by another's stale copy. A daemon's own entries for one
 * machine are written one after another. A new boot begins when firmware starts over: a firmware DHCP request
 * (PXEClient/HTTPClient) after the current boot already rendered its script or ended, or after 15 minutes; the
 * boot it follows gets `next`, so a daemon still holding that one finds its write refused and moves on.
 */
export function bootRecorder(store: Store, o: RecorderOptions = {}) {
  const { now = () => new Date(), log, serverId } = o;
  const known = new Map<string, Known>();
  // Per machine, this daemon's write in progress: the next entry starts from its result.
  const chains = new Map<string, Promise<unknown>>();

  const keyOf = (b: Boot) => `${b.machine}/${b.id}`;
  const latest = async (machine: string): Promise<Known | undefined> => {
    const { items } = await store.list('boots', {
      filters: [{ field: 'machine', value: machine }],
      sort: { field: 'startedAt', desc: true },
      limit: 1,
    });
    const it = items[0];
    return it ? { boot: it.doc as Boot, etag: it.etag } : undefined;
  };

  const apply = (b: Boot, e: Entry) => {
    if (b.events.length < MAX_EVENTS) b.events.push({ at: e.at, ...e.event });
    b.updatedAt = e.at;
    if (e.opts.bootEnv) b.bootEnv = e.opts.bootEnv;
    if (e.opts.artifacts) b.artifacts = e.opts.artifacts;
    if (e.opts.result) b.result = e.opts.result;
    return b;
  };

  /**
   * Marks `old` as followed by `next`, so a daemon still writing to it re-reads: conditional too, and when another
   * daemon added an entry meanwhile (kept where it is), on the boot as it is now.
   */
  const supersede = async (old: Known, next: Boot) => {
    let cur: Known | undefined = old;
    for (let attempt = 1; cur && !cur.boot.next && attempt <= MAX_ATTEMPTS; attempt++) {
      try {
        await store.replace('boots', keyOf(cur.boot), { ...cur.boot, next: next.id }, [], { ifMatch: cur.etag });
        return;
      } catch (err) {
        if (!conflict(err)) throw err;
        const s = await store.get('boots', keyOf(cur.boot));
        cur = s && { boot: s.doc as Boot, etag: s.etag };
      }
    }
  };

  // One daemon alone (SQLite: the store is no other daemon's) holds the only copy that changes: its writes go
  // through the store's batched writes (the lease journal, off the event loop), as packet-rate writes must, not a
  // conditional transaction on the main thread each (an fsync the DHCP and HTTP paths would wait behind).
  const batched = (b: Boot): Promise<Known> =>
    store.putBatched('boots', keyOf(b), b).then(() => ({ boot: b, etag: '' }));

  /** One conditional write of `e` on top of `cur` (the stored boot as last known; undefined: none). */
  const write = async (machine: string, cur: Known | undefined, e: Entry): Promise<Known> => {
    const b = cur?.boot;
    const stale = b && Date.parse(e.at) - Date.parse(b.updatedAt) > STALE_MS;
    const rendered = b?.events.some((x) => x.kind === 'render');
    // A boot followed by one that is gone (deleted meanwhile) is not written to either.
    if (!b || b.next || stale || (e.opts.firmwareStart && (rendered || b.result))) {
      const n = apply(
        {
          id: `${e.at}-${randomUUID().slice(0, 8)}`,
          machine,
          ...(serverId === undefined ? {} : { serverId }),
          startedAt: e.at,
          updatedAt: e.at,
          artifacts: [],
          events: [],
        },
        e,
      );
      if (!store.sharedLeases) return batched(n);
      const s = await store.create('boots', keyOf(n), n);
      // The entry is stored: a failure to mark the old boot only leaves other daemons writing there a while.
      if (cur)
        await supersede(cur, n).catch((err: Error) =>
          log?.warn({ machine, err: err.message }, 'boot timeline: the previous boot was not marked as followed'),
        );
      return { boot: n, etag: s.etag };
    }
    const next = apply({ ...b, events: [...b.events], artifacts: b.artifacts }, e);
    if (!store.sharedLeases) return batched(next);
    const s = await store.replace('boots', keyOf(next), next, [], { ifMatch: cur.etag });
    return { boot: next, etag: s.etag };
  };

  const recordNow = async (machine: string, e: Entry): Promise<Boot> => {
    let cur = known.get(machine) ?? (await latest(machine));
    for (let attempt = 1; ; attempt++) {
      try {
        const k = await write(machine, cur, e);
        known.set(machine, k);
        return k.boot;
      } catch (err) {
        if (!conflict(err)) throw err;
        known.delete(machine);
        if (attempt >= MAX_ATTEMPTS) {
          log?.warn(
            { machine, kind: e.event.kind, attempts: attempt },
            'boot timeline: entry given up, the stored boot kept changing',
          );
          throw new BackendError(
            `boot timeline of machine '${machine}': the stored boot changed ${attempt} times in a row, entry not recorded`,
          );
        }
        cur = await latest(machine);
        // Its follower started a moment earlier by another daemon's clock: go to it by key.
        const next = cur?.boot.next && (await store.get('boots', `${machine}/${cur.boot.next}`));
        if (next) cur = { boot: next.doc as Boot, etag: next.etag };
      }
    }
  };

  return {
    record(machine: string, event: Omit<BootEvent, 'at'>, opts: RecordOptions = {}): Promise<Boot> {
      // The entry names its daemon: re-applied on another daemon's newer copy, it keeps saying who recorded it.
      const named = serverId === undefined ? event : { ...event, serverId };
      const e: Entry = { at: now().toISOString(), event: named, opts };
      const prev = chains.get(machine);
      const p = prev ? prev.then(done, done).then(() => recordNow(machine, e)) : recordNow(machine, e);
      chains.set(machine, p);
      const settle = () => {
        if (chains.get(machine) === p) chains.delete(machine);
      };
      p.then(settle, settle);
      return p;
    },
    async list(machine: string, limit = 50): Promise<Boot[]> {
      const { items } = await store.list('boots', {
        filters: [{ field: 'machine', value: machine }],
        sort: { field: 'startedAt', desc: true },
        limit,
      });
      return items.map((i) => i.doc as Boot);
    },
  };
}
const done = () => undefined;
