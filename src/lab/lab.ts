/**
 * `plinth lab`: rehearse on virtual machines what later runs on metal. `up` builds a namespace with a bridge and
 * N QEMU VMs (software emulation) whose segment is joined to the running Plinth by a veth (`plinth-lab0` on the
 * host, with the lab's server address), registers the VMs as machines through the API, and starts them
 * detached, each serial console streamed to a file; `status` shows them; `down` stops only what `up` started
 * (PIDs from the state file, checked to be inside the lab namespace) and removes the namespace and the veth.
 * Each lab has a name (--name, default derived from the data dir): two labs on one host do not collide, and a
 * namespace or interface of the lab's name that Plinth did not create is refused, never deleted (owner.ts).
 * The same netns and QEMU code as the end-to-end suite.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { type BmcVmPlan, type LabBmcKind, type LabBmcState, startLabBmcs, vmPid } from './bmc.js';
import { createNamespace, createSegment, deleteNamespace, ipn, namespaces, sh } from './netns.js';
import { ForeignNamespaceError } from './owner.js';
import { type Firmware, startDetachedVm } from './qemu.js';

/** Lab names: what fits in an interface name (IFNAMSIZ 15) once prefixed. */
export const LAB_NAME = /^[a-z0-9][a-z0-9-]{0,11}$/;

export type LabNames = { name: string; ns: string; hostIf: string; subnet: string };

/**
 * The namespace, host-side veth and API subnet of a lab. `--name lab` gives the names of earlier releases
 * (plinth-lab, plinth-lab0); a name too long for `plinth-NAME0` gets the host interface `pl-NAME`.
 */
export function labNames(name: string): LabNames {
  if (!LAB_NAME.test(name))
    throw new Error(`lab name '${name}': 1 to 12 of a-z, 0-9 and '-', starting with a letter or digit`);
  const ns = `plinth-${name}`;
  const hostIf = `${ns}0`.length <= 15 ? `${ns}0` : `pl-${name}`;
  return { name, ns, hostIf, subnet: ns };
}

/** The default lab name: one per data dir (so two daemons' labs on one host differ), stable across runs. */
export function defaultLabName(dataDir: string): string {
  return `lab${createHash('sha256').update(path.resolve(dataDir)).digest('hex').slice(0, 4)}`;
}

/** Does a network interface of this name exist in the host's namespace? */
function linkExists(name: string): boolean {
  try {
    sh(['ip', 'link', 'show', 'dev', name]);
    return true;
  } catch {
    return false;
  }
}

export type LabVm = {
  name: string;
  mac: string;
  firmware: Firmware;
  /** QEMU's PID; with a BMC, the BMC's (ipmi_sim or the emulator), and QEMU's is in pidFile while it runs. */
  pid: number;
  serialLog: string;
  machine?: string;
  pidFile?: string;
  bmc?: LabBmcState;
};
export type LabState = { ns: string; hostIf: string; cidr: string; createdAt: string; vms: LabVm[] };

export type LabApi = {
  json(method: string, path: string, body?: unknown, contentType?: string): Promise<{ status: number; body: any }>;
};

const stateFile = (dir: string) => path.join(dir, 'state.json');

export function readState(dir: string): LabState | undefined {
  try {
    return JSON.parse(readFileSync(stateFile(dir), 'utf8')) as LabState;
  } catch {
    return undefined;
  }
}

/** Is `pid` alive and inside the lab namespace (guards against PID reuse after a reboot)? */
function ourPid(pid: number, ns: string): boolean {
  if (!existsSync(`/proc/${pid}`)) return false;
  try {
    return sh(['ip', 'netns', 'identify', String(pid)]).trim() === ns;
  } catch {
    return false;
  }
}

