/**
 * The lab's IPMI BMCs (src/lab/bmc.ts) on loopback, without QEMU or a namespace: ipmi_sim with the lab's own
 * lan.conf and chassis_control script, and a stand-in "VM" (sh recording its arguments, then sleeping).
 * - Started from a relative directory (the README tour's `lab up` has no --dir: ./var/lab), the BMC still powers
 *   its VM on with PXE once and off. With relative paths every chassis call failed "not found", which ipmi_sim
 *   answers "Insufficient privilege level": the tour's failure.
 * - A lab up that fails after its BMCs started leaves none of them running.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type LabBmc, powerOnPxe, startIpmiBmcs, startLabBmcs, vmPid } from '../../src/lab/bmc.js';
import { createDriver } from '../../src/power/index.js';
import { freeUdpPort } from './ipmi-sim.js';

// Under the checkout (.lab/ is git-ignored), so that a path relative to the test's working directory reaches it.
mkdirSync(path.join(process.cwd(), '.lab'), { recursive: true });
const base = mkdtempSync(path.join(process.cwd(), '.lab/bmc-test-'));
const started: number[] = [];

/** A process is alive (not gone, not a zombie). */
const alive = (pid: number) => {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};
const kill = (pid: number) => {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
};
/** PIDs of the processes whose working directory is `dir` (the lab starts ipmi_sim there). */
const runningIn = (dir: string) =>
  readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readlinkSync(`/proc/${p}/cwd`) === dir;
      } catch {
        return false;
      }
    })
    .map(Number)
    .filter(alive);

afterAll(() => {
  for (const pid of started) kill(pid);
  rmSync(base, { recursive: true, force: true });
});

describe('lab IPMI BMCs', () => {
  it('started from a relative directory, power the VM on with PXE once, then off', { timeout: 60_000 }, async () => {
    const rel = path.relative(process.cwd(), path.join(base, 'one'));
    expect(path.isAbsolute(rel)).toBe(false);
    // The "VM": records the boot order it was started with, in its working directory, then waits.
    const vm = {
      name: 'vm1',
      dir: path.join(rel, 'bmc-vm1'),
      qemu: ['sh', '-c', 'echo "$@" > args; exec sleep 120', 'vm'],
    };
    const [bmc] = startIpmiBmcs({
      address: '127.0.0.1',
      basePort: await freeUdpPort(),
      password: 'pw-lab-1',
      vms: [vm],
    });
    const b = bmc as LabBmc;
    started.push(b.bmcPid);
    await powerOnPxe(b.settings, false);
    const pid = vmPid(b.vmPidFile);
    expect(pid).toBeDefined();
    started.push(pid!);
    const dir = path.dirname(b.vmPidFile);
    await expect.poll(() => existsSync(path.join(dir, 'args')), { timeout: 10_000 }).toBe(true);
    expect(readFileSync(path.join(dir, 'args'), 'utf8').trim()).toBe('-boot order=c,once=n');
    // PXE once is spent by that boot, as firmware does.
    expect(readFileSync(path.join(dir, 'boot'), 'utf8').trim()).toBe('default');
    const d = createDriver(b.settings);
    expect(await d.status(AbortSignal.timeout(10_000))).toBe('on');
    await d.power('off', AbortSignal.timeout(30_000));
    expect(alive(pid!)).toBe(false);
  });

  it('a lab up that fails after starting its BMCs stops them', { timeout: 60_000 }, async () => {
    const dir = path.join(base, 'two');
    const bmcDir = path.join(dir, 'bmc-lab-vm-1');
    let seen: number[] = [];
    const failing = {
      // Plinth's API goes away once the BMC runs: wait to see ipmi_sim in its directory, then fail.
      async json(): Promise<{ status: number; body: unknown }> {
        for (let i = 0; i < 100 && !seen.length; i++) {
          seen = runningIn(bmcDir);
          if (!seen.length) await new Promise((r) => setTimeout(r, 50));
        }
        started.push(...seen);
        throw new Error('the Plinth API went away');
      },
    };
    const options = {
      ns: 'unused',
      tap: 'tap0',
      mac: '52:54:00:1a:b0:01',
      firmware: 'bios' as const,
      serialLog: path.join(dir, 'serial-lab-vm-1.log'),
      workDir: dir,
      noReboot: false,
    };
    await expect(
      startLabBmcs({
        kind: 'ipmi',
        address: '127.0.0.1',
        dir,
        vms: [{ name: 'lab-vm-1', machine: 'lab-vm-1', options }],
        api: failing,
        ipmiBasePort: await freeUdpPort(),
      }),
    ).rejects.toThrow(/went away/);
    expect(seen.length).toBe(1);
    await expect.poll(() => seen.filter(alive), { timeout: 10_000 }).toEqual([]);
  });
});
