import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { Readable } from 'node:stream';
import { Name } from '../model/common.js';
import { filePath, seg } from './client.js';
import type { CliContext } from './context.js';
import { ApiError, UsageError } from './errors.js';
import { counter, type FileInfo, putStream, uploadFile } from './files.js';
import { humanBytes, print } from './output.js';
import { progress } from './progress.js';

const PARTS = [
  { suffix: 'kernel', role: 'kernel' },
  { suffix: 'initrd.img', role: 'initrd' },
  { suffix: 'cmdline', role: 'cmdline' },
] as const;

export async function importLinuxkit(
  prefix: string,
  values: { name?: string; replace?: boolean },
  ctx: CliContext,
): Promise<void> {
  const base = path.basename(prefix);
  const name = values.name ?? base;
  const valid = Name.safeParse(name);
  if (!valid.success)
    throw new UsageError(`bootenv name '${name}': ${valid.error.issues[0]?.message}; choose one with --name`);
  const missing = PARTS.map((p) => `${prefix}-${p.suffix}`).filter((f) => !existsSync(f));
  if (missing.length)
    throw new UsageError(
      `missing ${missing.join(', ')}: PREFIX is what \`linuxkit build -format kernel+initrd -name PREFIX\` wrote`,
    );
  const cmdline = readFileSync(`${prefix}-cmdline`, 'utf8').replace(/\s+/g, ' ').trim();

  // Before any upload: a clash found after the files went up would leave them orphaned, or worse, replace
  // the bytes an existing bootenv pins.
  const existing = await ctx.client.request('GET', `/bootenvs/${seg(name)}`, { allow: [404] });
  if (existing.status === 200 && !values.replace)
    throw new ApiError(
      `bootenv '${name}' already exists: import under another --name, or pass --replace to re-import over it`,
      409,
    );

  const uploaded: Record<string, FileInfo> = {};
  for (const p of PARTS)
    uploaded[p.role] = await uploadFile(ctx, `${prefix}-${p.suffix}`, `${name}/${base}-${p.suffix}`);
  const initrdName = path.posix.basename(uploaded.initrd!.path);
  const doc = {
    name,
    description: `LinuxKit image ${base}, imported by plinth bootenv import-linuxkit`,
    os: { name: 'linuxkit', family: 'linux', version: '' },
    kernel: uploaded.kernel!.path,
    initrds: [uploaded.initrd!.path],
    bootParams: /(^|\s)initrd=/.test(cmdline) ? cmdline : `${cmdline} initrd=${initrdName}`.trim(),
    artifacts: PARTS.map((p) => ({ path: uploaded[p.role]!.path, sha256: uploaded[p.role]!.sha256 })),
  };
  const res =
    existing.status === 200
      ? await ctx.client.request('PUT', `/bootenvs/${seg(name)}`, { body: doc })
      : await ctx.client.request('POST', '/bootenvs', { body: doc });
  print(ctx.io, ctx.mode, res.body);
}

type Artifact = { path: string; sha256: string; url?: string };
type Fetched = { path: string; status: 'present' | 'fetched' | 'missing'; sha256: string; size?: number; url?: string };

/** Download one artifact and stream it to the daemon, hashing on the way; nothing touches the local disk. */
async function fetchArtifact(ctx: CliContext, a: Artifact & { url: string }): Promise<FileInfo> {
  let r: Response;
  try {
    r = await fetch(a.url, { signal: ctx.signal });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new ApiError(
      `cannot download ${a.url}: ${cause?.code ?? cause?.message ?? (err as Error).message}; check the url of artifact ${a.path}, or upload it with plinth files upload`,
    );
  }
  if (!r.ok || !r.body)
    throw new ApiError(`${a.url} answered HTTP ${r.status}: check the url of artifact ${a.path}`, r.status);
  // A compressed answer is decoded on the way, so its Content-Length is not the size uploaded.
  const len = r.headers.get('content-length');
  const size = len !== null && /^\d+$/.test(len) && !r.headers.get('content-encoding') ? Number(len) : undefined;
  const h = createHash('sha256');
  let got = 0;
  const src = Readable.fromWeb(r.body as import('node:stream/web').ReadableStream);
  const hashed = counter((c) => {
    h.update(c);
    got += c.length;
  });
  src.on('error', (err) => hashed.destroy(err));
  src.pipe(hashed);
  try {
    return await putStream(ctx, a.path, hashed, { size, sha256: a.sha256, label: `fetching ${a.path}` });
  } catch (err) {
    const complete = src.readableEnded;
    const digest = complete ? h.digest('hex') : undefined;
    if (digest && digest !== a.sha256)
      throw new ApiError(
        `${a.url} served ${humanBytes(got)} with sha256 ${digest}, but bootenv pins ${a.path} to ${a.sha256}: ` +
          'nothing was kept; check the url, or the digest the bootenv pins',
      );
    throw err;
  }
}

