/**
 * BMCs for the lab VMs, so Plinth power-controls them as it would real servers: OpenIPMI's `ipmi_sim` (one per
 * VM, RMCP+ on the lab bridge, a chassis_control script that starts and stops the VM's QEMU) or Plinth's own
 * Redfish emulator (one process, one System per VM, its qemu backend). Both run inside the lab namespace, so the
 * QEMU they start can open the VM's tap, and listen on the bridge address that the host reaches over the veth.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { EmulatorConfig } from '../power/emulator/cli.js';
import { type BmcSettings, createDriver } from '../power/index.js';
import type { LabApi } from './lab.js';
import { type VmOptions, vmCommand } from './qemu.js';

export type IpmiSimOptions = {
  address: string;
  port: number;
  username: string;
  password: string;
  /** The chassis_control program: ipmi_sim runs `PROGRAM 0x20 get|set|check parm [value]...`. */
  chassisControl: string;
};

/**
 * ipmi_sim's lan.conf and command file. One LAN channel, one BMC (IPMB 0x20), one user with OPERATOR as its
 * limit (all Plinth asks for) besides the anonymous user, which is disabled. ipmi_sim reads users from here only
 * while its persisted user store (-s DIR) is empty: the lab runs it with -n -s on a fresh directory.
 */
