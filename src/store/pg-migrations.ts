/**
 * The PostgreSQL store's schema migrations: versioned like SQLite's (migrations.ts) but numbered on their own,
 * since the two dialects' histories differ (PostgreSQL starts at what SQLite reached in five steps). Several
 * daemons may start at once on one database: each applies what is missing under one advisory lock, so exactly
 * one of them runs a migration and the others find it applied. Never change what a released migration leaves in
 * a schema: append one. (v4-v6 were rewritten, their indexes moved to PgIndex, so that an upgrade builds them
 * without stopping lease writes; what a schema at each version holds is what it held before.)
 */
import type pg from 'pg';
import { type KINDS, StoreError } from './store.js';

// The kinds v1 created: frozen here, since KINDS grows and a released migration must not change.
const V1_KINDS = [
  'machines',
  'bootenvs',
  'templates',
  'subnets',
  'reservations',
  'leases',
  'profiles',
  'params',
  'prefs',
  'tokens',
  'boots',
  'files',
  'audit',
  'rollouts',
  'daemons',
] as const;

// The same fields SQLite indexes (its migrations v1-v5): the API's common filters. An expression index on
// `doc -> 'f'` serves the list filter `doc -> 'f' = $1::jsonb` (pg-docs.ts). Leases get only mac and state: the
// DHCP server writes one per ACK and never filters them in SQL.
const indexed: Partial<Record<(typeof KINDS)[number], string[]>> = {
  machines: ['name', 'bootEnv', 'address', 'arch'],
  leases: ['mac', 'state'],
  reservations: ['mac', 'subnet'],
  boots: ['machine'],
  audit: ['at', 'who'],
  rollouts: ['createdAt'],
};

/**
 * Each kind a table: `doc` (JSONB) for filters and sorts, `body` the JSON text exactly as written (what reads
 * return, so responses and etags are byte-for-byte those of SQLite; JSONB reorders keys), `etag` of `body`.
 * Keys and unique values sort and compare by bytes (COLLATE "C"), as in SQLite, whatever the cluster's locale.
 */
function v1(): string {
  const parts: string[] = [];
  for (const kind of V1_KINDS) {
    parts.push(
      `CREATE TABLE ${kind} (key text COLLATE "C" PRIMARY KEY, doc jsonb NOT NULL, body text NOT NULL, etag text NOT NULL);`,
    );
    for (const f of indexed[kind] ?? []) parts.push(`CREATE INDEX ${kind}_${f} ON ${kind} ((doc -> '${f}'), key);`);
  }
  // A unique value belongs to one key by constraint, not by a read-then-write in code: two daemons creating
  // machines with the same MAC at the same moment cannot both succeed.
  parts.push(`CREATE TABLE uniq (
    kind text NOT NULL, field text COLLATE "C" NOT NULL, value text COLLATE "C" NOT NULL, key text COLLATE "C" NOT NULL,
    PRIMARY KEY (kind, field, value));`);
  parts.push('CREATE INDEX uniq_owner ON uniq (kind, key);');
  return parts.join('\n');
}

// v2: the event log every daemon follows (pg-events.ts): appended in the same transaction as the change it
// describes, under a transaction-scoped advisory lock so ids commit in increasing order and a reader's
// `id > last seen` never skips one that committed late.
const v2 = `CREATE TABLE events (
  id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), server_id text NOT NULL,
  type text NOT NULL, key text, data jsonb);`;

// etagOf (batch.mjs) in SQL: the first 22 characters of the SHA-256 in base64url, for rows rewritten here.
const sqlEtag = (text: string) =>
  `left(translate(encode(sha256(convert_to(${text}, 'UTF8')), 'base64'), '+/', '-_'), 22)`;

// v3: one offered/bound lease per client and subnet, by constraint (issue 17: several daemons on one subnet).
// Deferred to COMMIT, so claimLease (pg-leases.ts) can write the new row and release the client's old one in one
// statement in either order; two daemons giving one client two addresses at once: one COMMIT fails. Rows from
// before that break it (a client's lease that ended by time while still 'bound', then a new one) keep the
// newest; the others become 'expired', which is what they are.
const v3 = `WITH ranked AS (
  SELECT key, row_number() OVER (PARTITION BY doc ->> 'subnet', coalesce(doc ->> 'clientId', doc ->> 'mac')
    ORDER BY doc ->> 'expiresAt' DESC, key) AS n
  FROM leases WHERE doc ->> 'state' IN ('offered', 'bound')
), fixed AS (
  SELECT l.key, l.doc || '{"state": "expired"}'::jsonb AS d FROM leases l JOIN ranked r USING (key) WHERE r.n > 1
)
UPDATE leases SET doc = fixed.d, body = fixed.d::text, etag = ${sqlEtag('fixed.d::text')} FROM fixed WHERE leases.key = fixed.key;
ALTER TABLE leases ADD CONSTRAINT leases_live_client EXCLUDE USING btree (
  (doc ->> 'subnet') WITH =, (coalesce(doc ->> 'clientId', doc ->> 'mac')) WITH =
) WHERE (doc ->> 'state' IN ('offered', 'bound')) DEFERRABLE INITIALLY DEFERRED;`;

