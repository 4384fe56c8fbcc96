/**
 * Child of durability.test.ts: writes leases through putBatched and appends `ACK <key>` to the ack file
 * (synchronously, a regular file: the line is in the kernel before anything else happens, and survives the
 * kill) for each write whose promise resolved; at the `kill-after`-th
 * acknowledgement it sends itself SIGKILL in that same callback, the moment a DHCP server would send its ACK.
 * argv: backend (sqlite|postgres), where (the file, or the schema on PLINTH_TEST_PG_URL), kill-after,
 * ack file.
 */
import { openSync, writeSync } from 'node:fs';
import { openPgStore } from '../../src/store/pg.js';
import { openSqliteStore } from '../../src/store/sqlite.js';

const [backend, where, killAfter, ackFile] = process.argv.slice(2) as [string, string, string, string];
const acks = openSync(ackFile, 'a');
let acked = 0;
const store =
  backend === 'sqlite' ? openSqliteStore(where) : await openPgStore(process.env.PLINTH_TEST_PG_URL!, { schema: where });
// A write every event-loop turn, not waiting for the previous ones (at most 64 outstanding): writes keep arriving
// while a batch is being committed, so the kill lands with one batch committed, one in flight, more gathering.
let outstanding = 0;
for (let i = 0; i < 1_000_000; i++) {
  while (outstanding >= 64) await new Promise((r) => setImmediate(r));
  const key = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  outstanding++;
  void store.putBatched('leases', key, { address: key, i }).then(() => {
    outstanding--;
    writeSync(acks, `ACK ${key}\n`);
    if (++acked >= Number(killAfter)) process.kill(process.pid, 'SIGKILL');
  });
  await new Promise((r) => setImmediate(r));
}
