/** Child for writer.test.ts: batched writes, awaited, then no close(): the process must still exit by itself. */
import { openSqliteStore } from '../../src/store/sqlite.js';

const store = openSqliteStore(process.argv[2]!);
await Promise.all(
  Array.from({ length: 50 }, (_, i) => store.putBatched('leases', `10.0.0.${i}`, { address: `10.0.0.${i}`, i })),
);
process.stdout.write('WRITTEN\n');
