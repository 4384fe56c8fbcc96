/**
 * The PostgreSQL backend of the Store, for several daemons sharing one inventory (issue 17): a connection pool,
 * migrations applied at open under an advisory lock (pg-migrations.ts), statements with SQLite's semantics
 * (pg-docs.ts) and putBatched's group commit (pg-batch.ts). Durability is the server's: a write resolves after
 * its COMMIT is acknowledged (synchronous_commit on, PostgreSQL's default).
 */
import pg from 'pg';
import { pgExpireLeases } from './lease-expiry.js';
import { pgBatchWriter } from './pg-batch.js';
import { pgConn } from './pg-conn.js';
import { kindOk, pgDocStatements } from './pg-docs.js';
import { eventChannel, type FollowOptions, pgEventLog } from './pg-events.js';
import { pgFreeLeaseAddresses } from './pg-free.js';
import { buildPgIndexes, type IndexBuild, type IndexBuildNote } from './pg-index-build.js';
import { pgLeadership } from './pg-leader.js';
import { pgLeaseChanges } from './pg-lease-changes.js';
import { type ClaimsInFlight, pgLeaseClaims } from './pg-leases.js';
import { migratePg, missingPgIndexes } from './pg-migrations.js';
import { asStoreError, BackendError, type LeadershipOptions, type Store, StoreError } from './store.js';

export type PgOptions = {
  /** Schema for every table (search_path); tests give each file its own. Default: the server's search_path. */
  schema?: string;
  /** Pool size (default 10). */
  max?: number;
  /** How long a request waits for a connection before it fails with a BackendError, in ms (default 5000). */
  connectTimeoutMs?: number;
  /**
   * How long a query may go unanswered before it fails with a BackendError, in ms (default 10000): a server that
   * stops answering without a reset (a partition, a frozen server) must not hang an API request or a DHCP
   * exchange. The server cancels a statement after `statementTimeoutMs` (default 8000) itself, so a slow but
   * reachable server reports its own error first; the client's limit catches the unreachable one.
   */
  queryTimeoutMs?: number;
  statementTimeoutMs?: number;
  /** Called with errors of idle connections (the server restarted, the network dropped); default: ignored. */
  onIdleError?: (err: Error) => void;
  /**
   * This daemon's serverId, recorded with each event it appends and each lease its sweep marks (default 'plinth').
   * Given, the lease rows that name it are left out of `leaseChanges` (its own writes); not given, none are.
   */
  serverId?: string;
  /** Rows a `leaseChanges` call returns at most (default LEASE_PAGE_SIZE, pg-lease-changes.ts). */
  leasePageSize?: number;
  /** Lease claim batches in flight at once (default CLAIMS_IN_FLIGHT, pg-leases.ts); 1 and 1: one at a time. */
  claimsInFlight?: ClaimsInFlight;
  /** The event follower's probe and reconnect pacing, and where its connection errors go. */
  follow?: FollowOptions;
  /** Hears the background build of an upgrade's indexes (pg-index-build.ts), for the log; default: nothing. */
  onIndexBuild?: (n: IndexBuildNote) => void;
};

export type PgStore = Store & {
  schemaVersion: number;
  backend: 'postgres';
  pool: pg.Pool;
  /** Settles when the background build of an upgrade's indexes ended (at once when there was none to build). */
  indexesBuilt: Promise<void>;
};

const schemaRe = /^[a-z_][a-z0-9_]*$/;

/** The URL without its password, for logs and errors. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparsable URL)';
  }
}

// Driver errors leave the store as StoreErrors: a lost connection, a refused one, a server shutting down are
// BackendErrors (the API answers 503), and carry no stack or driver object.
function guard<T>(p: Promise<T>): Promise<T> {
  return p.catch((err: unknown) => {
    throw asStoreError(err);
  });
}

/**
 * The client config with one more server option. The URL's own `options` parameter wins over the config's in the
 * driver, so the option joins it there; a URL that does not parse keeps the config as it is (durable offers).
 */
export function withOption(url: string, config: pg.ClientConfig, option: string): pg.ClientConfig {
  try {
    const u = new URL(url);
    u.searchParams.set('options', [u.searchParams.get('options'), config.options, option].filter(Boolean).join(' '));
    return { ...config, connectionString: u.toString() };
  } catch {
    return config;
  }
}

/**
 * The leader connection's server settings: the server ends a silent holder's session (and frees the lock) after
 * `sessionTimeoutMs`, by `idle_session_timeout` (PostgreSQL 14 and later) and by TCP keepalive (any version; a
 * keepalive counts from the last traffic, so it frees the lock a second later still).
 */
function leaderOptions(o: LeadershipOptions, serverVersion: number): string {
  const ms = o.sessionTimeoutMs ?? 15_000;
  const keepalive = `-c tcp_keepalives_idle=${Math.ceil(ms / 1000)} -c tcp_keepalives_interval=1 -c tcp_keepalives_count=1`;
  return serverVersion >= 140000 ? `-c idle_session_timeout=${ms} ${keepalive}` : keepalive;
}