export async function fetchBootenv(name: string, values: { force?: boolean }, ctx: CliContext): Promise<void> {
  const be = (await ctx.client.request('GET', `/bootenvs/${seg(name)}`)).body as { artifacts?: Artifact[] };
  const arts = be.artifacts ?? [];
  if (arts.length === 0) ctx.io.err(`bootenv '${name}' pins no artifacts: nothing to fetch\n`);
  const results: Fetched[] = [];
  for (const a of arts) {
    const have = await ctx.client.request('GET', `/files/${filePath(a.path)}`, { allow: [404] });
    const present = have.status === 200 && (have.body as FileInfo).sha256 === a.sha256;
    if (present && !values.force) {
      results.push({
        path: a.path,
        status: 'present',
        sha256: a.sha256,
        size: (have.body as FileInfo).size,
        url: a.url,
      });
      continue;
    }
    if (!a.url) {
      results.push({ path: a.path, status: present ? 'present' : 'missing', sha256: a.sha256 });
      continue;
    }
    const info = await fetchArtifact(ctx, a as Artifact & { url: string });
    if (info.sha256 !== a.sha256)
      throw new ApiError(
        `the daemon stored ${a.path} with sha256 ${info.sha256}, not the pinned ${a.sha256}: it ignored X-Checksum-Sha256; delete it with plinth files delete ${a.path}`,
      );
    results.push({ path: info.path, status: 'fetched', sha256: info.sha256, size: info.size, url: a.url });
  }
  print(ctx.io, ctx.mode, results, { columns: ['path', 'status', 'size', 'sha256', 'url'], what: 'artifacts' });
  const missing = results.filter((r) => r.status === 'missing');
  if (missing.length)
    throw new ApiError(
      `bootenv '${name}': ${missing.map((m) => m.path).join(', ')} ${missing.length === 1 ? 'has' : 'have'} no url and ${missing.length === 1 ? 'is' : 'are'} not on the daemon: ` +
        'upload with plinth files upload LOCAL PATH (the digest must match the pin)',
    );
}

type Readiness = { name: string; ready: boolean; missing: string[] };

/** Each bootenv's readiness, asked a few at a time: `READY` is `yes`, `no (missing: ...)`, or `-` (pins nothing). */
async function readinessOf(ctx: CliContext, names: string[]): Promise<Map<string, Readiness>> {
  const out = new Map<string, Readiness>();
  const queue = [...names];
  const worker = async () => {
    for (let n = queue.shift(); n !== undefined; n = queue.shift()) {
      const r = await ctx.client.request('GET', `/bootenvs/${seg(n)}/status`, { allow: [404] });
      if (r.status === 200) out.set(n, r.body as Readiness);
    }
  };
  await Promise.all(Array.from({ length: Math.min(4, names.length) }, worker));
  return out;
}

const readyCell = (r: Readiness | undefined, pins: number) =>
  !r ? '?' : pins === 0 ? '-' : r.ready ? 'yes' : `no (missing: ${r.missing.join(', ')})`;

