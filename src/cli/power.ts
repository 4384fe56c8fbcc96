// `plinth power` and `plinth reprovision`: a machine's BMC through the API (src/http/power-api.ts).
import type { Command } from 'commander';
import { seg } from './client.js';
import type { CliContext } from './context.js';
import { UsageError } from './errors.js';
import { print } from './output.js';
import type { Runner } from './program.js';

const ACTIONS = ['status', 'on', 'off', 'cycle', 'reset', 'bootdev'];
const DEVICES = ['pxe', 'disk', 'none'];

export type PowerOptions = { persistent?: boolean; uefi?: boolean; legacy?: boolean };

export async function powerCommand(
  machine: string,
  action: string | undefined,
  device: string | undefined,
  o: PowerOptions,
  ctx: CliContext,
): Promise<void> {
  const act = action ?? 'status';
  if (!ACTIONS.includes(act)) throw new UsageError(`unknown power action '${act}' (${ACTIONS.join(', ')})`);
  const path = `/machines/${seg(machine)}/power`;
  if (act === 'status') {
    print(ctx.io, ctx.mode, (await ctx.client.request('GET', path)).body);
    return;
  }
  let body: Record<string, unknown> = { action: act };
  if (act === 'bootdev') {
    if (!device || !DEVICES.includes(device)) throw new UsageError(`bootdev needs a device: ${DEVICES.join(', ')}`);
    if (o.uefi && o.legacy) throw new UsageError('--uefi and --legacy exclude each other');
    body = {
      ...body,
      device,
      persistent: Boolean(o.persistent),
      ...(o.uefi || o.legacy ? { uefi: Boolean(o.uefi) } : {}),
    };
  } else if (device) {
    throw new UsageError(`'${act}' takes no device`);
  }
  print(ctx.io, ctx.mode, (await ctx.client.request('POST', path, { body })).body);
}

const FINAL = new Set(['done', 'failed']);

export async function reprovisionCommand(
  machine: string,
  o: { bootenv: string; wait?: boolean },
  ctx: CliContext,
): Promise<number | undefined> {
  const path = `/machines/${seg(machine)}/actions/reprovision`;
  let s = (await ctx.client.request('POST', path, { body: { bootEnv: o.bootenv } })).body;
  if (o.wait) {
    let shown = '';
    while (!FINAL.has(s.step) && !ctx.signal.aborted) {
      if (s.step !== shown && ctx.mode === 'table') ctx.io.err(`${machine}: ${s.step}\n`);
      shown = s.step;
      await new Promise((r) => setTimeout(r, 1000));
      s = (await ctx.client.request('GET', path)).body;
    }
  }
  print(ctx.io, ctx.mode, s);
  return s.step === 'failed' ? 1 : undefined;
}

export function powerCommands(program: Command, run: Runner) {
  program
    .command('power')
    .description("a machine's power through its BMC: status (default), on, off, cycle, reset, bootdev DEVICE")
    .argument('<machine>', 'its uuid, name or a MAC')
    .argument('[action]', ACTIONS.join('|'))
    .argument('[device]', `for bootdev: ${DEVICES.join('|')}`)
    .option('--persistent', 'bootdev: every boot, not only the next')
    .option('--uefi', "bootdev: the UEFI flavour (default: from the machine's last DHCP architecture)")
    .option('--legacy', 'bootdev: the legacy BIOS flavour')
    .action((machine, action, device, o) => run((ctx) => powerCommand(machine, action, device, o, ctx)));
  program
    .command('reprovision')
    .description('assign a bootenv, PXE once, power-cycle and wait for the machine to call back booted')
    .argument('<machine>', 'its uuid, name or a MAC')
    .requiredOption('--bootenv <name>', 'the bootenv it boots')
    .option('--wait', 'follow its steps until it is done or failed (exit 1 when failed)')
    .action((machine, o) => run((ctx) => reprovisionCommand(machine, o, ctx)));
}
