/**
 * The rollout engine: a new image across the fleet in batches behind a health gate. A batch is reprovisioned
 * (at most maxUnavailable machines at once), each machine must call back booted and pass the health check (a URL
 * answering 2xx, or a param its OS sets), then the next batch starts. A failed batch stops the rollout; with
 * onFailure `rollback` its machines are reprovisioned to the bootenv each had before.
 *
 * The rollout document (kind `rollouts`) is the truth, written before each step acts (reprovision.ts checkpoints),
 * so a daemon killed mid-rollout resumes at start and never repeats a power action it had begun. With several
 * daemons on one inventory only the leader drives (start/suspend follow the lead, src/leader.ts); any daemon
 * changes a rollout through its document, under If-Match, and the leader takes the change in (rollout-sync.ts).
 */
import { randomUUID } from 'node:crypto';
import type { Bus, EventInput } from '../events.js';
import type { Logger } from '../log.js';
import type { Machine } from '../model/machine.js';
import type { Rollout, RolloutMachine, RolloutSpec } from '../model/rollout.js';
import { PreconditionError, type Store } from '../store/store.js';
import { DEFAULT_TIMING, type Reprovisioner, type ReprovisionState, type Timing } from './reprovision.js';
import {
  activeSingles,
  applyRequest,
  changeStored,
  isRequestOnly,
  logged,
  pool,
  progressEvent,
  sleep,
  stepEvent,
} from './rollout-sync.js';
import { batchSize, SelectError, selectMachines } from './select.js';

export type RolloutEngineDeps = {
  store: Store;
  bus: Bus;
  log: Logger;
  reprovision: Reprovisioner;
  /** Machines being reprovisioned now (by the API or a rollout): one reprovision per machine at a time. */
  busy: Set<string>;
  /** Tests shorten the fallback's off pause. */
  timing?: Partial<Timing>;
  /** The health check's poll interval (default 2 s). */
  healthPollMs?: number;
};

export class RolloutError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const FINAL = new Set(['done', 'failed', 'rolled-back', 'aborted']);
const ACTIVE = new Set(['running', 'rolling-back']);
/** Rollouts only: the table also keeps single reprovisions (singles.ts, `type: 'reprovision'`). */
const NOT_SINGLE = { field: 'type', value: null };

/** A rollout this daemon drives: its document, its waits' abort, the chain of its writes and the version last written. */
type Live = {
  doc: Rollout;
  ctl: AbortController;
  saving: Promise<unknown>;
  etag: string;
  /** The document as last written by this daemon (what a request's write is compared with). */
  mine: Rollout;
  run?: Promise<void>;
};

export class RolloutEngine {
  private readonly live = new Map<string, Live>();
  /** Documents another daemon took over (rollout-sync.ts): their writes are refused, their driver winds down. */
  private readonly abandoned = new WeakSet<Rollout>();
  /** True while this daemon leads (start to suspend): only then does it drive. */
  private driving = false;
  private starting: Promise<void> | undefined;

  constructor(private readonly deps: RolloutEngineDeps) {}

  /**
   * Writes a driven rollout under If-Match of the version this daemon last wrote; a write that finds another
   * version takes a request in (pause, resume, abort from another daemon) and writes again, or gives the rollout
   * up to be resumed from the stored document (rollout-sync.ts).
   */
  private save(doc: Rollout, event?: EventInput): Promise<unknown> {
    if (this.abandoned.has(doc)) return Promise.reject(new Error('rollout resumed from its stored document'));
    doc.updatedAt = new Date().toISOString();
    const l = this.live.get(doc.id);
    const { store } = this.deps;
    const opts = event ? { event: logged(event) } : {};
    if (l?.doc !== doc) return store.replace('rollouts', doc.id, structuredClone(doc) as never, [], opts);
    let snapshot = structuredClone(doc);
    const write = async () => {
      for (let i = 0; ; i++) {
        if (this.abandoned.has(doc)) throw new Error('rollout resumed from its stored document');
        try {
          const s = await store.replace('rollouts', doc.id, snapshot as never, [], { ...opts, ifMatch: l.etag });
          l.etag = s.etag;
          l.mine = snapshot;
          return;
        } catch (err) {
          if (!(err instanceof PreconditionError) || i >= 4 || !(await this.merge(l))) throw err;
          snapshot = structuredClone(doc);
        }
      }
    };
    l.saving = l.saving.then(write, write);
    return l.saving;
  }

