import type { PlinthEvent } from '../events.js';
import { isUuid } from '../uuid.js';

/** An event's SSE text. */
const frameOf = (id: number, e: PlinthEvent) => `id: ${id}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`;

/**
 * An event with its id; its SSE text is made when a stream first needs it (a live stream or a replay), then kept
 * for every other stream. A DHCP flood publishes several events per exchange, usually with nobody watching:
 * serialising each as it is published cost the packet path a JSON.stringify per event for nothing.
 */
export class Entry {
  private text: string | undefined;
  constructor(
    readonly id: number,
    readonly e: PlinthEvent,
    /** What the ring counts against its byte bound: the text's length, or an estimate of it (see sizeOf). */
    readonly size: number,
    text?: string,
  ) {
    this.text = text;
  }

  frame(): string {
    this.text ??= frameOf(this.id, this.e);
    return this.text;
  }
}

// Strings longer than this are measured by serialising the event: JSON escapes may make a string up to 6 times
// longer, so an estimate may be short by at most this much per field.
const SHORT = 256;

/**
 * The length of an event's SSE text without making it, for the daemon's flat events (a head and a `data` of a
 * few short strings, numbers and booleans: leases, boots, CRUD); undefined for anything else (a machine's
 * callback carries whatever body it posted), which the ring then serialises to count exactly.
 */
function sizeOf(e: PlinthEvent): number | undefined {
  let n = 64 + 2 * e.type.length + e.at.length + (e.key?.length ?? 0) + (e.machine?.length ?? 0);
  if (n > 64 + 4 * SHORT) return undefined;
  const data = e.data as Record<string, unknown> | undefined;
  if (data === undefined) return n;
  for (const k in data) {
    const v = data[k];
    if (typeof v === 'string' && v.length <= SHORT) n += k.length + v.length + 6;
    else if (typeof v === 'number' || typeof v === 'boolean' || v === undefined || v === null) n += k.length + 28;
    else return undefined;
  }
  return n;
}

function exact(id: number, e: PlinthEvent): Entry {
  const text = frameOf(id, e);
  return new Entry(id, e, text.length, text);
}

/**
 * The DHCP server's events: several per exchange, thousands a second under load. They are kept apart from the
 * rest (inventory changes, boots, power, callbacks) so a lease flood cannot push the operator's events out of the
 * replay: an SSE client reconnecting with `?type=machines.` after a busy minute still gets every machine event.
 */
export const isDhcpEvent = (type: string) =>
  type.startsWith('lease.') || type.startsWith('dhcp.') || type.startsWith('proxy.');

/**
 * One bounded buffer: entries in id order (ids not consecutive: the other buffer has the rest), at most `size`
 * of them (0: none, each is evicted as it comes) and `maxBytes` of their text. Circular: pushing evicts the oldest
 * in O(1).
 */
class Buffer {
  private readonly buf: (Entry | undefined)[];
  private readonly keep: boolean;
  /** Index of the oldest entry in buf, and how many are kept. */
  private head = 0;
  private count = 0;
  private bytes = 0;
  constructor(
    size: number,
    private readonly maxBytes: number,
    private readonly evicted: (x: Entry) => void,
  ) {
    this.buf = new Array(Math.max(1, size));
    this.keep = size >= 1;
  }

  push(x: Entry) {
    if (!this.keep) return this.evicted(x);
    if (this.count === this.buf.length) this.evict();
    this.buf[(this.head + this.count) % this.buf.length] = x;
    this.count++;
    this.bytes += x.size;
    while (this.bytes > this.maxBytes && this.count > 1) this.evict();
  }

  private evict() {
    const x = this.buf[this.head]!;
    this.buf[this.head] = undefined;
    this.head = (this.head + 1) % this.buf.length;
    this.count--;
    this.bytes -= x.size;
    this.evicted(x);
  }

  private at(i: number): Entry {
    return this.buf[(this.head + i) % this.buf.length]!;
  }

  /** Entries with an id above `id`, oldest first (a binary search for the first). */
  after(id: number): Entry[] {
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.at(mid).id > id) hi = mid;
      else lo = mid + 1;
    }
    const out: Entry[] = [];
    for (let i = lo; i < this.count; i++) out.push(this.at(i));
    return out;
  }
}

/** Types whose newest evicted id is remembered one by one; past that many (callbacks name their own), as one. */
const MAX_TYPES = 256;

/** Machines (uuids) whose newest evicted id is remembered one by one; past that many, as one. */
const MAX_MACHINES = 16_384;

export type Since = {
  /** What is kept after the id, oldest first (filter it with the stream's own match). */
  entries: Entry[];
  /** Events the client wants may be missing: `restart` (an id this run never gave), `kept` (the buffer no longer
   * reaches back for a type the client wants), `gap` (other daemons' events never reached this one). */
  lost: false | 'restart' | 'kept' | 'gap';
  /** From this id on, every event of the wanted types is in `entries`. */
  oldest: number;
};

