import { type ChildProcess, spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { RenderInput } from './engine.js';

/**
 * A pool of render workers: child processes running worker.cjs. A template is untrusted: one that includes
 * itself, loops or builds huge strings used to hold the event loop for seconds (8 parallel GETs of a
 * self-including template: 13 s, 890 MB). Here a render runs in another process, with a wall-clock timeout after
 * which that process is killed and replaced, a heap cap per process, and a bounded queue: DHCP, TFTP and the API
 * keep answering meanwhile. Processes, not worker threads: a template whose one allocation overshoots a thread's
 * heap cap by V8's slack (an array doubled by `concat`) ended the whole daemon (FATAL ERROR: Reached heap limit);
 * in a process it ends only that process.
 */
export type PoolOptions = {
  /** Render processes (default min(2, cores)). */
  size?: number;
  /** Renders waiting for a worker before new ones are refused (default 1024: a rack powering on at once renders a script per machine). */
  queue?: number;
  /** Wall-clock limit of one render, ms (default 5000): its process is killed and replaced. */
  timeoutMs?: number;
  /** Old-generation heap of each render process, MiB (default 64): a render that needs more ends it; it is replaced. */
  maxOldGenerationSizeMb?: number;
};

/** One render, as engine.ts's callers give it. */
export type Job = RenderInput;

export type JobResult = { ok: true; text: string } | { ok: false; message: string; line?: number; busy?: boolean };

/** Liquid's own limits, kept inside the worker as before (parse size, render time, string memory). */
const LIMITS = { parseLimit: 1_000_000, renderLimit: 2_000, memoryLimit: 32 * 1024 * 1024 };

type Pending = { job: Job; id: number; resolve: (r: JobResult) => void };

type Slot = {
  child: ChildProcess;
  current?: Pending;
  timer?: NodeJS.Timeout;
  /** The worker said it is loaded: a render's clock runs from then, not from the spawn (node's start, liquidjs). */
  ready: boolean;
  /** Kills a worker that never says it is loaded (STARTUP_MS). */
  startup?: NodeJS.Timeout;
  dead: boolean;
  /** The tail of the process's stderr, and whether it has said V8's "heap out of memory" (a heap cap, not a crash). */
  stderr: string;
  oom: boolean;
};

const OOM = /heap out of memory|Reached heap limit/;

/**
 * How long a render process may take to load before it is replaced. Its start is not a render's time: on a loaded
 * 2-core machine node and liquidjs took over 300 ms to load, which a short timeout counted against the first
 * render on a new process (the pool's test failed so).
 */
const STARTUP_MS = 30_000;

/** Not yet exited (nor killed by a signal). */
const running = (c: ChildProcess) => c.exitCode === null && c.signalCode === null;

const WORKER = fileURLToPath(new URL('./worker.cjs', import.meta.url));
const LIQUID = createRequire(import.meta.url).resolve('liquidjs');
/**
 * How a render process starts: no core file when V8 aborts it at its heap cap (a template's doing, not a bug to
 * debug), and none of the daemon's capabilities (CAP_NET_RAW, CAP_NET_ADMIN, ... as root or given by systemd):
 * setpriv (util-linux) empties the bounding set where it may (root) and the inheritable and ambient sets, with no
 * new privileges. Without setpriv, node runs as is.
 */
const DROP = '--inh-caps=-all --ambient-caps=-all --no-new-privs';
const START = [
  'ulimit -c 0 2>/dev/null',
  'if command -v setpriv >/dev/null 2>&1; then',
  `  setpriv --bounding-set=-all ${DROP} true 2>/dev/null && exec setpriv --bounding-set=-all ${DROP} -- "$@"`,
  `  setpriv ${DROP} true 2>/dev/null && exec setpriv ${DROP} -- "$@"`,
  'fi',
  'exec "$@"',
].join('\n');

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

  /** The render processes running now (tests: the environment they got, and that close() ends them). */
  pids(): number[] {
    return this.slots.flatMap((s) => (s.dead || s.child.pid === undefined ? [] : [s.child.pid]));
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
    const argv = [process.execPath, `--max-old-space-size=${this.heapMb}`, WORKER, LIQUID, JSON.stringify(LIMITS)];
    // An empty environment (no secrets, no NODE_OPTIONS, not the daemon's loader flags: the worker is CommonJS),
    // in / (not the daemon's data directory).
    const child = spawn('/bin/sh', ['-c', START, 'sh', ...argv], {
      env: {},
      cwd: '/',
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      serialization: 'advanced',
    });
    const slot: Slot = { child, dead: false, stderr: '', oom: false, ready: false };
    slot.startup = setTimeout(() => {
      void this.kill(slot, `the render worker did not start within ${STARTUP_MS / 1000} s: stopped`);
    }, STARTUP_MS);
    slot.startup.unref();
    this.idle(slot);
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      slot.stderr = (slot.stderr + chunk).slice(-4096);
      slot.oom ||= OOM.test(slot.stderr);
    });
    child.on('message', (m: ({ id: number } & JobResult) | { ready: true }) => {
      if ('ready' in m) {
        slot.ready = true;
        clearTimeout(slot.startup);
        if (slot.current) this.arm(slot);
        return;
      }
      const p = slot.current;
      if (!p || p.id !== m.id) return;
      this.finish(slot, m.ok ? { ok: true, text: m.text } : { ok: false, message: m.message, line: m.line });
    });
    child.on('error', (err) => this.lost(slot, `the render worker failed: ${err.message}`));
    child.on('close', (code, signal) => {
      this.lost(
        slot,
        slot.oom
          ? `needed more than ${this.heapMb} MiB: stopped`
          : `the render worker exited (${signal ? `signal ${signal}` : `code ${code}`})`,
      );
    });
    return slot;
  }

  /** An idle process keeps the daemon alive no more than an idle thread did. */
  private idle(slot: Slot) {
    slot.child.unref();
    slot.child.channel?.unref();
    (slot.child.stderr as { unref?: () => void } | null)?.unref?.();
  }

  /** A render's wall-clock limit, from when its worker is loaded (STARTUP_MS bounds the load). */
  private arm(slot: Slot) {
    slot.timer = setTimeout(() => {
      void this.kill(slot, `took longer than ${this.timeoutMs} ms: stopped`);
    }, this.timeoutMs);
  }

  private start(slot: Slot, p: Pending) {
    slot.current = p;
    slot.child.ref(); // a render in flight keeps the process alive, an idle pool does not
    if (slot.ready) this.arm(slot);
    try {
      slot.child.send({ ...p.job, id: p.id }, (err) => {
        if (err) this.lost(slot, `the render worker failed: ${err.message}`);
      });
    } catch (err) {
      this.finish(slot, { ok: false, message: `its context cannot be passed to a render worker: ${String(err)}` });
    }
  }

  private finish(slot: Slot, r: JobResult) {
    const p = slot.current;
    clearTimeout(slot.timer);
    slot.current = undefined;
    if (!slot.dead) this.idle(slot);
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

  /** A timeout (or close): kill the process; its render fails; a new process takes the queue. */
  private async kill(slot: Slot, why: string) {
    const { child } = slot;
    // Referenced while it is awaited: an idle process is not, and close() would otherwise never settle in a
    // program with nothing else to wait for (Node exits with the promise pending).
    child.ref();
    const exited = running(child) ? new Promise((r) => child.once('exit', r)) : undefined;
    this.lost(slot, why);
    await exited;
  }

  private lost(slot: Slot, why: string) {
    if (slot.dead) return;
    slot.dead = true;
    clearTimeout(slot.startup);
    this.replaced++;
    this.slots = this.slots.filter((s) => s !== slot);
    if (running(slot.child)) slot.child.kill('SIGKILL');
    if (slot.current) this.finish(slot, { ok: false, message: why });
    else this.next();
  }
}