  /** Another version of a driven rollout is stored: true when it was a request, taken in; false: given up. */
  private async merge(l: Live): Promise<boolean> {
    const s = await this.deps.store.get('rollouts', l.doc.id);
    if (s?.etag === l.etag) return true;
    const foreign = s?.doc as Rollout | undefined;
    if (foreign && isRequestOnly(foreign, l.mine)) {
      l.etag = s!.etag;
      l.mine = structuredClone(foreign);
      if (applyRequest(l.doc, foreign, FINAL) === 'abort') l.ctl.abort();
      return true;
    }
    this.deps.log.warn({ rollout: l.doc.id }, 'rollout written by another daemon: resumed from its stored document');
    this.abandoned.add(l.doc);
    l.ctl.abort();
    if (this.live.get(l.doc.id) === l) this.live.delete(l.doc.id);
    void l.run?.finally(() => this.reload(l.doc.id));
    return false;
  }

  /** Drives the stored rollout `id` if it is active and this daemon leads and does not drive it yet. */
  private async reload(id: string) {
    if (!this.driving || this.live.has(id)) return;
    const s = await this.deps.store.get('rollouts', id).catch(() => undefined);
    const doc = s?.doc as Rollout | undefined;
    if (!s || !doc || (doc as { type?: string }).type !== undefined || !ACTIVE.has(doc.state)) return;
    this.launch(doc, s.etag);
  }

  /**
   * Another daemon changed rollout `id` (its event in the shared log): the leader takes a request into the
   * rollout it drives, or starts driving one created or resumed elsewhere.
   */
  peerChange(id: string) {
    if (!this.driving) return;
    const l = this.live.get(id);
    if (!l) return void this.reload(id).catch(() => undefined);
    const check = () => this.merge(l).then(() => undefined);
    l.saving = l.saving.then(check, check).catch(() => undefined);
  }

  private progress(doc: Rollout) {
    this.deps.bus.emit(progressEvent(doc));
  }

  /** Saves with the progress event in the log (other daemons publish it), then publishes it here. */
  private async saveProgress(doc: Rollout) {
    await this.save(doc, progressEvent(doc));
    this.progress(doc);
  }

  private async finish(doc: Rollout, state: Rollout['state'], reason?: string) {
    doc.state = state;
    if (reason) doc.reason = reason;
    await this.saveProgress(doc);
    this.deps.log.info({ rollout: doc.id, state, reason }, `rollout ${state}`);
  }

  /** One machine's reprovision (or rollback when `to` is given), checkpointed into the rollout document. */
  private async reprovisionOne(doc: Rollout, rm: RolloutMachine, signal: AbortSignal, to?: string) {
    const field = to ? 'rollback' : 'run';
    const prior = rm[field];
    if (prior?.step === 'done' || prior?.step === 'failed') return prior;
    const { busy } = this.deps;
    busy.add(rm.uuid);
    try {
      return await this.deps.reprovision.run(rm.uuid, to ?? doc.spec.bootEnv, {
        from: prior,
        signal,
        timing: {
          dhcpTimeoutMs: doc.spec.dhcpTimeout * 1000,
          bootTimeoutMs: doc.spec.healthTimeout * 1000,
          // The fallback's off pause stays short next to a short DHCP wait (a lab's or a test's).
          offPauseMs: Math.min(DEFAULT_TIMING.offPauseMs, doc.spec.dhcpTimeout * 250),
          ...this.deps.timing,
        },
        checkpoint: async (s: ReprovisionState) => {
          // A daemon shutting down (or losing the lead) aborts its waits: that is no failure of the machine, the
          // next leader resumes it.
          if (!this.driving) throw new Error('daemon stopping or no longer leading');
          rm[field] = s;
          await this.save(doc, stepEvent(s));
        },
      });
    } finally {
      busy.delete(rm.uuid);
    }
  }

