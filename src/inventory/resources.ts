import { randomUUID } from 'node:crypto';
import type { z } from 'zod';
import { indexedInfo, pinCurrentFiles } from '../files/pins.js';
import { BootEnv } from '../model/bootenv.js';
import { cidrContains, hostBitsSet, ipToInt, notNicMac } from '../model/common.js';
import { type FieldError, InvalidError, StateConflictError } from '../model/errors.js';
import { Machine } from '../model/machine.js';
import { ParamDef, Prefs, Profile } from '../model/profile.js';
import { Lease, Reservation, Subnet } from '../model/subnet.js';
import { Template } from '../model/template.js';
import { includeCycle, literalIncludes } from '../render/includes.js';
import type { Doc, Kind, Store, Stored, UniqueValue } from '../store/store.js';
import { isUuid } from '../uuid.js';
import { checkParamValues, compileSchema, GLOBAL_PROFILE, redactParams } from './params.js';

/** What a resource's hooks see while a write is validated: the store to check references in, and the write's time. */
export type WriteCtx = { store: Store; now: string };

/** The kinds the inventory API serves, each one a Resource below (the store holds a few more: prefs, tokens, ...). */
export type ResourceKind =
  | 'machines'
  | 'bootenvs'
  | 'templates'
  | 'subnets'
  | 'reservations'
  | 'leases'
  | 'profiles'
  | 'params';

/**
 * One inventory resource: how its documents are keyed, validated, completed with server-managed fields, and
 * checked against the rest of the inventory. The REST API and the daemon's own writers (DHCP discovery) share it.
 */
export type Resource = {
  kind: ResourceKind;
  keyField: string;
  schema: z.ZodObject<any>;
  summary: string;
  readOnly?: boolean;
  uniques?(doc: Doc): UniqueValue[];
  prepare?(doc: Doc, old: Doc | undefined, ctx: WriteCtx): Promise<Doc> | Doc;
  check?(doc: Doc, old: Doc | undefined, ctx: WriteCtx): Promise<FieldError[]>;
  beforeDelete?(key: string, doc: Doc, ctx: WriteCtx): Promise<void>;
  /** Alternative identifiers accepted in URLs (a machine's name as well as its uuid). */
  resolveKey?(store: Store, id: string): Promise<string | undefined>;
  /** The document `resolveKey` names, fetched with as few lookups as the id allows. */
  find?(store: Store, id: string): Promise<Stored | undefined>;
  redact?(doc: Doc, secure: Set<string>): Doc;
};

async function exists(store: Store, kind: Kind, key: string | undefined): Promise<boolean> {
  return key === undefined || (await store.get(kind, key)) !== undefined;
}

async function users(store: Store, kind: Kind, field: string, value: string, array = false): Promise<string[]> {
  const { items, total } = await store.list(kind, { filters: [{ field, value, array }], limit: 5 });
  const names = items.map((i) => String(i.doc.name ?? i.key));
  return total > names.length ? [...names, `and ${total - names.length} more`] : names;
}

async function refuseIfUsed(ctx: WriteCtx, what: string, kind: Kind, field: string, value: string, array = false) {
  const u = await users(ctx.store, kind, field, value, array);
  if (u.length) {
    throw new StateConflictError(`${what} is used by ${kind} ${u.join(', ')}: change those first`, [
      { path: field, message: `in use by ${u.join(', ')}` },
    ]);
  }
}

