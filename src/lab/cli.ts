import { parseArgs } from 'node:util';
import { defaultLabName, type LabApi, labDown, labNames, labStatus, labUp } from './lab.js';

export const LAB_USAGE = `Usage: plinth lab up --vms N [--name NAME] [--uefi] [--bootenv NAME] [--cidr 10.250.0.1/24] [--dir DIR]
       plinth lab status [--dir DIR]
       plinth lab down [--dir DIR]

Rehearse on virtual machines: 'up' builds the network namespace plinth-NAME (a bridge, N taps, and a veth
plinth-NAME0 on this host carrying Plinth's lab address, default 10.250.0.1/24), registers lab-vm-1..N as
machines through the API (with --bootenv, assigned to it), and starts N QEMU VMs (software emulation) that
PXE-boot from the running Plinth; their serial consoles stream to DIR/serial-lab-vm-N.log (DIR default
./var/lab). NAME defaults to one derived from the data dir (PLINTH_DATA_DIR, default ./var); 'up' prints the
names. Plinth must serve DHCP on the veth (--dhcp-interfaces plinth-NAME0,...). Needs root.
'up' refuses a namespace or interface of the lab's name that Plinth did not create, and never deletes it.
'down' stops only the VMs 'up' started and removes the namespace and the veth.`;

/** `plinth lab ...`; returns the exit code (0 ok, 1 failure, 2 usage). */
export async function runLab(
  argv: string[],
  api: LabApi,
  out: { write(s: string): unknown } = process.stdout,
  err: { write(s: string): unknown } = process.stderr,
): Promise<number> {
  const [verb, ...rest] = argv;
  let v: Record<string, string | boolean | undefined>;
  try {
    v = parseArgs({
      args: rest,
      options: {
        vms: { type: 'string' },
        name: { type: 'string' },
        uefi: { type: 'boolean' },
        bootenv: { type: 'string' },
        cidr: { type: 'string' },
        dir: { type: 'string' },
        help: { type: 'boolean' },
      },
      strict: true,
    }).values;
  } catch (e) {
    err.write(`plinth lab: ${(e as Error).message}\n${LAB_USAGE}\n`);
    return 2;
  }
  if (v.help || !verb) {
    (v.help ? out : err).write(`${LAB_USAGE}\n`);
    return v.help ? 0 : 2;
  }
  const dataDir = process.env.PLINTH_DATA_DIR ?? './var';
  const dir = (v.dir as string | undefined) ?? `${dataDir}/lab`;
  try {
    if (verb === 'up') {
      const n = Number(v.vms ?? 1);
      if (!Number.isInteger(n) || n < 1 || n > 16) {
        err.write('plinth lab up: --vms must be a whole number from 1 to 16\n');
        return 2;
      }
      const name = (v.name as string | undefined) ?? defaultLabName(dataDir);
      labNames(name); // a bad --name is a usage error before anything is created
      const st = await labUp({
        name,
        vms: n,
        uefi: v.uefi === true,
        bootEnv: v.bootenv as string | undefined,
        cidr: v.cidr as string | undefined,
        dir,
        api,
      });
      for (const vm of st.vms)
        out.write(`${vm.name}  ${vm.mac}  ${vm.firmware}  pid ${vm.pid}  serial ${vm.serialLog}\n`);
      out.write(
        `lab up: namespace ${st.ns}, ${st.hostIf} ${st.cidr}; watch them boot in /ui or with: plinth lab status\n`,
      );
      return 0;
    }
    if (verb === 'status') {
      const st = labStatus(dir);
      if (!st) {
        out.write('no lab is up\n');
        return 0;
      }
      for (const vm of st.vms)
        out.write(`${vm.name}  ${vm.mac}  ${vm.running ? 'running' : 'stopped'}  ${vm.lastLine}\n`);
      return 0;
    }
    if (verb === 'down') {
      for (const line of labDown(dir)) out.write(`${line}\n`);
      return 0;
    }
    err.write(`plinth lab: unknown command '${verb}'\n${LAB_USAGE}\n`);
    return 2;
  } catch (e) {
    err.write(`plinth lab ${verb}: ${(e as Error).message}\n`);
    return 1;
  }
}
