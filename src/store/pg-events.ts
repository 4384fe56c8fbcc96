/**
 * The PostgreSQL store's event log (issue 17): what every daemon on a shared inventory reads to learn of the
 * changes the others made. An event is appended in the transaction of the change it describes, with
 * `pg_notify` as the doorbell (delivered at COMMIT, never for a rolled-back change). A follower listens on a
 * connection of its own and, on every notification and after every (re)connect, reads `id > last seen`:
 * NOTIFY alone is lost while a connection is down, the table is not. A probe query every few seconds finds a
 * connection that died silently.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { jsonbCopy } from './pg-docs.js';
import type { ChangeEvent, EventLog, LoggedEvent } from './store.js';

/** The NOTIFY channel of a schema's event log (one inventory per schema), within PostgreSQL's 63 bytes. */
export function eventChannel(schema?: string): string {
  if (!schema) return 'plinth_events';
  const name = `plinth_events_${schema}`;
  return name.length <= 63 ? name : `plinth_events_${createHash('sha256').update(schema).digest('hex').slice(0, 32)}`;
}

/**
 * Appends `ev` inside the caller's transaction. The advisory lock, held until COMMIT, makes event-writing
 * transactions commit one at a time, so ids become visible in increasing order: a follower that saw id N
 * never later meets a smaller id it skipped. Changes with events are API writes, a few a second.
 */
export async function appendEvent(c: pg.ClientBase, serverId: string, channel: string, ev: ChangeEvent) {
  const data = ev.data === undefined ? null : JSON.stringify(ev.data);
  await c.query({
    name: 'plinth-event-append',
    text: `WITH l AS (SELECT pg_advisory_xact_lock(hashtext('plinth-events:' || current_schema()))),
      i AS (INSERT INTO events (server_id, type, key, data) SELECT $1, $2, $3, $4::jsonb FROM l RETURNING id)
      SELECT pg_notify($5, id::text) FROM i`,
    values: [serverId, ev.type, ev.key ?? null, data === null ? null : (jsonbCopy(data) ?? data), channel],
  });
}

type Row = { id: string; at: Date; server_id: string; type: string; key: string | null; data: unknown };
const toEvent = (r: Row): LoggedEvent => ({
  id: Number(r.id),
  at: r.at.toISOString(),
  serverId: r.server_id,
  type: r.type,
  ...(r.key === null ? {} : { key: r.key }),
  ...(r.data === null ? {} : { data: r.data }),
});
const SINCE = 'SELECT id, at, server_id, type, key, data FROM events WHERE id > $1 ORDER BY id LIMIT $2';

export type FollowOptions = {
  /** Probe of the listening connection, in ms (default 5000). */
  probeMs?: number;
  /** Longest wait between reconnect attempts, in ms (default 5000). */
  maxBackoffMs?: number;
  onError?: (err: Error) => void;
};

export function pgEventLog(pool: pg.Pool, clientConfig: pg.ClientConfig, channel: string, o: FollowOptions = {}) {
  const log: EventLog = {
    async since(id, limit = 500) {
      const r = await pool.query<Row>({ name: 'plinth-events-since', text: SINCE, values: [id, limit] });
      return r.rows.map(toEvent);
    },
    async last() {
      const r = await pool.query<{ id: string | null }>('SELECT max(id) AS id FROM events');
      return Number(r.rows[0]?.id ?? 0);
    },
    follow: (from, onEvent) => follow(clientConfig, channel, from, onEvent, o),
  };
  return log;
}

function follow(
  cfg: pg.ClientConfig,
  channel: string,
  from: number,
  onEvent: (e: LoggedEvent) => void,
  o: FollowOptions,
): { close(): Promise<void> } {
  let last = from;
  let client: pg.Client | undefined;
  let closed = false;
  let draining = false;
  let again = false;
  let backoff = 100;
  let probe: NodeJS.Timeout | undefined;
  let retry: NodeJS.Timeout | undefined;

  // One reader at a time; a doorbell rung while it reads makes it read once more.
  const drain = async () => {
    if (draining) {
      again = true;
      return;
    }
    draining = true;
    try {
      do {
        again = false;
        for (;;) {
          const c = client;
          if (!c || closed) return;
          const r = await c.query<Row>({ text: SINCE, values: [last, 500] });
          for (const row of r.rows) {
            const e = toEvent(row);
            last = e.id;
            onEvent(e);
          }
          if (r.rows.length < 500) break;
        }
      } while (again);
    } catch (err) {
      lost(err as Error);
    } finally {
      draining = false;
    }
  };

  const lost = (err: Error) => {
    if (closed) return;
    o.onError?.(err);
    const c = client;
    client = undefined;
    clearInterval(probe);
    c?.removeAllListeners();
    c?.on('error', () => {});
    void c?.end().catch(() => {});
    clearTimeout(retry);
    retry = setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, o.maxBackoffMs ?? 5000);
  };

  const connect = async () => {
    if (closed) return;
    const c = new pg.Client(cfg);
    c.on('error', (err) => lost(err));
    c.on('end', () => lost(new Error('event connection ended')));
    c.on('notification', () => void drain());
    try {
      await c.connect();
      await c.query(`LISTEN "${channel}"`);
    } catch (err) {
      client = c;
      return lost(err as Error);
    }
    if (closed) return void c.end().catch(() => {});
    client = c;
    backoff = 100;
    probe = setInterval(() => c.query('SELECT 1').catch((err: Error) => lost(err)), o.probeMs ?? 5000).unref();
    // Whatever was written while no connection listened.
    void drain();
  };
  void connect();

  return {
    async close() {
      closed = true;
      clearInterval(probe);
      clearTimeout(retry);
      const c = client;
      client = undefined;
      c?.removeAllListeners();
      c?.on('error', () => {});
      await c?.end().catch(() => {});
    },
  };
}
