/**
 * Lease claims near pool exhaustion on PostgreSQL (issue 17): two daemons (two stores, two lease tables) share one
 * subnet whose pool is filled to 90%, 99% and 99.9% with bound leases of other clients; new clients then DISCOVER
 * through either daemon at once, as the DHCP server does (src/dhcp/state-machine.ts `discover`: allocate, offer,
 * claim the offer, on a lost claim the next candidate, as sharedCandidates decides); their REQUESTs (binds) follow once the
 * DISCOVERs are measured. Per level and per view of the filled leases ("known": both daemons loaded them; "stale":
 * daemon A started before they were written, as when its HA partner made them), prints a DISCOVER's claim time
 * (p50/p99/max), claims (attempts) and statements sent per DISCOVER (a batch shared by several claims counts once),
 * and each DISCOVER that found no address while the database still had a free one.
 *
 *   npx tsx bench/pg-pool-full.ts --url postgres://... [--size 20000] [--clients 300] [--concurrency 8] [--index-only]
 */
import { parseArgs } from 'node:util';
import pg from 'pg';
import { ipInt, ipStr } from '../src/dhcp/ip.js';
import { type Client, type LeaseTable, loadLeaseTable } from '../src/dhcp/leases.js';
import { freeAddressesOf, sharedCandidates } from '../src/dhcp/shared-candidates.js';
import { createBus } from '../src/events.js';
import type { SubnetInfo } from '../src/inventory/cache.js';
import { silentLogger } from '../src/log.js';
import { openPgStore, type PgStore } from '../src/store/pg.js';

const { values } = parseArgs({
  options: {
    url: { type: 'string' },
    size: { type: 'string', default: '20000' },
    clients: { type: 'string', default: '300' },
    concurrency: { type: 'string', default: '8' },
    levels: { type: 'string', default: '0.9,0.99,0.999' },
    views: { type: 'string', default: 'known,stale' },
    'index-only': { type: 'boolean', default: false },
  },
});
if (!values.url) throw new Error('--url is needed');
const url = values.url;
const SIZE = Number(values.size);
const CLIENTS = Number(values.clients);
const CONCURRENCY = Number(values.concurrency);

// Every statement the stores send (pool.query: the claims, their holders' reads, the binds).
let statements = 0;
const query = pg.Pool.prototype.query;
pg.Pool.prototype.query = function (this: pg.Pool, ...args: unknown[]) {
  statements++;
  return (query as (...a: unknown[]) => unknown).apply(this, args);
} as typeof query;

const admin = new pg.Client({ connectionString: url });
await admin.connect();
const START = ipInt('10.64.0.1');
const subnet = {
  name: 'full',
  start: START,
  end: START + SIZE - 1,
  pickers: ['hint', 'nextFree', 'mostExpired'],
} as unknown as SubnetInfo;
const macOf = (prefix: number, i: number) =>
  [2, prefix, (i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255]
    .map((b) => b.toString(16).padStart(2, '0'))
    .join(':');
const q = (xs: number[], f: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor(f * s.length))]! : Number.NaN;
};
/**
 * The DISCOVER's claim loop of src/dhcp/state-machine.ts (`discover`, without the probe and the offer cap), its
 * candidates after a lost claim from the database's free addresses (sharedCandidates), or with --index-only from
 * the index alone (as before).
 */
async function discoverClaim(t: LeaseTable, store: PgStore, client: Client) {
  const env = { leases: t, freeAddresses: values['index-only'] ? undefined : freeAddressesOf(store, Date.now) };
  const shared = sharedCandidates({ subnet, client, reservation: undefined }, env);
  let alloc = t.allocate(subnet, client, undefined, undefined);
  for (let claims = 1; ; claims++) {
    if (!alloc.address) alloc = (await shared.next(undefined)) ?? alloc;
    if (!alloc.address) return { claims: claims - 1 };
    const held = t.offer(subnet, client, alloc.address, 30);
    if (await t.claimOffer(held)) return { claims, rec: held };
    alloc = await shared.lost(alloc, () => t.allocate(subnet, client, undefined, undefined));
    if (!alloc.address) return { claims };
  }
}
const table = (store: PgStore) => loadLeaseTable({ store, bus: createBus(), log: silentLogger });