export async function openPgStore(url: string, opts: PgOptions = {}): Promise<PgStore> {
  if (opts.schema !== undefined && !schemaRe.test(opts.schema)) throw new StoreError(`bad schema name ${opts.schema}`);
  const page = opts.leasePageSize;
  if (page !== undefined && !(Number.isInteger(page) && page >= 1))
    throw new StoreError(`leasePageSize ${page}: a whole number of rows, at least 1`);
  const baseConfig: pg.ClientConfig = {
    connectionString: url,
    connectionTimeoutMillis: opts.connectTimeoutMs ?? 5000,
    // Keepalive probes find a dead peer of an idle connection (the pool's, the event follower's) within about a
    // minute instead of the kernel's two hours.
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    application_name: 'plinth',
    ...(opts.schema ? { options: `-c search_path=${opts.schema}` } : {}),
  };
  const clientConfig: pg.ClientConfig = {
    ...baseConfig,
    query_timeout: opts.queryTimeoutMs ?? 10_000,
    statement_timeout: opts.statementTimeoutMs ?? 8000,
  };
  const pool = new pg.Pool({ ...clientConfig, max: opts.max ?? 10 });
  // An idle connection the server drops emits 'error' on the pool; unhandled, it would end the process.
  pool.on('error', (err) => opts.onIdleError?.(err));
  let schemaVersion: number;
  // The schema the tables live in, as the server resolved search_path (from `schema` or the URL's options): one
  // inventory per schema, so one event channel per schema.
  let schema: string;
  let serverVersion = 0;
  let missing = false;
  // Migrations on a connection of their own without the query timeouts: one may rewrite a large table, or wait
  // for another daemon's.
  const m = new pg.Client(baseConfig);
  m.on('error', () => {});
  try {
    await m.connect();
    try {
      schemaVersion = await migratePg(m);
      missing = (await missingPgIndexes(m)).length > 0;
      const r = await m.query<{ s: string; v: string }>(
        "SELECT current_schema() AS s, current_setting('server_version_num') AS v",
      );
      schema = r.rows[0]!.s;
      serverVersion = Number(r.rows[0]!.v);
    } finally {
      await m.end().catch(() => {});
    }
  } catch (err) {
    await m.end().catch(() => {});
    await pool.end().catch(() => {});
    if (err instanceof StoreError) throw err;
    throw new BackendError(`PostgreSQL at ${redactUrl(url)}: ${(err as Error).message}`);
  }

  // An upgrade's indexes, built after the migrations' COMMIT without holding lease writes (pg-index-build.ts).
  const build: IndexBuild | undefined = missing ? buildPgIndexes(baseConfig, opts.onIndexBuild) : undefined;
  const channel = eventChannel(schema === 'public' ? undefined : schema);
  const docs = pgDocStatements(pool, { serverId: opts.serverId ?? 'plinth', channel });
  const events = pgEventLog(pool, clientConfig, channel, opts.follow);
  // The batchers hold connections of their own (pg-conn.ts), not the pool's: no checkout per batch.
  const conn = (config: pg.ClientConfig) => () => pgConn(config, opts.onIdleError);
  const batches = pgBatchWriter(conn(clientConfig)());
  // Offers are claimed on connections of their own with synchronous_commit off: an offer's hold is 30 s and a lost
  // one costs nothing (the client's REQUEST is claimed durably, or it DISCOVERs again), so the OFFER need not wait
  // for the WAL flush. ACKs, releases and everything else are durable at COMMIT.
  const offerConfig = withOption(url, clientConfig, '-c synchronous_commit=off');
  const offerPool = new pg.Pool({ ...offerConfig, max: 4 });
  offerPool.on('error', (err) => opts.onIdleError?.(err));
  const claims = pgLeaseClaims(
    pool,
    offerPool,
    { durable: conn(clientConfig), offers: conn(offerConfig) },
    opts.claimsInFlight,
  );
  const expire = pgExpireLeases(pool, opts.serverId ?? 'plinth', channel);
  const changes = pgLeaseChanges(pool, opts.serverId, opts.leasePageSize);
  const free = pgFreeLeaseAddresses(pool);
  let closed: Promise<void> | undefined;
  return {
    backend: 'postgres',
    schemaVersion,
    pool,
    indexesBuilt: build?.done ?? Promise.resolve(),
    events: {
      since: (id, limit) => guard(events.since(id, limit)),
      last: () => guard(events.last()),
      follow: events.follow,
      prune: (o) => guard(events.prune(o)),
    },
    leadership: (o = {}) =>
      pgLeadership(
        withOption(url, { ...baseConfig, application_name: 'plinth-leader' }, leaderOptions(o, serverVersion)),
        o.onError || !opts.onIdleError ? o : { ...o, onError: opts.onIdleError },
      ),
    expireLeases: (before, o) => guard(expire(before, o)),
    leaseChanges: (cursor) => guard(changes(cursor)),
    get: (kind, key) => guard(docs.get(kind, key)),
    getMany: (kind, keys) => guard(docs.getMany(kind, keys)),
    list: (kind, q = {}) => guard(docs.list(kind, q)),
    keyOf: (kind, field, value) => guard(docs.keyOf(kind, field, value)),
    create: (kind, key, doc, uniques = [], o = {}) => guard(docs.create(kind, key, doc, uniques, o)),
    replace: (kind, key, doc, uniques = [], o = {}) => guard(docs.replace(kind, key, doc, uniques, o)),
    remove: (kind, key, o = {}) => guard(docs.remove(kind, key, o)),
    putBatched: (kind, key, doc) =>
      batches.put(() => {
        // Refused alone: in the batch's statement it would fail every write gathered with it.
        if (key.includes('\0')) throw new BackendError('a key cannot hold a NUL character');
        return { kind: kindOk(kind), key, json: doc === null ? null : JSON.stringify(doc) };
      }),
    claimLease: (c) => guard(claims.claim(c)),
    freeLeaseAddresses: (q) => guard(free(q)),
    sharedLeases: true,
    ping: () =>
      pool.query('SELECT 1').then(
        () => true,
        () => false,
      ),
    close() {
      closed ??= (async () => {
        await build?.stop();
        await batches.close();
        await claims.close();
        await offerPool.end();
        await pool.end();
      })();
      return closed;
    },
  };
}
