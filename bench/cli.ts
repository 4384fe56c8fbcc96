/**
 * npm run bench:cli — wall time of `plinth info` against a running daemon, the compiled CLI (bin/plinth.js ->
 * dist/) side by side with the same command from the sources through tsx (how every call ran before the build),
 * and bare `node -e 0` as the floor. Issue 14's target: the compiled `plinth info` under 300 ms.
 *
 * The daemon (compiled, DHCP and TFTP off, loopback, the default HTTPS API) runs for the whole bench; the
 * variants run interleaved, BENCH_RUNS times each (default 20), so a busy machine slows them alike: read the
 * ratios. Builds dist/ first when it is missing. Everything it starts is stopped by PID at the end.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, waitHttp } from '../test/helpers/proc.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const RUNS = Number(process.env.BENCH_RUNS ?? 20);

if (!existsSync(path.join(ROOT, 'dist/main.js')) || process.env.BENCH_BUILD === '1') {
  console.log('building dist/ (npm run build) ...');
  const b = spawnSync(process.execPath, [path.join(ROOT, 'scripts/build.mjs')], { stdio: 'inherit' });
  if (b.status !== 0) process.exit(1);
}

const dataDir = mkdtempSync(path.join(tmpdir(), 'plinth-bench-cli-'));
const httpPort = await freePort();
const httpsPort = await freePort();
const daemon = spawn(
  process.execPath,
  [path.join(ROOT, 'dist/main.js'), 'serve', '--no-dhcp', '--no-tftp', '--http-address', '127.0.0.1'].concat([
    '--http-port',
    String(httpPort),
    '--https-port',
    String(httpsPort),
    '--data-dir',
    dataDir,
    '--log-level',
    'warn',
  ]),
  { stdio: 'ignore' },
);
const stop = () => {
  if (daemon.pid && daemon.exitCode === null) process.kill(daemon.pid, 'SIGTERM');
  rmSync(dataDir, { recursive: true, force: true });
};
process.on('exit', stop);
process.on('SIGINT', () => process.exit(130));
// The HTTPS listener opens with the HTTP one; the first CLI call would say so if it had not.
await waitHttp(httpPort);

const env = {
  ...process.env,
  PLINTH_ENDPOINT: `https://127.0.0.1:${httpsPort}`,
  PLINTH_DATA_DIR: dataDir,
  PLINTH_OUTPUT: 'json',
};
const variants: { name: string; args: string[] }[] = [
  { name: 'node -e 0 (floor)', args: ['-e', '0'] },
  { name: 'compiled: bin/plinth.js info', args: [path.join(ROOT, 'bin/plinth.js'), 'info'] },
  { name: 'tsx: src/main.ts info', args: ['--import', 'tsx', path.join(ROOT, 'src/main.ts'), 'info'] },
];

const times = new Map<string, number[]>(variants.map((v) => [v.name, []]));
for (let i = 0; i < RUNS; i++) {
  for (const v of variants) {
    const t0 = performance.now();
    const r = spawnSync(process.execPath, v.args, { env, cwd: ROOT, encoding: 'utf8' });
    const ms = performance.now() - t0;
    if (r.status !== 0) throw new Error(`${v.name} failed (exit ${r.status}): ${r.stderr}`);
    times.get(v.name)!.push(ms);
  }
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};
const median = (name: string) => pct(times.get(name)!, 50);
console.log(`plinth info against a local daemon (HTTPS), ${RUNS} runs each, interleaved; wall time in ms`);
console.log(`${'variant'.padEnd(32)} ${'median'.padStart(7)} ${'p90'.padStart(7)} ${'min'.padStart(7)}`);
for (const v of variants) {
  const xs = times.get(v.name)!;
  const row = [pct(xs, 50), pct(xs, 90), Math.min(...xs)].map((x) => x.toFixed(0).padStart(7)).join(' ');
  console.log(`${v.name.padEnd(32)} ${row}`);
}
const compiled = median(variants[1]!.name);
console.log(
  `compiled / tsx: ${(compiled / median(variants[2]!.name)).toFixed(2)}; compiled median ${compiled.toFixed(0)} ms ` +
    `(target < 300 ms: ${compiled < 300 ? 'met' : 'NOT met'} on this machine now)`,
);
