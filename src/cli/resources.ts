import { parseAssignment, parseCommand, parseDocs, parseJsonArg, readInput } from './args.js';
import { seg } from './client.js';
import type { CliContext } from './context.js';
import { UsageError } from './errors.js';
import { cell, print, table } from './output.js';

/** The API's resources as the CLI shows them: key field, table columns, and whether they can be written. */
export type ResourceInfo = { key: string; columns: string[]; readOnly?: boolean; one: string };

export const CLI_RESOURCES: Record<string, ResourceInfo> = {
  machines: { one: 'machine', key: 'uuid', columns: ['uuid', 'name', 'macs', 'address', 'bootEnv', 'lastSeen'] },
  bootenvs: { one: 'bootenv', key: 'name', columns: ['name', 'kernel', 'initrds', 'onlyOnce', 'description'] },
  templates: { one: 'template', key: 'id', columns: ['id', 'description'] },
  subnets: {
    one: 'subnet',
    key: 'name',
    columns: ['name', 'subnet', 'activeStart', 'activeEnd', 'leaseTime', 'enabled', 'proxy'],
  },
  reservations: { one: 'reservation', key: 'address', columns: ['address', 'mac', 'subnet', 'nextServer'] },
  leases: { one: 'lease', key: 'address', columns: ['address', 'mac', 'subnet', 'state', 'expiresAt'], readOnly: true },
  profiles: { one: 'profile', key: 'name', columns: ['name', 'params', 'description'] },
  params: { one: 'param', key: 'name', columns: ['name', 'secure', 'description'] },
};

/** `plinth machine list` works as well as `plinth machines list`. */
export function resourceOf(word: string): string | undefined {
  if (CLI_RESOURCES[word]) return word;
  return Object.keys(CLI_RESOURCES).find((k) => CLI_RESOURCES[k]!.one === word);
}

const ifMatchOpt = { 'if-match': { type: 'string' } } as const;

export function resourceHelp(kind: string): string {
  const r = CLI_RESOURCES[kind]!;
  const lines = [
    `Usage: plinth ${kind} VERB [arguments] [options]`,
    '',
    `  list [FIELD=VALUE...] [--sort [-]FIELD] [--limit N] [--offset N]`,
    `      List ${kind}; FIELD=VALUE filters on any top-level field (a list field matches a member).`,
    `  show ID                       One ${r.one} (ID: its ${r.key}${kind === 'machines' ? ', name or a MAC' : ''}).`,
  ];
  if (!r.readOnly) {
    lines.push(
      `  create -f FILE|-              Create from YAML or JSON (several documents create several).`,
      `  update ID -f FILE|-           Replace the whole ${r.one} (PUT).`,
      `  patch ID --merge JSON | --json-patch JSON | -f FILE|-`,
      `                                Change fields: a JSON Merge Patch object or a JSON Patch array.`,
    );
  }
  lines.push(`  delete ID                     Delete the ${r.one}.`);
  if (kind === 'machines') {
    lines.push(
      `  params ID [--sources]         Resolved params (machine, profiles, global, defaults).`,
      `  boots ID                      The machine's boot timelines, newest first.`,
    );
  }
  if (kind === 'bootenvs') {
    lines.push(
      `  import-linuxkit PREFIX [--name N]   Upload a linuxkit kernel+initrd build; create a pinned bootenv.`,
      `  fetch NAME                    Download the bootenv's artifacts from their URLs, check, upload.`,
    );
  }
  if (r.readOnly) lines.push('', `${kind} are read-only: the DHCP server writes them.`);
  lines.push(
    '',
    'update, patch and delete take --if-match ETAG (412 when the object changed since you read it).',
    'Global options: --output table|json|yaml, --endpoint URL, --token TOKEN (see plinth help).',
  );
  return lines.join('\n');
}

function docsFrom(file: string): unknown[] {
  const { text, name } = readInput(file);
  return parseDocs(text, name);
}

