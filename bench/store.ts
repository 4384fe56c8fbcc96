/**
 * putBatched latency alone (no DHCP): leases written at a fixed rate, each write's time from putBatched to its
 * promise resolving (i.e. durable), p50/p90/p99 per run. `--baseline DIR` runs another checkout's store
 * (e.g. the commit before a change) in the same process order, runs interleaved, so that noise hits both alike:
 *
 *   taskset -c 1 npx tsx bench/store.ts --rates 1000,4000 --runs 5 --baseline /tmp/plinth-before
 *
 * The database is a fresh file in the temporary directory for every run (the disk the daemon would use).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { alternateRuns } from './alternate.js';

const { values } = parseArgs({
  options: {
    rates: { type: 'string', default: '1000,4000' },
    seconds: { type: 'string', default: '3' },
    runs: { type: 'string', default: '5' },
    baseline: { type: 'string' },
    // Internal: one run in a child process (a store's worker threads and connections never outlive it).
    child: { type: 'string' },
  },
});

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]!;

async function oneRun(tree: string, rate: number, seconds: number): Promise<string> {
  const { openSqliteStore } = (await import(
    path.join(tree, 'src/store/sqlite.ts')
  )) as typeof import('../src/store/sqlite.js');
  const dir = mkdtempSync(path.join(tmpdir(), 'plinth-store-bench-'));
  const store = openSqliteStore(path.join(dir, 'plinth.db'));
  try {
    await store.putBatched('leases', 'warm-up', { state: 'bound' }); // starts the writer thread
    // With the lease journal the put resolves before the writer thread is up: the read waits for it to have
    // applied the write, so its start (CPU on this core) is outside the measurement in both trees.
    await store.get('leases', 'warm-up');
    const n = Math.min(rate * seconds, 200_000);
    const lat: number[] = [];
    const t0 = performance.now();
    let i = 0;
    await new Promise<void>((done) => {
      let open = 0;
      const tick = () => {
        const due = Math.min(n, Math.floor(((performance.now() - t0) / 1000) * rate));
        for (; i < due; i++) {
          const a = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
          const mac = `02:00:00:${[(i >> 16) & 255, (i >> 8) & 255, i & 255].map((b) => b.toString(16).padStart(2, '0')).join(':')}`;
          const now = new Date().toISOString();
          const s = performance.now();
          open++;
          void store
            .putBatched('leases', a, {
              address: a,
              mac,
              subnet: 'bench',
              state: 'bound',
              expiresAt: now,
              updatedAt: now,
            })
            .then(() => {
              lat.push(performance.now() - s);
              if (--open === 0 && i >= n) done();
            });
        }
        if (i < n) setTimeout(tick, 0);
      };
      tick();
    });
    lat.sort((a, b) => a - b);
    const f = (q: number) => quantile(lat, q).toFixed(2).padStart(7);
    return `rate ${String(rate).padStart(5)}/s  writes ${lat.length}  p50 ${f(0.5)}  p90 ${f(0.9)}  p99 ${f(0.99)}  max ${lat.at(-1)!.toFixed(1).padStart(6)} ms`;
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (values.child) {
  const [tree, rate, seconds] = values.child.split('|');
  console.log(await oneRun(tree!, Number(rate), Number(seconds)));
} else {
  alternateRuns(fileURLToPath(import.meta.url), {
    runs: Number(values.runs),
    baseline: values.baseline,
    childArgs: values.rates.split(',').map((rate) => `${rate}|${values.seconds}`),
    timeoutMs: 120_000,
  });
}
