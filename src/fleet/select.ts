/**
 * A rollout's machines and batches: the selector resolved against the inventory once, at creation (a machine added
 * later is not swept into a running rollout), then cut into batches in name order.
 */
import type { Machine } from '../model/machine.js';
import type { RolloutSpec } from '../model/rollout.js';
import type { Store } from '../store/store.js';

/** `*` any run, `?` one character; everything else literal. */
export function globRegExp(pattern: string): RegExp {
  const body = pattern
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

export async function selectMachines(store: Store, sel: RolloutSpec['selector']): Promise<Machine[]> {
  let pool: Machine[];
  if (sel.machines) {
    pool = [];
    for (const id of sel.machines) {
      const key = (await store.get('machines', id)) ? id : await store.keyOf('machines', 'name', id);
      const m = key ? ((await store.get('machines', key))?.doc as Machine | undefined) : undefined;
      if (!m) throw new SelectError(`machine '${id}' does not exist`);
      pool.push(m);
    }
  } else {
    pool = (await store.list('machines')).items.map((i) => i.doc as Machine);
  }
  const name = sel.namePattern ? globRegExp(sel.namePattern) : undefined;
  const out = pool.filter(
    (m) =>
      (!name || name.test(m.name)) &&
      (!sel.profile || m.profiles.includes(sel.profile)) &&
      Object.entries(sel.params ?? {}).every(([k, v]) => m.params?.[k] === v),
  );
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

export class SelectError extends Error {}

/** Batch sizes: batchSize, or a percentage of the machines (at least one), or one machine a batch. */
export function batchSize(spec: Pick<RolloutSpec, 'batchSize' | 'percentage'>, total: number): number {
  if (spec.batchSize) return spec.batchSize;
  if (spec.percentage) return Math.max(1, Math.floor((total * spec.percentage) / 100));
  return 1;
}
