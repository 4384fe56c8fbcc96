/**
 * The driver of the before/after benches (bench/store.ts, bench/dhcp-cpu.ts, bench/render.ts): each run is
 * `node --import tsx FILE --child 'TREE|ARG'` in a process of its own (a run's threads, workers and connections
 * never outlive it), for this checkout and then the `--baseline` one, so that the host's noise hits both alike;
 * each run's one line is printed under its checkout's name.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export function alternateRuns(
  file: string,
  o: { runs: number; baseline?: string; childArgs: readonly string[]; timeoutMs: number },
): void {
  const trees: [string, string][] = [['plinth', fileURLToPath(new URL('../', import.meta.url))]];
  if (o.baseline) trees.push(['baseline', path.resolve(o.baseline)]);
  for (let r = 0; r < o.runs; r++)
    for (const arg of o.childArgs)
      for (const [name, tree] of trees) {
        const out = execFileSync(process.execPath, ['--import', 'tsx', file, '--child', `${tree}|${arg}`], {
          encoding: 'utf8',
          timeout: o.timeoutMs,
        });
        console.log(`${name.padEnd(8)} ${out.trim()}`);
      }
}