/**
 * The last events for `Last-Event-ID` replay: the last `size` DHCP events and, apart, the last `size` others,
 * each at most `maxBytes` of text (a machine's callback may carry a large body: the count alone would not bound
 * memory). Ids are the daemon's, one sequence for every stream and both buffers, from 1 at start: an id this run
 * never gave tells the replay that the daemon restarted. A loss is told per type: the newest evicted id of each
 * type is kept, so a stream of machine events is not told of lost leases it never asked for.
 */
export class EventRing {
  private seq = 0;
  /** The newest id published before events were lost (a gap in the shared log): a client at or before it missed them. */
  private gapAt = 0;
  private readonly dhcp: Buffer;
  private readonly other: Buffer;
  /** The newest evicted id of each type, and of every type past MAX_TYPES. */
  private readonly evicted = new Map<string, number>();
  private evictedRest = 0;
  /** The newest evicted id naming each machine (as `machine` or `key`, uuids only), and past MAX_MACHINES. */
  private readonly evictedMachines = new Map<string, number>();
  private evictedMachinesRest = 0;
  constructor(
    readonly size: number,
    readonly maxBytes = 8 * 1024 * 1024,
  ) {
    this.dhcp = new Buffer(size, maxBytes, (x) => this.dropped(x));
    this.other = new Buffer(size, maxBytes, (x) => this.dropped(x));
  }

  /** An entry no longer kept (or never: no replay), remembered by its type. */
  private dropped(x: Entry) {
    if (this.evicted.has(x.e.type) || this.evicted.size < MAX_TYPES) this.evicted.set(x.e.type, x.id);
    else this.evictedRest = x.id;
    // Leases name no machine (their keys are addresses, a boot's a MAC): a lease flood leaves this map alone.
    if (isUuid(x.e.machine)) this.droppedFor(x.e.machine, x.id);
    if (x.e.key !== x.e.machine && isUuid(x.e.key)) this.droppedFor(x.e.key, x.id);
  }

  private droppedFor(machine: string, id: number) {
    if (this.evictedMachines.has(machine) || this.evictedMachines.size < MAX_MACHINES)
      this.evictedMachines.set(machine, id);
    else this.evictedMachinesRest = id;
  }

  push(e: PlinthEvent): Entry {
    const id = ++this.seq;
    const estimate = sizeOf(e);
    const x = estimate === undefined ? exact(id, e) : new Entry(id, e, estimate);
    (isDhcpEvent(e.type) ? this.dhcp : this.other).push(x);
    return x;
  }

  /** Events that should have come before the next one were lost (the shared log's retention outran this daemon). */
  markGap(): void {
    this.gapAt = this.seq;
  }

  /** The newest id given (0: none yet). */
  last(): number {
    return this.seq;
  }

  /**
   * Entries after `id`, oldest first, and whether events of a type `wants` (default: every type) may be missing:
   * `id` is newer than any given (a client of an earlier run of the daemon), one of those types was evicted after
   * it, or it is from before a gap (markGap). `machine`: the stream's `?machine=`; when it is a uuid, a loss is told
   * only if an event naming that machine was evicted after `id` too (both hold for any event the stream lost, so a
   * real loss is always told; a lease flood alone is not told to one machine's stream).
   */
  since(id: number, wants: (type: string) => boolean = () => true, machine?: string): Since {
    if (id > this.seq) {
      const entries = this.after(0);
      return { entries, lost: 'restart', oldest: entries[0]?.id ?? this.seq + 1 };
    }
    const entries = this.after(id);
    let newestEvicted = this.evictedRest;
    for (const [type, at] of this.evicted) if (at > newestEvicted && wants(type)) newestEvicted = at;
    if (isUuid(machine))
      newestEvicted = Math.min(
        newestEvicted,
        Math.max(this.evictedMachines.get(machine) ?? 0, this.evictedMachinesRest),
      );
    if (newestEvicted > id) return { entries, lost: 'kept', oldest: newestEvicted + 1 };
    if (this.gapAt > 0 && id <= this.gapAt) return { entries, lost: 'gap', oldest: this.gapAt + 1 };
    return { entries, lost: false, oldest: id + 1 };
  }

  /** Both buffers' entries after `id`, merged in id order. */
  private after(id: number): Entry[] {
    const a = this.dhcp.after(id);
    const b = this.other.after(id);
    if (a.length === 0) return b;
    if (b.length === 0) return a;
    const out: Entry[] = [];
    let i = 0;
    let j = 0;
    while (i < a.length && j < b.length) out.push(a[i]!.id < b[j]!.id ? a[i++]! : b[j++]!);
    while (i < a.length) out.push(a[i++]!);
    while (j < b.length) out.push(b[j++]!);
    return out;
  }
}
