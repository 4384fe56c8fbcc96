/**
 * Keeping the DHCP server up when its surroundings fail or lie: background task errors caught and logged at a
 * bounded rate, and the rogue-server watch bounded in memory and in log lines.
 *
 * Why: the interface rescan once threw "too many open files" (EMFILE, reached by a TFTP or HTTP flood) into an
 * unhandled rejection and Node exited (issue 11, defect 3); and spoofed OFFERs with a new server id each grew
 * the rogue map and wrote a log line each (issue 11, defect 6).
 */
import type { Logger } from '../log.js';

export type BackgroundGuard = {
  /** Runs a background step; an error (thrown or rejected) is logged, never rethrown. Resolves true when it passed. */
  run(task: string, fn: () => unknown): Promise<boolean>;
  /** Records a failure of a task (for callers that catch themselves); `about` goes into the logged lines. */
  failed(task: string, err: unknown, about?: object): void;
  /** Records a success: logs the recovery once after failures. */
  passed(task: string): void;
  /** Failures so far, every task. */
  failures(): number;
};

/**
 * Per task: the first failure is logged with its error; further failures within `intervalMs` are counted and
 * summed up in one line by the next failure after that; the first success after failures logs the recovery.
 * A failing timer therefore writes at most one line per interval, however often it runs.
 */
export function backgroundGuard(log: Logger, opts: { intervalMs?: number; now?: () => number } = {}): BackgroundGuard {
  const interval = opts.intervalMs ?? 60_000;
  const now = opts.now ?? Date.now;
  const state = new Map<string, { loggedAt: number; quiet: number; since: number }>();
  let total = 0;
  const guard: BackgroundGuard = {
    failed(task, err, about) {
      total++;
      const t = now();
      const s = state.get(task);
      if (!s) {
        state.set(task, { loggedAt: t, quiet: 0, since: 0 });
        log.error({ ...about, err, task }, `dhcp: ${task} failed (while it keeps failing: one line a minute)`);
        return;
      }
      s.since++;
      if (t - s.loggedAt < interval) {
        s.quiet++;
        return;
      }
      log.error(
        { ...about, err, task, failures: s.since, suppressed: s.quiet },
        `dhcp: ${task} still failing (${s.quiet} more failures not logged in the last ${Math.round(interval / 1000)} s)`,
      );
      s.loggedAt = t;
      s.quiet = 0;
    },
    passed(task) {
      const s = state.get(task);
      if (!s) return;
      state.delete(task);
      log.info({ task, failures: s.since + 1 }, `dhcp: ${task} works again`);
    },
    async run(task, fn) {
      try {
        await fn();
        guard.passed(task);
        return true;
      } catch (err) {
        guard.failed(task, err);
        return false;
      }
    },
    failures: () => total,
  };
  return guard;
}

export type RogueWatch = {
  /**
   * A reply from another server id was seen: true when it should be reported now (a new id, or one not
   * reported for `repeatMs`, within the per-minute line budget).
   */
  seen(server: string): boolean;
  size(): number;
  close(): void;
};

/**
 * Remembers at most `max` server ids (least recently seen dropped first), reports each again after
 * `repeatMs`, and at most `perMinute` reports a minute; the rest become one summary line
 * "N more rogue server ids in the last minute". Spoofed OFFERs with random server ids thus cost bounded memory
 * and one line a minute, while a real rogue server appearing alone is still reported at once.
 */
export function rogueWatch(
  log: Logger,
  opts: { max?: number; repeatMs?: number; perMinute?: number; now?: () => number } = {},
): RogueWatch {
  const max = opts.max ?? 256;
  const repeatMs = opts.repeatMs ?? 600_000;
  const perMinute = opts.perMinute ?? 5;
  const now = opts.now ?? Date.now;
  const seenAt = new Map<string, number>();
  let windowStart = 0;
  let reported = 0;
  let more = 0;
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    timer = undefined;
    if (more > 0)
      log.warn({ more }, `dhcp: ${more} more rogue server ids in the last minute (not listed; a spoofing flood?)`);
    more = 0;
  };
  return {
    seen(server) {
      const t = now();
      const last = seenAt.get(server);
      if (last !== undefined && t - last < repeatMs) {
        // Most recently seen goes last, so the first entry is the one to evict.
        seenAt.delete(server);
        seenAt.set(server, last);
        return false;
      }
      seenAt.delete(server);
      seenAt.set(server, t);
      if (seenAt.size > max) seenAt.delete(seenAt.keys().next().value!);
      if (t - windowStart >= 60_000) {
        windowStart = t;
        reported = 0;
      }
      if (reported < perMinute) {
        reported++;
        return true;
      }
      more++;
      if (!timer) {
        timer = setTimeout(flush, Math.max(1000, 60_000 - (t - windowStart)));
        timer.unref();
      }
      return false;
    },
    size: () => seenAt.size,
    close() {
      if (timer) clearTimeout(timer);
      flush();
    },
  };
}

/**
 * At most `perInterval` lines per interval for a kind of message whose key an attacker chooses (a source
 * address, a MAC): take() says whether to log, and how many lines were suppressed since the last one.
 */
export function lineBudget(perInterval: number, intervalMs = 60_000, now: () => number = Date.now) {
  let start = 0;
  let used = 0;
  let quiet = 0;
  return {
    take(): { ok: true; suppressed: number } | { ok: false } {
      const t = now();
      if (t - start >= intervalMs) {
        start = t;
        used = 0;
      }
      if (used >= perInterval) {
        quiet++;
        return { ok: false };
      }
      used++;
      const suppressed = quiet;
      quiet = 0;
      return { ok: true, suppressed };
    },
  };
}

/**
 * Malformed packets: counted always (`count`), logged once per source per interval. Sources are spoofable:
 * beyond 20 lines an interval, in total, the rest are only counted.
 */
export function malformedLog(log: Logger, count: () => number, intervalMs = 60_000) {
  const seen = new Map<string, number>();
  const lines = lineBudget(20, intervalMs);
  return (src: string, code: string, message: string) => {
    const total = count();
    const t = Date.now();
    const last = seen.get(src);
    if (last !== undefined && t - last < intervalMs) return;
    if (seen.size > 10_000) seen.clear();
    seen.set(src, t);
    const b = lines.take();
    if (!b.ok) return;
    log.warn({ src, code, total, notLogged: b.suppressed }, `dhcp: malformed packet dropped: ${message}`);
  };
}

/** Warnings logged once per key. Some keys hold a MAC (any value a flood likes): the set is bounded, and so are its lines. */
export function onceWarnings(log: Logger): (key: string, obj: object, msg: string) => void {
  const keys = new Set<string>();
  const lines = lineBudget(20);
  return (key, obj, msg) => {
    if (keys.has(key)) return;
    if (keys.size >= 10_000) keys.clear();
    keys.add(key);
    const b = lines.take();
    if (b.ok) log.warn(b.suppressed ? { ...obj, notLogged: b.suppressed } : obj, msg);
  };
}
