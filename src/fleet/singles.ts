/**
 * Single-machine reprovisions (`POST /api/v1/machines/:id/actions/reprovision`, outside any rollout), persisted so
 * a daemon killed mid-way resumes them at start without repeating a power action, as rollouts do. Each machine's
 * latest one is a document in the rollouts table (key `reprovision-<machine uuid>`, `type: 'reprovision'`): the
 * same store kind, so a backend that keeps rollouts keeps these, and no schema change. The rollout engine lists
 * rollouts without them (`type` absent).
 */
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import type { Reprovisioner, ReprovisionState } from './reprovision.js';
import { RolloutError } from './rollouts.js';

/** The stored document: the reprovision's state, written before each step acts. */
export type SingleReprovisionDoc = {
  type: 'reprovision';
  /** True until it ends (done or failed): what a restart resumes. */
  active: boolean;
  createdAt: string;
  updatedAt: string;
  run: ReprovisionState;
};

export const SINGLE_TYPE = 'reprovision';
export const singleKey = (uuid: string) => `reprovision-${uuid}`;
const ENDED = new Set(['done', 'failed']);

export type SinglesDeps = {
  store: Store;
  log: Logger;
  reprovision: Reprovisioner;
  /** Machines being reprovisioned now (shared with the rollout engine): one reprovision per machine at a time. */
  busy: Set<string>;
};

export function singleReprovisions(deps: SinglesDeps) {
  const { store, log, busy } = deps;
  const live = new Map<string, { doc: SingleReprovisionDoc; saving: Promise<unknown> }>();
  const ctl = new AbortController();
  let closing = false;
  let resumed = false;

  /** Writes are chained per machine, so a slow write never lands after a later one. */
  const save = (uuid: string, doc: SingleReprovisionDoc) => {
    const l = live.get(uuid)!;
    doc.updatedAt = new Date().toISOString();
    doc.active = !ENDED.has(doc.run.step);
    const snapshot = structuredClone(doc);
    const write = () => store.replace('rollouts', singleKey(uuid), snapshot as never);
    l.saving = l.saving.then(write, write);
    return l.saving;
  };

  const drive = (uuid: string, doc: SingleReprovisionDoc, from?: ReprovisionState) => {
    busy.add(uuid);
    live.set(uuid, { doc, saving: Promise.resolve() });
    deps.reprovision
      .run(uuid, doc.run.bootEnv, {
        from,
        signal: ctl.signal,
        checkpoint: async (s) => {
          // A daemon shutting down aborts the waits: no failure of the machine; the next start resumes it.
          if (closing) throw new Error('daemon stopping');
          doc.run = { ...s, steps: [...s.steps] };
          await save(uuid, doc);
        },
      })
      .catch((err) => {
        if (!closing) log.error({ err, machine: uuid }, 'reprovision stopped on an error; it resumes at restart');
      })
      .finally(() => {
        busy.delete(uuid);
        if (live.get(uuid)?.doc === doc) live.delete(uuid);
      });
  };

  const stored = async (uuid: string) =>
    (await store.get('rollouts', singleKey(uuid)))?.doc as SingleReprovisionDoc | undefined;

  return {
    /** Starts the machine's reprovision in the background, persisted before it acts; 409 when one is running. */
    async start(uuid: string, bootEnv: string): Promise<ReprovisionState> {
      if (busy.has(uuid)) throw new RolloutError(409, 'the machine is being reprovisioned already');
      busy.add(uuid);
      const at = new Date().toISOString();
      const run: ReprovisionState = { machine: uuid, bootEnv, step: 'assign', stepAt: at, startedAt: at, steps: [] };
      const doc: SingleReprovisionDoc = { type: SINGLE_TYPE, active: true, createdAt: at, updatedAt: at, run };
      try {
        // One persisted before this daemon resumed is not dead: it goes on at resume (once DHCP listens).
        const prior = await stored(uuid);
        if (!resumed && prior?.active)
          throw new RolloutError(409, 'the machine has a reprovision that resumes once the daemon has started');
        // Stored before anything acts: a kill -9 right after the 202 still resumes it.
        if (prior) await store.replace('rollouts', singleKey(uuid), structuredClone(doc) as never);
        else await store.create('rollouts', singleKey(uuid), structuredClone(doc) as never);
      } catch (err) {
        busy.delete(uuid);
        throw err;
      }
      drive(uuid, doc);
      return structuredClone(run);
    },

    /** The machine's latest single reprovision (running or ended), from memory or the store. */
    async last(uuid: string): Promise<ReprovisionState | undefined> {
      const l = live.get(uuid);
      if (l) return structuredClone(l.doc.run);
      return (await stored(uuid))?.run;
    },

    /** At daemon start: every unfinished one goes on from its last persisted step. */
    async resume() {
      const { items } = await store.list('rollouts', {
        filters: [
          { field: 'type', value: SINGLE_TYPE },
          { field: 'active', value: true },
        ],
      });
      for (const i of items) {
        const doc = i.doc as unknown as SingleReprovisionDoc;
        const uuid = doc.run.machine;
        if (busy.has(uuid) || closing) continue;
        log.info({ machine: uuid, step: doc.run.step, bootEnv: doc.run.bootEnv }, 'reprovision resumes');
        drive(uuid, doc, doc.run);
      }
      resumed = true;
    },

    /** Stops driving (documents keep their state: the next start resumes them). */
    async close() {
      closing = true;
      ctl.abort();
      await Promise.all([...live.values()].map((l) => l.saving.catch(() => undefined)));
    },
  };
}
export type SingleReprovisions = ReturnType<typeof singleReprovisions>;
