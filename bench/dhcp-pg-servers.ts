/**
 * The servers `bench:dhcp -- --store postgres` (bench/dhcp-pg.ts) runs on one PostgreSQL cluster: Plinth with one
 * daemon (`plinth-pg`) or three (`plinth-pg3`) on one database, and kea-dhcp4 with its PostgreSQL lease backend
 * (`kea-pg`, multi-threaded; `kea-pg-st`, Kea 2.2's default single thread). Each step gets a fresh database; the
 * durability check kills the server(s) with SIGKILL and reads the lease table with SQL.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { DAEMON_NODE_FLAGS } from '../src/node-flags.js';
import { openPgStore } from '../src/store/pg.js';
import { type Proc, startIn } from '../test/e2e/dhcp-netns.js';

/** One server namespace and the client namespace whose perfdhcp relays to it. */
export type Pair = {
  srv: string;
  cli: string;
  srvAddr: string;
  cliAddr: string;
  mac: string;
  /** `plinth-pg3own`: this pair's own subnet (server and relay addresses in it, a third of the pool). */
  own: { subnet: string; srvAddr: string; cliAddr: string; start: string; end: string };
};

export type PgBenchContext = {
  tmp: string;
  root: string;
  pool: { start: string; end: string };
  pinServer: (cmd: string[]) => string[];
  /** The cluster's socket directory and port: the servers run in namespaces, the unix socket reaches them all. */
  pgDir: string;
  pgPort: number;
  pairs: Pair[];
  keaThreads: number;
  keaQueue: number;
  /** Extra node flags for Plinth's daemons (--plinth-node-flags, as bench:dhcp's: e.g. --perf-basic-prof). */
  nodeFlags: string[];
};

export type PgServer = {
  name: string;
  /** How many pairs (daemons, each behind its own relay) the step drives. */
  daemons: number;
  /** Each daemon serves its own subnet (pair.own) instead of all serving one. */
  own?: boolean;
  /** Tables and the subnet in the step's fresh database. */
  prepare(db: string): Promise<void>;
  start(step: number, db: string): Promise<Proc[]>;
  /** After kill -9 of every process: every ACKed address in the lease table, bound to the client it was ACKed to. */
  check(procs: Proc[], db: string, owners: Map<string, string>): Promise<string>;
};

/** node-postgres and libpq both take a socket directory as the host. */
export const pgUrl = (ctx: PgBenchContext, db: string) =>
  `postgres://postgres@localhost:${ctx.pgPort}/${db}?host=${encodeURIComponent(ctx.pgDir)}`;

export async function sql<R extends pg.QueryResultRow = pg.QueryResultRow>(
  ctx: PgBenchContext,
  db: string,
  text: string,
): Promise<R[]> {
  const c = new pg.Client({ connectionString: pgUrl(ctx, db) });
  await c.connect();
  try {
    return (await c.query<R>(text)).rows;
  } finally {
    await c.end();
  }
}

const killAll = async (procs: Proc[]) => {
  for (const p of procs) p.child.kill('SIGKILL');
  await Promise.all(
    procs.map(
      (p) =>
        new Promise<void>((r) =>
          p.child.exitCode !== null || p.child.signalCode ? r() : p.child.once('exit', () => r()),
        ),
    ),
  );
};

/** ACKed (perfdhcp: address -> client) against the table's bound rows (address -> MAC as 12 hex digits). */
function compare(owners: Map<string, string>, bound: Map<string, string>): string {
  let missing = 0;
  let other = 0;
  for (const [address, client] of owners) {
    const mac = bound.get(address);
    if (mac === undefined) missing++;
    else if (
      mac !==
      client
        .replace(/[^0-9a-f]/gi, '')
        .toLowerCase()
        .slice(-12)
    )
      other++;
  }
  const parts = [
    missing === 0 ? `durable ${owners.size}/${owners.size}` : `LOST ${missing} of ${owners.size}`,
    other ? `TWICE: ${other} ACKed addresses held by another client in the table` : '',
  ];
  return parts.filter(Boolean).join(', ');
}

/**
 * `inFlight` ("durable:offers"): the daemons' claim batches in flight at once (src/store/pg-leases.ts), for an A/B
 * in one run against the default (`plinth-pg-par`, `plinth-pg3-par`: four durable and three offer batches).
 * `env`: more of the daemons' environment (KEY=VALUE), for a variant (`plinth-pg3owned-follow60`).
 * `owned`: each subnet names its daemon as its only owner (`owners: ["bench-N"]`), as a rack daemon serving its own
 * subnets is configured: its offers are then not claimed in the database, only its ACKs (src/dhcp/state-machine.ts
 * soleOwner); `plinth-pg-owned`, `plinth-pg3owned`.
 */
