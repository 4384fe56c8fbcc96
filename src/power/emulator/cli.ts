/**
 * `plinth bmc-emulator`: Plinth's Redfish BMC emulator as a process, for `plinth lab` (qemu backend, one System
 * per lab VM) and for trying the Redfish driver without hardware (fake backend). Runs until SIGTERM or Ctrl-C;
 * QEMU processes it started are stopped with it. The password comes from the environment (PLINTH_BMC_PASSWORD)
 * or a file, never from the command line, where every local user could read it.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { type QemuMachine, qemuBackend } from './qemu.js';
import { startEmulator } from './server.js';
import { EmulatedSystem, fakeBackend } from './system.js';

export const EMULATOR_USAGE = `Usage: plinth bmc-emulator [--host 127.0.0.1] [--port 8000] [--backend fake|qemu]
         [--systems N | --config FILE] [--username admin] [--password-file FILE]
         [--ignore-override] [--require-if-match] [--tls-cert FILE --tls-key FILE]

A Redfish BMC (service root, Systems, PowerState, Reset, Boot override, sessions, ETags) for N emulated
machines. fake: in-memory power state (--systems N, ids 1..N). qemu: --config FILE, JSON
{"systems":[{"id":"vm1","name":"...","command":["qemu-system-x86_64",...],"qmp":"/path.sock","log":"FILE"}]};
power on starts that command (with -boot once=n for a PXE override), off quits it over QMP.
The password: PLINTH_BMC_PASSWORD or --password-file (default "password"). --ignore-override answers boot
override PATCHes with 200 and keeps nothing, as some real BMCs do.`;

type Io = { out(s: string): void; err(s: string): void; signal?: AbortSignal };

export type EmulatorConfig = { systems: Array<QemuMachine & { id: string; name?: string }> };

export async function runEmulatorCommand(argv: string[], io: Io): Promise<number> {
  let v: Record<string, string | boolean | undefined>;
  try {
    v = parseArgs({
      args: argv,
      options: {
        host: { type: 'string' },
        port: { type: 'string' },
        backend: { type: 'string' },
        systems: { type: 'string' },
        config: { type: 'string' },
        username: { type: 'string' },
        'password-file': { type: 'string' },
        'ignore-override': { type: 'boolean' },
        'require-if-match': { type: 'boolean' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }).values;
  } catch (e) {
    io.err(`plinth bmc-emulator: ${(e as Error).message}\n${EMULATOR_USAGE}\n`);
    return 2;
  }
  if (v.help) {
    io.out(`${EMULATOR_USAGE}\n`);
    return 0;
  }
  const backend = (v.backend as string | undefined) ?? 'fake';
  const port = Number(v.port ?? 8000);
  if (!['fake', 'qemu'].includes(backend) || !Number.isInteger(port) || port < 0 || port > 65535) {
    io.err(`plinth bmc-emulator: --backend fake|qemu and a --port from 0 to 65535\n`);
    return 2;
  }
  const password = v['password-file']
    ? readFileSync(v['password-file'] as string, 'utf8').trim()
    : (process.env.PLINTH_BMC_PASSWORD ?? 'password');
  const ignore = v['ignore-override'] === true;
  let systems: EmulatedSystem[];
  if (backend === 'qemu') {
    if (!v.config) {
      io.err('plinth bmc-emulator: --backend qemu needs --config FILE\n');
      return 2;
    }
    const cfg = JSON.parse(readFileSync(v.config as string, 'utf8')) as EmulatorConfig;
    systems = cfg.systems.map((s) => new EmulatedSystem(s.id, s.name ?? s.id, qemuBackend(s), ignore));
  } else {
    const n = Number(v.systems ?? 1);
    if (!Number.isInteger(n) || n < 1 || n > 10_000) {
      io.err('plinth bmc-emulator: --systems must be a whole number from 1 to 10000\n');
      return 2;
    }
    systems = Array.from({ length: n }, (_, i) => {
      const id = String(i + 1);
      return new EmulatedSystem(id, `system-${id}`, fakeBackend(id), ignore);
    });
  }
  const tls =
    v['tls-cert'] && v['tls-key']
      ? { cert: readFileSync(v['tls-cert'] as string), key: readFileSync(v['tls-key'] as string) }
      : undefined;
  const emu = await startEmulator({
    systems,
    username: (v.username as string | undefined) ?? 'admin',
    password,
    host: (v.host as string | undefined) ?? '127.0.0.1',
    port,
    tls,
    requireIfMatch: v['require-if-match'] === true,
    log: (line) => io.err(`${new Date().toISOString()} ${line}\n`),
  });
  io.out(`bmc-emulator: ${emu.url}/redfish/v1/ (${backend}, ${systems.length} systems)\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', () => resolve());
    io.signal?.addEventListener('abort', () => resolve(), { once: true });
  });
  await emu.close();
  return 0;
}