/** Bound leases of other clients on `n` addresses of the range drawn at random (a pool filled over time). */
async function fill(store: PgStore, n: number) {
  const all = Array.from({ length: SIZE }, (_, i) => START + i);
  for (let i = all.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [all[i], all[j]] = [all[j]!, all[i]!];
  }
  const now = new Date();
  const expiresAt = new Date(now.getTime() + 3_600_000).toISOString();
  for (let k = 0; k < n; k += 2000) {
    await Promise.all(
      all.slice(k, Math.min(n, k + 2000)).map((ip, i) =>
        store.claimLease!({
          doc: {
            address: ipStr(ip),
            subnet: subnet.name,
            mac: macOf(1, k + i),
            state: 'bound',
            expiresAt,
            updatedAt: now.toISOString(),
          },
          now: now.toISOString(),
        }),
      ),
    );
  }
}

async function freeInDb(schema: string): Promise<number> {
  const r = await admin.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM ${schema}.leases WHERE doc ->> 'subnet' = $1
      AND doc ->> 'state' IN ('offered', 'bound', 'declined') AND doc ->> 'expiresAt' > $2`,
    [subnet.name, new Date().toISOString()],
  );
  return SIZE - r.rows[0]!.n;
}

async function run(level: number, view: string) {
  const schema = `pool_full_${Math.round(level * 1000)}_${view}`;
  await admin.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  await admin.query(`CREATE SCHEMA ${schema}`);
  const a = await openPgStore(url, { schema, serverId: 'a' });
  const b = await openPgStore(url, { schema, serverId: 'b' });
  const taken = Math.round(SIZE * level);
  const early = view === 'stale' ? await table(a) : undefined;
  await fill(b, taken);
  const ta: LeaseTable = early ?? (await table(a));
  const tb = await table(b);
  const clients = Math.min(CLIENTS, SIZE - taken);
  const lat: number[] = [];
  const claims: number[] = [];
  let stmts = 0;
  let failed = 0;
  let failedWithFree = 0;
  let nakked = 0;
  let next = 0;
  const offered: { t: LeaseTable; client: Client; address: string }[] = [];
  const t0 = performance.now();
  const s0 = statements;
  const worker = async () => {
    for (let i = next++; i < clients; i = next++) {
      const [t, store] = i % 2 === 0 ? [ta, a] : [tb, b];
      const client = { mac: macOf(2, i) };
      const start = performance.now();
      const r = await discoverClaim(t, store, client);
      lat.push(performance.now() - start);
      claims.push(r.claims);
      if (r.rec) offered.push({ t, client, address: r.rec.address });
      else {
        failed++;
        if ((await freeInDb(schema)) > 0) failedWithFree++;
      }
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  stmts = statements - s0;
  const secs = (performance.now() - t0) / 1000;
  // The REQUESTs, after the measured DISCOVERs (the offers hold their addresses meanwhile).
  for (const o of offered) await o.t.bind(subnet, o.client, o.address, 3600).catch(() => nakked++);
  const left = await freeInDb(schema);
  await a.close();
  await b.close();
  await admin.query(`DROP SCHEMA ${schema} CASCADE`);
  const f = (x: number) => x.toFixed(1).padStart(6);
  console.log(
    `${`${(level * 100).toFixed(1)}%`.padStart(6)} ${view.padEnd(5)} DISCOVERs ${String(clients).padStart(4)}` +
      `  claim ms p50 ${f(q(lat, 0.5))} p99 ${f(q(lat, 0.99))} max ${f(Math.max(...lat))}` +
      `  claims/DISCOVER mean ${(claims.reduce((x, y) => x + y, 0) / clients).toFixed(2)} max ${Math.max(...claims)}` +
      `  statements/DISCOVER ${(stmts / clients).toFixed(2)}` +
      `  no address ${failed} (a free one in the database: ${failedWithFree})  NAKed binds ${nakked}` +
      `  free left ${left}  ${secs.toFixed(1)} s`,
  );
}

for (const level of values.levels.split(',').map(Number))
  for (const view of values.views.split(',')) await run(level, view);
await admin.end();
