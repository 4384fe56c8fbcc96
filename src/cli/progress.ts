import { createRequire } from 'node:module';
import type { SingleBar } from 'cli-progress';
import { humanBytes, type Io } from './output.js';

/** A progress bar on stderr, drawn only when stderr is a terminal: logs and pipes never get carriage returns. */
export type Progress = { add(n: number): void; done(): void };

/**
 * What the figures count: `bytes` (sizes and a rate, `1.2 MiB / 3.0 MiB  5.1 MiB/s`) or `count`, plain things
 * (`3 / 8`, no unit and no rate: machines of a rollout are not bytes, and a rate of machines a second says nothing).
 */
export type ProgressUnit = 'bytes' | 'count';
export type ProgressOptions = { unit?: ProgressUnit };

const noop: Progress = { add() {}, done() {} };

/** The stream cli-progress draws on (it writes its escape sequences through write): the command's stderr. */
function stderrOf(io: Io): NodeJS.WriteStream {
  const write = (s: string) => {
    io.err(s);
    return true;
  };
  return { isTTY: true, columns: process.stderr.columns || 80, write } as unknown as NodeJS.WriteStream;
}

/**
 * `label [########................]  42% 1.2 MiB / 3.0 MiB  5.1 MiB/s`; without a total, the bytes and the rate.
 * With `unit: 'count'`: `label [####....]  42% 3 / 7`, or `label 3` without a total.
 */
export function progress(io: Io, label: string, total?: number, opts: ProgressOptions = {}): Progress {
  if (!io.errTTY) return noop;
  const { SingleBar: Bar } = createRequire(import.meta.url)('cli-progress') as typeof import('cli-progress');
  const started = Date.now();
  const counting = opts.unit === 'count';
  const fmt = counting ? (v: number) => String(v) : humanBytes;
  let n = 0;
  const known = total !== undefined && total > 0;
  const bar: SingleBar = new Bar({
    stream: stderrOf(io),
    format: (options, params, payload) => {
      const rate = counting ? '' : `  ${humanBytes(Math.round(n / Math.max((Date.now() - started) / 1000, 0.001)))}/s`;
      if (!known) return `${label} ${fmt(n)}${rate}`;
      const size = Math.round(params.progress * (options.barsize ?? 24));
      const drawn = `${'#'.repeat(size)}${'.'.repeat((options.barsize ?? 24) - size)}`;
      const pct = String(Math.floor(params.progress * 100)).padStart(3);
      return `${label} [${drawn}] ${pct}% ${fmt(n)} / ${fmt(payload.total)}${rate}`;
    },
    barsize: 24,
    fps: 10,
    hideCursor: false,
    clearOnComplete: false,
    linewrap: false,
    noTTYOutput: false,
  });
  bar.start(known ? total : Number.MAX_SAFE_INTEGER, 0, { total });
  return {
    add(k) {
      n += k;
      bar.update(n);
    },
    done() {
      bar.update(n);
      bar.stop();
    },
  };
}
