import { parseAssignment, parseDocs, parseJsonArg, readInput } from './args.js';
import { seg } from './client.js';
import type { CliContext } from './context.js';
import { ApiError, UsageError } from './errors.js';
import { CLI_RESOURCES, describeDoc, nameOf, type ResourceInfo } from './kinds.js';
import { cell, print, table } from './output.js';

/** Every document of `-f FILE` (YAML or JSON, `-` for standard input); a document that is a list counts as its members. */
export function documentsOf(file: string): unknown[] {
  const { text, name } = readInput(file);
  return parseDocs(text, name).flatMap((d) => (Array.isArray(d) ? d : [d]));
}

function oneDocument(file: string, what: string): unknown {
  const { text, name } = readInput(file);
  const docs = parseDocs(text, name);
  if (docs.length !== 1) throw new UsageError(`${file} holds ${docs.length} documents: give one ${what}`);
  return docs[0];
}

function ifMatchHeader(v: string | undefined): Record<string, string> {
  if (typeof v !== 'string') return {};
  return { 'if-match': v === '*' || v.startsWith('"') || v.startsWith('W/') ? v : `"${v}"` };
}

/** Write verbs refuse a read-only resource before reading any file. */
export function writable(kind: string, verb: string): ResourceInfo {
  const r = CLI_RESOURCES[kind]!;
  if (r.readOnly)
    throw new UsageError(`${kind} are read-only (the DHCP server writes them): list, show or delete them, not ${verb}`);
  return r;
}

export type ListOptions = { sort?: string; limit?: string; offset?: string };

/** `RESOURCE list [FIELD=VALUE...]`: each filter is a query parameter the API checks. */
export async function listResources(kind: string, filters: string[], o: ListOptions, ctx: CliContext): Promise<void> {
  const query: Record<string, string | undefined> = { sort: o.sort, limit: o.limit, offset: o.offset };
  for (const p of filters) {
    const i = p.indexOf('=');
    if (i <= 0) throw new UsageError(`filter '${p}' is not FIELD=VALUE (e.g. bootEnv=lab)`);
    query[p.slice(0, i)] = p.slice(i + 1);
  }
  const res = await ctx.client.request('GET', `/${kind}`, { query });
  const items = res.body as Record<string, unknown>[];
  print(ctx.io, ctx.mode, items, { columns: CLI_RESOURCES[kind]!.columns, what: kind });
  const total = Number(res.headers.get('x-total-count'));
  if (ctx.mode === 'table' && Number.isFinite(total) && total > items.length)
    ctx.io.err(`(${items.length} of ${total}: use --limit and --offset for more)\n`);
}

export async function showResource(kind: string, id: string, ctx: CliContext): Promise<void> {
  print(ctx.io, ctx.mode, (await ctx.client.request('GET', `/${kind}/${seg(id)}`)).body);
}

/**
 * `RESOURCE create -f FILE`: one POST per document, in order (a reservation after its subnet). A failure stops
 * there and says, by name, which documents were created before it and how many were not attempted, so the
 * operator can fix the file and go on (or run `apply`, which leaves what exists as it is).
 */
export async function createResources(kind: string, file: string, ctx: CliContext): Promise<void> {
  const r = writable(kind, 'create');
  const docs = documentsOf(file);
  const created: unknown[] = [];
  for (const [i, d] of docs.entries()) {
    try {
      created.push((await ctx.client.request('POST', `/${kind}`, { body: d })).body);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      if (created.length) print(ctx.io, ctx.mode, created, { columns: r.columns, what: kind });
      const names = created.map((c) => `'${nameOf(kind, c)}'`).join(', ');
      const rest = docs.length - i - 1;
      const report =
        docs.length === 1
          ? ''
          : `; ${created.length ? `created before it: ${names}` : 'nothing was created'}` +
            (rest ? `; not attempted: ${rest} more` : '');
      throw new ApiError(
        `${r.one} ${describeDoc(kind, d, i, docs.length)} was not created: ${err.message}${report}`,
        err.status,
        err.errors,
      );
    }
  }
  print(ctx.io, ctx.mode, created.length === 1 ? created[0] : created, { columns: r.columns, what: kind });
}

export type UpdateOptions = { file?: string; ifMatch?: string };

export async function updateResource(kind: string, id: string, o: UpdateOptions, ctx: CliContext): Promise<void> {
  const r = writable(kind, 'update');
  if (!o.file) throw new UsageError('update needs -f FILE (YAML or JSON; - for standard input)');
  const doc = oneDocument(o.file, r.one);
  if (Array.isArray(doc)) throw new UsageError(`update takes one ${r.one}: ${o.file} holds a list`);
  const res = await ctx.client.request('PUT', `/${kind}/${seg(id)}`, { body: doc, headers: ifMatchHeader(o.ifMatch) });
  print(ctx.io, ctx.mode, res.body);
}

