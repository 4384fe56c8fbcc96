/**
 * The PostgreSQL store's lease claims alone, without DHCP (issue 17: where a REQUEST->ACK's time goes on
 * PostgreSQL): DORAs as the DHCP server's claims make them (an `offered` claim, then on its answer a `bound` one
 * for the same client and address) at a fixed rate, against settings of claim batches in flight, interleaved
 * round by round on one cluster so that other work on the machine weighs on each alike. Prints per setting and
 * round the claims' p50/p99/max latency, transactions per DORA and the CPU per DORA of this process and of the
 * cluster's processes (--pg-dir: its data directory, for postmaster.pid; needs /proc of the same host).
 *
 *   npx tsx bench/dhcp-pg-claims.ts --url postgres://... --pg-dir DIR --rate 1000 --seconds 5 --rounds 3 \
 *     --in-flight 1:1,4:3
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { openPgStore } from '../src/store/pg.js';
import type { ClaimResult } from '../src/store/store.js';
import { benchLease, paced, pgCpuNs } from './dhcp-pg-servers.js';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    'pg-dir': { type: 'string' },
    rate: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '3' },
    'in-flight': { type: 'string', default: '1:1,4:3' },
  },
});
if (!values.url || !values['pg-dir']) throw new Error('--url and --pg-dir are needed');
const url = values.url;
const pgDir = values['pg-dir'];
const RATE = Number(values.rate);
const SECONDS = Number(values.seconds);
const settings = values['in-flight'].split(',').map((s) => {
  const [durable, offers] = s.split(':').map(Number);
  return { durable: durable!, offers: offers ?? durable! };
});

const admin = new pg.Client({ connectionString: url });
await admin.connect();
const q = (xs: number[], f: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(f * s.length))]! : Number.NaN;
};
const ms = (x: number) => x.toFixed(1).padStart(6);

async function once(inFlight: { durable: number; offers: number }, round: number) {
  const schema = `claims_bench_${round}_${inFlight.durable}_${inFlight.offers}`;
  await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await admin.query(`CREATE SCHEMA ${schema}`);
  const store = await openPgStore(url, { schema, claimsInFlight: inFlight });
  const offer: number[] = [];
  const ack: number[] = [];
  let failed = 0;
  const now = () => new Date().toISOString();
  const dora = async (i: number) => {
    const lease = (state: string, secs: number) => benchLease(i, state, secs);
    const t0 = performance.now();
    const a: ClaimResult = await store.claimLease!({ doc: lease('offered', 30), now: now() });
    const t1 = performance.now();
    offer.push(t1 - t0);
    if (!a.ok) return failed++;
    const b = await store.claimLease!({ doc: lease('bound', 3600), now: now() });
    ack.push(performance.now() - t1);
    if (!b.ok) failed++;
  };
  const xid = async () => Number((await admin.query('SELECT pg_current_xact_id()::text AS x')).rows[0].x);
  const x0 = await xid();
  const pg0 = pgCpuNs(pgDir);
  const cpu0 = process.cpuUsage();
  const total = RATE * SECONDS;
  await paced(total, RATE, (n) => dora(round * 1_000_000 + n));
  const cpu = process.cpuUsage(cpu0);
  const pgNs = pgCpuNs(pgDir) - pg0;
  const x1 = await xid();
  await store.close();
  await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  console.log(
    `in flight ${inFlight.durable}:${inFlight.offers} round ${round}: offer p50/p99/max ${ms(q(offer, 0.5))} ${ms(q(offer, 0.99))} ${ms(Math.max(...offer))} ms, ` +
      `bound ${ms(q(ack, 0.5))} ${ms(q(ack, 0.99))} ${ms(Math.max(...ack))} ms, ${((x1 - x0) / total).toFixed(2)} xact/DORA, ` +
      `node ${Math.round((cpu.user + cpu.system) / total)} µs/DORA, pg ${Math.round(pgNs / 1000 / total)} µs/DORA${failed ? `, ${failed} lost` : ''}`,
  );
}

try {
  for (let r = 1; r <= Number(values.rounds); r++) for (const s of settings) await once(s, r);
} finally {
  await admin.end();
}
