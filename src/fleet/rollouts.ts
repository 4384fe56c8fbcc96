/**
 * The rollout engine: a new image across the fleet in batches behind a health gate. A batch is reprovisioned
 * (at most maxUnavailable machines at once), each machine must call back booted and pass the health check (a URL
 * answering 2xx, or a param its OS sets), then the next batch starts. A failed batch stops the rollout; with
 * onFailure `rollback` its machines are reprovisioned to the bootenv each had before.
 *
 * The rollout document (kind `rollouts`) is the truth, written before each step acts (reprovision.ts checkpoints),
 * so a daemon killed mid-rollout resumes at start and never repeats a power action it had begun.
 */
import { randomUUID } from 'node:crypto';
import type { Bus } from '../events.js';
import type { Logger } from '../log.js';
import type { Machine } from '../model/machine.js';
import type { Rollout, RolloutMachine, RolloutSpec } from '../model/rollout.js';
import type { Store } from '../store/store.js';
import { DEFAULT_TIMING, type Reprovisioner, type ReprovisionState, type Timing } from './reprovision.js';
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

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** Runs `fn` over `items`, at most `limit` at once. */
async function pool<T>(items: T[], limit: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

export class RolloutEngine {
  private readonly live = new Map<string, { doc: Rollout; ctl: AbortController; saving: Promise<unknown> }>();
  private closing = false;

  constructor(private readonly deps: RolloutEngineDeps) {}

  private save(doc: Rollout): Promise<unknown> {
    doc.updatedAt = new Date().toISOString();
    const snapshot = structuredClone(doc);
    const l = this.live.get(doc.id);
    const write = () => this.deps.store.replace('rollouts', doc.id, snapshot as never);
    if (!l) return write();
    l.saving = l.saving.then(write, write);
    return l.saving;
  }

  private progress(doc: Rollout) {
    const done = doc.machines.filter((m) => m.result === 'ok').length;
    const data = { state: doc.state, batch: doc.batch, batches: doc.batches, done, total: doc.machines.length };
    this.deps.bus.emit({
      type: 'rollout.progress',
      key: doc.id,
      data: doc.reason ? { ...data, reason: doc.reason } : data,
    });
  }

  private async finish(doc: Rollout, state: Rollout['state'], reason?: string) {
    doc.state = state;
    if (reason) doc.reason = reason;
    await this.save(doc);
    this.progress(doc);
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
          // A daemon shutting down aborts its waits: that is no failure of the machine, the restart resumes it.
          if (this.closing) throw new Error('daemon stopping');
          rm[field] = s;
          await this.save(doc);
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
    if (this.closing || signal.aborted) return;
    const why = st.step === 'failed' ? st.reason : await this.healthy(doc, rm, signal);
    if (this.closing || signal.aborted) return;
    rm.result = why ? 'failed' : 'ok';
    if (why) rm.reason = why;
    await this.save(doc);
    this.progress(doc);
  }

  private async rollbackBatch(doc: Rollout, signal: AbortSignal) {
    const batch = doc.machines.filter((m) => m.batch === doc.batch && m.previousBootEnv && m.result !== 'rolled-back');
    await pool(batch, doc.spec.maxUnavailable ?? batch.length, async (rm) => {
      const st = await this.reprovisionOne(doc, rm, signal, rm.previousBootEnv);
      if (this.closing || signal.aborted) return;
      rm.result = st.step === 'done' ? 'rolled-back' : 'rollback-failed';
      if (st.step !== 'done') rm.reason = `rollback: ${st.reason}`;
      await this.save(doc);
    });
  }

  /** Drives one rollout from where its document says it is until it ends, pauses or the daemon stops. */
  private async drive(doc: Rollout, signal: AbortSignal) {
    while (!this.closing && !signal.aborted) {
      if (doc.state === 'rolling-back') {
        await this.rollbackBatch(doc, signal);
        if (this.closing || signal.aborted) return;
        return this.finish(doc, 'rolled-back');
      }
      if (doc.state !== 'running') return;
      if (doc.batch >= doc.batches) return this.finish(doc, 'done');
      const wait = doc.nextBatchAt ? Date.parse(doc.nextBatchAt) - Date.now() : 0;
      if (wait > 0) await sleep(wait, signal);
      if (this.closing || signal.aborted) return;
      const batch = doc.machines.filter((m) => m.batch === doc.batch);
      const todo = batch.filter((m) => !m.result);
      await pool(todo, doc.spec.maxUnavailable ?? batch.length, (rm) => this.runMachine(doc, rm, signal));
      if (this.closing || signal.aborted) return;
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
      await this.save(doc);
      this.progress(doc);
    }
  }

  private launch(doc: Rollout) {
    if (this.live.has(doc.id) || this.closing) return;
    const ctl = new AbortController();
    this.live.set(doc.id, { doc, ctl, saving: Promise.resolve() });
    let failed = false;
    this.drive(doc, ctl.signal)
      .catch((err) => {
        failed = true;
        this.deps.log.error({ err, rollout: doc.id }, 'rollout stopped on an error; it resumes at restart');
      })
      .finally(() => {
        if (this.live.get(doc.id)?.ctl === ctl) this.live.delete(doc.id);
        // Resumed while this driver was returning from a pause: go on.
        if (ACTIVE.has(doc.state) && !ctl.signal.aborted && !failed) this.launch(doc);
      });
  }

  async get(id: string): Promise<Rollout> {
    const l = this.live.get(id);
    if (l) return l.doc;
    const s = await this.deps.store.get('rollouts', id);
    // The table also keeps single reprovisions (singles.ts): they are no rollout.
    if (!s || (s.doc as { type?: string }).type !== undefined)
      throw new RolloutError(404, `rollout '${id}' does not exist`);
    return s.doc as unknown as Rollout;
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
    await store.create('rollouts', doc.id, doc as never);
    this.progress(doc);
    this.launch(doc);
    return doc;
  }

  /** At daemon start: every rollout that was running goes on from its last persisted step. */
  async start() {
    const { items } = await this.deps.store.list('rollouts', { filters: [NOT_SINGLE] });
    for (const i of items) {
      const doc = i.doc as unknown as Rollout;
      if (!ACTIVE.has(doc.state)) continue;
      this.deps.log.info({ rollout: doc.id, batch: doc.batch, state: doc.state }, 'rollout resumes');
      this.launch(doc);
    }
  }

  async pause(id: string): Promise<Rollout> {
    const doc = await this.get(id);
    if (doc.state !== 'running') throw new RolloutError(409, `rollout is ${doc.state}: only a running one pauses`);
    doc.state = 'paused';
    await this.save(doc);
    this.progress(doc);
    return doc;
  }

  async resume(id: string): Promise<Rollout> {
    const doc = await this.get(id);
    if (doc.state !== 'paused') throw new RolloutError(409, `rollout is ${doc.state}: only a paused one resumes`);
    doc.state = 'running';
    await this.save(doc);
    this.progress(doc);
    // A pause lets the batch in flight finish: a driver still winding it down sees `running` and goes on, one
    // that has just returned relaunches (launch's finally).
    this.launch(doc);
    return doc;
  }

  async abort(id: string): Promise<Rollout> {
    const doc = await this.get(id);
    if (FINAL.has(doc.state)) throw new RolloutError(409, `rollout is ${doc.state} already`);
    this.live.get(id)?.ctl.abort();
    await this.finish(doc, 'aborted', 'aborted by request');
    return doc;
  }

  /** Stops driving (the documents keep their state: the next start resumes them). */
  async close() {
    this.closing = true;
    for (const l of this.live.values()) l.ctl.abort();
    await Promise.all([...this.live.values()].map((l) => l.saving.catch(() => undefined)));
  }
}