export function ipmiSimConfig(o: IpmiSimOptions): { lanConf: string; emu: string } {
  const q = (s: string) => {
    // lan.conf strings are double-quoted with no escapes: refuse what would end them early.
    if (/["\n\\]/.test(s)) throw new Error(`ipmi_sim setting ${JSON.stringify(s)}: no quotes, backslashes or newlines`);
    return `"${s}"`;
  };
  const auths = 'none md2 md5 straight';
  const lanConf = `# written by plinth (src/lab/bmc.ts)
name "plinth"
set_working_mc 0x20
  startlan 1
    addr ${o.address} ${o.port}
    priv_limit admin
    allowed_auths_callback ${auths}
    allowed_auths_user ${auths}
    allowed_auths_operator ${auths}
    allowed_auths_admin ${auths}
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control ${q(`${o.chassisControl} 0x20`)}
  user 1 false "" "" user 1 none
  user 2 true ${q(o.username)} ${q(o.password)} operator 10 md5 straight
`;
  const emu = `mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
mc_enable 0x20
`;
  return { lanConf, emu };
}

/** Single-quotes a word for sh. */
const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * The chassis_control program of one lab VM (ipmi_sim runs it for power and boot-device requests): power on starts
 * the VM's QEMU with `-boot order=c,once=n` when the boot device is PXE (then forgets it, as firmware consumes a
 * one-time boot flag) and `order=c` otherwise; power off kills that QEMU by the PID it wrote; reset is off then on.
 */
export function chassisControlScript(vmDir: string, qemu: string[]): { control: string; start: string } {
  const start = `#!/bin/sh
# written by plinth (src/lab/bmc.ts): the VM, with the boot order in $1
exec ${qemu.map(shq).join(' ')} -boot "$1"
`;
  const control = `#!/bin/sh
# written by plinth (src/lab/bmc.ts): ipmi_sim chassis_control for one lab VM
D=${shq(vmDir)}
# A zombie (QEMU exited, not yet reaped by whoever inherited it) is not running.
alive() { s=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1); [ -n "$s" ] && [ "$s" != Z ]; }
# The VM's process: alive, and started no later than its PID file was written (PIDs are reused: a process started
# after the file is another one given a dead VM's number, never to be killed or taken for the VM). Start times in
# whole seconds, hence the one second of slack.
running() {
  [ -f "$D/pid" ] || return 1
  p=$(cat "$D/pid")
  alive "$p" || return 1
  st=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | cut -d' ' -f20)
  bt=$(sed -n 's/^btime //p' /proc/stat)
  [ -n "$st" ] && [ $((bt + st / $(getconf CLK_TCK))) -le $(($(stat -c %Y "$D/pid") + 1)) ]
}
on() {
  running && return 0
  b=$(cat "$D/boot" 2>/dev/null || echo default)
  order=order=c
  if [ "$b" = pxe ]; then order=order=c,once=n; echo default > "$D/boot"; fi
  sh "$D/start-qemu.sh" "$order" </dev/null >>"$D/qemu.log" 2>&1 &
  echo $! > "$D/pid"
}
off() {
  running || return 0
  pid=$(cat "$D/pid")
  kill "$pid" 2>/dev/null
  i=0; while alive "$pid" && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  kill -9 "$pid" 2>/dev/null
  rm -f "$D/pid"
}
shift
op=$1; shift
case $op in
get) for p in "$@"; do
  case $p in
  power) if running; then echo power:1; else echo power:0; fi ;;
  boot) echo "boot:$(cat "$D/boot" 2>/dev/null || echo default)" ;;
  esac
done ;;
set) while [ $# -gt 1 ]; do
  case $1 in
  power) if [ "$2" = 1 ]; then on; else off; fi ;;
  reset) off; on ;;
  boot) echo "$2" > "$D/boot" ;;
  esac
  shift 2
done ;;
check) ;;
esac
exit 0
`;
  return { control, start };
}

export type LabBmcVm = { name: string; dir: string; qemu: string[] };
/** A lab VM's BMC as Plinth stores it on the machine, and the PID file of the VM's QEMU. */
export type LabBmc = { settings: BmcSettings; bmcPid: number; vmPidFile: string };

/** Starts `argv` detached, in namespace `ns` (none: this process's own, as tests on loopback do). */
function detached(
  ns: string | undefined,
  argv: string[],
  cwd: string,
  log: string,
  env: NodeJS.ProcessEnv = {},
): number {
  const out = openSync(log, 'a');
  const [bin, ...args] = ns ? ['ip', 'netns', 'exec', ns, ...argv] : argv;
  const child = spawn(bin!, args, {
    cwd,
    detached: true,
    stdio: ['ignore', out, out],
    env: { ...process.env, ...env },
  });
  closeSync(out);
  child.unref();
  return child.pid!;
}

/**
 * One ipmi_sim per VM on `address`, ports basePort, basePort+1, ... (in the lab namespace). ipmi_sim runs in the
 * VM's directory and its chassis_control script starts QEMU from there: every path it is given is made absolute
 * (a relative one, from the default `--dir var/lab`, made every chassis call fail "not found", which ipmi_sim
 * answers with "Insufficient privilege level").
 */
export function startIpmiBmcs(o: {
  /** The lab namespace; none: this process's own (tests on loopback). */
  ns?: string;
  address: string;
  basePort: number;
  password: string;
  vms: LabBmcVm[];
}): LabBmc[] {
  return o.vms.map((v, i) => {
    const vm = { ...v, dir: path.resolve(v.dir) };
    // A fresh state dir per start: ipmi_sim prefers users it persisted there to lan.conf's, and each `lab up` has
    // a new password (and a lab dir is reused across up/down).
    rmSync(path.join(vm.dir, 'sim'), { recursive: true, force: true });
    mkdirSync(path.join(vm.dir, 'sim'), { recursive: true });
    const { control, start } = chassisControlScript(vm.dir, vm.qemu);
    writeFileSync(path.join(vm.dir, 'chassis.sh'), control, { mode: 0o755 });
    writeFileSync(path.join(vm.dir, 'start-qemu.sh'), start, { mode: 0o755 });
    const port = o.basePort + i;
    const cfg = ipmiSimConfig({
      address: o.address,
      port,
      username: 'plinth',
      password: o.password,
      chassisControl: path.join(vm.dir, 'chassis.sh'),
    });
    writeFileSync(path.join(vm.dir, 'lan.conf'), cfg.lanConf, { mode: 0o600 });
    writeFileSync(path.join(vm.dir, 'sim.emu'), cfg.emu);
    const bmcPid = detached(
      o.ns,
      ['ipmi_sim', '-c', 'lan.conf', '-f', 'sim.emu', '-n', '-s', 'sim'],
      vm.dir,
      path.join(vm.dir, 'ipmi_sim.log'),
    );
    const settings: BmcSettings = {
      driver: 'ipmi',
      address: o.address,
      port,
      username: 'plinth',
      password: o.password,
      cipherSuite: 3,
    };
    return { settings, bmcPid, vmPidFile: path.join(vm.dir, 'pid') };
  });
}

/** One Redfish emulator (qemu backend) for all VMs, one System per VM named after it. */
export function startRedfishBmc(o: {
  ns?: string;
  address: string;
  port: number;
  password: string;
  dir: string;
  vms: LabBmcVm[];
  /** How to run `plinth` (default: this very program). */
  plinth?: string[];
}): LabBmc[] {
  const dir = path.resolve(o.dir);
  const config: EmulatorConfig = {
    systems: o.vms.map((v) => {
      const vm = { ...v, dir: path.resolve(v.dir) };
      mkdirSync(vm.dir, { recursive: true });
      return {
        id: vm.name,
        name: vm.name,
        command: vm.qemu,
        qmp: path.join(vm.dir, 'qmp.sock'),
        log: path.join(vm.dir, 'qemu.log'),
        pidFile: path.join(vm.dir, 'pid'),
      };
    }),
  };
  const cfgFile = path.join(dir, 'bmc-redfish.json');
  writeFileSync(cfgFile, `${JSON.stringify(config, null, 2)}\n`);
  // bin/plinth.js of this checkout (from src/lab or dist/lab alike), with this Node's loader flags (tsx in dev).
  const entry = fileURLToPath(new URL('../../bin/plinth.js', import.meta.url));
  const plinth = o.plinth ?? [process.execPath, ...process.execArgv, entry];
  const bmcPid = detached(
    o.ns,
    [
      ...plinth,
      'bmc-emulator',
      '--backend',
      'qemu',
      '--config',
      cfgFile,
      '--host',
      o.address,
      '--port',
      String(o.port),
    ],
    dir,
    path.join(dir, 'bmc-redfish.log'),
    { PLINTH_BMC_PASSWORD: o.password },
  );
  return o.vms.map((vm) => ({
    settings: {
      driver: 'redfish',
      address: `http://${o.address}:${o.port}`,
      username: 'admin',
      password: o.password,
      systemId: vm.name,
    },
    bmcPid,
    vmPidFile: path.join(path.resolve(vm.dir), 'pid'),
  }));
}

/** The PID in a lab VM's PID file, if any. */
export function vmPid(pidFile: string): number | undefined {
  try {
    const n = Number(readFileSync(pidFile, 'utf8').trim());
    if (!Number.isInteger(n) || n <= 0) return undefined;
    // PIDs are reused (32,768 of them by default): a process started after the file was written is not the one
    // it names, whose number it was given after that one ended. Start times in whole seconds: one of slack.
    const started = startedAtSec(n);
    return started !== undefined && started <= statSync(pidFile).mtimeMs / 1000 + 1 ? n : undefined;
  } catch {
    return undefined;
  }
}

/** When process `pid` started, in seconds since the epoch (/proc: boot time plus its start in clock ticks). */
function startedAtSec(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The fields after the command name (which may hold spaces and parentheses): state is the first, starttime the 20th.
    const ticks = Number(stat.slice(stat.lastIndexOf(') ') + 2).split(' ')[19]);
    const btime = Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1]);
    return Number.isFinite(ticks) && Number.isFinite(btime) ? btime + ticks / CLK_TCK : undefined;
  } catch {
    return undefined;
  }
}
/** sysconf(_SC_CLK_TCK): 100 on every Linux architecture Node runs on (USER_HZ). */
const CLK_TCK = 100;