  private async healthy(doc: Rollout, rm: RolloutMachine, signal: AbortSignal): Promise<string | undefined> {
    const { healthUrl, healthParam, healthTimeout } = doc.spec;
    if (!healthUrl && !healthParam) return undefined;
    const end = Date.now() + healthTimeout * 1000;
    while (Date.now() < end && !signal.aborted) {
      const m = (await this.deps.store.get('machines', rm.uuid))?.doc as Machine | undefined;
      if (healthParam) {
        const v = m?.params?.[healthParam];
        if (v === true || v === 'true') return undefined;
      } else if (healthUrl) {
        const url = healthUrl.replace('{address}', m?.address ?? '').replace('{name}', encodeURIComponent(rm.name));
        const ok = await fetch(url, { signal: AbortSignal.timeout(10_000) }).then(
          (r) => r.ok,
          () => false,
        );
        if (ok) return undefined;
      }
      await sleep(this.deps.healthPollMs ?? 2000, signal);
    }
    return `not healthy within ${healthTimeout} s of booting (${healthUrl ? `health URL ${healthUrl}` : `param ${healthParam}`})`;
  }

  private async runMachine(doc: Rollout, rm: RolloutMachine, signal: AbortSignal) {
    const st = await this.reprovisionOne(doc, rm, signal);
    if (!this.driving || signal.aborted) return;
    const why = st.step === 'failed' ? st.reason : await this.healthy(doc, rm, signal);
    if (!this.driving || signal.aborted) return;
    rm.result = why ? 'failed' : 'ok';
    if (why) rm.reason = why;
    await this.saveProgress(doc);
  }

  private async rollbackBatch(doc: Rollout, signal: AbortSignal) {
    const batch = doc.machines.filter((m) => m.batch === doc.batch && m.previousBootEnv && m.result !== 'rolled-back');
    await pool(batch, doc.spec.maxUnavailable ?? batch.length, async (rm) => {
      const st = await this.reprovisionOne(doc, rm, signal, rm.previousBootEnv);
      if (!this.driving || signal.aborted) return;
      rm.result = st.step === 'done' ? 'rolled-back' : 'rollback-failed';
      if (st.step !== 'done') rm.reason = `rollback: ${st.reason}`;
      await this.save(doc, progressEvent(doc));
    });
  }

  /** Drives one rollout from where its document says it is until it ends, pauses or the daemon stops. */
  private async drive(doc: Rollout, signal: AbortSignal) {
    while (this.driving && !signal.aborted) {
      if (doc.state === 'rolling-back') {
        await this.rollbackBatch(doc, signal);
        if (!this.driving || signal.aborted) return;
        return this.finish(doc, 'rolled-back');
      }
      if (doc.state !== 'running') return;
      if (doc.batch >= doc.batches) return this.finish(doc, 'done');
      const wait = doc.nextBatchAt ? Date.parse(doc.nextBatchAt) - Date.now() : 0;
      if (wait > 0) await sleep(wait, signal);
      if (!this.driving || signal.aborted) return;
      const batch = doc.machines.filter((m) => m.batch === doc.batch);
      const todo = batch.filter((m) => !m.result);
      await pool(todo, doc.spec.maxUnavailable ?? batch.length, (rm) => this.runMachine(doc, rm, signal));
      if (!this.driving || signal.aborted) return;
      const failed = batch.filter((m) => m.result === 'failed');
      if (failed.length) {
        const reason = `batch ${doc.batch + 1} failed: ${failed.map((m) => `${m.name}: ${m.reason}`).join('; ')}`;
        if (doc.spec.onFailure !== 'rollback') return this.finish(doc, 'failed', reason);
        doc.state = 'rolling-back';
        doc.reason = reason;
      } else {
        doc.batch++;
        doc.nextBatchAt = doc.spec.pauseBetween
          ? new Date(Date.now() + doc.spec.pauseBetween * 1000).toISOString()
          : undefined;
      }
      await this.saveProgress(doc);
    }
  }

