import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { z } from 'zod';
import type { Bus } from '../events.js';
import { createDoc, deleteDoc, findDoc, modifyDoc, replaceDoc, resolveKey } from '../inventory/crud.js';
import { getPrefs, INVENTORY_RESOURCES, PREFS_KEY, type Resource } from '../inventory/resources.js';
import { Prefs } from '../model/profile.js';
import type { Filter, Store, Stored } from '../store/store.js';
import { API } from './api-prefix.js';
import { seesSecrets } from './auth.js';
import { jsonPatch, mergePatch } from './patch.js';
import { HttpProblem, validationProblem } from './problem.js';

type Deps = { store: Store; bus: Bus; secureNames: () => Promise<Set<string>> };

/** The zod type under optional/default wrappers: tells how to read a `field=value` query string. */
export function baseType(t: z.ZodType): string {
  let cur: any = t;
  while (cur?._zod?.def && ['optional', 'default', 'nullable', 'pipe', 'prefault'].includes(cur._zod.def.type)) {
    cur = cur._zod.def.type === 'pipe' ? cur._zod.def.in : cur._zod.def.innerType;
  }
  return cur?._zod?.def?.type ?? 'unknown';
}

const reserved = new Set(['limit', 'offset', 'sort']);

/** Kinds an operator token may write (auth.ts has the whole role table). */
const OPERATOR_KINDS = new Set(['machines', 'reservations', 'leases']);

function parseList(res: Resource, query: Record<string, string | string[]>) {
  const shape = res.schema.shape as Record<string, z.ZodType>;
  const filters: Filter[] = [];
  const one = (k: string) => {
    const v = query[k];
    return Array.isArray(v) ? v[v.length - 1]! : v!;
  };
  const intParam = (k: string, max: number) => {
    if (query[k] === undefined) return undefined;
    const s = one(k);
    if (!/^\d+$/.test(s) || Number(s) > max) {
      throw new HttpProblem(400, `query parameter ${k} must be an integer from 0 to ${max}`, [
        { path: k, message: 'not an integer in range' },
      ]);
    }
    return Number(s);
  };
  for (const k of Object.keys(query)) {
    if (reserved.has(k)) continue;
    const t = shape[k];
    if (!t) {
      throw new HttpProblem(
        400,
        `cannot filter ${res.kind} by '${k}': filter by one of ${Object.keys(shape).join(', ')}`,
        [{ path: k, message: 'unknown field' }],
      );
    }
    const raw = one(k);
    const kind = baseType(t);
    if (kind === 'boolean') {
      if (raw !== 'true' && raw !== 'false')
        throw new HttpProblem(400, `filter ${k} must be true or false`, [{ path: k, message: 'not a boolean' }]);
      filters.push({ field: k, value: raw === 'true' });
    } else if (kind === 'number') {
      if (!Number.isFinite(Number(raw)) || raw === '')
        throw new HttpProblem(400, `filter ${k} must be a number`, [{ path: k, message: 'not a number' }]);
      filters.push({ field: k, value: Number(raw) });
    } else if (kind === 'array') {
      filters.push({ field: k, value: k === 'macs' ? raw.toLowerCase().replace(/-/g, ':') : raw, array: true });
    } else if (kind === 'string' || kind === 'enum') {
      filters.push({ field: k, value: k === 'mac' ? raw.toLowerCase().replace(/-/g, ':') : raw });
    } else {
      throw new HttpProblem(400, `cannot filter ${res.kind} by '${k}' (not a scalar or list field)`, [
        { path: k, message: 'not filterable' },
      ]);
    }
  }
  let sort: { field: string; desc: boolean } | undefined;
  if (query.sort !== undefined) {
    const s = one('sort');
    const desc = s.startsWith('-');
    const field = desc ? s.slice(1) : s;
    if (!shape[field])
      throw new HttpProblem(400, `cannot sort ${res.kind} by '${field}'`, [{ path: 'sort', message: 'unknown field' }]);
    sort = { field, desc };
  }
  return { filters, sort, limit: intParam('limit', 100_000), offset: intParam('offset', Number.MAX_SAFE_INTEGER) };
}

