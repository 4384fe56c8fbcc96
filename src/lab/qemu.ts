/**
 * One QEMU virtual machine that network-boots on a tap of a lab namespace, under software emulation (TCG:
 * nested KVM is not usable here), with Debian's iPXE ROMs and OVMF. The serial console goes to a file; tests
 * and `plinth lab` wait for marker lines in it.
 *
 * Firmware paths (facts from ../shared/lab, paid for once):
 * - bios: SeaBIOS + the NIC's default iPXE option ROM. Never name romfile= for virtio: Debian's virtio ROMs carry
 *   PCI ID 1af4:1041 while QEMU's transitional virtio-net is 1af4:1000, and QEMU patches the ID only into its
 *   default ROM (an explicit one is skipped: "No bootable device").
 * - uefi: OVMF + the same (combined legacy+EFI) default ROM: OVMF loads the ROM's EFI iPXE driver and boots it
 *   first, DHCP to `GET /boot/ipxe` in 0.1 s once router solicitations are answered (dhcp/ra.ts). A VM whose ROM
 *   iPXE saw no DHCP answer ("Nothing to boot", then OVMF's own PXE) met a server not yet serving its segment, not
 *   a ROM that cannot boot.
 * - uefi-pxe: OVMF's own PXE client (romfile= empty): DHCP -> TFTP ipxe.efi -> iPXE -> HTTP.
 * - uefi-http: OVMF's own UEFI HTTP Boot; PXE switched off through fw_cfg so it goes straight to HTTPv4.
 */
import { spawn } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { type NsProcess, spawnIn } from './netns.js';

export type Firmware = 'bios' | 'uefi' | 'uefi-pxe' | 'uefi-http';
export type VmOptions = {
  ns: string;
  tap: string;
  mac: string;
  firmware: Firmware;
  nic?: 'virtio-net-pci' | 'e1000' | 'e1000e';
  memMiB?: number;
  /** SMBIOS system UUID (discovery matches hardware by it). */
  uuid?: string;
  serialLog: string;
  /** Off: a guest reboot resets the VM (discovery reboots into its assignment). On: a reboot ends QEMU. */
  noReboot?: boolean;
  workDir: string;
  /** `-boot` value (default `n`); false leaves -boot out (a lab BMC adds it at each power-on). */
  boot?: string | false;
  /** A raw (sparse) image attached as a virtio disk (the lab VMs' "local" disk). */
  disk?: string;
};

const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd';
const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd';

export function qemuArgs(o: VmOptions, varsFile?: string): string[] {
  const uefi = o.firmware !== 'bios';
  const args = ['qemu-system-x86_64', '-accel', 'tcg', '-smp', '1', '-m', String(o.memMiB ?? 512), '-nographic'];
  if (o.boot !== false) args.push('-boot', o.boot ?? 'n');
  if (o.disk) args.push('-drive', `file=${o.disk},if=virtio,format=raw`);
  if (o.noReboot) args.push('-no-reboot');
  if (o.uuid) args.push('-uuid', o.uuid);
  if (uefi) {
    args.push(
      '-drive',
      `if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_CODE}`,
      '-drive',
      `if=pflash,format=raw,unit=1,file=${varsFile}`,
    );
  }
  if (o.firmware === 'uefi-http') {
    args.push(
      '-fw_cfg',
      'name=opt/org.tianocore/IPv4PXESupport,string=n',
      '-fw_cfg',
      'name=opt/org.tianocore/IPv6PXESupport,string=n',
    );
  }
  const rom = o.firmware === 'uefi-pxe' || o.firmware === 'uefi-http' ? ',romfile=' : '';
  args.push('-netdev', `tap,id=n0,ifname=${o.tap},script=no,downscript=no`);
  args.push('-device', `${o.nic ?? 'virtio-net-pci'},netdev=n0,mac=${o.mac}${rom}`);
  args.push('-serial', `file:${o.serialLog}`, '-monitor', 'none');
  return args;
}

