/**
 * The lab's BMCs without root or a guest OS. IPMI: the lab's own lan.conf and chassis_control script under
 * ipmi_sim on loopback, with a stand-in for QEMU that records its arguments: power on with a PXE boot device
 * starts "QEMU" with -boot order=c,once=n, and the flag is spent (the next power-on boots from the disk); off
 * stops it; reset starts a new one. Redfish qemu backend: a real QEMU process with no guest (-S: CPUs never run),
 * started with -boot once=n for a PXE override, reset over QMP, quit over QMP, its PID file kept for `lab status`.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chassisControlScript, ipmiSimConfig, vmPid } from '../../src/lab/bmc.js';
import { qemuBackend } from '../../src/power/emulator/qemu.js';
import { EmulatedSystem } from '../../src/power/emulator/system.js';
import { IpmiDriver } from '../../src/power/ipmi.js';
import { freeUdpPort } from '../power/ipmi-sim.js';

const sig = () => AbortSignal.timeout(20_000);
const alive = (pid: number | undefined) => {
  try {
    return pid !== undefined && !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};
const hasQemu = (() => {
  try {
    execFileSync('qemu-system-x86_64', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe('lab IPMI BMC: ipmi_sim with the lab chassis_control script', () => {
  let dir: string;
  let sim: ReturnType<typeof spawn>;
  let d: IpmiDriver;
  const argsSeen = () => readFileSync(path.join(dir, 'qemu-args'), 'utf8').trim().split('\n');

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'plinth-labbmc-'));
    const fake = path.join(dir, 'fake-qemu');
    writeFileSync(fake, `#!/bin/sh\necho "$*" >> "${dir}/qemu-args"\nexec sleep 60\n`);
    chmodSync(fake, 0o755);
    const { control, start } = chassisControlScript(dir, [fake, '-name', 'lab vm']);
    writeFileSync(path.join(dir, 'chassis.sh'), control, { mode: 0o755 });
    writeFileSync(path.join(dir, 'start-qemu.sh'), start, { mode: 0o755 });
    const port = await freeUdpPort();
    const cfg = ipmiSimConfig({
      address: '127.0.0.1',
      port,
      username: 'plinth',
      password: 'lab-pw',
      chassisControl: path.join(dir, 'chassis.sh'),
    });
    writeFileSync(path.join(dir, 'lan.conf'), cfg.lanConf);
    writeFileSync(path.join(dir, 'sim.emu'), cfg.emu);
    sim = spawn('ipmi_sim', ['-c', 'lan.conf', '-f', 'sim.emu', '-n', '-s', dir], { cwd: dir, stdio: 'ignore' });
    d = new IpmiDriver(
      { driver: 'ipmi', address: '127.0.0.1', port, username: 'plinth', password: 'lab-pw' },
      { pollMs: 50 },
    );
    for (let i = 0; i < 50; i++) {
      try {
        await d.status(sig());
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  });
  afterAll(async () => {
    const pid = vmPid(path.join(dir, 'pid'));
    if (alive(pid)) process.kill(pid!, 'SIGKILL');
    if (sim?.exitCode === null) sim.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });

  it('PXE once then disk; off stops the VM; reset restarts it', async () => {
    expect(await d.status(sig())).toBe('off');
    await d.setBootDevice({ device: 'pxe', persistent: false, uefi: false }, sig());
    await d.power('on', sig());
    const first = vmPid(path.join(dir, 'pid'));
    expect(alive(first)).toBe(true);
    expect(argsSeen()).toEqual(['-name lab vm -boot order=c,once=n']);

    await d.power('off', sig());
    expect(await d.status(sig())).toBe('off');
    await new Promise((r) => setTimeout(r, 100));
    expect(alive(first)).toBe(false);

    await d.power('on', sig()); // the one-time PXE flag was spent: disk first
    await d.power('reset', sig());
    expect(argsSeen()).toEqual([
      '-name lab vm -boot order=c,once=n',
      '-name lab vm -boot order=c',
      '-name lab vm -boot order=c',
    ]);
    await d.power('off', sig());
  });

  it('a PID file whose number another, later process was given names no VM: not running, never killed', () => {
    // A process started after the file was written stands in for the one given a dead VM's number.
    const vmDir = mkdtempSync(path.join(tmpdir(), 'plinth-labbmc-pid-'));
    const later = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      const pidFile = path.join(vmDir, 'pid');
      writeFileSync(pidFile, `${later.pid}\n`);
      expect(vmPid(pidFile)).toBe(later.pid);
      const old = new Date(Date.now() - 3600_000);
      utimesSync(pidFile, old, old);
      expect(vmPid(pidFile)).toBeUndefined();
      const { control } = chassisControlScript(vmDir, ['/bin/false']);
      writeFileSync(path.join(vmDir, 'chassis.sh'), control, { mode: 0o755 });
      const chassis = (...args: string[]) =>
        execFileSync('sh', [path.join(vmDir, 'chassis.sh'), '0x20', ...args], { encoding: 'utf8' }).trim();
      expect(chassis('get', 'power')).toBe('power:0');
      chassis('set', 'power', '0'); // off: it would kill the VM it took this process for
      expect(later.exitCode).toBeNull();
      expect(readFileSync(`/proc/${later.pid}/stat`, 'utf8')).not.toMatch(/^\d+ \(.*\) Z/);
      writeFileSync(pidFile, `${later.pid}\n`);
      expect(chassis('get', 'power')).toBe('power:1');
    } finally {
      later.kill('SIGKILL');
      rmSync(vmDir, { recursive: true, force: true });
    }
  });

  it('refuses a password that would break out of lan.conf', () => {
    expect(() =>
      ipmiSimConfig({ address: '127.0.0.1', port: 1, username: 'u', password: 'a"b', chassisControl: '/x' }),
    ).toThrow(/no quotes/);
  });
});

describe.skipIf(!hasQemu)('Redfish emulator qemu backend (QEMU with no guest)', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'plinth-qmp-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('starts QEMU with -boot once=n for a PXE override, resets and quits it over QMP', async () => {
    const pidFile = path.join(dir, 'pid');
    const backend = qemuBackend({
      command: [
        'qemu-system-x86_64',
        '-machine',
        'pc',
        '-accel',
        'tcg',
        '-m',
        '32',
        '-nodefaults',
        '-display',
        'none',
        '-S',
      ],
      qmp: path.join(dir, 'qmp.sock'),
      log: path.join(dir, 'qemu.log'),
      pidFile,
    });
    const sys = new EmulatedSystem('vm', 'vm', backend);
    try {
      sys.setOverride({ enabled: 'Once', target: 'Pxe', mode: 'Legacy' });
      await sys.reset('On');
      const pid = backend.pid()!;
      expect(vmPid(pidFile)).toBe(pid);
      expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')).toContain('order=c,once=n');
      expect(sys.override.enabled).toBe('Disabled');
      for (let i = 0; i < 50 && !existsSync(path.join(dir, 'qmp.sock')); i++)
        await new Promise((r) => setTimeout(r, 100));
      await sys.reset('ForceRestart'); // no PXE pending: a QMP system_reset of the same process
      expect(backend.pid()).toBe(pid);
      await sys.reset('ForceOff'); // QMP quit
      expect(await backend.power()).toBe('Off');
      expect(alive(pid)).toBe(false);
      expect(existsSync(pidFile)).toBe(false);
    } finally {
      await backend.close();
    }
  });
});
