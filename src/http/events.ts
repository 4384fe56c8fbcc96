import type { FastifyInstance } from 'fastify';
import type { Bus, PlinthEvent } from '../events.js';
import type { Logger } from '../log.js';
import { API } from './app.js';

/** Bytes a consumer may fall behind before it is dropped: the daemon never waits for a slow reader. */
const MAX_BACKLOG = 1024 * 1024;

/**
 * GET /api/v1/events: the bus as Server-Sent Events (machine created/updated/deleted, lease offered/acked/...,
 * boot files rendered and served, render errors, uploads). `?type=lease.` keeps types with that prefix (comma
 * separated for several), `?machine=UUID` one machine's. A comment every 15 s keeps proxies from closing it.
 */
export function registerEvents(app: FastifyInstance, deps: { bus: Bus; log: Logger }) {
  // Open streams never end on their own: a stopping daemon ends them, or it would wait for every watcher.
  const open = new Set<import('node:http').ServerResponse>();
  app.addHook('preClose', async () => {
    for (const res of open) res.end();
  });
  app.get<{ Querystring: { type?: string; machine?: string } }>(`${API}/events`, (req, reply) => {
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
    let id = 0;
    const off = deps.bus.on((e) => {
      if (!match(e)) return;
      if (res.writableLength > MAX_BACKLOG) {
        deps.log.warn({ ip: req.ip, backlog: res.writableLength }, 'events: consumer too slow, dropped');
        off();
        res.destroy();
        return;
      }
      res.write(`id: ${++id}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
    });
    const beat = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
    beat.unref();
    open.add(res);
    res.on('close', () => {
      open.delete(res);
      off();
      clearInterval(beat);
    });
  });
}
