// The store's writer thread (sqlite.ts starts it for a file store): its own connection commits putBatched's
// batches, so the commit and its fsync never block the daemon's event loop.
// Plain ES module, no TypeScript, so that it loads the same way under tsx, vitest and plain node.
//
// In:  { id, flat, seq? } (encodeBatch; seq: a journal apply, committed with its applied mark) | { close: true }
// Out: { ids, ms, error? } once those batches are committed (or failed; ms: the transaction's time) | { closed: true }
// Every message that arrives while a transaction runs joins the next one (group commit). WAL checkpoints are
// this thread's too, between transactions rather than inside one (batch.mjs, groupCommitter).
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import {
  batchTransaction,
  decodeBatch,
  durablePragmas,
  groupCommitter,
  journalApplyTransaction,
  statementCache,
} from './batch.mjs';

/** Items (leases: about 2 WAL frames each) between checkpoints: about SQLite's default of 1,000 frames. */
const CHECKPOINT_ITEMS = 500;

const db = new Database(workerData.file);
durablePragmas(db);
db.pragma('wal_autocheckpoint = 0');
const prep = statementCache(db);
const tx = batchTransaction(db, prep);
const applyTx = journalApplyTransaction(db, prep);
let t0 = 0;
const writer = groupCommitter({
  commit(items) {
    t0 = performance.now();
    tx(items);
  },
  // The waiters are the ids of the messages whose writes a transaction carries.
  confirm: (ids, error) =>
    parentPort.postMessage(error === undefined ? { ids, ms: performance.now() - t0 } : { ids, error }),
  checkpoint: () => db.pragma('wal_checkpoint(PASSIVE)'),
  checkpointEvery: CHECKPOINT_ITEMS,
});
parentPort.on('message', (m) => {
  if (m.close) {
    writer.flush();
    db.close();
    parentPort.postMessage({ closed: true });
    return;
  }
  if (m.seq !== undefined) {
    // A journal apply (sqlite-batch.ts): large and off the ACK path, so it is committed at once, after whatever
    // batches came before it, and the WAL is checkpointed after it.
    writer.flush();
    const t = performance.now();
    try {
      applyTx(decodeBatch(m.flat, []), m.seq);
      parentPort.postMessage({ ids: [m.id], ms: performance.now() - t });
    } catch (err) {
      parentPort.postMessage({ ids: [m.id], error: String(err?.message || err) });
    }
    try {
      db.pragma('wal_checkpoint(PASSIVE)');
    } catch {
      // SQLITE_BUSY: the next one copies it.
    }
    return;
  }
  writer.add(decodeBatch(m.flat, []), m.id);
});
