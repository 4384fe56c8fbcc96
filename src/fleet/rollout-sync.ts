/**
 * Rollouts on an inventory several daemons share (issue 17): one daemon, the leader, drives them; any daemon's
 * API may create, pause, resume or abort one. The document is the meeting point: every write to it is
 * conditional on the version its writer last saw (If-Match), so a pause written on a follower and the leader's
 * next checkpoint cannot overwrite each other. The leader's write then fails, it reads the document, and:
 *
 * - when the foreign version is its own last write with only the state changed (a request: pause, resume,
 *   abort), it takes the new state into the rollout it drives and writes again;
 * - when anything else changed (another daemon drove it: a leader that lost the lead mid-write), it stops driving
 *   that rollout and resumes it from the stored document, as after a restart (never repeating a step begun).
 */
import type { EventInput } from '../events.js';
import type { Rollout } from '../model/rollout.js';
import { PreconditionError, type Store } from '../store/store.js';
import type { ReprovisionState } from './reprovision.js';

/** The rollout without the fields a request may change (top level only: a machine's reason is progress). */
function withoutRequestFields(doc: Rollout): string {
  const { state: _s, reason: _r, updatedAt: _u, ...rest } = doc;
  return JSON.stringify(rest);
}

/** Whether `foreign` is `mine` with only a request's fields changed. */
export function isRequestOnly(foreign: Rollout, mine: Rollout): boolean {
  return withoutRequestFields(foreign) === withoutRequestFields(mine);
}

/**
 * Takes a request's state into the driven rollout `live`; returns what the driver must do: 'abort' its waits
 * (aborted), or nothing. A rollout that ended meanwhile keeps its end (the request raced with it).
 */
export function applyRequest(live: Rollout, foreign: Rollout, final: Set<string>): 'abort' | undefined {
  if (final.has(live.state) || foreign.state === live.state) return undefined;
  if (foreign.state === 'aborted') {
    live.state = 'aborted';
    if (foreign.reason) live.reason = foreign.reason;
    return 'abort';
  }
  if (foreign.state === 'paused' && live.state === 'running') live.state = 'paused';
  else if (foreign.state === 'running' && live.state === 'paused') live.state = 'running';
  return undefined;
}

/** The log event of a rollout's progress, as the bus publishes it (other daemons publish the same). */
export function progressEvent(doc: Rollout): EventInput {
  const done = doc.machines.filter((m) => m.result === 'ok').length;
  const data = { state: doc.state, batch: doc.batch, batches: doc.batches, done, total: doc.machines.length };
  return { type: 'rollout.progress', key: doc.id, data: doc.reason ? { ...data, reason: doc.reason } : data };
}

/**
 * A request on a rollout this daemon does not drive: read, check and change (`change` throws to refuse), write
 * under If-Match with its progress event, again from a fresh read when another write came first.
 */
export async function changeStored(
  store: Store,
  id: string,
  read: () => Promise<{ doc: Rollout; etag: string }>,
  change: (doc: Rollout) => void,
): Promise<Rollout> {
  for (let i = 0; ; i++) {
    const { doc, etag } = await read();
    change(doc);
    doc.updatedAt = new Date().toISOString();
    const ev = progressEvent(doc);
    try {
      await store.replace('rollouts', id, doc as never, [], { ifMatch: etag, event: { ...ev, data: ev } });
      return doc;
    } catch (err) {
      if (!(err instanceof PreconditionError) || i >= 9) throw err;
    }
  }
}

/** A step of a machine's reprovision as the bus publishes it, for the log (other daemons' /ui). */
export function stepEvent(s: ReprovisionState): EventInput {
  if (s.step === 'failed')
    return {
      type: 'reprovision.failed',
      machine: s.machine,
      key: s.machine,
      data: { bootEnv: s.bootEnv, reason: s.reason ?? '' },
    };
  const ms = Date.now() - Date.parse(s.startedAt);
  return {
    type: 'reprovision.step',
    machine: s.machine,
    key: s.machine,
    data: { bootEnv: s.bootEnv, step: s.step, ms },
  };
}
export const logged = (e: EventInput) => ({ type: e.type, key: e.key, data: e });

export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** Runs `fn` over `items`, at most `limit` at once. */
export async function pool<T>(items: T[], limit: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** The machines with a single reprovision under way (singles.ts), whichever daemon drives it. */
export async function activeSingles(store: Store): Promise<string[]> {
  const { items } = await store.list('rollouts', {
    filters: [
      { field: 'type', value: 'reprovision' },
      { field: 'active', value: true },
    ],
  });
  return items.map((i) => (i.doc as { run: ReprovisionState }).run.machine);
}
