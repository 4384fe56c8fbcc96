import type { ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { onEventGap } from '../event-gaps.js';
import type { Bus, PlinthEvent } from '../events.js';
import type { Logger } from '../log.js';
import { sendProblem } from './problem.js';

export type EventsOptions = {
  /** Open streams at most; one more is a 503 with Retry-After (default 64). */
  maxSubscribers?: number;
  /** Bytes a consumer may fall behind before it is dropped (default 1 MiB): the daemon never waits for a reader. */
  maxBacklog?: number;
  /** Events kept for `Last-Event-ID` replay (default 1024, and at most 8 MiB of them). */
  replay?: number;
};

const GAP_REASON = "other daemons' events were deleted from the shared log before this daemon read them";

type Subscriber = { res: ServerResponse; match: (e: PlinthEvent) => boolean; ip: string };

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
    this.text ??= `id: ${this.id}\nevent: ${this.e.type}\ndata: ${JSON.stringify(this.e)}\n\n`;
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

/**
 * The last events, at most `size` of them and `maxBytes` of their text (a machine's callback may carry a large
 * body: the count alone would not bound memory). Ids are the daemon's, one sequence for every stream, from 1 at
 * start: an id the ring no longer holds (or one from an earlier run) tells the replay that events were lost.
 * A circular buffer: pushing evicts the oldest in O(1) (Array.shift moved all 1,024 entries, per event).
 */
export class EventRing {
  private readonly buf: (Entry | undefined)[];
  /** Index of the oldest entry in buf, and how many are kept. */
  private head = 0;
  private count = 0;
  private bytes = 0;
  private seq = 0;
  /** The newest id published before events were lost (a gap in the shared log): a client at or before it missed them. */
  private gapAt = 0;
  constructor(
    readonly size: number,
    readonly maxBytes = 8 * 1024 * 1024,
  ) {
    this.buf = new Array(Math.max(1, size));
  }

  push(e: PlinthEvent): Entry {
    const id = ++this.seq;
    const estimate = sizeOf(e);
    const x = estimate === undefined ? exact(id, e) : new Entry(id, e, estimate);
    if (this.size < 1) return x; // no replay kept
    if (this.count === this.buf.length) this.evict();
    this.buf[(this.head + this.count) % this.buf.length] = x;
    this.count++;
    this.bytes += x.size;
    while (this.bytes > this.maxBytes && this.count > 1) this.evict();
    return x;
  }

  private evict() {
    const x = this.buf[this.head]!;
    this.buf[this.head] = undefined;
    this.head = (this.head + 1) % this.buf.length;
    this.count--;
    this.bytes -= x.size;
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
   * Entries after `id`, oldest first, and whether some were lost: `id` is older than the oldest kept, newer than
   * any given (a client of an earlier run of the daemon), or from before a gap (markGap).
   */
  since(id: number): { entries: Entry[]; lost: boolean } {
    // Kept ids are consecutive, the newest being seq: the one after `id` sits at a known offset.
    const oldest = this.seq - this.count + 1;
    const from = id > this.seq ? 0 : Math.max(0, id + 1 - oldest);
    const entries: Entry[] = [];
    for (let i = from; i < this.count; i++) entries.push(this.buf[(this.head + i) % this.buf.length]!);
    return { entries, lost: id > this.seq || id < oldest - 1 || (this.gapAt > 0 && id <= this.gapAt) };
  }
}

function exact(id: number, e: PlinthEvent): Entry {
  const text = `id: ${id}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`;
  return new Entry(id, e, text.length, text);
}

/** `Last-Event-ID` (EventSource sends it when it reconnects) or `?lastEventId=`; anything but a count is none. */
function lastEventId(header: unknown, query: unknown): number | undefined {
  const v = typeof header === 'string' ? header : typeof query === 'string' ? query : undefined;
  return v !== undefined && /^\d{1,15}$/.test(v.trim()) ? Number(v.trim()) : undefined;
}

/**
 * GET /api/v1/events: the bus as Server-Sent Events (machine created/updated/deleted, lease offered/acked/...,
 * boot files rendered and served, render errors, uploads). `?type=lease.` keeps types with that prefix (comma
 * separated for several), `?machine=UUID` one machine's. A comment every 15 s keeps proxies from closing it.
 * Every event gets the daemon's next id whether anyone watches or not, and the last `replay` are kept: a client
 * reconnecting with `Last-Event-ID` gets those it missed (matching its filters), after an `event: lost` when the
 * buffer no longer reaches back to its id. One bus listener serves every stream: each event is serialised once,
 * however many watch it, and only when one does (a DHCP flood publishes thousands a second, mostly unwatched);
 * the number of streams is capped.
 */
export function registerEvents(app: FastifyInstance, deps: { bus: Bus; log: Logger } & EventsOptions) {
  const maxSubscribers = deps.maxSubscribers ?? 64;
  const maxBacklog = deps.maxBacklog ?? 1024 * 1024;
  const ring = new EventRing(deps.replay ?? 1024);
  const subs = new Set<Subscriber>();

  const drop = (s: Subscriber) => {
    subs.delete(s);
  };
  const send = (s: Subscriber, x: Entry) => {
    if (!s.match(x.e)) return;
    if (s.res.writableLength > maxBacklog) {
      deps.log.warn({ ip: s.ip, backlog: s.res.writableLength }, 'events: consumer too slow, dropped');
      drop(s);
      s.res.destroy();
      return;
    }
    s.res.write(x.frame());
  };
  const off = deps.bus.on((e) => {
    const x = ring.push(e);
    for (const s of subs) send(s, x);
  });
  // Other daemons' events this daemon never got (src/event-gaps.ts): every stream is told, as a replay that no
  // longer reaches back is, and so is a client reconnecting later from before the gap.
  const offGap = onEventGap(deps.bus, () => {
    ring.markGap();
    const data = JSON.stringify({ after: ring.last(), oldest: ring.last() + 1, reason: GAP_REASON });
    for (const s of subs) s.res.write(`event: lost\ndata: ${data}\n\n`);
  });

  // Open streams never end on their own: a stopping daemon ends them, or it would wait for every watcher.
  app.addHook('preClose', async () => {
    for (const s of subs) s.res.end();
  });
  app.addHook('onClose', async () => {
    off();
    offGap();
  });
  app.get<{ Querystring: { type?: string; machine?: string; lastEventId?: string } }>('/events', (req, reply) => {
    if (subs.size >= maxSubscribers) {
      return sendProblem(
        reply.header('retry-after', '10'),
        503,
        `${subs.size} event streams are open, the most this daemon serves: close one or retry later`,
      );
    }
    const types = (req.query.type ?? '').split(',').filter(Boolean);
    const machine = req.query.machine;
    const match = (e: PlinthEvent) =>
      (types.length === 0 || types.some((t) => e.type.startsWith(t))) &&
      (!machine || e.machine === machine || e.key === machine);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write(`: plinth events, newest id ${ring.last()}, replay of the last ${ring.size}\n\n`);
    const sub: Subscriber = { res, match, ip: req.ip };
    const after = lastEventId(req.headers['last-event-id'], req.query.lastEventId);
    if (after !== undefined) replay(sub, after);
    subs.add(sub);
    const beat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    beat.unref();
    res.on('close', () => {
      drop(sub);
      clearInterval(beat);
    });
  });

  /** Synchronous with the subscription: no event can fall between the replay and the live stream. */
  function replay(s: Subscriber, after: number) {
    const { entries, lost } = ring.since(after);
    if (lost) {
      const oldest = entries[0]?.id ?? ring.last() + 1;
      const why =
        after > ring.last()
          ? 'the daemon restarted'
          : after >= oldest - 1
            ? GAP_REASON
            : `only the last ${ring.size} events are kept`;
      // No id: the client's Last-Event-ID stays what it was until a real event arrives.
      s.res.write(`event: lost\ndata: ${JSON.stringify({ after, oldest, reason: why })}\n\n`);
    }
    for (const x of entries) send(s, x);
  }

  return { subscribers: () => subs.size, lastId: () => ring.last() };
}
