// `plinth rollout`: create from a file, status (one or all, --watch with a progress bar), pause, resume, abort.
import type { Command } from 'commander';
import { seg } from './client.js';
import type { CliContext } from './context.js';
import { UsageError } from './errors.js';
import { print } from './output.js';
import type { Runner } from './program.js';

type Rollout = {
  id: string;
  state: string;
  batch: number;
  batches: number;
  reason?: string;
  spec: { bootEnv: string };
  machines: { name: string; result?: string; batch: number; run?: { step: string } }[];
};

const FINAL = new Set(['done', 'failed', 'rolled-back', 'aborted']);

const summary = (r: Rollout) => ({
  id: r.id,
  state: r.state,
  bootEnv: r.spec.bootEnv,
  batch: `${Math.min(r.batch + 1, r.batches)}/${r.batches}`,
  done: `${r.machines.filter((m) => m.result === 'ok').length}/${r.machines.length}`,
  ...(r.reason ? { reason: r.reason } : {}),
});

export async function createRollout(file: string, ctx: CliContext): Promise<void> {
  const { documentsOf } = await import('./resources.js');
  const docs = documentsOf(file);
  if (docs.length !== 1) throw new UsageError(`${file}: give one rollout document, not ${docs.length}`);
  const r = (await ctx.client.request('POST', '/rollouts', { body: docs[0] })).body as Rollout;
  print(ctx.io, ctx.mode, ctx.mode === 'table' ? summary(r) : r);
}

export async function rolloutStatus(id: string | undefined, o: { watch?: boolean }, ctx: CliContext) {
  if (!id) {
    if (o.watch) throw new UsageError('--watch needs a rollout id');
    const all = (await ctx.client.request('GET', '/rollouts')).body as Rollout[];
    print(ctx.io, ctx.mode, ctx.mode === 'table' ? all.map(summary) : all, { what: 'rollouts' });
    return undefined;
  }
  const get = async () => (await ctx.client.request('GET', `/rollouts/${seg(id)}`)).body as Rollout;
  let r = await get();
  if (o.watch) {
    // The bar counts machines done: plain counts, not the byte sizes a download's bar shows.
    const { progress } = await import('./progress.js');
    const bar = progress(ctx.io, `rollout ${r.id} machines`, r.machines.length, { unit: 'count' });
    let shown = 0;
    let state = '';
    while (!ctx.signal.aborted) {
      const done = r.machines.filter((m) => m.result === 'ok').length;
      bar.add(done - shown);
      shown = done;
      if (r.state !== state && !ctx.io.errTTY) ctx.io.err(`${r.id}: ${r.state}, ${done}/${r.machines.length} done\n`);
      state = r.state;
      if (FINAL.has(r.state) || r.state === 'paused') break;
      await new Promise((res) => setTimeout(res, 1000));
      r = await get();
    }
    bar.done();
  }
  print(ctx.io, ctx.mode, ctx.mode === 'table' ? summary(r) : r);
  return r.state === 'failed' || r.state === 'rolled-back' ? 1 : undefined;
}

export async function rolloutVerb(verb: 'pause' | 'resume' | 'abort', id: string, ctx: CliContext): Promise<void> {
  const r = (await ctx.client.request('POST', `/rollouts/${seg(id)}/${verb}`)).body as Rollout;
  print(ctx.io, ctx.mode, ctx.mode === 'table' ? summary(r) : r);
}

const ROLLOUT_HELP = `A rollout file (YAML or JSON):
  selector: { namePattern: "web-*" }     # or machines: [a, b], profile: P, params: { rack: "4" }
  bootEnv: flatcar-4081
  batchSize: 2                           # or percentage: 25
  maxUnavailable: 2
  healthTimeout: 1800                    # seconds to boot and be healthy
  healthUrl: http://{address}:9100/healthz   # optional; or healthParam: NAME the OS sets true
  pauseBetween: 0
  onFailure: rollback                    # or stop`;

export function rolloutCommands(program: Command, run: Runner) {
  const g = program
    .command('rollout')
    .description('roll a bootenv across machines in batches: create, status, pause, resume, abort');
  g.command('create')
    .description('start a rollout from a file')
    .requiredOption('-f, --file <file>', 'YAML or JSON; - for standard input')
    .addHelpText('after', `\n${ROLLOUT_HELP}`)
    .action((o) => run((ctx) => createRollout(o.file, ctx)));
  g.command('status')
    .description('one rollout, or all without an id')
    .argument('[id]')
    .option('--watch', 'follow it with a progress bar until it ends or pauses')
    .action((id, o) => run((ctx) => rolloutStatus(id, o, ctx)));
  for (const verb of ['pause', 'resume', 'abort'] as const) {
    g.command(verb)
      .description(`${verb} a rollout`)
      .argument('<id>')
      .action((id) => run((ctx) => rolloutVerb(verb, id, ctx)));
  }
}
