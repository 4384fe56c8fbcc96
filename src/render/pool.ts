import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { MessageChannel, type MessagePort, Worker } from 'node:worker_threads';
import type { RenderInput } from './engine.js';
import { RenderError } from './errors.js';

/**
 * A pool of render workers (worker.cjs). A template is untrusted: one that includes itself, loops or builds huge
 * strings used to hold the event loop for seconds (8 parallel GETs of a self-including template: 13 s, 890 MB).
 * Here a render runs on another thread, with a wall-clock timeout after which its worker is terminated and
 * replaced, a heap cap per worker, and a bounded queue: DHCP, TFTP and the API keep answering meanwhile.
 */
export type PoolOptions = {
  /** Worker threads (default min(2, cores)). */
  size?: number;
  /** Renders waiting for a worker before new ones are refused (default 1024: a rack powering on at once renders a script per machine). */
  queue?: number;
  /** Wall-clock limit of one render, ms (default 5000): its worker is terminated and replaced. */
  timeoutMs?: number;
  /** Old-generation heap of each worker, MiB (default 64): a worker that needs more dies and is replaced. */
  maxOldGenerationSizeMb?: number;
};

/** One render, as engine.ts's callers give it. */
export type Job = RenderInput;

export type JobResult = { ok: true; text: string } | { ok: false; message: string; line?: number; busy?: boolean };

/** Liquid's own limits, kept inside the worker as before (parse size, render time, string memory). */
const LIMITS = { parseLimit: 1_000_000, renderLimit: 2_000, memoryLimit: 32 * 1024 * 1024 };

type Pending = { job: Job; id: number; resolve: (r: JobResult) => void };

type Slot = {
  worker: Worker;
  signal: Int32Array;
  replies: MessagePort;
  current?: Pending;
  timer?: NodeJS.Timeout;
  dead: boolean;
};

const WORKER = fileURLToPath(new URL('./worker.cjs', import.meta.url));
const LIQUID = createRequire(import.meta.url).resolve('liquidjs');

export class RenderPool {
  readonly size: number;
  readonly queueMax: number;
  readonly timeoutMs: number;
  readonly heapMb: number;
  private slots: Slot[] = [];
  private waiting: Pending[] = [];
  private nextId = 1;
  private closed = false;
  /** Workers replaced after a timeout or a crash (for tests and metrics). */
  replaced = 0;

  constructor(opts: PoolOptions = {}) {
    this.size = Math.max(1, opts.size ?? Math.min(2, availableParallelism()));
    this.queueMax = Math.max(0, opts.queue ?? 1024);
    this.timeoutMs = Math.max(50, opts.timeoutMs ?? 5000);
    this.heapMb = Math.max(16, opts.maxOldGenerationSizeMb ?? 64);
  }

