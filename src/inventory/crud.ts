import { type Bus, type CrudData, crudEvent } from '../events.js';
import { InvalidError, StateConflictError } from '../model/errors.js';
import { etagOf } from '../store/batch.mjs';
import { type Doc, NotFoundError, PreconditionError, type Store, type Stored } from '../store/store.js';
import type { Resource } from './resources.js';
import { zodIssues } from './zod.js';

/** What the CRUD functions write through: the store, the bus that hears of each write, and the clock. */
export type CrudDeps = { store: Store; bus: Bus; now?: () => Date };

/** Which object an event is about (never its content: events go to viewer tokens, params may be secure). */
/**
 * The event a write publishes, also handed to the store so that a shared inventory (PostgreSQL) logs it in the
 * write's own transaction and the other daemons publish the same (src/peer-events.ts). The etag is the one the
 * store will give the document (both backends hash the JSON as written), so peers' SSE carries the real one.
 */
function changeOf(res: Resource, verb: 'created' | 'updated' | 'deleted', key: string, doc: Doc) {
  const bus = crudEvent(res.kind, verb, key, named(doc, verb === 'deleted' ? undefined : etagOf(JSON.stringify(doc))));
  return { bus, event: { type: bus.type, key, data: bus } };
}

const named = (doc: Doc, etag?: string): CrudData => ({
  ...(typeof doc.name === 'string' ? { name: doc.name } : {}),
  ...(etag ? { etag } : {}),
});

const nowOf = (inv: CrudDeps) => (inv.now ? inv.now() : new Date()).toISOString();

/** Parse with the resource's schema, complete server-managed fields, check references. */
async function validate(inv: CrudDeps, res: Resource, input: unknown, old: Doc | undefined): Promise<Doc> {
  const parsed = res.schema.safeParse(input);
  if (!parsed.success) {
    const errors = zodIssues(parsed.error);
    throw new InvalidError(`${res.kind.replace(/s$/, '')} is not valid`, errors);
  }
  const ctx = { store: inv.store, now: nowOf(inv) };
  const doc = res.prepare ? await res.prepare(parsed.data as Doc, old, ctx) : (parsed.data as Doc);
  const errors = res.check ? await res.check(doc, old, ctx) : [];
  if (errors.length)
    throw new InvalidError(`${res.kind.replace(/s$/, '')} '${doc[res.keyField] ?? ''}' is not valid`, errors);
  return doc;
}

export async function resolveKey(inv: CrudDeps, res: Resource, id: string): Promise<string> {
  const key = res.resolveKey ? await res.resolveKey(inv.store, id) : id;
  if (key === undefined) throw new NotFoundError(res.kind, id);
  return key;
}

/**
 * The stored document a URL's id names, in as few queries as the id allows: a read of a machine by its uuid is
 * one lookup (resolveKey then get were two, a sixth of an API GET's CPU time), by name two.
 */
export async function findDoc(inv: CrudDeps, res: Resource, id: string): Promise<Stored> {
  const s = res.find ? await res.find(inv.store, id) : await inv.store.get(res.kind, id);
  if (!s) throw new NotFoundError(res.kind, id);
  return s;
}

export async function createDoc(inv: CrudDeps, res: Resource, input: unknown): Promise<Stored> {
  const doc = await validate(inv, res, input, undefined);
  const key = String(doc[res.keyField]);
  const change = changeOf(res, 'created', key, doc);
  const stored = await inv.store.create(res.kind, key, doc, res.uniques?.(doc) ?? [], { event: change.event });
  inv.bus.emit(change.bus);
  return stored;
}

function keyMustMatch(res: Resource, key: string, doc: Record<string, unknown>) {
  // Machines are keyed by uuid, which the body may omit; other kinds are keyed by name/id, which must match.
  const given = doc[res.keyField];
  if (given !== undefined && given !== key) {
    throw new StateConflictError(
      `${res.keyField} '${String(given)}' in the body does not match '${key}' in the URL: keys cannot be renamed, create a new one and delete the old`,
      [{ path: res.keyField, message: 'does not match the URL' }],
    );
  }
}

export async function replaceDoc(
  inv: CrudDeps,
  res: Resource,
  key: string,
  input: unknown,
  ifMatch?: string,
): Promise<Stored> {
  const old = await inv.store.get(res.kind, key);
  if (!old) throw new NotFoundError(res.kind, key);
  if (ifMatch !== undefined && ifMatch !== old.etag) throw new PreconditionError(res.kind, key);
  const body = input !== null && typeof input === 'object' && !Array.isArray(input) ? { ...(input as Doc) } : input;
  if (body && typeof body === 'object') {
    keyMustMatch(res, key, body as Doc);
    (body as Doc)[res.keyField] = key;
  }
  const doc = await validate(inv, res, body, old.doc);
  const change = changeOf(res, 'updated', key, doc);
  const stored = await inv.store.replace(res.kind, key, doc, res.uniques?.(doc) ?? [], {
    ifMatch: old.etag,
    event: change.event,
  });
  inv.bus.emit(change.bus);
  return stored;
}

/**
 * Read, apply `change` to the stored document, validate, write back only if nobody wrote in between
 * (the etag read is the write's precondition). Without a client If-Match a lost race is retried.
 */
export async function modifyDoc(
  inv: CrudDeps,
  res: Resource,
  key: string,
  change: (doc: Doc) => unknown,
  ifMatch?: string,
): Promise<Stored> {
  for (let attempt = 0; ; attempt++) {
    const old = await inv.store.get(res.kind, key);
    if (!old) throw new NotFoundError(res.kind, key);
    if (ifMatch !== undefined && ifMatch !== old.etag) throw new PreconditionError(res.kind, key);
    const next = change(structuredClone(old.doc));
    if (next === null || typeof next !== 'object' || Array.isArray(next)) {
      throw new InvalidError('the patched document must be a JSON object', [{ path: '', message: 'not an object' }]);
    }
    keyMustMatch(res, key, next as Doc);
    const doc = await validate(inv, res, next, old.doc);
    try {
      const change = changeOf(res, 'updated', key, doc);
      const stored = await inv.store.replace(res.kind, key, doc, res.uniques?.(doc) ?? [], {
        ifMatch: old.etag,
        event: change.event,
      });
      inv.bus.emit(change.bus);
      return stored;
    } catch (err) {
      if (err instanceof PreconditionError && ifMatch === undefined && attempt < 3) continue;
      throw err;
    }
  }
}

export async function deleteDoc(inv: CrudDeps, res: Resource, key: string, ifMatch?: string): Promise<void> {
  const old = await inv.store.get(res.kind, key);
  if (!old) throw new NotFoundError(res.kind, key);
  if (ifMatch !== undefined && ifMatch !== old.etag) throw new PreconditionError(res.kind, key);
  await res.beforeDelete?.(key, old.doc, { store: inv.store, now: nowOf(inv) });
  const change = changeOf(res, 'deleted', key, old.doc);
  await inv.store.remove(res.kind, key, { ifMatch: old.etag, event: change.event });
  inv.bus.emit(change.bus);
}