const machines: Resource = {
  kind: 'machines',
  keyField: 'uuid',
  schema: Machine,
  summary: 'Machines: servers Plinth provisions',
  // The SMBIOS UUID recognises a machine that PXE-boots from another NIC: never a duplicate record.
  uniques: (d) => {
    const smbios = (d.inventory as { smbiosUuid?: string } | undefined)?.smbiosUuid;
    return [
      { field: 'name', value: String(d.name) },
      ...((d.macs as string[]) ?? []).map((m) => ({ field: 'macs', value: m })),
      ...(smbios ? [{ field: 'smbiosUuid', value: smbios.toLowerCase() }] : []),
    ];
  },
  async prepare(d, old, ctx) {
    const out: Doc = { ...d };
    out.uuid = (d.uuid as string | undefined) ?? (old?.uuid as string | undefined) ?? randomUUID();
    out.createdAt = old?.createdAt ?? ctx.now;
    out.updatedAt = ctx.now;
    if (old?.lastSeen !== undefined && d.lastSeen === undefined) out.lastSeen = old.lastSeen;
    if (out.bootEnv === undefined && old === undefined) {
      const prefs = await getPrefs(ctx.store);
      out.bootEnv = prefs.defaultBootEnv;
    }
    return out;
  },
  async check(d, old, ctx) {
    const errors: FieldError[] = [];
    if (old && old.uuid !== d.uuid) errors.push({ path: 'uuid', message: `uuid cannot change (it is ${old.uuid})` });
    // New MACs only: a machine stored before this rule keeps working (its lastSeen is written at every boot).
    const had = new Set((old?.macs as string[] | undefined) ?? []);
    for (const [i, mac] of ((d.macs as string[]) ?? []).entries()) {
      const why = had.has(mac) ? undefined : notNicMac(mac);
      if (why) errors.push({ path: `macs.${i}`, message: why });
    }
    if (old?.locked === true && d.locked !== false) {
      throw new StateConflictError(`machine '${old.name}' is locked: set "locked": false to change it`, [
        { path: 'locked', message: 'machine is locked' },
      ]);
    }
    if (!(await exists(ctx.store, 'bootenvs', d.bootEnv as string | undefined))) {
      errors.push({ path: 'bootEnv', message: `bootenv '${d.bootEnv}' does not exist: create it or pick another` });
    }
    for (const [i, p] of ((d.profiles as string[]) ?? []).entries()) {
      if (!(await exists(ctx.store, 'profiles', p))) {
        errors.push({ path: `profiles.${i}`, message: `profile '${p}' does not exist` });
      }
    }
    errors.push(...(await checkParamValues(ctx.store, (d.params as Record<string, unknown>) ?? {})));
    return errors;
  },
  async beforeDelete(_key, d) {
    if (d.locked === true) {
      throw new StateConflictError(`machine '${d.name}' is locked: set "locked": false before deleting it`, [
        { path: 'locked', message: 'machine is locked' },
      ]);
    }
  },
  async resolveKey(store, id) {
    if (await store.get('machines', id)) return id;
    return (await store.keyOf('machines', 'name', id)) ?? (await store.keyOf('machines', 'macs', id.toLowerCase()));
  },
  // resolveKey's answer (uuid, then name, then MAC) in fewer lookups: keys are uuids (z.uuid() on every write), so
  // an id of another shape is looked up as a key only when it is no name or MAC either.
  async find(store, id) {
    const uuid = isUuid(id);
    if (uuid) {
      const s = await store.get('machines', id);
      if (s) return s;
    }
    const key =
      (await store.keyOf('machines', 'name', id)) ?? (await store.keyOf('machines', 'macs', id.toLowerCase()));
    if (key !== undefined) return store.get('machines', key);
    return uuid ? undefined : store.get('machines', id);
  },
  redact: (d, secure) => ({ ...d, params: redactParams(d.params as Record<string, unknown>, secure) }),
};

const bootenvs: Resource = {
  kind: 'bootenvs',
  keyField: 'name',
  schema: BootEnv,
  summary: 'Boot environments: what a machine boots (kernel, initrds, command line, rendered templates)',
  // Created without pins: pinned to its kernel and initrds as uploaded now, inside the create, so a later upload
  // to the same paths never changes what this bootenv boots (src/files/pins.ts).
  prepare: (d, old, ctx) => (old ? d : pinCurrentFiles(d, indexedInfo(ctx.store))),
  async check(d, _old, ctx) {
    const errors: FieldError[] = [];
    for (const [i, t] of ((d.templates as { templateId?: string }[]) ?? []).entries()) {
      if (t.templateId && !(await exists(ctx.store, 'templates', t.templateId))) {
        errors.push({ path: `templates.${i}.templateId`, message: `template '${t.templateId}' does not exist` });
      }
    }
    errors.push(...(await inlineCycles(d, ctx)));
    return errors;
  },
  async beforeDelete(key, _d, ctx) {
    await refuseIfUsed(ctx, `bootenv '${key}'`, 'machines', 'bootEnv', key);
    const prefs = await getPrefs(ctx.store);
    for (const f of ['defaultBootEnv', 'unknownBootEnv'] as const) {
      if (prefs[f] === key) {
        throw new StateConflictError(`bootenv '${key}' is the ${f} pref: change the pref first`, [
          { path: f, message: 'in use by prefs' },
        ]);
      }
    }
  },
};