  run(job: Job): Promise<JobResult> {
    if (this.closed) return Promise.resolve({ ok: false, message: 'the render pool is closed' });
    return new Promise((resolve) => {
      const p: Pending = { job, id: this.nextId++, resolve };
      const slot = this.idleSlot();
      if (slot) return this.start(slot, p);
      if (this.waiting.length >= this.queueMax) {
        return resolve({
          ok: false,
          busy: true,
          message: `too many renders waiting (${this.waiting.length}): try again shortly`,
        });
      }
      this.waiting.push(p);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.waiting.splice(0)) p.resolve({ ok: false, message: 'the render pool is closed' });
    await Promise.all(this.slots.map((s) => this.kill(s, 'the render pool is closed')));
    this.slots = [];
  }

  private idleSlot(): Slot | undefined {
    if (this.closed) return undefined;
    const idle = this.slots.find((s) => !s.dead && !s.current);
    if (idle) return idle;
    if (this.slots.length < this.size) {
      const s = this.spawn();
      this.slots.push(s);
      return s;
    }
    return undefined;
  }

  private spawn(): Slot {
    const signal = new Int32Array(new SharedArrayBuffer(4));
    const { port1, port2 } = new MessageChannel();
    const worker = new Worker(WORKER, {
      workerData: {
        liquid: LIQUID,
        limits: LIMITS,
        signal: signal.buffer,
        replies: port1,
        callTimeoutMs: this.timeoutMs,
      },
      transferList: [port1],
      // Not the daemon's loader flags (tsx): the worker is plain CommonJS.
      execArgv: [],
      env: {},
      resourceLimits: { maxOldGenerationSizeMb: this.heapMb, maxYoungGenerationSizeMb: 16 },
    });
    worker.unref();
    const slot: Slot = { worker, signal, replies: port2, dead: false };
    worker.on('message', (m: { id: number; call?: { name: string; args: unknown[] } } & JobResult) => {
      if (m.call) return this.answer(slot, m.id, m.call);
      const p = slot.current;
      if (!p || p.id !== m.id) return;
      this.finish(slot, m.ok ? { ok: true, text: m.text } : { ok: false, message: m.message, line: m.line });
    });
    worker.on('error', (err) => {
      const oom = (err as NodeJS.ErrnoException).code === 'ERR_WORKER_OUT_OF_MEMORY';
      this.lost(
        slot,
        oom ? `needed more than ${this.heapMb} MiB: stopped` : `the render worker failed: ${err.message}`,
      );
    });
    worker.on('exit', (code) => this.lost(slot, `the render worker exited (code ${code})`));
    return slot;
  }

  private start(slot: Slot, p: Pending) {
    slot.current = p;
    slot.worker.ref(); // a render in flight keeps the process alive, an idle pool does not
    slot.timer = setTimeout(() => {
      void this.kill(slot, `took longer than ${this.timeoutMs} ms: stopped`);
    }, this.timeoutMs);
    const { filters, ...data } = p.job;
    try {
      slot.worker.postMessage({ ...data, id: p.id, hostFilters: Object.keys(filters ?? {}) });
    } catch (err) {
      this.finish(slot, { ok: false, message: `its context cannot be passed to a render worker: ${String(err)}` });
    }
  }

  /** A host filter called from the worker: run it here and wake the worker with the answer. */
  private answer(slot: Slot, id: number, call: { name: string; args: unknown[] }) {
    const reply = (m: Record<string, unknown>) => {
      try {
        slot.replies.postMessage(m);
      } catch (err) {
        slot.replies.postMessage({ ok: false, message: `filter '${call.name}': ${String(err)}` });
      }
      Atomics.store(slot.signal, 0, 1);
      Atomics.notify(slot.signal, 0);
    };
    if (slot.dead) return;
    const fn = slot.current?.id === id ? slot.current.job.filters?.[call.name] : undefined;
    if (!fn) return reply({ ok: false, message: `filter '${call.name}' is gone` });
    try {
      reply({ ok: true, value: fn(...(call.args as [unknown, ...unknown[]])) });
    } catch (err) {
      // A RenderError (a missing param) reaches the caller verbatim, as when filters ran on this thread.
      const render = err instanceof RenderError;
      reply({ ok: false, render, message: String((err as Error)?.message ?? err) });
    }
  }

  private finish(slot: Slot, r: JobResult) {
    const p = slot.current;
    clearTimeout(slot.timer);
    slot.current = undefined;
    if (!slot.dead) slot.worker.unref();
    p?.resolve(r);
    this.next();
  }

  private next() {
    while (this.waiting.length) {
      const slot = this.idleSlot();
      if (!slot) return;
      this.start(slot, this.waiting.shift()!);
    }
  }

  /** A timeout (or close): terminate the worker; its render fails; a new worker takes the queue. */
  private async kill(slot: Slot, why: string) {
    this.lost(slot, why);
    await slot.worker.terminate().catch(() => {});
  }

  private lost(slot: Slot, why: string) {
    if (slot.dead) return;
    slot.dead = true;
    this.replaced++;
    this.slots = this.slots.filter((s) => s !== slot);
    slot.replies.close();
    if (slot.current) this.finish(slot, { ok: false, message: why });
    else this.next();
  }
}
