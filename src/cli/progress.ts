import { humanBytes, type Io } from './output.js';

/** A progress bar on stderr, drawn only when stderr is a terminal: logs and pipes never get carriage returns. */
export type Progress = { add(n: number): void; done(): void };

const noop: Progress = { add() {}, done() {} };
const WIDTH = 24;

export function progress(io: Io, label: string, total?: number): Progress {
  if (!io.errTTY) return noop;
  const started = Date.now();
  let n = 0;
  let last = 0;
  const draw = () => {
    const secs = Math.max((Date.now() - started) / 1000, 0.001);
    const rate = `${humanBytes(Math.round(n / secs))}/s`;
    let bar = '';
    if (total && total > 0) {
      const f = Math.min(n / total, 1);
      const full = Math.round(f * WIDTH);
      bar = ` [${'#'.repeat(full)}${'.'.repeat(WIDTH - full)}] ${String(Math.floor(f * 100)).padStart(3)}% ${humanBytes(n)} / ${humanBytes(total)}`;
    } else bar = ` ${humanBytes(n)}`;
    io.err(`\r\x1b[2K${label}${bar}  ${rate}`);
  };
  return {
    add(k) {
      n += k;
      const now = Date.now();
      if (now - last >= 100) {
        last = now;
        draw();
      }
    },
    done() {
      draw();
      io.err('\n');
    },
  };
}
