/**
 * Leadership among daemons sharing a PostgreSQL inventory (issue 17): the singleton duties (token sweep, lease
 * expiry sweep, rollout driver, event retention) belong to the daemon holding a session advisory lock, taken with
 * `pg_try_advisory_lock` on a connection of its own (a pooled connection would hand the session, and the lock,
 * to whatever query came next). The others retry every few seconds.
 *
 * The lock lives as long as the server's session. A holder that dies or is killed closes its socket and the
 * server frees the lock at once; one cut off without a reset (a partition, a frozen process) keeps the session
 * until the server gives up on it: `idle_session_timeout` makes that bounded (the holder probes every few
 * seconds, so its session is idle only when it cannot reach the server). The holder counts itself leader only
 * while its last successful probe was sent less than two thirds of that timeout ago, so it stops acting before
 * the server can let another daemon take the lock: two leaders never act at once.
 */
import pg from 'pg';
import type { Leadership, LeadershipOptions } from './store.js';

const TRY = "SELECT pg_try_advisory_lock(hashtextextended('plinth-leader:' || current_schema(), 0)) AS ok";
const UNLOCK = "SELECT pg_advisory_unlock(hashtextextended('plinth-leader:' || current_schema(), 0))";

/** Rejects when `p` has not settled within `ms` (the connection is then dropped by the caller). */
function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), Math.max(1, ms));
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

/**
 * `config` is the store's client config with `-c idle_session_timeout=<sessionTimeoutMs>` set (pg.ts adds it:
 * the URL's own options would win over a config option).
 */
export function pgLeadership(config: pg.ClientConfig, o: LeadershipOptions = {}): Leadership {
  const retryMs = o.retryMs ?? 3000;
  const probeMs = o.probeMs ?? 2000;
  const giveUpMs = Math.floor(((o.sessionTimeoutMs ?? 15_000) * 2) / 3);
  const listeners = new Set<(leading: boolean) => void>();
  let client: pg.Client | undefined;
  let held = false;
  /** When the last query that proved the hold was sent. */
  let provenAt = 0;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let watchdog: NodeJS.Timeout | undefined;

  const emit = (leading: boolean) => {
    for (const fn of listeners) {
      try {
        fn(leading);
      } catch (err) {
        o.onError?.(err as Error);
      }
    }
  };
  const setHeld = (v: boolean) => {
    if (held === v) return;
    held = v;
    clearTimeout(watchdog);
    emit(v);
  };
  // Between probes too: the hold ends when it can no longer be proven, whatever the probe is doing.
  const arm = () => {
    clearTimeout(watchdog);
    const left = provenAt + giveUpMs - Date.now() + 1;
    watchdog = setTimeout(() => fresh() || drop(new Error('leader lock not proven in time')), Math.max(1, left));
    watchdog.unref();
  };
  const fresh = () => held && Date.now() - provenAt < giveUpMs;

  const drop = (err: Error) => {
    const c = client;
    client = undefined;
    if (c) {
      c.removeAllListeners();
      c.on('error', () => {});
      // The socket closes: a server that still sees it frees the lock at once.
      (c as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
      void c.end().catch(() => {});
    }
    if (held) o.onError?.(err);
    setHeld(false);
    schedule(retryMs);
  };

  const schedule = (ms: number) => {
    clearTimeout(timer);
    if (closed) return;
    timer = setTimeout(() => void tick(), ms);
    timer.unref();
  };

  const connect = async (): Promise<pg.Client> => {
    const c = new pg.Client(config);
    c.on('error', (err) => client === c && drop(err));
    c.on('end', () => client === c && drop(new Error('leader connection ended')));
    client = c;
    await within(c.connect(), giveUpMs);
    return c;
  };

  const tick = async () => {
    if (closed) return;
    const sentAt = Date.now();
    try {
      const c = client ?? (await connect());
      if (held) {
        await within(c.query('SELECT 1'), giveUpMs - (sentAt - provenAt));
      } else {
        const r = await within(c.query<{ ok: boolean }>(TRY), giveUpMs);
        if (closed) return;
        if (!r.rows[0]?.ok) return schedule(retryMs);
      }
      if (closed || client !== c) return;
      provenAt = sentAt;
      setHeld(true);
      arm();
      schedule(probeMs);
    } catch (err) {
      if (!closed) drop(err as Error);
    }
  };
  void tick();

  return {
    get leader() {
      return fresh();
    },
    on(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    async close() {
      if (closed) return;
      closed = true;
      clearTimeout(timer);
      clearTimeout(watchdog);
      const c = client;
      client = undefined;
      const was = held;
      setHeld(false);
      if (!c) return;
      c.removeAllListeners();
      c.on('error', () => {});
      if (was) await within(c.query(UNLOCK), 2000).catch(() => {});
      await within(c.end(), 2000).catch(() => {});
    },
  };
}
