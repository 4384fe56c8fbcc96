/**
 * Single-machine reprovisions (`POST /api/v1/machines/:id/actions/reprovision`, outside any rollout), persisted so
 * a daemon killed mid-way resumes them at start without repeating a power action, as rollouts do. Each machine's
 * latest one is a document in the rollouts table (key `reprovision-<machine uuid>`, `type: 'reprovision'`): the
 * same store kind, so a backend that keeps rollouts keeps these, and no schema change. The rollout engine lists
 * rollouts without them (`type` absent). With several daemons only the leader drives them: another daemon's API
 * stores the request with a `reprovision.requested` event in the shared log, and the leader, hearing of it
 * (peerChange) or gaining the lead (resume), drives it.
 */
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import type { Reprovisioner, ReprovisionState } from './reprovision.js';
import { stepEvent } from './rollout-sync.js';
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
/** The log event of a single reprovision stored by a daemon that does not drive it (no bus form: peers skip it). */
export const REQUESTED = 'reprovision.requested';
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
  const live = new Map<string, { doc: SingleReprovisionDoc; saving: Promise<unknown>; run?: Promise<unknown> }>();
  let ctl = new AbortController();
  /** True while this daemon leads (resume to suspend): only then does it drive. */
  let driving = false;
  let resumed = false;
  let resuming: Promise<void> | undefined;

  /** Writes are chained per machine, so a slow write never lands after a later one. */
  const save = (uuid: string, doc: SingleReprovisionDoc) => {
    const l = live.get(uuid)!;
    doc.updatedAt = new Date().toISOString();
    doc.active = !ENDED.has(doc.run.step);
    const snapshot = structuredClone(doc);
    const event = stepEvent(snapshot.run);
    const write = () =>
      store.replace('rollouts', singleKey(uuid), snapshot as never, [], {
        event: { type: event.type, key: uuid, data: event },
      });
    l.saving = l.saving.then(write, write);
    return l.saving;
  };

  const drive = (uuid: string, doc: SingleReprovisionDoc, from?: ReprovisionState) => {
    busy.add(uuid);
    const l: { doc: SingleReprovisionDoc; saving: Promise<unknown>; run?: Promise<unknown> } = {
      doc,
      saving: Promise.resolve(),
    };
    live.set(uuid, l);
    const signal = ctl.signal;
    l.run = deps.reprovision
      .run(uuid, doc.run.bootEnv, {
        from,
        signal,
        checkpoint: async (s) => {
          // A daemon shutting down or losing the lead aborts the waits: no failure of the machine; the next
          // leader resumes it.
          if (!driving || signal.aborted) throw new Error('daemon stopping or no longer leading');
          doc.run = { ...s, steps: [...s.steps] };
          await save(uuid, doc);
        },
      })
      .catch((err) => {
        if (driving) log.error({ err, machine: uuid }, 'reprovision stopped on an error; it resumes at restart');
      })
      .finally(() => {
        if (live.get(uuid) === l) {
          live.delete(uuid);
          busy.delete(uuid);
        }
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
      // The leader (this daemon or another) drives it on hearing of it (peerChange) or when it gains the lead.
      const event = { type: REQUESTED, key: uuid, data: { bootEnv } };
      try {
        // One persisted before this daemon resumed is not dead: it goes on at resume (once DHCP listens). On a
        // daemon that does not lead, an active one is another daemon's to drive.
        const prior = await stored(uuid);
        if ((!resumed || !driving) && prior?.active)
          throw new RolloutError(
            409,
            driving
              ? 'the machine has a reprovision that resumes once the daemon has started'
              : 'the machine has a reprovision under way or waiting to resume (the leading daemon drives it)',
          );
        // Stored before anything acts: a kill -9 right after the 202 still resumes it.
        if (prior) await store.replace('rollouts', singleKey(uuid), structuredClone(doc) as never, [], { event });
        else await store.create('rollouts', singleKey(uuid), structuredClone(doc) as never, [], { event });
      } catch (err) {
        busy.delete(uuid);
        throw err;
      }
      if (driving) drive(uuid, doc);
      else busy.delete(uuid);
      return structuredClone(run);
    },

    /** Another daemon stored or advanced machine `uuid`'s reprovision: the leader drives it if nobody here does. */
    async peerChange(uuid: string) {
      if (!driving || busy.has(uuid)) return;
      const doc = await stored(uuid).catch(() => undefined);
      if (!doc?.active || !driving || busy.has(uuid)) return;
      log.info(
        { machine: uuid, step: doc.run.step, bootEnv: doc.run.bootEnv },
        'reprovision requested elsewhere: driven here',
      );
      drive(uuid, doc, doc.run.steps.length ? doc.run : undefined);
    },

    /** The machine's latest single reprovision (running or ended), from memory or the store. */
    async last(uuid: string): Promise<ReprovisionState | undefined> {
      const l = live.get(uuid);
      if (l) return structuredClone(l.doc.run);
      return (await stored(uuid))?.run;
    },

    /** At daemon start, or when this daemon gains the lead: every unfinished one goes on from its last persisted step. */
    resume() {
      driving = true;
      ctl = new AbortController();
      resuming = resumeAll();
      return resuming;
    },

    /** Stops driving (the lead is lost, or the daemon stops): documents keep their state for the next leader. */
    async suspend() {
      driving = false;
      await resuming?.catch(() => undefined);
      ctl.abort();
      await Promise.all([...live.values()].map((l) => Promise.all([l.run, l.saving.catch(() => undefined)])));
    },
  };

  async function resumeAll() {
    {
      const { items } = await store.list('rollouts', {
        filters: [
          { field: 'type', value: SINGLE_TYPE },
          { field: 'active', value: true },
        ],
      });
      for (const i of items) {
        const doc = i.doc as unknown as SingleReprovisionDoc;
        const uuid = doc.run.machine;
        if (busy.has(uuid) || !driving) continue;
        log.info({ machine: uuid, step: doc.run.step, bootEnv: doc.run.bootEnv }, 'reprovision resumes');
        // A request stored by another daemon that nobody began: a fresh run (it has no step to resume).
        drive(uuid, doc, doc.run.steps.length ? doc.run : undefined);
      }
      resumed = true;
    }
  }
}
export type SingleReprovisions = ReturnType<typeof singleReprovisions>;