/**
 * Waits for the BMC to answer (it has just started), then sets PXE once and powers the VM on through the same
 * driver Plinth uses: the lab's first boot is already a BMC-driven one.
 */
export async function powerOnPxe(bmc: BmcSettings, uefi: boolean, timeoutMs = 20_000): Promise<void> {
  const d = createDriver(bmc);
  const until = Date.now() + timeoutMs;
  try {
    for (;;) {
      try {
        await d.status(AbortSignal.timeout(5000));
        break;
      } catch (e) {
        if (Date.now() > until) throw e;
        await new Promise((r) => setTimeout(r, 300));
      }
    }
    await d.setBootDevice({ device: 'pxe', persistent: false, uefi }, AbortSignal.timeout(30_000));
    await d.power('on', AbortSignal.timeout(60_000));
  } finally {
    await d.close?.();
  }
}

export type LabBmcKind = 'ipmi' | 'redfish' | 'none';
/** What `plinth lab` keeps about a VM's BMC (no password: that is in the machine's bmc, on the Plinth side). */
export type LabBmcState = { driver: 'ipmi' | 'redfish'; address: string; port?: number; systemId?: string };
export type BmcVmPlan = { name: string; machine?: string; options: VmOptions };

const IPMI_BASE_PORT = 6230;
const REDFISH_PORT = 8000;