export type PatchOptions = { merge?: string; jsonPatch?: string; file?: string; ifMatch?: string };

export async function patchResource(kind: string, id: string, o: PatchOptions, ctx: CliContext): Promise<void> {
  writable(kind, 'patch');
  const given = (['merge', 'jsonPatch', 'file'] as const).filter((k) => o[k] !== undefined);
  if (given.length !== 1) throw new UsageError('patch needs exactly one of --merge JSON, --json-patch JSON or -f FILE');
  let body: unknown;
  if (o.merge !== undefined) body = parseJsonArg('--merge', o.merge);
  else if (o.jsonPatch !== undefined) body = parseJsonArg('--json-patch', o.jsonPatch);
  else body = oneDocument(o.file!, 'patch');
  // A JSON Patch is an array of operations; a merge patch is an object.
  const jsonPatch = o.jsonPatch !== undefined || (o.file !== undefined && Array.isArray(body));
  if (jsonPatch && !Array.isArray(body))
    throw new UsageError('a JSON Patch is an array of operations, like [{"op":"add","path":"/macs/-","value":"..."}]');
  if (!jsonPatch && (body === null || typeof body !== 'object' || Array.isArray(body)))
    throw new UsageError('a merge patch is a JSON object, like {"bootEnv":"local"}');
  const res = await ctx.client.request('PATCH', `/${kind}/${seg(id)}`, {
    body,
    contentType: jsonPatch ? 'application/json-patch+json' : 'application/merge-patch+json',
    headers: ifMatchHeader(o.ifMatch),
  });
  print(ctx.io, ctx.mode, res.body);
}

export async function deleteResource(kind: string, id: string, o: { ifMatch?: string }, ctx: CliContext) {
  await ctx.client.request('DELETE', `/${kind}/${seg(id)}`, { headers: ifMatchHeader(o.ifMatch) });
  ctx.io.err(`${CLI_RESOURCES[kind]!.one} '${id}' deleted\n`);
}

export async function machineParams(id: string, o: { sources?: boolean }, ctx: CliContext): Promise<void> {
  const res = await ctx.client.request('GET', `/machines/${seg(id)}/params`, {
    query: { sources: o.sources ? 'true' : undefined },
  });
  print(ctx.io, ctx.mode, res.body);
}

export async function machineBoots(id: string, ctx: CliContext): Promise<void> {
  const res = await ctx.client.request('GET', `/machines/${seg(id)}/boots`);
  if (ctx.mode !== 'table') return print(ctx.io, ctx.mode, res.body);
  printBoots(ctx, res.body as Boot[]);
}

type Boot = {
  id: string;
  startedAt: string;
  bootEnv?: string;
  result?: string;
  artifacts?: { path: string; sha256: string }[];
  events?: { at: string; kind: string; detail: string }[];
};

/** A boot timeline reads top to bottom: what the firmware asked, what it got, how it ended. */
function printBoots(ctx: CliContext, boots: Boot[]) {
  if (boots.length === 0) return ctx.io.err('no boots recorded for this machine yet\n');
  for (const b of boots) {
    ctx.io.out(
      `boot ${b.id}  started ${b.startedAt}  bootEnv ${b.bootEnv ?? '-'}  result ${b.result ?? 'in progress'}\n`,
    );
    for (const a of b.artifacts ?? []) ctx.io.out(`  artifact ${a.path} sha256 ${a.sha256}\n`);
    const rows = (b.events ?? []).map((e) => [e.at, e.kind, cell(e.detail, 200)]);
    if (rows.length)
      ctx.io.out(
        table(['AT', 'KIND', 'DETAIL'], rows)
          .split('\n')
          .map((l) => (l ? `  ${l}` : l))
          .join('\n'),
      );
    ctx.io.out('\n');
  }
}

export async function showPrefs(ctx: CliContext): Promise<void> {
  print(ctx.io, ctx.mode, (await ctx.client.request('GET', '/prefs')).body);
}

export async function setPrefs(assignments: string[], o: { ifMatch?: string }, ctx: CliContext): Promise<void> {
  const patch: Record<string, unknown> = {};
  for (const p of assignments) {
    const [k, v] = parseAssignment(p);
    patch[k] = v;
  }
  const res = await ctx.client.request('PATCH', '/prefs', {
    body: patch,
    contentType: 'application/merge-patch+json',
    headers: ifMatchHeader(o.ifMatch),
  });
  print(ctx.io, ctx.mode, res.body);
}
