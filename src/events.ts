import type { ResourceKind } from './inventory/resources.js';
import { createLogger, type Logger } from './log.js';
import { rateLimitedLog } from './log-limit.js';

/**
 * The daemon's internal event bus: the API publishes inventory changes, DHCP/TFTP/HTTP publish what they
 * served. Subscribers (the DHCP server's subnet cache, the SSE stream, metrics) must never block a publisher:
 * listeners run synchronously, so they only queue or flag work.
 *
 * Events are a discriminated union on `type`: a subscriber narrows with `e.type === 'lease.acked'` and then
 * reads `e.data.mac` as a string. The SSE stream (/api/v1/events) sends them as they are, so the `data` keys
 * below are part of the API: keep them when an emitter changes.
 */

type LeaseData = { mac: string; subnet: string };
/**
 * A lease a DHCP server wrote: `serverId`, the daemon whose server offered, acked, released or declined it (its
 * `--server-id`; absent when it has none), whichever daemon publishes the event (issue 17: the others publish it
 * too when they learn the row). For lease.expired, the daemon that wrote the lease before it ended (the one that
 * served the client), not the leader whose sweep marked it.
 */
type LeaseWrite = LeaseData & { serverId?: string };

/** The `data` of every event that carries some, by type. */
export type EventData = {
  /** key: the address offered. */
  'lease.offered': LeaseWrite;
  /** key: the address acknowledged. */
  'lease.acked': LeaseWrite & { expiresAt: string };
  'lease.released': LeaseWrite;
  /** A bound lease ended (the leader's sweep on PostgreSQL, the reclaim pass on SQLite). */
  'lease.expired': LeaseWrite;
  /** RFC 2131 DHCPDECLINE: the address is quarantined. */
  'lease.declined': LeaseWrite & { quarantineSeconds: number };
  /** key: the address refused, when there is one. */
  'lease.nak': LeaseData & { reason: string };
  /** key: the client's ciaddr; a proxyDHCP boot-server (port 4011) request answered. */
  'proxy.acked': LeaseData;
  /** key: the other server's address. */
  'dhcp.rogue': { address: string; source: string; interface?: string; mac: string };
  /** key: the client's MAC; a DHCP reply carrying a boot decision. */
  'dhcp.boot': {
    mac: string;
    filename: string;
    nextServer: string;
    bootEnv: string;
    reason: string;
    mode: 'full' | 'proxy' | 'unmanaged';
    arch?: number;
    vendorClass?: string;
    blksize?: number;
  };
  'boot.rendered': { bootEnv: string; file: string };
  /** The bootenv's artifacts no longer match their pinned digests. */
  'boot.refused': { bootEnv: string; problems: string[] };
  'render.error': { bootEnv: string; file: string; error: string };
  /** key: the file's path under the files directory. */
  'files.uploaded': { size: number; sha256: string };
  /** machine: whose BMC; `action`: on, off, cycle, reset, status or bootdev:DEVICE; `ms`: the call's time. */
  'power.done': { action: string; ms: number; state?: string };
  'power.failed': { action: string; ms: number; code: string; error: string };
  /** machine: the one reprovisioned; `step`: assign, bootdev, power, dhcp, fallback, booted. */
  'reprovision.step': { bootEnv: string; step: string; ms: number };
  'reprovision.done': { bootEnv: string; ms: number };
  'reprovision.failed': { bootEnv: string; reason: string };
  /** key: the rollout's id; `state`: running, paused, done, failed, rolled-back, aborted. */
  'rollout.progress': { state: string; batch: number; batches: number; done: number; total: number; reason?: string };
};

/** What the CRUD layer (src/inventory/crud.ts) publishes for each inventory resource; key: the object's key. */
export type CrudEventType<K extends string = ResourceKind> = `${K}.${'created' | 'updated' | 'deleted'}`;

/**
 * The `data` of a CRUD event: which object, never its content. The stream goes to viewer tokens too, and a
 * machine's or profile's params may be secure (the API redacts them for non-admins): a watcher that wants the
 * object GETs it with its own token. `etag`: the version written (absent on delete), to skip a GET it already has.
 */
export type CrudData = { name?: string; etag?: string };

/** Events with no `data`. */
type Bare =
  /** key: the file's path. */
  | 'files.deleted'
  | 'prefs.updated'
  /** machine: the machine that reported its inventory. */
  | 'machine.inventory';

type Head<T extends string> = {
  type: T;
  /** The object's key (machine uuid, subnet name, lease address). */
  key?: string;
  /** The machine's uuid when the event concerns one. */
  machine?: string;
  at: string;
};

type DataKey = { [T in keyof EventData]: keyof EventData[T] }[keyof EventData] | keyof CrudData;
// Every key another event's data has is declared absent here: an emitter cannot slip in a key its type does not
// carry, and a subscriber that reads `e.data?.mac` before narrowing reads `string | undefined`, not any key.
type Only<D> = D & { [K in Exclude<DataKey, keyof D>]?: never };

