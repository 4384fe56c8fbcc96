import { readFileSync } from 'node:fs';
import pg from 'pg';
import { etagOf } from './src/store/batch.mjs';
import { openPgStore } from './src/store/pg.js';
import { pgSingleClaim } from './src/store/pg-leases.js';
const url = 'postgres://postgres@127.0.0.1:55477/postgres';
const admin = new pg.Client({ connectionString: url });
await admin.connect();
await admin.query('DROP SCHEMA IF EXISTS cost CASCADE; CREATE SCHEMA cost');
await (await openPgStore(url, { schema: 'cost' })).close();
const pool = new pg.Pool({ connectionString: url, options: '-c search_path=cost -c synchronous_commit=off', max: 1 });
const pid = (await pool.query('SELECT pg_backend_pid() AS p')).rows[0].p;
const cpu = () => Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
const N = 1500;
const single = pgSingleClaim(pool);
const now = new Date().toISOString();
let seq = 0;
const doc = (i: number, state: string) => ({ address: `10.${i >> 16}.${(i >> 8) & 255}.${i & 255}`, mac: `02:00:00:${(i >> 16).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`, subnet: 'bench', state, expiresAt: new Date(Date.now() + 60000).toISOString(), updatedAt: now });
const FAST = `INSERT INTO leases AS l (key, doc, body, etag) VALUES ($1, coalesce($3, $2)::jsonb, $2, $4)
  ON CONFLICT (key) DO UPDATE SET doc = excluded.doc, body = excluded.body, etag = excluded.etag
  WHERE l.doc ->> 'expiresAt' <= $5 OR l.doc ->> 'state' IN ('expired', 'released')
    OR ($8 <> 'expired' AND l.doc ->> 'state' <> 'declined' AND ($8 <> 'offered' OR l.doc ->> 'state' <> 'bound') AND CASE WHEN l.doc ->> 'clientId' IS NOT NULL AND $6::text IS NOT NULL
      THEN l.doc ->> 'clientId' = $6 ELSE l.doc ->> 'mac' = $7 END)
  RETURNING 1`;
const variants: Record<string, (i: number, st: string) => Promise<unknown>> = {
  claim: (i, st) => single({ doc: doc(i, st), now }),
  fast: (i, st) => { const d = doc(i, st); const b = JSON.stringify(d); return pool.query({ name: 'f', text: FAST, values: [d.address, b, null, etagOf(b), now, null, d.mac, st] }); },
};
const res: Record<string, number[]> = {};
for (let round = 0; round < 4; round++) for (const [name, f] of Object.entries(variants)) {
  const base = ++seq * 100000;
  const c0 = cpu();
  for (let i = 0; i < N; i++) await f(base + i, 'offered');
  for (let i = 0; i < N; i++) await f(base + i, 'bound');
  (res[name] ??= []).push(Math.round((cpu() - c0) / 1000 / N));
}
for (const [k, v] of Object.entries(res)) console.log(`${k.padEnd(12)} pg µs per offer+bound pair (async commit): ${v.join(' ')}`);
await pool.end(); await admin.query('DROP SCHEMA IF EXISTS cost CASCADE'); await admin.end();
