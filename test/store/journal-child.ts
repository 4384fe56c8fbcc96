/**
 * Child of journal.test.ts. `load FILE ACKS [DURABILITY]`: putBatched under load (the store's leaseDurability, default disk) (64 outstanding, a write every turn), each
 * acknowledged key appended to ACKS as it resolves (`+ key`; deletes below), until the parent's SIGKILL. `delete FILE`: a journaled upsert,
 * applied (a read drains it), then an API delete of it, then SIGKILL with the journal's segment still on disk.
 */
import { openSync, writeSync } from 'node:fs';
import { openSqliteStore } from '../../src/store/sqlite.js';

const [mode, file, ackFile, durability] = process.argv.slice(2) as [string, string, string, 'disk' | 'kernel'];
const store = openSqliteStore(file, { durability: durability ?? 'disk' });
if (mode === 'delete') {
  await store.create('leases', 'gone', { v: 0 });
  await store.putBatched('leases', 'gone', { v: 1 });
  await store.putBatched('leases', 'kept', { v: 1 });
  if ((await store.get('leases', 'gone'))?.doc.v !== 1) throw new Error('the journaled write is not seen');
  await store.remove('leases', 'gone');
  process.stdout.write('DELETED\n');
  process.kill(process.pid, 'SIGKILL');
}
const acks = openSync(ackFile, 'a');
let outstanding = 0;
for (let i = 0; i < 1_000_000; i++) {
  while (outstanding >= 64) await new Promise((r) => setImmediate(r));
  const key = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  outstanding++;
  void store.putBatched('leases', key, { address: key, i, pad: 'p'.repeat(i % 300) }).then(() => {
    outstanding--;
    writeSync(acks, `+ ${key}\n`);
  });
  // Now and then a delete of an earlier key, journaled like the upserts: `? key` once asked, `- key` once acknowledged.
  if (i % 97 === 96) {
    const old = `10.${((i - 50) >> 16) & 255}.${((i - 50) >> 8) & 255}.${(i - 50) & 255}`;
    writeSync(acks, `? ${old}\n`);
    void store.putBatched('leases', old, null).then(() => writeSync(acks, `- ${old}\n`));
  }
  await new Promise((r) => setImmediate(r));
}
