// `plinth apply -f FILE` and `plinth RESOURCE apply -f FILE`: make the inventory hold what the documents say.
// Each document is found by its name (id, address; a machine by uuid or name), created when absent and updated
// with a JSON Merge Patch (RFC 7396) of only the fields that differ, so applying the same file twice writes
// nothing the second time. The REST API has no transaction over several objects, so apply is all-or-nothing only
// for what can be checked locally (every document parsed, typed and named before the first request); after
// that it stops at the first refusal and reports, per document, what was already applied and what was not.
// The file is compared as the server will store it (MACs lower-case with colons, DHCP option values in their
// canonical spelling): written any other valid way, the same file is still "unchanged" the second time.
import { isDeepStrictEqual } from 'node:util';
import type { z } from 'zod';
import { BootEnv } from '../model/bootenv.js';
import { Machine } from '../model/machine.js';
import { ParamDef, Profile } from '../model/profile.js';
import { Reservation, Subnet } from '../model/subnet.js';
import { Template } from '../model/template.js';
import { seg } from './client.js';
import type { CliContext } from './context.js';
import { ApiError, UsageError } from './errors.js';
import { CLI_RESOURCES, resourceOf } from './kinds.js';
import { print } from './output.js';
import { documentsOf, writable } from './resources.js';

export type ApplyOptions = { file?: string; dryRun?: boolean };

type Result = 'created' | 'updated' | 'unchanged' | 'would create' | 'would update' | 'failed' | 'not attempted';

/** One line of the report: which document, what it names, what happened to it. */
export type Outcome = { document: number; kind: string; name: string; result: Result; changed?: string[] };

type Planned = { kind: string; name: string; body: Record<string, unknown> };

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Would merging `patch` into `target` leave it as it is (RFC 7396: null removes, objects merge, the rest replaces)? */
export function mergeIsNoop(patch: unknown, target: unknown): boolean {
  if (patch === null) return target === undefined;
  if (isObject(patch)) return isObject(target) && Object.entries(patch).every(([k, v]) => mergeIsNoop(v, target[k]));
  return isDeepStrictEqual(patch, target);
}

/** The smallest merge patch that makes `current` say what `desired` says: the top-level fields that differ. */
export function mergeDiff(current: Record<string, unknown>, desired: Record<string, unknown>): Record<string, unknown> {
  const patch: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(desired)) if (!mergeIsNoop(v, current[k])) patch[k] = v;
  return patch;
}

const SCHEMAS: Record<string, z.ZodObject> = {
  machines: Machine,
  bootenvs: BootEnv,
  templates: Template,
  subnets: Subnet,
  reservations: Reservation,
  profiles: Profile,
  params: ParamDef,
};

/**
 * The document's fields as the server stores them, each parsed by the resource's own field schema (so the
 * spelling is the server's). Only the fields the document names: a default the server fills in is not a
 * difference. A value its schema refuses is left as written, for the server to refuse with its reason.
 */
export function normalise(kind: string, body: Record<string, unknown>): Record<string, unknown> {
  const shape = SCHEMAS[kind]?.shape as Record<string, z.ZodType> | undefined;
  if (!shape) return body;
  return Object.fromEntries(
    Object.entries(body).map(([k, v]) => {
      const r = shape[k]?.safeParse(v);
      return [k, r?.success ? r.data : v];
    }),
  );
}

