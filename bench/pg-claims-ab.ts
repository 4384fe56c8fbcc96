/**
 * Two builds of the PostgreSQL store's claims in one process, interleaved in short segments (ABBA...), so that
 * what else the machine does weighs on both alike: the CPU per DORA of this process and of the cluster, per
 * segment, for `--a` and `--b` (each a checkout's src/store/pg.ts). DORAs as bench/dhcp-pg-claims.ts makes them.
 *
 *   npx tsx bench/pg-claims-ab.ts --url postgres://... --pg-dir DIR --a /old/src/store/pg.ts --b src/store/pg.ts \
 *     --rate 300 --seconds 3 --pairs 8
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import type { openPgStore as Open } from '../src/store/pg.js';
import type { Store } from '../src/store/store.js';
import { benchLease, paced, pgCpuNs } from './dhcp-pg-servers.js';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    'pg-dir': { type: 'string' },
    a: { type: 'string' },
    b: { type: 'string' },
    rate: { type: 'string', default: '300' },
    seconds: { type: 'string', default: '3' },
    pairs: { type: 'string', default: '8' },
  },
});
if (!values.url || !values['pg-dir'] || !values.a || !values.b) throw new Error('--url, --pg-dir, --a and --b');
const url = values.url;
const RATE = Number(values.rate);
const SECONDS = Number(values.seconds);
const admin = new pg.Client({ connectionString: url });
await admin.connect();

async function open(side: string, file: string): Promise<Store> {
  const { openPgStore } = (await import(path.resolve(file))) as { openPgStore: typeof Open };
  const schema = `claims_ab_${side}`;
  await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await admin.query(`CREATE SCHEMA ${schema}`);
  return openPgStore(url, { schema });
}
const stores = { A: await open('a', values.a), B: await open('b', values.b) };
let next = 0;

async function segment(store: Store): Promise<{ node: number; pg: number }> {
  const now = () => new Date().toISOString();
  const dora = async (i: number) => {
    const lease = (state: string, secs: number) => benchLease(i, state, secs);
    if ((await store.claimLease!({ doc: lease('offered', 30), now: now() })).ok)
      await store.claimLease!({ doc: lease('bound', 3600), now: now() });
  };
  const total = RATE * SECONDS;
  const pg0 = pgCpuNs(values['pg-dir']!);
  const cpu0 = process.cpuUsage();
  await paced(total, RATE, () => dora(next++));
  const cpu = process.cpuUsage(cpu0);
  return { node: (cpu.user + cpu.system) / total, pg: (pgCpuNs(values['pg-dir']!) - pg0) / 1000 / total };
}

const got: Record<'A' | 'B', { node: number; pg: number }[]> = { A: [], B: [] };
await segment(stores.A); // warm-up, both
await segment(stores.B);
for (let i = 0; i < Number(values.pairs); i++) {
  for (const side of i % 2 ? (['B', 'A'] as const) : (['A', 'B'] as const)) got[side].push(await segment(stores[side]));
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
for (const side of ['A', 'B'] as const) {
  const n = got[side].map((x) => Math.round(x.node));
  const p = got[side].map((x) => Math.round(x.pg));
  console.log(`${side} node µs/DORA ${n.join(' ')} (median ${med(n)}); pg µs/DORA ${p.join(' ')} (median ${med(p)})`);
}
await stores.A.close();
await stores.B.close();
await admin.query('DROP SCHEMA IF EXISTS claims_ab_a CASCADE; DROP SCHEMA IF EXISTS claims_ab_b CASCADE');
await admin.end();