  private launch(doc: Rollout, etag: string) {
    if (this.live.has(doc.id) || !this.driving) return;
    const ctl = new AbortController();
    const l: Live = { doc, ctl, saving: Promise.resolve(), etag, mine: structuredClone(doc) };
    this.live.set(doc.id, l);
    let failed = false;
    l.run = this.drive(doc, ctl.signal)
      .catch((err) => {
        failed = true;
        if (!this.abandoned.has(doc) && this.driving)
          this.deps.log.error({ err, rollout: doc.id }, 'rollout stopped on an error; it resumes at restart');
      })
      .finally(() => {
        if (this.live.get(doc.id) === l) this.live.delete(doc.id);
        // Resumed while this driver was returning from a pause: go on, once its writes are in.
        if (ACTIVE.has(doc.state) && !ctl.signal.aborted && !failed && !this.abandoned.has(doc)) {
          const again = () => this.launch(doc, l.etag);
          void l.saving.then(again, again);
        }
      });
  }

  /** The stored rollout and its version (404 for none, and for a single reprovision kept in the same table). */
  private async stored(id: string): Promise<{ doc: Rollout; etag: string }> {
    const s = await this.deps.store.get('rollouts', id);
    if (!s || (s.doc as { type?: string }).type !== undefined)
      throw new RolloutError(404, `rollout '${id}' does not exist`);
    return { doc: structuredClone(s.doc) as unknown as Rollout, etag: s.etag };
  }

  async get(id: string): Promise<Rollout> {
    const l = this.live.get(id);
    if (l) return l.doc;
    return (await this.stored(id)).doc;
  }

  async list(): Promise<Rollout[]> {
    const { items } = await this.deps.store.list('rollouts', {
      filters: [NOT_SINGLE],
      sort: { field: 'createdAt', desc: true },
    });
    return items.map((i) => this.live.get(i.key)?.doc ?? (i.doc as unknown as Rollout));
  }

  async create(spec: RolloutSpec): Promise<Rollout> {
    const { store, busy } = this.deps;
    if (!(await store.get('bootenvs', spec.bootEnv)))
      throw new RolloutError(400, `bootenv '${spec.bootEnv}' does not exist`);
    let machines: Machine[];
    try {
      machines = await selectMachines(store, spec.selector);
    } catch (err) {
      if (err instanceof SelectError) throw new RolloutError(400, err.message);
      throw err;
    }
    if (!machines.length) throw new RolloutError(400, 'the selector matches no machine');
    // A machine belongs to one unfinished rollout at a time: two would reprovision it over each other.
    const claimed = new Set<string>();
    for (const r of await this.list()) {
      if (!FINAL.has(r.state)) for (const m of r.machines) claimed.add(m.uuid);
    }
    // Single reprovisions under way, whichever daemon drives them (`busy` knows only this one's).
    for (const uuid of await activeSingles(store)) claimed.add(uuid);
    const taken = machines.filter((m) => busy.has(m.uuid) || claimed.has(m.uuid)).map((m) => m.name);
    if (taken.length) {
      throw new RolloutError(409, `in another unfinished rollout or being reprovisioned: ${taken.join(', ')}`);
    }
    const size = batchSize(spec, machines.length);
    const now = new Date().toISOString();
    const doc: Rollout = {
      id: `${now.slice(0, 19).replace(/[-:]/g, '')}-${randomUUID().slice(0, 8)}`,
      spec,
      state: 'running',
      batch: 0,
      batches: Math.ceil(machines.length / size),
      machines: machines.map((m, i) => ({
        uuid: m.uuid,
        name: m.name,
        batch: Math.floor(i / size),
        ...(m.bootEnv ? { previousBootEnv: m.bootEnv } : {}),
      })),
      createdAt: now,
      updatedAt: now,
    };
    // With its progress event in the log: the leader (maybe another daemon) starts driving it on hearing of it.
    const made = await store.create('rollouts', doc.id, doc as never, [], { event: logged(progressEvent(doc)) });
    this.progress(doc);
    this.launch(doc, made.etag);
    return doc;
  }