/** Every document typed and named before anything is sent: a mistake in the file changes nothing. */
export function plan(docs: unknown[], kindArg: string | undefined): Planned[] {
  return docs.map((doc, i) => {
    const where = `document ${i + 1} of ${docs.length}`;
    if (!isObject(doc)) throw new UsageError(`${where} is not an object`);
    const { kind: kindField, ...body } = doc;
    const named = typeof kindField === 'string' ? resourceOf(kindField) : undefined;
    if (kindField !== undefined && !named)
      throw new UsageError(
        `${where}: kind '${String(kindField)}' is not one of ${Object.keys(CLI_RESOURCES).join(', ')}`,
      );
    if (kindArg && named && named !== kindArg)
      throw new UsageError(`${where} is a ${CLI_RESOURCES[named]!.one}, not a ${CLI_RESOURCES[kindArg]!.one}`);
    const kind = kindArg ?? named;
    if (!kind) throw new UsageError(`${where} has no kind: add \`kind: machine\` (or bootenv, subnet, ...) to it`);
    const r = writable(kind, 'apply');
    const id = kind === 'machines' ? (body.uuid ?? body.name) : body[r.key];
    if (typeof id !== 'string' || id === '')
      throw new UsageError(
        `${where} (a ${r.one}) has no ${kind === 'machines' ? 'name' : r.key}: apply finds objects by it`,
      );
    return { kind, name: id, body };
  });
}

async function applyOne(p: Planned, dryRun: boolean, ctx: CliContext): Promise<Omit<Outcome, 'document'>> {
  const base = { kind: CLI_RESOURCES[p.kind]!.one, name: p.name };
  const path = `/${p.kind}/${seg(p.name)}`;
  const cur = await ctx.client.request('GET', path, { allow: [404] });
  if (cur.status === 404) {
    if (!dryRun) await ctx.client.request('POST', `/${p.kind}`, { body: p.body });
    return { ...base, result: dryRun ? 'would create' : 'created' };
  }
  const patch = mergeDiff(cur.body as Record<string, unknown>, normalise(p.kind, p.body));
  const changed = Object.keys(patch);
  if (changed.length === 0) return { ...base, result: 'unchanged' };
  if (!dryRun) {
    // If-Match: a change made by someone else since the GET is a 412, not silently overwritten.
    const etag = cur.headers.get('etag');
    await ctx.client.request('PATCH', path, {
      body: patch,
      contentType: 'application/merge-patch+json',
      headers: etag ? { 'if-match': etag } : {},
    });
  }
  return { ...base, result: dryRun ? 'would update' : 'updated', changed };
}

function summary(outcomes: Outcome[]): string {
  const counts = new Map<Result, number>();
  for (const o of outcomes) counts.set(o.result, (counts.get(o.result) ?? 0) + 1);
  return [...counts].map(([r, n]) => `${n} ${r}`).join(', ');
}

export async function applyDocuments(kindArg: string | undefined, o: ApplyOptions, ctx: CliContext): Promise<void> {
  if (!o.file) throw new UsageError('apply needs -f FILE (YAML or JSON; - for standard input)');
  const planned = plan(documentsOf(o.file), kindArg);
  const outcomes: Outcome[] = [];
  const show = () =>
    print(ctx.io, ctx.mode, outcomes, {
      columns: ['document', 'kind', 'name', 'result', 'changed'],
      what: 'documents',
    });
  for (const [i, p] of planned.entries()) {
    try {
      outcomes.push({ document: i + 1, ...(await applyOne(p, Boolean(o.dryRun), ctx)) });
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      const one = CLI_RESOURCES[p.kind]!.one;
      outcomes.push({ document: i + 1, kind: one, name: p.name, result: 'failed' });
      for (const [j, q] of planned.entries())
        if (j > i)
          outcomes.push({ document: j + 1, kind: CLI_RESOURCES[q.kind]!.one, name: q.name, result: 'not attempted' });
      show();
      const before = summary(outcomes.slice(0, i)) || 'nothing';
      throw new ApiError(
        `${one} '${p.name}' (document ${i + 1} of ${planned.length}): ${err.message}; ` +
          `applied before it: ${before}; ${planned.length - i - 1} not attempted`,
        err.status,
        err.errors,
      );
    }
  }
  show();
  ctx.io.err(`${o.dryRun ? 'dry run (nothing was changed)' : 'applied'}: ${summary(outcomes)}\n`);
}
