/**
 * Log lines that a flood cannot multiply: a recurring condition (a refused connection, a dropped request, an
 * unhandled rejection) writes one line per interval, saying how many it stands for.
 */
import type { Logger } from './log.js';

/** Log at most one line per `everyMs` for a recurring condition, with how many were folded into it. */
export function rateLimited(everyMs: number, emit: (count: number) => void): () => void {
  let last = 0;
  let count = 0;
  return () => {
    count++;
    const now = Date.now();
    if (now - last < everyMs) return;
    last = now;
    emit(count);
    count = 0;
  };
}

/**
 * One log line per key per interval, the next one saying how many were left out: a flood must not turn into a
 * flood of log lines (every dropped request would otherwise write one).
 */
export function rateLimitedLog(log: Logger, intervalMs = 10_000, clock: () => number = Date.now) {
  const last = new Map<string, { at: number; suppressed: number }>();
  return (level: 'info' | 'warn' | 'error', key: string, obj: Record<string, unknown>, msg: string): void => {
    const now = clock();
    const seen = last.get(key);
    if (seen !== undefined && now - seen.at < intervalMs) {
      seen.suppressed++;
      return;
    }
    const suppressed = seen?.suppressed ?? 0;
    last.set(key, { at: now, suppressed: 0 });
    if (last.size > 1000) {
      // Keys are a handful of fixed reasons; this only guards against a caller putting addresses in them.
      for (const [k, v] of last) if (now - v.at >= intervalMs) last.delete(k);
    }
    log[level](suppressed > 0 ? { ...obj, suppressed } : obj, msg);
  };
}