export function plinthPgServer(
  name: string,
  daemons: number,
  ctx: PgBenchContext,
  own = false,
  inFlight?: string,
  owned = false,
  env: string[] = [],
): PgServer {
  const vars = [...(inFlight ? [`PLINTH_BENCH_CLAIMS_IN_FLIGHT=${inFlight}`] : []), ...env];
  return {
    name,
    daemons,
    own,
    async prepare(db) {
      // Migrations and the subnet once, before the daemons start (they would otherwise race to migrate).
      const store = await openPgStore(pgUrl(ctx, db));
      const subnets = own
        ? ctx.pairs.slice(0, daemons).map((p, i) => ({
            name: `bench-${i + 1}`,
            subnet: p.own.subnet,
            activeStart: p.own.start,
            activeEnd: p.own.end,
            leaseTime: 3600,
          }))
        : [
            {
              name: 'bench',
              subnet: '10.98.0.0/16',
              activeStart: ctx.pool.start,
              activeEnd: ctx.pool.end,
              leaseTime: 3600,
            },
          ];
      for (const [i, s] of subnets.entries())
        await store.create('subnets', s.name, owned ? { ...s, owners: [`bench-${i + 1}`] } : s);
      await store.close();
    },
    start(_step, db) {
      return Promise.all(
        ctx.pairs
          .slice(0, daemons)
          .map((pair, i) =>
            startIn(
              pair.srv,
              ctx.pinServer([
                ...(vars.length ? ['env', ...vars] : []),
                process.execPath,
                ...DAEMON_NODE_FLAGS,
                ...ctx.nodeFlags,
                '--import',
                'tsx',
                path.join(ctx.root, 'bench/dhcp-pg-run.ts'),
                pgUrl(ctx, db),
                `bench-${i + 1}`,
                'b0',
              ]),
              (o) => o.includes('READY'),
              30_000,
            ),
          ),
      );
    },
    async check(procs, db, owners) {
      await killAll(procs);
      const rows = await sql<{ key: string; mac: string }>(
        ctx,
        db,
        "SELECT key, doc ->> 'mac' AS mac FROM leases WHERE doc ->> 'state' = 'bound'",
      );
      const bound = new Map(rows.map((r) => [r.key, r.mac.replace(/:/g, '').toLowerCase()]));
      // One client, two live rows: the other half of "one address per client" (src/store/pg-leases.ts).
      const twice = await sql(
        ctx,
        db,
        `SELECT coalesce(doc ->> 'clientId', doc ->> 'mac') AS c FROM leases
         WHERE doc ->> 'state' IN ('offered', 'bound') GROUP BY 1 HAVING count(*) > 1`,
      );
      const errors = procs.flatMap((p) => p.out().match(/"level":(50|60)[^\n]*/g) ?? []);
      return [
        compare(owners, bound),
        twice.length ? `TWICE: ${twice.length} clients with two live leases` : '',
        errors.length ? `ERROR: ${errors.length} error lines, first ${errors[0]!.slice(0, 300)}` : '',
      ]
        .filter(Boolean)
        .join(', ');
    },
  };
}

/**
 * kea-dhcp4 2.2 with `lease-database { type: postgresql }` on the same cluster: a lease INSERT (or an UPDATE to
 * reuse one) committed before the ACK, synchronous_commit on as for Plinth. `mt`: multi-threading with
 * --kea-threads threads (each with its own connection) and --kea-queue packets queued. `daemons` > 1 (`kea-pg3`):
 * that many kea-dhcp4, one per relay pair as plinth-pg3's daemons, on one lease database and one pool (Kea's
 * shared lease database: an address another server inserted first is a failed INSERT, and Kea tries the next), so
 * the three relays' perfdhcp load PostgreSQL's core as they do for plinth-pg3. Kea 2.2's only allocator is the
 * iterative one: each daemon walks the pool from its start and collides with the others. `own` (`kea-pg3own`, as
 * plinth-pg3own): each daemon its pair's own subnet, on the one lease database.
 */