  /**
   * At daemon start, or when this daemon gains the lead: every rollout that was running goes on from its last
   * persisted step (one a dead leader was driving too).
   */
  start(): Promise<void> {
    this.driving = true;
    this.starting = (async () => {
      const { items } = await this.deps.store.list('rollouts', { filters: [NOT_SINGLE] });
      for (const i of items) {
        const doc = i.doc as unknown as Rollout;
        if (!ACTIVE.has(doc.state) || this.live.has(doc.id)) continue;
        this.deps.log.info({ rollout: doc.id, batch: doc.batch, state: doc.state }, 'rollout resumes');
        this.launch(doc, i.etag);
      }
    })();
    return this.starting;
  }

  /**
   * A request: on a rollout this daemon drives, into its document at once; on any other, into the stored one
   * under If-Match (the leader, wherever it is, takes it in). `change` throws to refuse.
   */
  private async request(id: string, change: (doc: Rollout) => void, after?: (l: Live) => void): Promise<Rollout> {
    const l = this.live.get(id);
    if (l) {
      change(l.doc);
      after?.(l);
      await this.saveProgress(l.doc);
      return l.doc;
    }
    const doc = await changeStored(this.deps.store, id, () => this.stored(id), change);
    this.progress(doc);
    // This daemon leads and did not drive it (paused, and its driver had returned): it drives it again.
    if (ACTIVE.has(doc.state)) await this.reload(id);
    return doc;
  }

  pause(id: string): Promise<Rollout> {
    return this.request(id, (doc) => {
      if (doc.state !== 'running') throw new RolloutError(409, `rollout is ${doc.state}: only a running one pauses`);
      doc.state = 'paused';
    });
  }

  /**
   * A pause lets the batch in flight finish: a driver still winding it down sees `running` and goes on, one that
   * has just returned relaunches (launch's finally), and a leader that did not drive it starts (request).
   */
  resume(id: string): Promise<Rollout> {
    return this.request(id, (doc) => {
      if (doc.state !== 'paused') throw new RolloutError(409, `rollout is ${doc.state}: only a paused one resumes`);
      doc.state = 'running';
    });
  }

  abort(id: string): Promise<Rollout> {
    return this.request(
      id,
      (doc) => {
        if (FINAL.has(doc.state)) throw new RolloutError(409, `rollout is ${doc.state} already`);
        doc.state = 'aborted';
        doc.reason = 'aborted by request';
      },
      (l) => l.ctl.abort(),
    ).then((doc) => {
      this.deps.log.info({ rollout: doc.id, state: doc.state, reason: doc.reason }, 'rollout aborted');
      return doc;
    });
  }

  /** Stops driving, when the lead is lost or the daemon stops: the documents keep their state for the next leader. */
  async suspend() {
    this.driving = false;
    await this.starting?.catch(() => undefined);
    const live = [...this.live.values()];
    for (const l of live) l.ctl.abort();
    await Promise.all(live.map((l) => Promise.all([l.run, l.saving.catch(() => undefined)])));
  }

  close() {
    return this.suspend();
  }
}
