/**
 * Template renders through the render pool alone (src/render/pool.ts, no HTTP): a small iPXE script as a boot
 * renders it, the first render (the pool starting its workers), then sequential renders' p50/p99, then renders/s
 * with many in flight, and the memory it takes. `--baseline DIR` runs another checkout's pool in alternating runs
 * (e.g. 690c150, whose renders ran in worker threads, against this one's child processes):
 *
 *   git worktree add /tmp/plinth-before 690c150 && cp -al node_modules /tmp/plinth-before/
 *   npx tsx bench/render.ts --runs 3 --baseline /tmp/plinth-before
 *
 * Each run is a process of its own: `rss` is that process's (worker threads count there), `workers` the render
 * processes' (none for a pool of threads).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { alternateRuns } from './alternate.js';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    sequential: { type: 'string', default: '2000' },
    parallel: { type: 'string', default: '4000' },
    baseline: { type: 'string' },
    // Internal: one run in a child process.
    child: { type: 'string' },
  },
});

const SOURCE = `#!ipxe
kernel http://{{ server.address }}:{{ server.port }}/files/{{ env.kernel }} {{ bootParams }} console={{ "console" | param }}
initrd http://{{ server.address }}:{{ server.port }}/files/{{ env.initrd }}
boot
`;
const CONTEXT = {
  server: { address: '10.0.0.1', port: 8080 },
  env: { kernel: 'vmlinuz', initrd: 'initrd.img' },
  bootParams: 'quiet',
  machine: { name: 'm1', uuid: '0b4a4b3e-6c1a-4a57-9a55-8f3d5d2f8a10', macs: ['52:54:00:00:00:01'] },
};
const PARAM = { values: { console: 'ttyS0' }, known: [], machine: 'm1' };

const rssMiB = (pid: number | 'self') =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

async function oneRun(tree: string, sequential: number, parallel: number): Promise<string> {
  const { RenderPool } = (await import(
    path.join(tree, 'src/render/pool.ts')
  )) as typeof import('../src/render/pool.js');
  const pool = new RenderPool({});
  const job = { name: 'bench', source: SOURCE, context: CONTEXT, param: PARAM };
  try {
    let t = performance.now();
    const first = await pool.run(job);
    if (!first.ok) throw new Error(`the render failed: ${first.message}`);
    const firstMs = performance.now() - t;
    for (let i = 0; i < 200; i++) await pool.run(job);
    const lat: number[] = [];
    for (let i = 0; i < sequential; i++) {
      t = performance.now();
      await pool.run(job);
      lat.push(performance.now() - t);
    }
    lat.sort((a, b) => a - b);
    t = performance.now();
    await Promise.all(Array.from({ length: parallel }, () => pool.run(job)));
    const perSecond = parallel / ((performance.now() - t) / 1000);
    // A checkout without pids() (the worker threads) has no render processes.
    const workers = ((pool as { pids?: () => number[] }).pids?.() ?? []).map((p) => rssMiB(p));
    const q = (f: number) => lat[Math.min(lat.length - 1, Math.floor(f * lat.length))]!.toFixed(3);
    return [
      `first ${firstMs.toFixed(0).padStart(4)} ms`,
      `sequential p50 ${q(0.5)} p99 ${q(0.99)} ms`,
      `parallel ${perSecond.toFixed(0).padStart(6)}/s`,
      `rss ${rssMiB('self').toFixed(0)} MiB`,
      `workers ${workers.length ? workers.map((m) => `${m.toFixed(0)} MiB`).join(' + ') : 'none'}`,
    ].join('  ');
  } finally {
    await pool.close();
  }
}

if (values.child) {
  const [tree, sequential, parallel] = values.child.split('|');
  console.log(await oneRun(tree!, Number(sequential), Number(parallel)));
} else {
  alternateRuns(fileURLToPath(import.meta.url), {
    runs: Number(values.runs),
    baseline: values.baseline,
    childArgs: [`${values.sequential}|${values.parallel}`],
    timeoutMs: 120_000,
  });
}
