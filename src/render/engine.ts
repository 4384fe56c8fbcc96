import { RenderBusyError, RenderError } from './errors.js';
import { type PoolOptions, RenderPool } from './pool.js';

export type { PoolOptions };
export { RenderBusyError, RenderError };

/**
 * Templates arrive through the API, so they are untrusted: LiquidJS interprets them (no compilation to
 * JavaScript), reads only own properties of the context, has no file system (includes resolve to other
 * templates by id, from memory), and is bounded in parse size, render time and memory. Renders run in a pool
 * of child processes (pool.ts) with a wall-clock timeout, a heap cap and a bounded queue, never on the event loop
 * and never in the daemon's own process.
 */
export type RenderInput = {
  /** Name shown in errors: "bootenv lab / ipxe" or "template cloud-init". */
  name: string;
  source: string;
  /** Plain data (it is copied to a render process): no functions, no class instances. */
  context: Record<string, unknown>;
  /** Other templates by id, for {% include 'id' %} / {% render 'id' %}. */
  templates?: Record<string, string>;
  /**
   * The `param` filter as data, run inside the render process: `{{ "name" | param }}` gives values[name]; a name in
   * `known` without a value gives ''; any other name fails the render ("param 'x' is not set for machine 'm'").
   */
  param?: { values: Record<string, unknown>; known: string[]; machine: string };
};

let pool: RenderPool | undefined;
let poolOptions: PoolOptions = {};

/** Sets the pool's size, queue, timeout and heap cap (the daemon at start; tests). Replaces a running pool. */
export function configureRenderPool(opts: PoolOptions): void {
  poolOptions = { ...opts };
  const old = pool;
  pool = undefined;
  void old?.close();
}

export function renderPool(): RenderPool {
  pool ??= new RenderPool(poolOptions);
  return pool;
}

/** Stops the workers (a stopping daemon; idle workers never keep the process alive anyway). */
export async function closeRenderPool(): Promise<void> {
  const old = pool;
  pool = undefined;
  await old?.close();
}

export async function renderTemplate(input: RenderInput): Promise<string> {
  const r = await renderPool().run(input);
  if (r.ok) return r.text;
  const where = `${input.name}${r.line ? ` line ${r.line}` : ''}`;
  if (r.busy) throw new RenderBusyError(`${where}: ${r.message}`, input.name);
  throw new RenderError(`${where}: ${r.message}`, input.name, r.line);
}