function ifMatchHeader(v: string | boolean | undefined): Record<string, string> {
  if (typeof v !== 'string') return {};
  return { 'if-match': v === '*' || v.startsWith('"') || v.startsWith('W/') ? v : `"${v}"` };
}

export async function runResource(
  kind: string,
  verb: string | undefined,
  args: string[],
  ctx: CliContext,
): Promise<void> {
  const r = CLI_RESOURCES[kind]!;
  const help = resourceHelp(kind);
  const base = `/${kind}`;
  const { client, io, mode } = ctx;
  if (r.readOnly && verb && ['create', 'update', 'patch'].includes(verb))
    throw new UsageError(`${kind} are read-only (the DHCP server writes them): list, show or delete them`, help);

  switch (verb) {
    case 'list': {
      const { values, positionals } = parseCommand(
        args,
        { sort: { type: 'string' }, limit: { type: 'string' }, offset: { type: 'string' } },
        { help },
      );
      const query: Record<string, string | undefined> = {
        sort: values.sort as string | undefined,
        limit: values.limit as string | undefined,
        offset: values.offset as string | undefined,
      };
      for (const p of positionals) {
        const i = p.indexOf('=');
        if (i <= 0) throw new UsageError(`filter '${p}' is not FIELD=VALUE (e.g. bootEnv=lab)`, help);
        query[p.slice(0, i)] = p.slice(i + 1);
      }
      const res = await client.request('GET', base, { query });
      const items = res.body as Record<string, unknown>[];
      print(io, mode, items, { columns: r.columns, what: kind });
      const total = Number(res.headers.get('x-total-count'));
      if (mode === 'table' && Number.isFinite(total) && total > items.length)
        io.err(`(${items.length} of ${total}: use --limit and --offset for more)\n`);
      return;
    }
    case 'show': {
      const { positionals } = parseCommand(args, {}, { help, min: 1, max: 1 });
      const res = await client.request('GET', `${base}/${seg(positionals[0]!)}`);
      return print(io, mode, res.body);
    }
    case 'create': {
      const { values } = parseCommand(args, { file: { type: 'string', short: 'f' } }, { help, max: 0 });
      if (!values.file) throw new UsageError(`create needs -f FILE (YAML or JSON; - for standard input)`, help);
      const docs = docsFrom(values.file as string).flatMap((d) => (Array.isArray(d) ? d : [d]));
      const created: unknown[] = [];
      for (const d of docs) created.push((await client.request('POST', base, { body: d })).body);
      return print(io, mode, created.length === 1 ? created[0] : created, { columns: r.columns, what: kind });
    }
    case 'update': {
      const { values, positionals } = parseCommand(
        args,
        { file: { type: 'string', short: 'f' }, ...ifMatchOpt },
        { help, min: 1, max: 1 },
      );
      if (!values.file) throw new UsageError(`update needs -f FILE (YAML or JSON; - for standard input)`, help);
      const docs = docsFrom(values.file as string);
      if (docs.length !== 1 || Array.isArray(docs[0]))
        throw new UsageError(`update takes one ${r.one}: ${values.file} holds ${docs.length} documents`, help);
      const res = await client.request('PUT', `${base}/${seg(positionals[0]!)}`, {
        body: docs[0],
        headers: ifMatchHeader(values['if-match']),
      });
      return print(io, mode, res.body);
    }
    case 'patch': {
      const { values, positionals } = parseCommand(
        args,
        {
          merge: { type: 'string' },
          'json-patch': { type: 'string' },
          file: { type: 'string', short: 'f' },
          ...ifMatchOpt,
        },
        { help, min: 1, max: 1 },
      );
      const given = (['merge', 'json-patch', 'file'] as const).filter((k) => values[k] !== undefined);
      if (given.length !== 1)
        throw new UsageError('patch needs exactly one of --merge JSON, --json-patch JSON or -f FILE', help);
      let body: unknown;
      if (values.merge !== undefined) body = parseJsonArg('--merge', values.merge as string);
      else if (values['json-patch'] !== undefined) body = parseJsonArg('--json-patch', values['json-patch'] as string);
      else {
        const docs = docsFrom(values.file as string);
        if (docs.length !== 1) throw new UsageError(`${values.file} holds ${docs.length} documents: give one patch`);
        body = docs[0];
      }
      // A JSON Patch is an array of operations; a merge patch is an object.
      const jsonPatch = values['json-patch'] !== undefined || (values.file !== undefined && Array.isArray(body));
      if (jsonPatch && !Array.isArray(body))
        throw new UsageError(
          'a JSON Patch is an array of operations, like [{"op":"add","path":"/macs/-","value":"..."}]',
        );
      if (!jsonPatch && (body === null || typeof body !== 'object' || Array.isArray(body)))
        throw new UsageError('a merge patch is a JSON object, like {"bootEnv":"local"}');
      const res = await client.request('PATCH', `${base}/${seg(positionals[0]!)}`, {
        body,
        contentType: jsonPatch ? 'application/json-patch+json' : 'application/merge-patch+json',
        headers: ifMatchHeader(values['if-match']),
      });
      return print(io, mode, res.body);
    }
    case 'delete': {
      const { values, positionals } = parseCommand(args, { ...ifMatchOpt }, { help, min: 1, max: 1 });
      await client.request('DELETE', `${base}/${seg(positionals[0]!)}`, {
        headers: ifMatchHeader(values['if-match']),
      });
      io.err(`${r.one} '${positionals[0]}' deleted\n`);
      return;
    }
  }
  if (kind === 'machines' && verb === 'params') {
    const { values, positionals } = parseCommand(args, { sources: { type: 'boolean' } }, { help, min: 1, max: 1 });
    const res = await client.request('GET', `/machines/${seg(positionals[0]!)}/params`, {
      query: { sources: values.sources ? 'true' : undefined },
    });
    return print(io, mode, res.body);
  }
  if (kind === 'machines' && verb === 'boots') {
    const { positionals } = parseCommand(args, {}, { help, min: 1, max: 1 });
    const res = await client.request('GET', `/machines/${seg(positionals[0]!)}/boots`);
    if (mode !== 'table') return print(io, mode, res.body);
    return printBoots(ctx, res.body as Boot[]);
  }
  throw new UsageError(verb ? `unknown verb '${verb}' for ${kind}` : `${kind} needs a verb`, help);
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

export const PREFS_HELP = [
  'Usage: plinth prefs show',
  '       plinth prefs set KEY=VALUE [KEY=VALUE...] [--if-match ETAG]',
  '',
  'Global settings: defaultBootEnv, unknownBootEnv, knownTokenTtl, rogueDhcpWarnings, answerRouterSolicitations.',
  'A VALUE that parses as JSON is sent as JSON (3600, true, null); anything else as a string (local).',
].join('\n');

export async function runPrefs(verb: string | undefined, args: string[], ctx: CliContext): Promise<void> {
  if (verb === 'show') {
    parseCommand(args, {}, { help: PREFS_HELP, max: 0 });
    return print(ctx.io, ctx.mode, (await ctx.client.request('GET', '/prefs')).body);
  }
  if (verb === 'set') {
    const { values, positionals } = parseCommand(args, { ...ifMatchOpt }, { help: PREFS_HELP, min: 1 });
    const patch: Record<string, unknown> = {};
    for (const p of positionals) {
      const [k, v] = parseAssignment(p);
      patch[k] = v;
    }
    const res = await ctx.client.request('PATCH', '/prefs', {
      body: patch,
      contentType: 'application/merge-patch+json',
      headers: ifMatchHeader(values['if-match']),
    });
    return print(ctx.io, ctx.mode, res.body);
  }
  throw new UsageError(verb ? `unknown verb '${verb}' for prefs` : 'prefs needs a verb: show or set', PREFS_HELP);
}
