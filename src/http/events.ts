import type { ServerResponse } from 'node:http';
import type { FastifyInstance } from 'fastify';
import { onEventGap } from '../event-gaps.js';
import type { Bus, PlinthEvent } from '../events.js';
import type { Logger } from '../log.js';
import { type Entry, EventRing } from './event-ring.js';
import { sendProblem } from './problem.js';

export { Entry, EventRing } from './event-ring.js';

export type EventsOptions = {
  /** Open streams at most; one more is a 503 with Retry-After (default 64). */
  maxSubscribers?: number;
  /** Bytes a consumer may fall behind before it is dropped (default 1 MiB): the daemon never waits for a reader. */
  maxBacklog?: number;
  /** Events kept for `Last-Event-ID` replay: this many DHCP events and this many others (default 1024 each, and
   * at most 8 MiB of each). */
  replay?: number;
};

const GAP_REASON = "other daemons' events were deleted from the shared log before this daemon read them";

type Subscriber = {
  res: ServerResponse;
  match: (e: PlinthEvent) => boolean;
  /** Whether the stream's `?type=` keeps events of a type (what a replay's loss is told for). */
  wants: (type: string) => boolean;
  /** Its `?machine=` (a replay's loss is told for that machine's events only). */
  machine: string | undefined;
  ip: string;
};

/** `Last-Event-ID` (EventSource sends it when it reconnects) or `?lastEventId=`; anything but a count is none. */
function lastEventId(header: unknown, query: unknown): number | undefined {
  const v = typeof header === 'string' ? header : typeof query === 'string' ? query : undefined;
  return v !== undefined && /^\d{1,15}$/.test(v.trim()) ? Number(v.trim()) : undefined;
}

/**
 * GET /api/v1/events: the bus as Server-Sent Events (machine created/updated/deleted, lease offered/acked/...,
 * boot files rendered and served, render errors, uploads). `?type=lease.` keeps types with that prefix (comma
 * separated for several), `?machine=UUID` one machine's. A comment every 15 s keeps proxies from closing it.
 * Every event gets the daemon's next id whether anyone watches or not; the last `replay` DHCP events are kept and,
 * apart, the last `replay` others (a lease flood does not push machine events out): a client reconnecting with
 * `Last-Event-ID` gets those it missed (matching its filters), after an `event: lost` when the buffer no longer
 * reaches back to its id for a type it asked for (`oldest`: from there on it has them all). One bus listener
 * serves every stream: each event is serialised once, however many watch it, and only when one does (a DHCP flood
 * publishes thousands a second, mostly unwatched); the number of streams is capped.
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
    const wants = (type: string) => types.length === 0 || types.some((t) => type.startsWith(t));
    const match = (e: PlinthEvent) => wants(e.type) && (!machine || e.machine === machine || e.key === machine);
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write(
      `: plinth events, newest id ${ring.last()}, replay of the last ${ring.size} DHCP events and ${ring.size} others\n\n`,
    );
    const sub: Subscriber = { res, match, wants, machine, ip: req.ip };
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
    const { entries, lost, oldest } = ring.since(after, s.wants, s.machine);
    if (lost) {
      const why =
        lost === 'restart'
          ? 'the daemon restarted'
          : lost === 'gap'
            ? GAP_REASON
            : `only the last ${ring.size} DHCP events and the last ${ring.size} others are kept`;
      // No id: the client's Last-Event-ID stays what it was until a real event arrives.
      s.res.write(`event: lost\ndata: ${JSON.stringify({ after, oldest, reason: why })}\n\n`);
    }
    for (const x of entries) send(s, x);
  }

  return { subscribers: () => subs.size, lastId: () => ring.last() };
}