export async function labUp(o: {
  /** The lab's name (labNames); default 'lab'. */
  name?: string;
  vms: number;
  uefi?: boolean;
  cidr?: string;
  bootEnv?: string;
  dir: string;
  api: LabApi;
  /** Each VM's BMC (default none: QEMU started directly); with one, the VM is powered on through it. */
  bmc?: LabBmcKind | LabBmcKind[];
}): Promise<LabState & { warnings: string[] }> {
  const n = labNames(o.name ?? 'lab');
  // Absolute from here on: the BMCs run QEMU from their own directories (an ipmi_sim's chassis_control script, the
  // Redfish emulator), where a relative `var/lab/...` (the default --dir) names nothing.
  const dir = path.resolve(o.dir);
  const prior = readState(dir);
  if (prior && namespaces().includes(prior.ns))
    throw new Error(`a lab is already up here (namespace ${prior.ns}): run \`plinth lab down\` first`);
  const cidr = o.cidr ?? '10.250.0.1/24';
  const [addr, prefix] = cidr.split('/');
  const net = addr!.split('.').slice(0, 3).join('.');
  // The segment: namespace, bridge, taps; the host side of the veth carries Plinth's address on it. A namespace
  // of this name not created here throws ForeignNamespaceError before anything is touched.
  createNamespace(n.ns);
  // Our leftover veth went with our namespace: one still there is someone else's.
  if (linkExists(n.hostIf)) {
    deleteNamespace(n.ns);
    throw new Error(
      `interface ${n.hostIf} exists and is not this lab's: it is left alone; choose another name (--name)`,
    );
  }
  createSegment(n.ns, { cidr: `${net}.254/${prefix}`, taps: o.vms });
  sh(['ip', 'link', 'add', n.hostIf, 'type', 'veth', 'peer', 'name', 'uplink', 'netns', n.ns]);
  sh(['ip', 'addr', 'add', cidr, 'dev', n.hostIf]);
  sh(['ip', 'link', 'set', n.hostIf, 'up']);
  ipn(n.ns, 'link', 'set', 'uplink', 'master', 'br0', 'up');

  // Plinth's side, through its API: a subnet for the segment (if none covers it) and one machine per VM.
  const subnet = await o.api.json('GET', `/api/v1/subnets?name=${n.subnet}`);
  if (subnet.status !== 200)
    throw new Error(`cannot reach the Plinth API: ${subnet.status} ${JSON.stringify(subnet.body)}`);
  if (subnet.body.length === 0) {
    const r = await o.api.json('POST', '/api/v1/subnets', {
      name: n.subnet,
      subnet: `${net}.0/${prefix}`,
      activeStart: `${net}.100`,
      activeEnd: `${net}.199`,
      leaseTime: 600,
      description: 'created by plinth lab up',
    });
    if (r.status !== 201) throw new Error(`could not create the lab subnet: ${JSON.stringify(r.body)}`);
  }
  mkdirSync(dir, { recursive: true });
  const state: LabState = { ns: n.ns, hostIf: n.hostIf, cidr, createdAt: new Date().toISOString(), vms: [] };
  const viaBmc: BmcVmPlan[] = [];
  const kinds: Array<'ipmi' | 'redfish'> = [];
  const viaIdx: number[] = [];
  for (let i = 0; i < o.vms; i++) {
    const kind = Array.isArray(o.bmc) ? o.bmc[i] : o.bmc;
    const name = `lab-vm-${i + 1}`;
    const mac = `52:54:00:1a:b0:${(i + 1).toString(16).padStart(2, '0')}`;
    const existing = await o.api.json('GET', `/api/v1/machines/${name}`);
    let machine: string | undefined = existing.status === 200 ? existing.body.uuid : undefined;
    if (!machine) {
      const r = await o.api.json('POST', '/api/v1/machines', {
        name,
        macs: [mac],
        description: 'plinth lab VM',
        ...(o.bootEnv ? { bootEnv: o.bootEnv } : {}),
      });
      if (r.status !== 201) throw new Error(`could not register ${name}: ${JSON.stringify(r.body)}`);
      machine = r.body.uuid;
    } else if (o.bootEnv) {
      await o.api.json('PATCH', `/api/v1/machines/${machine}`, { bootEnv: o.bootEnv }, 'application/merge-patch+json');
    }
    const firmware: Firmware = o.uefi ? 'uefi' : 'bios';
    const serialLog = path.join(dir, `serial-${name}.log`);
    const options = { ns: n.ns, tap: `tap${i}`, mac, firmware, serialLog, workDir: dir, noReboot: false };
    if (kind && kind !== 'none') {
      viaBmc.push({ name, machine, options });
      kinds.push(kind);
      viaIdx.push(i);
      state.vms.push({ name, mac, firmware, pid: 0, serialLog, machine });
      continue;
    }
    state.vms.push({ name, mac, firmware, pid: startDetachedVm(options), serialLog, machine });
  }
  const warnings: string[] = [];
  if (viaBmc.length) {
    // State first: a BMC that fails to start leaves a lab that `down` can still remove.
    writeFileSync(stateFile(dir), `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
    const net0 = `${net}.254`;
    const started = await startLabBmcs({
      kind: kinds,
      ns: n.ns,
      address: net0,
      dir,
      vms: viaBmc,
      api: o.api,
    });
    for (const [i, b] of started.entries()) {
      Object.assign(state.vms[viaIdx[i]!]!, { pid: b.pid, pidFile: b.pidFile, bmc: b.bmc });
      if (b.warning) warnings.push(b.warning);
    }
  }
  writeFileSync(stateFile(dir), `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  return { ...state, warnings };
}

export type VmStatus = LabVm & { running: boolean; lastLine: string };

export function labStatus(dir: string): (LabState & { vms: VmStatus[] }) | undefined {
  const st = readState(dir);
  if (!st) return undefined;
  return {
    ...st,
    vms: st.vms.map((v) => {
      const log = existsSync(v.serialLog)
        ? readFileSync(v.serialLog, 'latin1')
            .replace(/\x1b\[[0-9;?]*[a-zA-Z]/g, '')
            .replace(/\r/g, '')
        : '';
      const lines = log.split('\n').filter((l) => l.trim());
      const marker = lines.filter((l) => /PLINTH-|Plinth:/.test(l)).pop();
      const pid = v.pidFile ? (vmPid(v.pidFile) ?? -1) : v.pid;
      return { ...v, running: ourPid(pid, st.ns), lastLine: (marker ?? lines.pop() ?? '').trim().slice(0, 200) };
    }),
  };
}

export function labDown(dir: string): string[] {
  const st = readState(dir);
  const said: string[] = [];
  // A VM behind a BMC: its QEMU (PID file, written by the BMC's backend) and the BMC (pid) both go.
  const pids = (st?.vms ?? []).flatMap((v) => [
    ...(v.pidFile ? [{ pid: vmPid(v.pidFile) ?? -1, what: `${v.name} (VM)` }] : []),
    { pid: v.pid, what: v.name },
  ]);
  const stopped = new Set<number>();
  for (const { pid, what } of pids) {
    if (stopped.has(pid) || !ourPid(pid, st!.ns)) continue;
    try {
      process.kill(pid, 'SIGKILL');
      stopped.add(pid);
      said.push(`stopped ${what} (pid ${pid})`);
    } catch {
      // gone
    }
  }
  // The veth goes with the namespace; a namespace of the lab's name that this code did not create is left alone.
  if (st && namespaces().includes(st.ns)) {
    try {
      deleteNamespace(st.ns);
      said.push(`deleted namespace ${st.ns} and its veth ${st.hostIf}`);
    } catch (err) {
      if (!(err instanceof ForeignNamespaceError)) throw err;
      said.push(err.message);
    }
  }
  rmSync(stateFile(dir), { force: true });
  return said;
}
