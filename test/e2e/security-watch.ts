/**
 * Watchdog for the security e2e suite, run inside a namespace next to the floods:
 *
 *   ip netns exec NS node --import tsx test/e2e/security-watch.ts URL [--every-ms 200] [--timeout-ms 5000] [--max-ms N]
 *
 * GETs URL (a new connection each time, as a monitoring probe or a booting machine would) every --every-ms, and
 * records each answer's latency; a request that errs, is not 200 or takes past --timeout-ms is a failure. Stops on
 * SIGTERM or after --max-ms, and prints one line "RESULT <json>".
 */
import http from 'node:http';
import { parseArgs } from 'node:util';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    'every-ms': { type: 'string', default: '200' },
    'timeout-ms': { type: 'string', default: '5000' },
    'max-ms': { type: 'string', default: '600000' },
  },
});
const url = positionals[0]!;
const everyMs = Number(values['every-ms']);
const timeoutMs = Number(values['timeout-ms']);
const started = Date.now();
const latencies: number[] = [];
const failures: { atMs: number; error: string; ms: number }[] = [];
let failureCount = 0;
let maxMs = 0;
let stopping = false;

function probe(): Promise<void> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    let settled = false;
    const done = (error?: string) => {
      if (settled) return;
      settled = true;
      const ms = Math.round(performance.now() - t0);
      maxMs = Math.max(maxMs, ms);
      if (error) {
        failureCount++;
        if (failures.length < 50) failures.push({ atMs: Date.now() - started, error, ms });
      } else latencies.push(ms);
      resolve();
    };
    const req = http.get(url, { agent: false, timeout: timeoutMs }, (res) => {
      res.resume();
      res.on('end', () => done(res.statusCode === 200 ? undefined : `status ${res.statusCode}`));
      res.on('error', (err) => done(err.message));
    });
    req.on('timeout', () => {
      req.destroy();
      done(`no answer within ${timeoutMs} ms`);
    });
    req.on('error', (err) => done((err as NodeJS.ErrnoException).code ?? err.message));
  });
}

function finish() {
  if (stopping) return;
  stopping = true;
  const sorted = [...latencies].sort((a, b) => a - b);
  const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
  const over1s = latencies.filter((ms) => ms > 1000).length;
  const out = {
    polls: latencies.length + failureCount,
    ok: latencies.length,
    maxOkMs: sorted.at(-1) ?? 0,
    failed: failureCount,
    over1s,
    maxMs,
    p50Ms: pct(50),
    p99Ms: pct(99),
    durationMs: Date.now() - started,
    failures,
  };
  process.stdout.write(`RESULT ${JSON.stringify(out)}\n`);
  process.exit(0);
}
process.on('SIGTERM', finish);
process.on('SIGINT', finish);

process.stdout.write('WATCHING\n');
const limit = Number(values['max-ms']);
while (!stopping && Date.now() - started < limit) {
  const t = Date.now();
  await probe();
  const wait = everyMs - (Date.now() - t);
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
}
finish();