/** The QEMU command line of a VM that a lab BMC starts and stops: its own NVRAM copy for UEFI, made once here. */
export function vmCommand(o: VmOptions): string[] {
  mkdirSync(o.workDir, { recursive: true });
  let vars: string | undefined;
  if (o.firmware !== 'bios') {
    vars = path.join(o.workDir, `OVMF_VARS-${o.mac.replace(/:/g, '')}.fd`);
    copyFileSync(OVMF_VARS, vars);
  }
  return qemuArgs(o, vars);
}

/**
 * A VM that outlives the command that started it (`plinth lab up`): QEMU in the namespace, detached, its own
 * output to `<serialLog>.qemu`. Returns its PID for `plinth lab down`.
 */
export function startDetachedVm(o: VmOptions): number {
  mkdirSync(o.workDir, { recursive: true });
  rmSync(o.serialLog, { force: true });
  let vars: string | undefined;
  if (o.firmware !== 'bios') {
    vars = path.join(o.workDir, `OVMF_VARS-${o.mac.replace(/:/g, '')}.fd`);
    copyFileSync(OVMF_VARS, vars);
  }
  const out = openSync(`${o.serialLog}.qemu`, 'w');
  const child = spawn('ip', ['netns', 'exec', o.ns, ...qemuArgs(o, vars)], {
    detached: true,
    stdio: ['ignore', out, out],
  });
  closeSync(out);
  child.unref();
  return child.pid!;
}

export type Vm = {
  options: VmOptions;
  log(): string;
  /** Resolves with the matching line when `re` appears in the serial log; rejects on `fail`, QEMU exit or timeout. */
  waitFor(re: RegExp, timeoutMs: number, fail?: RegExp): Promise<string>;
  running(): boolean;
  stop(): Promise<void>;
  proc: NsProcess;
  startedAt: number;
};

// Serial lines start with terminal escape sequences: strip them before matching.
const clean = (s: string) => s.replace(/\x1b\[[0-9;?]*[a-zA-Z]/g, '').replace(/\r/g, '');

export function startVm(o: VmOptions): Vm {
  mkdirSync(o.workDir, { recursive: true });
  mkdirSync(path.dirname(o.serialLog), { recursive: true });
  rmSync(o.serialLog, { force: true });
  let vars: string | undefined;
  if (o.firmware !== 'bios') {
    if (!existsSync(OVMF_CODE)) throw new Error(`OVMF is missing (${OVMF_CODE}): apt-get install ovmf`);
    // Fresh NVRAM per VM: no boot order carried over from an earlier run.
    vars = path.join(o.workDir, `OVMF_VARS-${o.mac.replace(/:/g, '')}.fd`);
    copyFileSync(OVMF_VARS, vars);
  }
  const proc = spawnIn(o.ns, qemuArgs(o, vars));
  const startedAt = Date.now();
  const log = () => (existsSync(o.serialLog) ? clean(readFileSync(o.serialLog, 'latin1')) : '');
  const running = () => proc.child.exitCode === null && proc.child.signalCode === null;
  return {
    options: o,
    proc,
    startedAt,
    log,
    running,
    waitFor(re, timeoutMs, fail) {
      return new Promise((resolve, reject) => {
        const until = Date.now() + timeoutMs;
        const poll = () => {
          const text = log();
          const m = re.exec(text);
          if (m) return resolve(text.slice(m.index).split('\n')[0]!);
          const f = fail?.exec(text);
          if (f) return reject(new Error(`VM ${o.mac}: ${text.slice(f.index).split('\n')[0]}`));
          if (!running()) {
            const again = re.exec(log()); // the marker may have landed just before poweroff
            if (again) return resolve(log().slice(again.index).split('\n')[0]!);
            return reject(
              new Error(
                `VM ${o.mac}: QEMU exited before ${re} (${proc.output().slice(-500)}); serial tail: ${text.slice(-1500)}`,
              ),
            );
          }
          if (Date.now() > until)
            return reject(
              new Error(`VM ${o.mac}: no ${re} within ${timeoutMs / 1000} s; serial tail: ${text.slice(-1500)}`),
            );
          setTimeout(poll, 250);
        };
        poll();
      });
    },
    async stop() {
      await proc.stop('SIGKILL');
      if (vars) rmSync(vars, { force: true });
    },
  };
}