/** `plinth bootenv list` with a READY column (every pinned artifact present with its digest). */
export async function listBootenvs(ctx: CliContext): Promise<void> {
  const items = (await ctx.client.request('GET', '/bootenvs')).body as { name: string; artifacts?: unknown[] }[];
  const ready = await readinessOf(
    ctx,
    items.map((b) => b.name),
  );
  const rows = items.map((b) => ({
    ...b,
    ready: ctx.mode === 'table' ? readyCell(ready.get(b.name), b.artifacts?.length ?? 0) : ready.get(b.name)?.ready,
  }));
  print(ctx.io, ctx.mode, rows, { columns: ['name', 'kernel', 'ready', 'description'], what: 'bootenvs' });
}

/** `plinth bootenv get NAME`: the document, with `ready` and `missing`. */
export async function getBootenv(name: string, ctx: CliContext): Promise<void> {
  const be = (await ctx.client.request('GET', `/bootenvs/${seg(name)}`)).body as { name: string; artifacts?: [] };
  const r = (await readinessOf(ctx, [be.name])).get(be.name);
  print(ctx.io, ctx.mode, { ...be, ready: r?.ready, missing: r?.missing });
}

type ImportLine = {
  progress?: { url: string; bytes: number; total?: number };
  result?: { bootEnv: string; ready: boolean; artifacts: unknown[]; signers: string[]; warnings: string[] };
  problem?: { status: number; detail: string };
};

/**
 * `plinth bootenv import MANIFEST`: the daemon fetches and verifies; its NDJSON answer drives a progress bar per
 * download on a terminal (src/cli/progress.ts), and the last line is the result or the problem.
 */
export async function importBootenv(
  file: string,
  values: { replace?: boolean; allowUnsigned?: boolean },
  ctx: CliContext,
): Promise<void> {
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : path.resolve(ctx.cwd, file), 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const post = ctx.client.fetch as (u: string, i: RequestInit) => Promise<Response>;
  let r: Response;
  try {
    r = await post(ctx.client.url('/bootenvs/import'), {
      method: 'POST',
      headers: { ...ctx.client.authHeaders(), 'content-type': 'application/json', accept: 'application/x-ndjson' },
      body: JSON.stringify({ manifest: text, replace: values.replace, allowUnsigned: values.allowUnsigned }),
      signal: ctx.signal,
    });
  } catch (err) {
    throw await ctx.client.explain(err);
  }
  if (!r.ok || !r.body) {
    const body = await r.text();
    let detail = body;
    try {
      detail = JSON.parse(body).detail ?? body;
    } catch {}
    throw new ApiError(`import refused: ${detail}`, r.status);
  }
  const bars = new Map<string, ReturnType<typeof progressFrom>>();
  let last: ImportLine | undefined;
  let pending = '';
  const handle = (l: ImportLine) => {
    if (!l.progress) {
      last = l;
      return;
    }
    const { url, bytes, total } = l.progress;
    const bar = bars.get(url) ?? progressFrom(ctx, url, total);
    bars.set(url, bar);
    bar.to(bytes);
  };
  for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
    pending += Buffer.from(chunk).toString('utf8');
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) if (line.trim()) handle(JSON.parse(line) as ImportLine);
  }
  if (pending.trim()) handle(JSON.parse(pending) as ImportLine);
  for (const b of bars.values()) b.done();
  if (last?.problem) throw new ApiError(`import refused: ${last.problem.detail}`, last.problem.status);
  if (!last?.result) throw new ApiError('the daemon ended the import without a result: see its log');
  for (const w of last.result.warnings) ctx.io.err(`warning: ${w}\n`);
  print(ctx.io, ctx.mode, last.result.artifacts, {
    columns: ['path', 'size', 'sha256', 'verifiedBy'],
    what: 'artifacts',
  });
  ctx.io.err(
    `bootenv '${last.result.bootEnv}' imported${last.result.signers.length ? `, signed by ${last.result.signers.join(', ')}` : ''}: ${last.result.ready ? 'ready' : 'NOT ready'}\n`,
  );
}

/** A bar that is told the total so far rather than each increment. */
function progressFrom(ctx: CliContext, url: string, total?: number) {
  const bar = progress(ctx.io, `fetching ${url.split('/').pop()}`, total);
  let shown = 0;
  return {
    to(n: number) {
      bar.add(n - shown);
      shown = n;
    },
    done: () => bar.done(),
  };
}
