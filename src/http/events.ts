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
};

type Subscriber = { res: ServerResponse; match: (e: PlinthEvent) => boolean; ip: string };

/**
 * GET /api/v1/events: the bus as Server-Sent Events (machine created/updated/deleted, lease offered/acked/...,
 * boot files rendered and served, render errors, uploads). `?type=lease.` keeps types with that prefix (comma
 * separated for several), `?machine=UUID` one machine's. A comment every 15 s keeps proxies from closing it.
 * One bus listener serves every stream: each event is serialised once, however many watch it (a DHCP flood
 * publishes thousands a second), and the number of streams is capped.
 */
export function registerEvents(app: FastifyInstance, deps: { bus: Bus; log: Logger } & EventsOptions) {
  const maxSubscribers = deps.maxSubscribers ?? 64;
  const maxBacklog = deps.maxBacklog ?? 1024 * 1024;
  const subs = new Set<Subscriber>();
  let seq = 0;
  let off: (() => void) | undefined;

  const drop = (s: Subscriber) => {
    subs.delete(s);
    if (subs.size === 0) {
      off?.();
      off = undefined;
    }
  };
  const publish = (e: PlinthEvent) => {
    let frame: string | undefined;
    for (const s of subs) {
      if (!s.match(e)) continue;
      if (s.res.writableLength > maxBacklog) {
        deps.log.warn({ ip: s.ip, backlog: s.res.writableLength }, 'events: consumer too slow, dropped');
        drop(s);
        s.res.destroy();
        continue;
      }
      frame ??= `id: ${++seq}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`;
      s.res.write(frame);
    }
  };

  // Open streams never end on their own: a stopping daemon ends them, or it would wait for every watcher.
  app.addHook('preClose', async () => {
    for (const s of subs) s.res.end();
  });
  app.get<{ Querystring: { type?: string; machine?: string } }>('/events', (req, reply) => {
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
    res.write(': plinth events\n\n');
    const sub: Subscriber = { res, match, ip: req.ip };
    subs.add(sub);
    off ??= deps.bus.on(publish);
    const beat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    beat.unref();
    res.on('close', () => {
      drop(sub);
      clearInterval(beat);
    });
  });
  return { subscribers: () => subs.size };
}
