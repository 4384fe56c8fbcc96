import type Database from 'better-sqlite3';
import { type KINDS, StoreError } from './store.js';

/**
 * Versioned schema migrations, applied in order at start (PRAGMA user_version holds the last applied one).
 * Never edit a released migration: append a new one.
 */

// Fields filtered or sorted often enough to deserve an index (the API's `field=value` filters work on any
// top-level field; these just make the common ones cheap on large inventories).
const indexed: Partial<Record<(typeof KINDS)[number], string[]>> = {
  machines: ['name', 'bootEnv', 'address', 'arch'],
  leases: ['mac', 'state', 'subnet', 'expiresAt'],
  reservations: ['mac', 'subnet'],
  boots: ['machine'],
};

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
] as const;

function v1(): string {
  const parts: string[] = [];
  for (const kind of V1_KINDS) {
    parts.push(`CREATE TABLE ${kind} (key TEXT PRIMARY KEY, doc TEXT NOT NULL, etag TEXT NOT NULL) STRICT;`);
    for (const f of indexed[kind] ?? []) {
      // With the key as second column a filtered list ordered by key walks the index, no sort step.
      parts.push(`CREATE INDEX ${kind}_${f} ON ${kind} (json_extract(doc, '$.${f}'), key);`);
    }
  }
  parts.push(`CREATE TABLE uniq (
    kind TEXT NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL, key TEXT NOT NULL,
    PRIMARY KEY (kind, field, value)) STRICT, WITHOUT ROWID;`);
  parts.push('CREATE INDEX uniq_owner ON uniq (kind, key);');
  return parts.join('\n');
}

// v2: the DHCP server writes a lease per ACK (thousands a second in a boot storm) and reads them all into memory
// at start; it never filters them in SQL. The four JSON expression indexes on leases made each write cost
// about 17 us of CPU instead of 6 (measured, WAL, 50-lease transactions), most of it the randomly ordered mac
// index. The API's lease filters (`?mac=`, `?state=`) still work, by scanning: tens of ms for 50,000 leases.
const v2 = ['mac', 'state', 'subnet', 'expiresAt'].map((f) => `DROP INDEX IF EXISTS leases_${f};`).join('\n');

// v3: the audit log (who wrote what, when, from where). Listed newest first and filtered by who; the key is
// time-ordered too. Bounded by the API, which prunes the oldest entries beyond its cap.
const v3 = [
  'CREATE TABLE audit (key TEXT PRIMARY KEY, doc TEXT NOT NULL, etag TEXT NOT NULL) STRICT;',
  "CREATE INDEX audit_at ON audit (json_extract(doc, '$.at'), key);",
  "CREATE INDEX audit_who ON audit (json_extract(doc, '$.who'), key);",
].join('\n');

// v4: the API's `?mac=` and `?state=` lease filters (an operator looking for one machine's lease, or every bound
// one) walk an index again instead of parsing every lease's JSON: 0.1 ms instead of ~30 ms for 50,000 leases.
// Only these two of v1's four: each costs the writer thread ~5-10 us of CPU per lease write (measured, 50-lease
// transactions), off the event loop; subnet and expiresAt filters stay scans.
const v4 = ['mac', 'state']
  .map((f) => `CREATE INDEX IF NOT EXISTS leases_${f} ON leases (json_extract(doc, '$.${f}'), key);`)
  .join('\n');

// v5: fleet rollouts (src/fleet/rollouts.ts), one document each, written before every step acts so a restart
// resumes them. Few (one per image roll-out), listed newest first; the engine reads the running ones at start.
const v5 = [
  'CREATE TABLE rollouts (key TEXT PRIMARY KEY, doc TEXT NOT NULL, etag TEXT NOT NULL) STRICT;',
  "CREATE INDEX rollouts_createdAt ON rollouts (json_extract(doc, '$.createdAt'), key);",
].join('\n');

// v6: the daemons sharing this inventory (src/daemon-registry.ts), one heartbeat document each. A handful of
// rows rewritten every few seconds; with SQLite there is one daemon, listed all the same.
const v6 = 'CREATE TABLE daemons (key TEXT PRIMARY KEY, doc TEXT NOT NULL, etag TEXT NOT NULL) STRICT;';

// v7: how far the lease journal (journal.ts) has been applied, written in the same transaction as what it
// applied: recovery after a crash replays only the records after it, so a journaled upsert applied before a later
// API delete is never applied again over that delete.
const v7 =
  'CREATE TABLE journal_applied (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL) STRICT;\n' +
  'INSERT INTO journal_applied VALUES (1, 0);';

export const MIGRATIONS: { version: number; description: string; sql: string }[] = [
  { version: 1, description: 'documents by kind, unique values', sql: v1() },
  { version: 2, description: 'no JSON indexes on leases (written at packet rate, never filtered by DHCP)', sql: v2 },
  { version: 3, description: 'audit log of API writes', sql: v3 },
  { version: 4, description: "indexes for the API's ?mac= and ?state= lease filters", sql: v4 },
  { version: 5, description: 'fleet rollouts', sql: v5 },
  { version: 6, description: 'daemons and their heartbeats', sql: v6 },
  { version: 7, description: "the lease journal's applied sequence number", sql: v7 },
];

/** Applies the migrations the database lacks, each in its own transaction; refuses a database from a newer Plinth. */
export function migrate(db: Database.Database): void {
  const current = db.pragma('user_version', { simple: true }) as number;
  const latest = MIGRATIONS[MIGRATIONS.length - 1]!.version;
  if (current > latest) {
    throw new StoreError(
      `the database schema is version ${current} but this Plinth knows up to ${latest}: run a newer Plinth or restore a backup`,
    );
  }
  for (const m of MIGRATIONS) {
    if (m.version <= current) continue;
    db.transaction(() => {
      db.exec(m.sql);
      db.pragma(`user_version = ${m.version}`);
    })();
  }
}