const quoted = (etag: string) => `"${etag}"`;
const quotedNames = (names: Set<string>) => [...names].map((n) => JSON.stringify(n));

/** If-Match: "*" or one or more quoted etags (weak ones never match for writes, RFC 9110 13.1.1). */
function ifMatchOf(
  req: FastifyRequest,
  stored: () => Promise<Stored | undefined>,
): Promise<string | undefined> | undefined {
  const h = req.headers['if-match'];
  if (h === undefined) return undefined;
  const tags = h.split(',').map((s) => s.trim());
  if (tags.includes('*')) return undefined;
  return stored().then((s) => {
    const hit = s && tags.includes(quoted(s.etag));
    // Returning a value that cannot match makes the store answer 412 atomically.
    return hit ? s!.etag : '\u0000mismatch';
  });
}

/** The stored JSON goes out as it is: no parse and re-serialise on the hottest read path. */
function sendDoc(reply: FastifyReply, s: Stored) {
  return reply.header('etag', quoted(s.etag)).type('application/json; charset=utf-8').send(s.json);
}

/**
 * A document as a token that may not see secure values gets it. A JSON text without a backslash spells every
 * string as it is, so when none of the secure names appears in it quoted, no param of it is secure: the stored
 * text goes out unparsed (a list of 2,500 machines is parsed and written again only where a secret may be).
 */
function redactedJson(res: Resource, s: Stored, secure: Set<string>, quoted: string[]): string {
  const json = s.json;
  if (!json.includes('\\') && !quoted.some((q) => json.includes(q))) return json;
  return JSON.stringify(res.redact!(s.doc, secure));
}

