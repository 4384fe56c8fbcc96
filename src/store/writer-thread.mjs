// The store's writer thread (sqlite.ts starts it for a file store): its own connection commits putBatched's
// batches, so the commit and its fsync never block the daemon's event loop.
// Plain ES module, no TypeScript, so that it loads the same way under tsx, vitest and plain node.
//
// In:  { id, flat, seq? } (encodeBatch; seq: a journal apply, committed with its applied mark) | { close: true }
// Out: { ids, ms, error? } once those batches are committed (or failed; ms: the transaction's time) | { closed: true }
// Every message that arrives while a transaction runs joins the next one (group commit). WAL checkpoints are
// this thread's too, between transactions rather than inside one (batch.mjs, groupCommitter).
import { readlinkSync } from 'node:fs';
import os from 'node:os';
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
/**
 * With the journal, this thread's work is off the ACK path: its applies run at the lowest priority (nice 19) so the
 * event loop, which shares a core with it on a small host, is never kept waiting for the CPU by a large apply
 * transaction. Set for this thread only (Linux: setpriority on its thread id); set back if it commits ACK-path
 * batches again (the journal failed), where the kernel allows it.
 */
let niced = false;
function applyPriority(background) {
  if (niced === background) return;
  niced = background;
  try {
    os.setPriority(Number(readlinkSync('/proc/thread-self').split('/').pop()), background ? 19 : 0);
  } catch {
    // Not Linux, or raising it back is not allowed: the priority stays.
  }
}

parentPort.on('message', (m) => {
  if (m.close) {
    writer.flush();
    db.close();
    parentPort.postMessage({ closed: true });
    return;
  }
  applyPriority(m.seq !== undefined);
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
