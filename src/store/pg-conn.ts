/**
 * A connection held by one batcher for the store's life (pg-batch.ts's writes, pg-lease-batch.ts's claims), in
 * place of a pool checkout per batch: pg-pool's acquire and release cost per query a connection-wait timer set and
 * cleared, an idle timer set and cleared, a `nextTick` and two more promises, and at a few hundred claims a second
 * that weighed on the daemon's main thread (issue 17). A batcher runs one batch on a connection at a time, so a
 * pool had nothing to share.
 *
 * The connection is opened by the first query and again by the first query after it broke: nothing reconnects on
 * its own, so a server that is down costs one refused connect per batch, as with the pool. A query whose
 * connection breaks rejects (its outcome is unknown: the batcher rejects the batch's items), and so does one the
 * driver's `query_timeout` gave up on; either way the connection is dropped, never reused. A server error
 * (`ERROR`: a constraint, a statement timeout) leaves it as it is, with its prepared statements.
 */
import pg from 'pg';
import { BackendError } from './store.js';

/** A query on whatever holds the connection (a pool, a PgConn): one statement, named (prepared) or not. */
export type PgQuery = <R extends pg.QueryResultRow = pg.QueryResultRow>(
  q: pg.QueryConfig,
) => Promise<pg.QueryResult<R>>;

export type PgConn = {
  query: PgQuery;
  /** Ends the connection; later queries are refused. The caller first waits for its queries. */
  close(): Promise<void>;
};

/** `pool.query` as a PgQuery (the paths that keep the pool: single claims, the fallback). */
export const poolQuery =
  (pool: pg.Pool): PgQuery =>
  (q) =>
    pool.query(q);

/** The connection stays usable after a server's ERROR; a FATAL one, or an error of the driver, ends it. */
const keepsConnection = (err: unknown) => err instanceof pg.DatabaseError && err.severity === 'ERROR';

/** A connection of its own with `config` (its timeouts, options); errors while it idles go to `onError`. */
export function pgConn(config: pg.ClientConfig, onError?: (err: Error) => void): PgConn {
  let client: pg.Client | undefined;
  let connecting: Promise<pg.Client> | undefined;
  let closed = false;

  const drop = (c: pg.Client) => {
    if (client === c) client = undefined;
    // Destroys the socket when a query is still out (a read timeout) or it broke; else a clean goodbye.
    c.end().catch(() => {});
  };
  const open = () => {
    connecting ??= (async () => {
      const c = new pg.Client(config);
      c.on('error', (err) => {
        drop(c);
        onError?.(err);
      });
      c.on('end', () => {
        if (client === c) client = undefined;
      });
      try {
        await c.connect();
      } catch (err) {
        drop(c);
        throw err;
      }
      if (closed) {
        drop(c);
        throw new BackendError('store is closed');
      }
      client = c;
      return c;
    })().finally(() => {
      connecting = undefined;
    });
    return connecting;
  };
  const run = <R extends pg.QueryResultRow>(c: pg.Client, q: pg.QueryConfig) =>
    new Promise<pg.QueryResult<R>>((resolve, reject) => {
      // The callback form: the driver makes no promise of its own.
      c.query<R>(q, (err: Error | null, res) => {
        if (!err) return resolve(res);
        if (!keepsConnection(err)) drop(c);
        reject(err);
      });
    });

  return {
    query: <R extends pg.QueryResultRow = pg.QueryResultRow>(q: pg.QueryConfig) => {
      if (closed) return Promise.reject(new BackendError('store is closed'));
      const c = client;
      return c ? run<R>(c, q) : open().then((c) => run<R>(c, q));
    },
    async close() {
      closed = true;
      await connecting?.catch(() => {});
      const c = client;
      client = undefined;
      await c?.end().catch(() => {});
    },
  };
}
