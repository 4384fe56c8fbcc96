import { KINDS } from './store.js';

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

function v1(): string {
  const parts: string[] = [];
  for (const kind of KINDS) {
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

export const MIGRATIONS: { version: number; description: string; sql: string }[] = [
  { version: 1, description: 'documents by kind, unique values', sql: v1() },
];