/**
 * Gives each planned VM a small virtio disk and a BMC, stores the BMC on its machine through the API, and powers
 * it on through that BMC (PXE once). Returns per VM the BMC's PID, the VM's PID file, the BMC as the lab state
 * keeps it, and a warning when the API refused the machine's bmc (a Plinth without power control).
 */
export async function startLabBmcs(o: {
  /** One kind for all VMs, or one per VM (a mixed lab: `--bmc ipmi,ipmi,redfish`). */
  kind: 'ipmi' | 'redfish' | Array<'ipmi' | 'redfish'>;
  ns?: string;
  address: string;
  dir: string;
  vms: BmcVmPlan[];
  api: LabApi;
  /** The first VM's ipmi_sim port (default 6230; tests on loopback pick a free one). */
  ipmiBasePort?: number;
}): Promise<Array<{ pid: number; pidFile: string; bmc: LabBmcState; warning?: string }>> {
  const kinds = o.vms.map((_, i) => (Array.isArray(o.kind) ? o.kind[i]! : o.kind));
  const need = kinds.includes('ipmi') ? ['ipmi_sim', 'ipmitool'] : [];
  const missing = need.filter((bin) => !process.env.PATH?.split(':').some((d) => existsSync(path.join(d, bin))));
  if (missing.length)
    throw new Error(
      `--bmc ipmi needs ${missing.join(' and ')}: apt-get install openipmi ipmitool (or --bmc redfish|none)`,
    );
  const password = randomBytes(12).toString('base64url');
  // QEMU is started from the BMC's directory: its paths must not be relative to ours.
  const labDir = path.resolve(o.dir);
  const specs: LabBmcVm[] = o.vms.map((v) => {
    const dir = path.join(labDir, `bmc-${v.name}`);
    mkdirSync(dir, { recursive: true });
    // Sparse: 2 GB that costs nothing until the OS writes to it.
    const disk = path.join(labDir, `disk-${v.name}.img`);
    if (!existsSync(disk)) {
      writeFileSync(disk, '');
      truncateSync(disk, 2 * 1024 ** 3);
    }
    const paths = { serialLog: path.resolve(v.options.serialLog), workDir: path.resolve(v.options.workDir) };
    return { name: v.name, dir, qemu: vmCommand({ ...v.options, ...paths, boot: false, disk }) };
  });
  // Each kind's VMs go to their BMCs together (one Redfish emulator serves all of its VMs), then back in order.
  const of = (k: 'ipmi' | 'redfish') => specs.filter((_, i) => kinds[i] === k);
  const ipmi = of('ipmi').length
    ? startIpmiBmcs({
        ns: o.ns,
        address: o.address,
        basePort: o.ipmiBasePort ?? IPMI_BASE_PORT,
        password,
        vms: of('ipmi'),
      })
    : [];
  const redfish = of('redfish').length
    ? startRedfishBmc({ ns: o.ns, address: o.address, port: REDFISH_PORT, password, dir: labDir, vms: of('redfish') })
    : [];
  const bmcs = kinds.map((k) => (k === 'ipmi' ? ipmi : redfish).shift()!);
  try {
    return await registerAndPowerOn(o.vms, bmcs, o.api);
  } catch (err) {
    // A lab that did not come up leaves nothing running: the BMCs started above (and any VM one of them started).
    for (const b of new Set(bmcs)) {
      const vm = vmPid(b.vmPidFile);
      for (const pid of [b.bmcPid, vm]) if (pid) killQuietly(pid);
    }
    throw err;
  }
}

function killQuietly(pid: number) {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    // already gone
  }
}

async function registerAndPowerOn(vms: BmcVmPlan[], bmcs: LabBmc[], api: LabApi) {
  const o = { vms, api };
  const out = [];
  for (const [i, v] of o.vms.entries()) {
    const b = bmcs[i]!;
    let warning: string | undefined;
    if (v.machine) {
      const r = await o.api.json('PATCH', `/api/v1/machines/${v.machine}`, { bmc: b.settings }, MERGE);
      if (r.status !== 200) warning = `${v.name}: Plinth did not take its bmc (${r.status} ${JSON.stringify(r.body)})`;
    }
    await powerOnPxe(b.settings, v.options.firmware !== 'bios');
    const { driver, address, port, systemId } = b.settings;
    out.push({
      pid: b.bmcPid,
      pidFile: b.vmPidFile,
      bmc: { driver: driver as 'ipmi' | 'redfish', address, port, systemId },
      warning,
    });
  }
  return out;
}
const MERGE = 'application/merge-patch+json';
