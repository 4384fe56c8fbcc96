import type { ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
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

type Subscriber = { res: ServerResponse; match: (e: PlinthEvent) => boolean; ip: string };

/** An event with its id and its SSE text, made once for every stream and the replay. */
type Entry = { id: number; e: PlinthEvent; frame: string };

/**
 * The last events, at most `size` of them and `maxBytes` of their text (a machine's callback may carry a large
 * body: the count alone would not bound memory). Ids are the daemon's, one sequence for every stream, from 1 at
 * start: an id the ring no longer holds (or one from an earlier run) tells the replay that events were lost.
 */
export class EventRing {
  private buf: Entry[] = [];
  private bytes = 0;
  private seq = 0;
  constructor(
    readonly size: number,
    readonly maxBytes = 8 * 1024 * 1024,
  ) {}

  push(e: PlinthEvent): Entry {
    const id = ++this.seq;
    const x: Entry = { id, e, frame: `id: ${id}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n` };
    this.buf.push(x);
    this.bytes += x.frame.length;
    while (this.buf.length > this.size || (this.bytes > this.maxBytes && this.buf.length > 1)) {
      this.bytes -= this.buf.shift()!.frame.length;
    }
    return x;
  }

  /** The newest id given (0: none yet). */
  last(): number {
    return this.seq;
  }

  /**
   * Entries after `id`, oldest first, and whether some were lost: `id` is older than the oldest kept, or newer
   * than any given (a client of an earlier run of the daemon).
   */
  since(id: number): { entries: Entry[]; lost: boolean } {
    if (id > this.seq) return { entries: [...this.buf], lost: true };
    const oldest = this.buf[0]?.id ?? this.seq + 1;
    return { entries: this.buf.filter((x) => x.id > id), lost: id < oldest - 1 };
  }
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
 * however many watch it (a DHCP flood publishes thousands a second), and the number of streams is capped.
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
    s.res.write(x.frame);
  };
  const off = deps.bus.on((e) => {
    const x = ring.push(e);
    for (const s of subs) send(s, x);
  });

  // Open streams never end on their own: a stopping daemon ends them, or it would wait for every watcher.
  app.addHook('preClose', async () => {
    for (const s of subs) s.res.end();
  });
  app.addHook('onClose', async () => off());
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
      const why = after > ring.last() ? 'the daemon restarted' : `only the last ${ring.size} events are kept`;
      // No id: the client's Last-Event-ID stays what it was until a real event arrives.
      s.res.write(`event: lost\ndata: ${JSON.stringify({ after, oldest, reason: why })}\n\n`);
    }
    for (const x of entries) send(s, x);
  }

  return { subscribers: () => subs.size, lastId: () => ring.last() };
}
