/**
 * Singleton duties (issue 17): work that one daemon of those sharing an inventory must do, and only one (the
 * token sweep, the lease expiry sweep, the rollout driver, the event log's retention). The store says who leads
 * (`Store.leadership`, PostgreSQL's advisory lock in src/store/pg-leader.ts); a store without it has one daemon,
 * which always leads. `whileLeading` starts a duty when the lead is gained and stops it when it is lost.
 */
import type { Logger } from './log.js';
import type { Leadership, LeadershipOptions, Store } from './store/store.js';

export type { Leadership };

/** The lone daemon of a store no other daemon shares (SQLite): leader from start to close. */
export function soleLeadership(): Leadership {
  return { leader: true, on: () => () => {}, close: async () => {} };
}

/** The store's leadership, logged as it changes. */
export function leadershipOf(store: Store, log: Logger, o: LeadershipOptions = {}): Leadership {
  if (!store.leadership) return soleLeadership();
  const l = store.leadership({
    ...o,
    onError: o.onError ?? ((err) => log.warn({ err: err.message }, 'leadership: connection failed')),
  });
  l.on((leading) =>
    leading
      ? log.info('leader: this daemon now runs the singleton duties (sweeps, rollouts, event retention)')
      : log.warn('leader: this daemon no longer leads; its singleton duties stop'),
  );
  return l;
}

/** A duty: started with the lead, returns its stop (awaited before the duty may start again). */
export type Duty = () => () => Promise<void> | void;

/**
 * Runs `duty` whenever `l` leads: now if it does, again after each gain, stopped at each loss and at the
 * returned closer. Transitions run one after another, so a quick loss and gain never leave two copies running.
 */
export function whileLeading(l: Leadership, duty: Duty, log?: Logger): () => Promise<void> {
  let stop: (() => Promise<void> | void) | undefined;
  let chain = Promise.resolve();
  let closed = false;
  const step = (leading: boolean) => {
    chain = chain.then(async () => {
      try {
        if (leading && !stop && !closed) stop = duty();
        else if (!leading && stop) {
          const s = stop;
          stop = undefined;
          await s();
        }
      } catch (err) {
        log?.error({ err }, 'a singleton duty failed to start or stop');
      }
    });
  };
  const off = l.on(step);
  if (l.leader) step(true);
  return async () => {
    closed = true;
    off();
    step(false);
    await chain;
  };
}

/** A periodic duty: `fn` now and every `ms`, never two at once; the stop waits for a run in progress. */
export function every(ms: number, fn: () => Promise<unknown>): Duty {
  return () => {
    let running: Promise<unknown> | undefined;
    const run = () => {
      running ??= fn()
        .catch(() => undefined)
        .finally(() => {
          running = undefined;
        });
    };
    run();
    const t = setInterval(run, ms);
    t.unref();
    return async () => {
      clearInterval(t);
      await running;
    };
  };
}
