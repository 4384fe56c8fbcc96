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
import type { ChangeEvent, EventGap, EventLog, LoggedEvent } from './store.js';

/** The NOTIFY channel of a schema's event log (one inventory per schema), within PostgreSQL's 63 bytes. */
export function eventChannel(schema?: string): string {
  if (!schema) return 'plinth_events';
  const name = `plinth_events_${schema}`;
  return name.length <= 63 ? name : `plinth_events_${createHash('sha256').update(schema).digest('hex').slice(0, 32)}`;
}

/**
 * Appends `ev` inside the caller's transaction: an API write's event (appendEvents, one of them).
 */
export function appendEvent(c: pg.ClientBase, serverId: string, channel: string, ev: ChangeEvent) {
  return appendEvents(c, serverId, channel, [ev]);
}

/**
 * Appends `evs` inside the caller's transaction, in order, with one doorbell (a follower reads everything after its
 * last seen id on any notification). The advisory lock, held until COMMIT, makes event-writing transactions commit
 * one at a time, so ids become visible in increasing order: a follower that saw id N never later meets a smaller id
 * it skipped. Changes with events are API writes (a few a second) and the leader's lease sweeps.
 */
export async function appendEvents(c: pg.ClientBase, serverId: string, channel: string, evs: ChangeEvent[]) {
  if (!evs.length) return;
  const data = evs.map((e) => (e.data === undefined ? null : JSON.stringify(e.data)));
  await c.query({
    name: 'plinth-event-append',
    text: `WITH l AS (SELECT pg_advisory_xact_lock(hashtext('plinth-events:' || current_schema()))),
      i AS (INSERT INTO events (server_id, type, key, data)
        SELECT $1, t, k, d::jsonb FROM l, unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS u(t, k, d, n)
        ORDER BY n RETURNING id)
      SELECT pg_notify($5, max(id)::text) FROM i`,
    values: [
      serverId,
      evs.map((e) => e.type),
      evs.map((e) => e.key ?? null),
      data.map((d) => (d === null ? null : (jsonbCopy(d) ?? d))),
      channel,
    ],
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

// Retention: ids at or below both the newest id outside the newest $1 and the newest id older than $2 go, oldest
// first, at most $3. Ids grow in commit order (appendEvent's lock), so this cuts a prefix of the log: a follower
// whose last seen id is below the oldest kept may have missed some (follow's onGap).
const PRUNE = `WITH by_count AS (SELECT id FROM events ORDER BY id DESC OFFSET $1 LIMIT 1),
  by_age AS (SELECT id FROM events WHERE at < now() - $2::interval ORDER BY id DESC LIMIT 1),
  doomed AS (SELECT id FROM events WHERE id <= (SELECT id FROM by_count) AND id <= (SELECT id FROM by_age)
    ORDER BY id LIMIT $3)
  DELETE FROM events WHERE id IN (SELECT id FROM doomed)`;

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
    follow: (from, onEvent, onGap) => follow(clientConfig, channel, from, onEvent, onGap, o),
    async prune({ maxAgeMs, keep, batch = 10_000 }) {
      const r = await pool.query({
        text: PRUNE,
        values: [Math.max(0, Math.floor(keep)), `${Math.floor(maxAgeMs)} milliseconds`, batch],
      });
      return r.rowCount ?? 0;
    },
  };
  return log;
}

function follow(
  cfg: pg.ClientConfig,
  channel: string,
  from: number,
  onEvent: (e: LoggedEvent) => void,
  onGap: ((g: EventGap) => void) | undefined,
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
          // Ids skip a number only for a rolled-back append, or when retention deleted what this follower had
          // not read yet (it was away longer than the window): then the oldest id kept is past the last seen.
          const first = r.rows[0] ? Number(r.rows[0].id) : undefined;
          if (first !== undefined && first > last + 1 && onGap) {
            const m = await c.query<{ id: string | null }>('SELECT min(id) AS id FROM events');
            const oldest = Number(m.rows[0]?.id ?? first);
            if (oldest > last + 1) onGap({ after: last, oldest });
          }
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