async function templateSources(ctx: WriteCtx): Promise<Record<string, string>> {
  const { items } = await ctx.store.list('templates');
  const sources: Record<string, string> = {};
  for (const t of items) sources[t.key] = String(t.doc.contents ?? '');
  return sources;
}

/** A bootenv's own texts (bootParams, inline templates) or templateIds that reach a stored include cycle. */
async function inlineCycles(d: Doc, ctx: WriteCtx): Promise<FieldError[]> {
  const texts: [string, string][] = [['bootParams', String(d.bootParams ?? '')]];
  const used: (readonly [string, string[]])[] = [];
  for (const [i, t] of ((d.templates as { contents?: string; templateId?: string }[]) ?? []).entries()) {
    if (t.contents !== undefined) texts.push([`templates.${i}.contents`, t.contents]);
    if (t.templateId !== undefined) used.push([`templates.${i}.templateId`, [t.templateId]]);
  }
  for (const [p, text] of texts) {
    const ids = literalIncludes(text);
    if (ids.length) used.push([p, ids]);
  }
  if (used.length === 0) return [];
  const sources = await templateSources(ctx);
  const errors: FieldError[] = [];
  for (const [p, ids] of used) {
    for (const id of ids) {
      const cycle = includeCycle(id, sources);
      if (cycle) {
        errors.push({
          path: p,
          message: `uses template '${id}', which reaches an include cycle (${cycle.join(' -> ')}): fix that template first`,
        });
        break;
      }
    }
  }
  return errors;
}

const templates: Resource = {
  kind: 'templates',
  keyField: 'id',
  schema: Template,
  summary: 'Templates: reusable template texts included by bootenvs',
  // A template that includes itself (directly or through others) renders until a limit stops it, every time a
  // machine asks: refused here, where the operator can fix it. Names given by variables are left to render limits.
  async check(d, _old, ctx) {
    const id = String(d.id);
    const sources = await templateSources(ctx);
    sources[id] = String(d.contents ?? '');
    const cycle = includeCycle(id, sources);
    if (!cycle) return [];
    const loop = cycle.join(' -> ');
    const message =
      cycle[0] === id
        ? `template '${id}' includes itself (${loop}): a render would never end; break the cycle`
        : `template '${id}' includes '${cycle[0]}', which includes itself (${loop}): a render would never end; break the cycle`;
    return [{ path: 'contents', message }];
  },
  async beforeDelete(key, _d, ctx) {
    const { items } = await ctx.store.list('bootenvs');
    const u = items.filter((b) =>
      ((b.doc.templates as { templateId?: string }[]) ?? []).some((t) => t.templateId === key),
    );
    if (u.length) {
      throw new StateConflictError(`template '${key}' is used by bootenvs ${u.map((b) => b.key).join(', ')}`, [
        { path: 'id', message: 'in use' },
      ]);
    }
  },
};

function range(d: Doc): [number, number] | undefined {
  if (d.proxy === true || !d.activeStart || !d.activeEnd) return undefined;
  return [ipToInt(d.activeStart as string), ipToInt(d.activeEnd as string)];
}

