/**
 * claimLease on SQLite (store.ts, LeaseClaim): read the address's row, decide (lease-claim.ts), release the
 * client's other live rows and write, in one BEGIN IMMEDIATE transaction, so two connections on one file are
 * serialised by SQLite's write lock and exactly one of two racing claims wins. The Plinth daemon on SQLite does
 * not call it per packet: its one in-memory lease index decides and putBatched persists (the group commit); this
 * is the same contract as PostgreSQL's for tools and tests, durable (synchronous=FULL) when it resolves.
 */
import type Database from 'better-sqlite3';
import { etagOf, type Prep } from './batch.mjs';
import { claimable, clientKey, isLiveState, keeps, retired, retires } from './lease-claim.js';
import type { ClaimResult, Doc, LeaseClaim } from './store.js';

export function sqliteLeaseClaims(db: Database.Database, prep: Prep): (claim: LeaseClaim) => ClaimResult {
  const write = (key: string, doc: Doc) => {
    const json = JSON.stringify(doc);
    prep(
      'INSERT INTO leases (key, doc, etag) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET doc = excluded.doc, etag = excluded.etag',
    ).run(key, json, etagOf(json));
  };
  const tx = db.transaction((claim: LeaseClaim): ClaimResult => {
    const c = claim.doc;
    const row = prep('SELECT doc FROM leases WHERE key = ?').get(c.address) as { doc: string } | undefined;
    const held = row ? (JSON.parse(row.doc) as Doc) : undefined;
    if (keeps(held, claim)) return { ok: true };
    if (!claimable(held, claim)) return { ok: false, holder: held };
    if (isLiveState(c.state)) {
      const rows = prep(
        "SELECT key, doc FROM leases WHERE json_extract(doc, '$.subnet') = ? AND json_extract(doc, '$.state') IN ('offered', 'bound') AND key <> ?",
      ).all(c.subnet, c.address) as { key: string; doc: string }[];
      const others = rows.map((r) => JSON.parse(r.doc) as Doc).filter((d) => clientKey(d) === clientKey(c));
      // The one-live-row rule PostgreSQL's constraint enforces: a lease in force the claim may not release wins.
      const kept = others.find((d) => !retires(d, claim));
      if (kept) return { ok: false, holder: kept };
      for (const d of others) write(String(d.address), retired(d, claim.now, c.serverId));
    }
    write(c.address, c);
    return { ok: true };
  });
  return (claim) => tx.immediate(claim);
}
