import { Ajv, type ValidateFunction } from 'ajv';
import type { Bus } from '../events.js';
import type { FieldError } from '../model/errors.js';
import type { Machine } from '../model/machine.js';
import type { ParamDef, Profile } from '../model/profile.js';
import type { Store } from '../store/store.js';

/** The profile every machine inherits last, before param defaults (as in Digital Rebar). */
export const GLOBAL_PROFILE = 'global';

const ajv = new Ajv({ allErrors: true, strict: false });
const compiled = new Map<string, ValidateFunction>();

/** Compile (and cache) a param's JSON schema; an invalid schema returns the reason. */
export function compileSchema(schema: Record<string, unknown>): ValidateFunction | string {
  const k = JSON.stringify(schema);
  const hit = compiled.get(k);
  if (hit) return hit;
  try {
    const fn = ajv.compile(schema);
    if (compiled.size > 1000) compiled.clear();
    compiled.set(k, fn);
    return fn;
  } catch (err) {
    return (err as Error).message;
  }
}

async function defs(store: Store): Promise<Map<string, ParamDef>> {
  const { items } = await store.list('params');
  return new Map(items.map((s) => [s.key, s.doc as ParamDef]));
}

/** Values set on a machine or profile must satisfy their param's schema. */
export async function checkParamValues(
  store: Store,
  params: Record<string, unknown>,
  prefix = 'params',
): Promise<FieldError[]> {
  const errors: FieldError[] = [];
  const keys = Object.keys(params);
  if (keys.length === 0) return errors;
  const all = await defs(store);
  for (const k of keys) {
    const def = all.get(k);
    if (!def) continue;
    const v = compileSchema(def.schema);
    if (typeof v === 'string') continue;
    if (!v(params[k])) {
      const msg = (v.errors ?? []).map((e) => `${e.instancePath || 'value'} ${e.message}`).join('; ');
      errors.push({ path: `${prefix}.${k}`, message: `does not match param '${k}' schema: ${msg}` });
    }
  }
  return errors;
}

export async function secureParamNames(store: Store): Promise<Set<string>> {
  const { items } = await store.list('params', { filters: [{ field: 'secure', value: true }] });
  return new Set(items.map((i) => i.key));
}

/**
 * The names of secure params, needed to redact every list and every machine's params: cached until a param
 * definition changes (a `params.*` event), shared by the routes of one app.
 */
export function secureNamesCache(store: Store, bus: Bus): () => Promise<Set<string>> {
  let cached: Promise<Set<string>> | undefined;
  bus.on((e) => {
    if (e.type.startsWith('params.')) cached = undefined;
  });
  return () => {
    cached ??= secureParamNames(store).catch((err) => {
      cached = undefined;
      throw err;
    });
    return cached;
  };
}

export type Resolved = { values: Record<string, unknown>; sources: Record<string, string> };

/**
 * The one place params resolve: machine -> its profiles in order -> the global profile -> the param's default.
 * `sources` says where each value came from ("machine", "profile:foo", "profile:global", "default").
 */
export async function resolveParams(store: Store, machine: Pick<Machine, 'params' | 'profiles'>): Promise<Resolved> {
  return resolveWith(store, machine, await defs(store));
}

/**
 * A boot render's params: resolved as above, and the names of the secure ones, from one read of the param
 * definitions.
 */
export async function resolveParamsForBoot(
  store: Store,
  machine: Pick<Machine, 'params' | 'profiles'>,
): Promise<Resolved & { secure: Set<string> }> {
  const all = await defs(store);
  const secure = new Set([...all].filter(([, d]) => d.secure === true).map(([name]) => name));
  return { ...(await resolveWith(store, machine, all)), secure };
}

async function resolveWith(
  store: Store,
  machine: Pick<Machine, 'params' | 'profiles'>,
  all: Map<string, ParamDef>,
): Promise<Resolved> {
  const values: Record<string, unknown> = {};
  const sources: Record<string, string> = {};
  const take = (params: Record<string, unknown>, source: string) => {
    for (const [k, v] of Object.entries(params)) {
      if (!(k in values)) {
        values[k] = v;
        sources[k] = source;
      }
    }
  };
  take(machine.params ?? {}, 'machine');
  for (const name of [...(machine.profiles ?? []), GLOBAL_PROFILE]) {
    const p = await store.get('profiles', name);
    if (p) take((p.doc as Profile).params ?? {}, `profile:${name}`);
  }
  for (const [name, def] of all) {
    if (!(name in values) && def.schema && 'default' in def.schema) {
      values[name] = def.schema.default;
      sources[name] = 'default';
    }
  }
  return { values, sources };
}

export const SECURE_MASK = '(secure)';

export function redactParams(params: Record<string, unknown> | undefined, secure: Set<string>) {
  if (!params || secure.size === 0) return params;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(params)) out[k] = secure.has(k) ? SECURE_MASK : v;
  return out;
}