const subnets: Resource = {
  kind: 'subnets',
  keyField: 'name',
  schema: Subnet,
  summary: 'Subnets: DHCP address pools, options and boot behaviour per segment',
  async check(d, old, ctx) {
    const bits = old?.subnet === d.subnet ? undefined : hostBitsSet(d.subnet as string);
    if (bits) return [{ path: 'subnet', message: bits }];
    const mine = range(d);
    if (!mine) return [];
    const { items } = await ctx.store.list('subnets');
    for (const o of items) {
      if (o.key === d.name) continue;
      const r = range(o.doc);
      if (r && mine[0] <= r[1] && r[0] <= mine[1]) {
        throw new StateConflictError(
          `subnet '${d.name}': range ${d.activeStart}-${d.activeEnd} overlaps subnet '${o.key}' (${o.doc.activeStart}-${o.doc.activeEnd})`,
          [{ path: 'activeStart', message: `overlaps subnet '${o.key}'` }],
        );
      }
    }
    return [];
  },
  async beforeDelete(key, _d, ctx) {
    await refuseIfUsed(ctx, `subnet '${key}'`, 'reservations', 'subnet', key);
  },
};

const reservations: Resource = {
  kind: 'reservations',
  keyField: 'address',
  schema: Reservation,
  summary: 'Reservations: a fixed address for a MAC in a subnet',
  // A MAC may be reserved once per subnet (a multi-homed relay setup can reserve it in several).
  uniques: (d) => [{ field: 'mac', value: `${d.subnet}/${d.mac}` }],
  async check(d, old, ctx) {
    const why = old?.mac === d.mac ? undefined : notNicMac(d.mac as string);
    if (why) return [{ path: 'mac', message: why }];
    const s = await ctx.store.get('subnets', d.subnet as string);
    if (!s) return [{ path: 'subnet', message: `subnet '${d.subnet}' does not exist` }];
    if (!cidrContains(s.doc.subnet as string, d.address as string)) {
      return [{ path: 'address', message: `${d.address} is outside subnet '${d.subnet}' (${s.doc.subnet})` }];
    }
    return [];
  },
};

const leases: Resource = {
  kind: 'leases',
  keyField: 'address',
  schema: Lease,
  summary: 'Leases: addresses handed out by the DHCP server (read and delete only)',
  readOnly: true,
};

const profiles: Resource = {
  kind: 'profiles',
  keyField: 'name',
  schema: Profile,
  summary: `Profiles: named sets of params machines inherit ('${GLOBAL_PROFILE}' applies to all)`,
  check: (d, _old, ctx) => checkParamValues(ctx.store, (d.params as Record<string, unknown>) ?? {}),
  async beforeDelete(key, _d, ctx) {
    if (key === GLOBAL_PROFILE) {
      throw new StateConflictError(`profile '${GLOBAL_PROFILE}' cannot be deleted: empty its params instead`, [
        { path: 'name', message: 'built in' },
      ]);
    }
    await refuseIfUsed(ctx, `profile '${key}'`, 'machines', 'profiles', key, true);
  },
  redact: (d, secure) => ({ ...d, params: redactParams(d.params as Record<string, unknown>, secure) }),
};

const params: Resource = {
  kind: 'params',
  keyField: 'name',
  schema: ParamDef,
  summary: 'Params: typed settings (JSON schema) that machines and profiles carry',
  async check(d) {
    const v = compileSchema((d.schema as Record<string, unknown>) ?? {});
    return typeof v === 'string' ? [{ path: 'schema', message: `not a valid JSON schema: ${v}` }] : [];
  },
};

/** Every inventory resource, in the order the API and its OpenAPI document list them. */
export const INVENTORY_RESOURCES: readonly Resource[] = [
  machines,
  bootenvs,
  templates,
  subnets,
  reservations,
  leases,
  profiles,
  params,
];

/** The resource of one kind. */
export function inventoryResource(kind: ResourceKind): Resource {
  return INVENTORY_RESOURCES.find((r) => r.kind === kind)!;
}

export const PREFS_KEY = 'global';

export async function getPrefs(store: Store): Promise<Prefs> {
  const s = await store.get('prefs', PREFS_KEY);
  return Prefs.parse(s?.doc ?? {});
}

export { InvalidError };