/** CRUD for every inventory resource and the prefs; relative to the API's prefix (machine-api.ts: the rest of a machine's). */
export function registerResourceRoutes(app: FastifyInstance, deps: Deps) {
  const inv = { store: deps.store, bus: deps.bus };
  const secureNames = deps.secureNames;
  for (const res of INVENTORY_RESOURCES) {
    const base = `/${res.kind}`;
    const keyOf = (id: string) => resolveKey(inv, res, id);
    const write = { config: { operator: OPERATOR_KINDS.has(res.kind) } };
    // Secure param values only for admin and the machine itself; operator and viewer tokens see them masked.
    const send = async (req: FastifyRequest, reply: FastifyReply, s: Stored) => {
      if (!res.redact || seesSecrets(req.principal)) return sendDoc(reply, s);
      const secure = await secureNames();
      if (secure.size === 0) return sendDoc(reply, s);
      return reply
        .header('etag', quoted(s.etag))
        .type('application/json; charset=utf-8')
        .send(redactedJson(res, s, secure, quotedNames(secure)));
    };

    app.get(base, async (req, reply) => {
      const q = parseList(res, req.query as Record<string, string>);
      const { items, total } = await deps.store.list(res.kind, q);
      const secure = res.redact ? await secureNames() : new Set<string>();
      reply.header('x-total-count', String(total)).type('application/json; charset=utf-8');
      if (secure.size === 0) return `[${items.map((i) => i.json).join(',')}]`;
      const names = quotedNames(secure);
      return `[${items.map((i) => redactedJson(res, i, secure, names)).join(',')}]`;
    });

    // A machine's own token may read its record (by uuid).
    const readOne = { config: { machineToken: res.kind === 'machines' } };
    app.get<{ Params: { id: string } }>(`${base}/:id`, readOne, async (req, reply) => {
      const s = await findDoc(inv, res, req.params.id);
      const inm = req.headers['if-none-match'];
      if (
        inm
          ?.split(',')
          .map((t) => t.trim().replace(/^W\//, ''))
          .includes(quoted(s.etag))
      ) {
        return reply.code(304).header('etag', quoted(s.etag)).send();
      }
      return send(req, reply, s);
    });

    app.delete<{ Params: { id: string } }>(`${base}/:id`, write, async (req, reply) => {
      const key = await keyOf(req.params.id);
      const ifMatch = await ifMatchOf(req, () => deps.store.get(res.kind, key));
      await deleteDoc(inv, res, key, ifMatch);
      return reply.code(204).send();
    });

    if (res.readOnly) continue;

    app.post(base, write, async (req, reply) => {
      const s = await createDoc(inv, res, req.body ?? {});
      return send(req, reply.code(201).header('location', `${API}${base}/${encodeURIComponent(s.key)}`), s);
    });

    app.put<{ Params: { id: string } }>(`${base}/:id`, write, async (req, reply) => {
      const key = await keyOf(req.params.id);
      const ifMatch = await ifMatchOf(req, () => deps.store.get(res.kind, key));
      return send(req, reply, await replaceDoc(inv, res, key, req.body ?? {}, ifMatch));
    });

    app.patch<{ Params: { id: string } }>(`${base}/:id`, write, async (req, reply) => {
      const key = await keyOf(req.params.id);
      const ifMatch = await ifMatchOf(req, () => deps.store.get(res.kind, key));
      const ct = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      const body = req.body;
      let change: (d: Record<string, unknown>) => unknown;
      if (ct === 'application/json-patch+json') change = (d) => jsonPatch(d, body);
      else if (ct === 'application/merge-patch+json' || ct === 'application/json') {
        if (body === null || typeof body !== 'object' || Array.isArray(body)) {
          throw new HttpProblem(
            400,
            'a merge patch body must be a JSON object (send a JSON Patch array as application/json-patch+json)',
          );
        }
        change = (d) => mergePatch(d, body);
      } else {
        throw new HttpProblem(
          415,
          `PATCH takes application/merge-patch+json, application/json or application/json-patch+json, not '${ct}'`,
        );
      }
      return send(req, reply, await modifyDoc(inv, res, key, change, ifMatch));
    });
  }

  // Prefs: one document of global settings.
  app.get('/prefs', async (_req, reply) => {
    const s = await deps.store.get('prefs', PREFS_KEY);
    const prefs = await getPrefs(deps.store);
    if (s) reply.header('etag', quoted(s.etag));
    return prefs;
  });
  const writePrefs = async (req: FastifyRequest, next: unknown) => {
    const parsed = Prefs.safeParse(next);
    if (!parsed.success) throw validationProblem(parsed.error, 'prefs');
    for (const f of ['defaultBootEnv', 'unknownBootEnv'] as const) {
      if (!(await deps.store.get('bootenvs', parsed.data[f]))) {
        throw new HttpProblem(400, `prefs: ${f}: bootenv '${parsed.data[f]}' does not exist`, [
          { path: f, message: `bootenv '${parsed.data[f]}' does not exist` },
        ]);
      }
    }
    const old = await deps.store.get('prefs', PREFS_KEY);
    const ifMatch = await ifMatchOf(req, async () => old);
    if (ifMatch !== undefined && old && ifMatch !== old.etag)
      throw new HttpProblem(412, 'prefs have changed since they were read');
    const s = old
      ? await deps.store.replace('prefs', PREFS_KEY, parsed.data, [], { ifMatch: old.etag })
      : await deps.store.create('prefs', PREFS_KEY, parsed.data);
    deps.bus.emit({ type: 'prefs.updated', key: PREFS_KEY });
    return s;
  };
  app.put('/prefs', async (req, reply) => sendDoc(reply, await writePrefs(req, req.body ?? {})));
  app.patch('/prefs', async (req, reply) => {
    const cur = await getPrefs(deps.store);
    const ct = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    const next = ct === 'application/json-patch+json' ? jsonPatch(cur, req.body) : mergePatch(cur, req.body);
    return sendDoc(reply, await writePrefs(req, next));
  });
}