// v4: the transaction that last wrote each lease row (pg-lease-changes.ts), so every daemon's index can follow the
// rows the others write. A trigger, since the claim statements' ON CONFLICT DO UPDATE and every other lease write
// would each have to set it; rows from before keep 0 (visible in every snapshot: never a change). xid8 and
// pg_visible_in_snapshot: PostgreSQL 13 and later.
const v4 = `ALTER TABLE leases ADD COLUMN tx xid8 NOT NULL DEFAULT '0';
CREATE FUNCTION plinth_lease_tx() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.tx := pg_current_xact_id(); RETURN NEW; END $$;
CREATE TRIGGER leases_tx BEFORE INSERT OR UPDATE ON leases FOR EACH ROW EXECUTE FUNCTION plinth_lease_tx();`;
// v4 also indexed tx alone (leases_tx), which v5 replaced: an upgrade from v3 no longer builds it to drop it.
// Schemas that had it lose it at v5 as before, so every schema ends the same (see PgIndex).

// v5: the catch-up read pages by (tx, key) (pg-lease-changes.ts): one index range scan in that order, stopping
// after a page, where an index on tx alone would read every changed row and sort them. It serves what the tx
// index did, which goes (one index fewer to write per lease row).
const v5 = 'DROP INDEX IF EXISTS leases_tx;';
const v5Index = { name: 'leases_tx_key', def: 'ON leases (tx, key)' };

// v6: the leader's sweep (lease-expiry.ts) reads the live leases whose time ran out, every 10 s. Without an index
// on the time it read every live row to find them (the exclusion constraint's partial index, then a filter on
// expiresAt): 11 ms of PostgreSQL's CPU at 40,000 leases, growing with the table, in one burst on every sweep.
// Partial, as the constraint's: only offered and bound rows, the sweep's own predicate, so it finds the ended ones
// by a range scan that stops at its LIMIT (1.2 ms for 400 ended rows of 40,000; nothing to read when none ended).
const v6Index = {
  name: 'leases_live_expiry',
  def: "ON leases ((doc ->> 'expiresAt'), key) WHERE doc ->> 'state' IN ('offered', 'bound')",
};

/**
 * An index a migration adds to a table that may be large on an existing inventory (the leases). On a new schema
 * it is built in the migrations' transaction like the rest (the tables are empty). On a schema being upgraded it
 * is built after that transaction commits, `CREATE INDEX CONCURRENTLY`, in the background (pg-index-build.ts): a
 * plain CREATE INDEX holds a lock that stops every lease write (every daemon's ACKs) for as long as the build
 * reads the table, seconds at a million leases, and a concurrent one cannot run in a transaction. The index is
 * the same either way, so every schema at a version ends with the same indexes; one a build left invalid (the
 * daemon died during it) is dropped and built again by the next daemon that starts. Until it is there, the
 * queries it serves still work, by a slower plan.
 */
export type PgIndex = { name: string; def: string };

export type PgMigration = { version: number; description: string; sql: string; indexes?: PgIndex[] };

export const PG_MIGRATIONS: PgMigration[] = [
  { version: 1, description: 'documents by kind (JSONB and the JSON as written), unique values', sql: v1() },
  { version: 2, description: 'the event log daemons follow', sql: v2 },
  { version: 3, description: 'one offered or bound lease per client and subnet', sql: v3 },
  { version: 4, description: 'the transaction that last wrote each lease, for daemons following the table', sql: v4 },
  {
    version: 5,
    description: 'lease rows by writing transaction and key, for paged catch-up reads',
    sql: v5,
    indexes: [v5Index],
  },
  { version: 6, description: 'live leases by expiry, for the leader sweep', sql: '', indexes: [v6Index] },
];

export const PG_SCHEMA_VERSION = PG_MIGRATIONS[PG_MIGRATIONS.length - 1]!.version;

/**
 * Applies the migrations the schema lacks in one transaction, under a transaction-scoped advisory lock keyed by
 * the schema: a second daemon starting meanwhile waits, then sees them applied. Refuses a schema from a newer
 * Plinth. Returns the schema's version. An upgrade's indexes are not built here (PgIndex, missingPgIndexes).
 */
export async function migratePg(client: pg.ClientBase): Promise<number> {
  await client.query('BEGIN');
  try {
    await client.query("SELECT pg_advisory_xact_lock(hashtext('plinth-migrate:' || current_schema()))");
    await client.query(`CREATE TABLE IF NOT EXISTS plinth_migrations (
      version integer PRIMARY KEY, description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const r = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM plinth_migrations');
    const current = r.rows[0]?.v ?? 0;
    if (current > PG_SCHEMA_VERSION) {
      throw new StoreError(
        `the database schema is version ${current} but this Plinth knows up to ${PG_SCHEMA_VERSION}: run a newer Plinth or restore a backup`,
      );
    }
    for (const m of PG_MIGRATIONS) {
      if (m.version <= current) continue;
      if (m.sql) await client.query(m.sql);
      // A new schema's tables are empty: its indexes are built here. An upgrade's, after COMMIT (PgIndex).
      if (current === 0) for (const x of m.indexes ?? []) await client.query(`CREATE INDEX ${x.name} ${x.def}`);
      await client.query('INSERT INTO plinth_migrations (version, description) VALUES ($1, $2)', [
        m.version,
        m.description,
      ]);
    }
    await client.query('COMMIT');
    return Math.max(current, PG_SCHEMA_VERSION);
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {});
    throw err;
  }
}

/** The migrations' indexes (PgIndex) the schema lacks, or holds invalid (a concurrent build that did not end). */
export async function missingPgIndexes(client: pg.ClientBase): Promise<PgIndex[]> {
  const all = PG_MIGRATIONS.flatMap((m) => m.indexes ?? []);
  const r = await client.query<{ name: string }>(
    `SELECT c.relname AS name FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
     WHERE c.relnamespace = current_schema()::regnamespace AND c.relname = ANY($1) AND i.indisvalid`,
    [all.map((x) => x.name)],
  );
  const valid = new Set(r.rows.map((x) => x.name));
  return all.filter((x) => !valid.has(x.name));
}