export function keaPgServer(name: string, mt: boolean, ctx: PgBenchContext, daemons = 1, own = false): PgServer {
  return {
    name,
    daemons,
    own,
    async prepare(db) {
      execFileSync(
        'psql',
        [
          '-q',
          '-v',
          'ON_ERROR_STOP=1',
          '-h',
          ctx.pgDir,
          '-p',
          String(ctx.pgPort),
          '-U',
          'postgres',
          '-d',
          db,
          '-f',
          '/usr/share/kea/scripts/pgsql/dhcpdb_create.pgsql',
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
    },
    async start(step, db) {
      const cfg = (pair: Pair) => ({
        Dhcp4: {
          'interfaces-config': { interfaces: ['b0'], 'dhcp-socket-type': 'udp' },
          'lease-database': {
            type: 'postgresql',
            name: db,
            host: ctx.pgDir,
            port: ctx.pgPort,
            user: 'postgres',
            password: 'unused',
          },
          ...(mt
            ? {
                'multi-threading': {
                  'enable-multi-threading': true,
                  'thread-pool-size': ctx.keaThreads,
                  'packet-queue-size': ctx.keaQueue,
                },
              }
            : {}),
          'valid-lifetime': 3600,
          subnet4: [
            own
              ? { id: 1, subnet: pair.own.subnet, pools: [{ pool: `${pair.own.start} - ${pair.own.end}` }] }
              : { id: 1, subnet: '10.98.0.0/16', pools: [{ pool: `${ctx.pool.start} - ${ctx.pool.end}` }] },
          ],
          // INFO for the start line; not one line per lease (kea-dhcp4.leases logs each allocation at INFO).
          loggers: [
            { name: 'kea-dhcp4', output_options: [{ output: 'stdout' }], severity: 'INFO' },
            { name: 'kea-dhcp4.leases', output_options: [{ output: 'stdout' }], severity: 'WARN' },
          ],
        },
      });
      // One file per daemon: Kea names its pid file after its configuration file.
      return Promise.all(
        ctx.pairs.slice(0, daemons).map((pair, i) => {
          const file = path.join(ctx.tmp, `kea-${step}-${i + 1}.json`);
          writeFileSync(file, JSON.stringify(cfg(pair)));
          return startIn(
            pair.srv,
            [
              'env',
              `KEA_PIDFILE_DIR=${ctx.tmp}`,
              `KEA_LOCKFILE_DIR=${ctx.tmp}`,
              ...ctx.pinServer(['kea-dhcp4', '-c', file]),
            ],
            (o) => /DHCP4_STARTED/.test(o),
            15_000,
          );
        }),
      );
    },
    async check(procs, db, owners) {
      await killAll(procs);
      const rows = await sql<{ a: string; mac: string }>(
        ctx,
        db,
        "SELECT host('0.0.0.0'::inet + address) AS a, encode(hwaddr, 'hex') AS mac FROM lease4 WHERE state = 0",
      );
      const errors = procs.flatMap((p) => p.out().match(/ERROR [^\n]*/g) ?? []);
      return [
        compare(owners, new Map(rows.map((r) => [r.a, r.mac]))),
        errors.length ? `ERROR: ${errors.length} error lines, first ${errors[0]!.slice(0, 300)}` : '',
      ]
        .filter(Boolean)
        .join(', ');
    },
  };
}

/**
 * The lease document of the i-th DORA of the claim benchmarks (bench/dhcp-pg-claims.ts, bench/pg-claims-ab.ts):
 * address 10.x.y.z and MAC 02:00:00:x:y:z from `i`, in `state`, expiring `secs` from now.
 */
export function benchLease(i: number, state: string, secs: number) {
  const address = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
  const mac = `02:00:00:${[16, 8, 0].map((s) => ((i >> s) & 255).toString(16).padStart(2, '0')).join(':')}`;
  return {
    address,
    mac,
    subnet: 'bench',
    state,
    expiresAt: new Date(Date.now() + secs * 1000).toISOString(),
    updatedAt: new Date().toISOString(),
  };
}

/**
 * Starts `total` DORAs at `rate` a second, paced by the clock with each millisecond's share at once (perfdhcp does
 * the same): `dora(n)` for n = 0, 1, ...; resolves once every one has settled.
 */
export async function paced(total: number, rate: number, dora: (n: number) => Promise<unknown>): Promise<void> {
  const started = performance.now();
  const all: Promise<unknown>[] = [];
  let sent = 0;
  await new Promise<void>((resolve) => {
    const tick = () => {
      const due = Math.min(total, Math.floor(((performance.now() - started) / 1000) * rate));
      while (sent < due) all.push(dora(sent++));
      if (sent >= total) return resolve();
      setTimeout(tick, 1);
    };
    tick();
  });
  await Promise.all(all);
}

/** CPU time in ns of PostgreSQL's postmaster and every process it started (the backends, WAL writer...). */
export function pgCpuNs(pgDir: string): number {
  try {
    const postmaster = readFileSync(path.join(pgDir, 'postmaster.pid'), 'utf8').split('\n')[0]!.trim();
    let ns = 0;
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const ppid = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1];
        if (pid !== postmaster && ppid !== postmaster) continue;
        ns += Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);
      } catch {}
    }
    return ns;
  } catch {
    return Number.NaN;
  }
}
