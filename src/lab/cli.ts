import { parseArgs } from 'node:util';
import type { LabBmcKind } from './bmc.js';
import { defaultLabName, type LabApi, labDown, labNames, labStatus, labUp } from './lab.js';

export const LAB_USAGE = `Usage: plinth lab up --vms N [--name NAME] [--uefi] [--bootenv NAME] [--cidr 10.250.0.1/24] [--dir DIR]
                     [--bmc ipmi|redfish|none, or one per VM: --bmc ipmi,ipmi,redfish]
       plinth lab status [--dir DIR]
       plinth lab down [--dir DIR]

Rehearse on virtual machines: 'up' builds the network namespace plinth-NAME (a bridge, N taps, and a veth
plinth-NAME0 on this host carrying Plinth's lab address, default 10.250.0.1/24), registers lab-vm-1..N as
machines through the API (with --bootenv, assigned to it), and starts N QEMU VMs (software emulation) that
PXE-boot from the running Plinth; their serial consoles stream to DIR/serial-lab-vm-N.log (DIR default
./var/lab). NAME defaults to one derived from the data dir (PLINTH_DATA_DIR, default ./var); 'up' prints the
names. Plinth must serve DHCP on the veth (--dhcp-interfaces plinth-NAME0,...). Needs root.
'up' refuses a namespace or interface of the lab's name that Plinth did not create, and never deletes it.
'down' stops only the VMs 'up' started and removes the namespace and the veth.
--bmc ipmi|redfish|none (default ipmi) gives every VM a BMC on the bridge address (.254 of the lab subnet) and a 2 GB virtio
disk (DIR/disk-NAME.img, sparse, kept across up/down): ipmi is one OpenIPMI ipmi_sim per VM (UDP 6230+N, user
plinth, cipher suite 3), redfish one 'plinth bmc-emulator' (port 8000, user admin, system id = VM name).
The BMC is stored on each machine (its password random per 'up'), and the VM is powered on through it with a
PXE-once override; later power-ons boot from the disk unless Plinth sets PXE again (plinth reprovision).
none: QEMU is started directly, always network-first, with no disk.`;

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
        bmc: { type: 'string' },
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
      const kinds = ((v.bmc as string | undefined) ?? 'ipmi').split(',');
      if (
        kinds.some((k) => k !== 'ipmi' && k !== 'redfish' && k !== 'none') ||
        (kinds.length > 1 && kinds.length !== n)
      ) {
        err.write('plinth lab up: --bmc must be ipmi, redfish or none, or one of those per VM (--vms of them)\n');
        return 2;
      }
      const bmc = (kinds.length === 1 ? kinds[0] : kinds) as LabBmcKind | LabBmcKind[];
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
        bmc,
      });
      for (const w of st.warnings) err.write(`plinth lab up: ${w}\n`);
      for (const vm of st.vms)
        out.write(
          `${vm.name}  ${vm.mac}  ${vm.firmware}  pid ${vm.pid}  serial ${vm.serialLog}${vm.bmc ? `  bmc ${vm.bmc.driver} ${vm.bmc.address}${vm.bmc.port ? `:${vm.bmc.port}` : ''}` : ''}\n`,
        );
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
