// The store's checkpointer (started by writer-thread.mjs): copies the WAL into the database file on its own
// connection, so that the writer's commits never carry a checkpoint. A checkpoint writes the pages the WAL
// holds to the database and fsyncs it (milliseconds on a slow disk); run inside a commit, as SQLite's automatic
// checkpoint does, it delays every ACK waiting on that commit and on the commits queued behind it. PASSIVE
// never waits for the writer or readers: it copies what it can while the writer goes on appending.
// Plain ES module, no TypeScript (see writer-thread.mjs).
//
// In:  { wrote: n } (the writer committed n writes) | 'close'
// Out: 'restart' (the writer should checkpoint once, see RESTART_FRAMES) | 'closed'
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

const db = new Database(workerData.file);
db.pragma('busy_timeout = 5000');
// Often enough that the writer's own checkpoint (below) finds little left to copy, seldom enough that the
// database file's fsyncs do not crowd the disk the writer's WAL fsyncs wait on: every 250 writes (a batched lease
// write dirties one to three pages), and at least 100 ms after a write.
const EVERY_WRITES = 250;
const AFTER_MS = 100;
// The writer starts the WAL over from its beginning only when a checkpoint has caught up with it, which under a
// load with no pause this thread never does (the writer appends while it copies). A WAL that only grows makes
// every commit's fdatasync also commit the file system's journal (the file's size changed). So once the WAL
// holds this many frames (SQLite's own checkpoint size, ~4 MiB) the writer is asked to take one checkpoint itself
// between two commits: it copies only the frames appended since this thread ran, and its next commit starts over
// at the WAL's beginning, in blocks the file already has. (Not a RESTART checkpoint here: it holds the write lock,
// and the writer then waits in SQLite's busy handler, which sleeps 1, 2, 5, 10... ms.) Measured on a shared
// host: a 16 MiB WAL (4,000 frames), most of a short burst spent growing the file, had a worse p99 than this.
const RESTART_FRAMES = 1000;
let writes = 0;
let timer;
const run = () => {
  if (timer) clearTimeout(timer);
  timer = undefined;
  if (writes === 0) return;
  writes = 0;
  try {
    const [r] = db.pragma('wal_checkpoint(PASSIVE)');
    if (r.log >= RESTART_FRAMES) parentPort.postMessage('restart');
  } catch {
    // Nothing is lost: the WAL still holds every committed write. Tried again after the next ones.
    writes = 1;
  }
};
parentPort.on('message', (m) => {
  if (m === 'close') {
    if (timer) clearTimeout(timer);
    db.close();
    parentPort.postMessage('closed');
    return;
  }
  writes += m.wrote;
  if (writes >= EVERY_WRITES) run();
  else timer ??= setTimeout(run, AFTER_MS);
});