type WithData = { [T in keyof EventData]: Head<T> & { data: Only<EventData[T]> } }[keyof EventData];
/** `data` optional: the daemon's own writers always send it (crudEvent), a test's bus may not. */
type Crud<T extends string = CrudEventType> = T extends string ? Head<T> & { data?: Only<CrudData> } : never;
type WithoutData<T extends string = Bare> = T extends string ? Head<T> & { data?: undefined } : never;
/** A machine's callback (POST /machines/:id/callback): the event word is the machine's, so is its data. */
type Callback = Head<`machine.${string}`> & { machine: string; data: Record<string, unknown> };

export type PlinthEvent = WithData | Crud | WithoutData | Callback;
export type PlinthEventType = PlinthEvent['type'];

/** An event as published: the bus stamps `at`. */
export type EventInput = PlinthEvent extends infer E ? (E extends PlinthEvent ? Omit<E, 'at'> : never) : never;

/** A CRUD event as crud.ts publishes it: machines also name themselves in `machine` (the stream's `?machine=`). */
export function crudEvent(
  kind: ResourceKind,
  verb: 'created' | 'updated' | 'deleted',
  key: string,
  data: CrudData,
): EventInput {
  return { type: `${kind}.${verb}`, key, ...(kind === 'machines' ? { machine: key } : {}), data };
}

export type Bus = {
  /** Publishes `e`, stamped with `at` in place: pass a fresh object, and do not reuse it afterwards. */
  emit(e: EventInput): void;
  on(fn: (e: PlinthEvent) => void): () => void;
};

let fallback: Logger | undefined;
const fallbackLogger = () => {
  fallback ??= createLogger('info');
  return fallback;
};

/**
 * `log` receives subscriber failures (default: a logger of its own on stdout). A broken subscriber must not
 * break the publisher or the other subscribers, nor hide: its exception is logged with the event's type, at most
 * one line per type and interval, so one that fails on every lease cannot flood the log.
 */
export function createBus(log?: Logger, opts: { logIntervalMs?: number; clock?: () => number } = {}): Bus {
  // A plain list replaced on every on/off rather than an EventEmitter: emit() runs on every lease event of the
  // DHCP packet path, and EventEmitter copies its listener array per emit. Replacing the list keeps its
  // semantics: a listener added during an emit hears the next event, one removed during an emit still hears this one.
  let listeners: readonly ((e: PlinthEvent) => void)[] = [];
  let limited: ReturnType<typeof rateLimitedLog> | undefined;
  const failed = (e: PlinthEvent, err: unknown) => {
    limited ??= rateLimitedLog(log ?? fallbackLogger(), opts.logIntervalMs, opts.clock);
    limited('error', `bus:${e.type}`, { err, event: e.type }, `event subscriber failed on ${e.type}`);
  };
  const stamp = isoClock();
  return {
    emit(e) {
      const list = listeners;
      if (list.length === 0) return;
      // Stamped in place, not copied. A copy (`{ ...e, at }`, a spread that sees every event shape) did not die
      // in the young generation as the input does: a sampling heap profile of what young collections left, at
      // 4,000 DORA/s, put about 0.55 KB a DORA there (of 2.4 KB), all of it these copies of lease events, though
      // nothing keeps them (a heap snapshot after the run holds none). So emit takes the object it is given:
      // every emitter makes a fresh one, and the subscribers get that object (a frozen one is copied).
      const ev = (Object.isExtensible(e) ? e : { ...e }) as PlinthEvent & { at: string };
      ev.at = stamp(Date.now());
      for (const fn of list) {
        try {
          fn(ev);
        } catch (err) {
          failed(ev, err);
        }
      }
    },
    on(fn) {
      // Each subscription is its own entry, so one function subscribed twice is removed once per off().
      const entry = (e: PlinthEvent) => fn(e);
      listeners = [...listeners, entry];
      return () => {
        listeners = listeners.filter((l) => l !== entry);
      };
    },
  };
}

/**
 * A formatter of epoch milliseconds as `Date.prototype.toISOString` does, with the text up to the minute cached:
 * the DHCP packet path stamps every lease (updated, expires) and every event, and `toISOString` costs about ten
 * times a cached prefix. Each formatter caches one minute, so give each stream of times (now, now + lease time)
 * its own. Throws a RangeError for an invalid time, as `toISOString`.
 */
export function isoClock(): (ms: number) => string {
  let minute = Number.NaN;
  let prefix = '';
  return (time) => {
    // Date's TimeClip: whole milliseconds toward zero; out of range (or NaN) throws below, as toISOString does.
    const ms = Math.trunc(time);
    if (!(Math.abs(ms) <= 8.64e15)) return new Date(ms).toISOString();
    const m = Math.floor(ms / 60_000);
    if (m !== minute) {
      const full = new Date(m * 60_000).toISOString(); // ...THH:MM:00.000Z; throws when out of range
      prefix = full.slice(0, full.length - 7);
      minute = m;
    }
    const rest = ms - m * 60_000;
    const sec = Math.floor(rest / 1000);
    const milli = rest - sec * 1000;
    return `${prefix}${sec < 10 ? '0' : ''}${sec}.${milli < 10 ? '00' : milli < 100 ? '0' : ''}${milli}Z`;
  };
}
