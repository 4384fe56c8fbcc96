/**
 * The IPMI driver against OpenIPMI's `ipmi_sim` on loopback (its chassis_control script records what reaches the
 * "machine"): the order Plinth's calls arrive in, the boot-flag timer cleared before the device, the cipher suite
 * honoured (17 is refused by the simulator, 3 works), bad credentials reported as such, and a BMC that never
 * answers costing the call's timeout. A fake ipmitool shows what the child gets: no password on its command line.
 */
import { createSocket, type Socket } from 'node:dgram';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BmcSettings } from '../../src/power/driver.js';
import { IpmiDriver, ipmiError, parseBootFlags } from '../../src/power/ipmi.js';
import { type Sim, startSim } from './ipmi-sim.js';

const sig = () => AbortSignal.timeout(20_000);
const PASSWORD = 'lab-secret-9';

describe('IPMI driver against ipmi_sim', () => {
  let sim: Sim;
  let bmc: BmcSettings;
  beforeAll(async () => {
    sim = await startSim('plinth', PASSWORD);
    bmc = { driver: 'ipmi', address: '127.0.0.1', port: sim.port, username: 'plinth', password: PASSWORD };
  });
  afterAll(() => sim?.stop());

  it('sets the boot device before powering, and verifies each step', async () => {
    const d = new IpmiDriver(bmc, { pollMs: 50 });
    expect(await d.status(sig())).toBe('off');
    await d.setBootDevice({ device: 'pxe', persistent: false, uefi: true }, sig());
    await d.power('cycle', sig());
    expect(await d.status(sig())).toBe('on');
    const calls = sim.calls();
    const setBoot = calls.indexOf('set boot pxe');
    const setOn = calls.indexOf('set power 1');
    expect(setBoot).toBeGreaterThanOrEqual(0);
    expect(setOn).toBeGreaterThan(setBoot);
    // Verified: a `get boot` after the set (the read-back) and a `get power` after power on.
    expect(calls.slice(setBoot + 1)).toContain('get boot');
    expect(calls.slice(setOn + 1)).toContain('get power');
    // cycle of a machine that was off: no power off was sent.
    expect(calls).not.toContain('set power 0');

    await d.power('cycle', sig());
    const after = sim.calls().slice(calls.length);
    expect(after.indexOf('set power 0')).toBeLessThan(after.indexOf('set power 1'));
    await d.setBootDevice({ device: 'disk', persistent: false, uefi: false }, sig());
    expect(sim.calls()).toContain('set boot default');
    await d.power('off', sig());
    expect(await d.status(sig())).toBe('off');
  });

  it('honours the cipher suite: 17 is refused by the simulator, the error says so', async () => {
    const d = new IpmiDriver({ ...bmc, cipherSuite: 17 });
    await expect(d.status(sig())).rejects.toMatchObject({ code: 'refused', message: /cipher suite/ });
    expect(await new IpmiDriver({ ...bmc, cipherSuite: 3 }).status(sig())).toMatch(/on|off/);
  });

  it('reports a wrong password or user as an auth error', async () => {
    await expect(new IpmiDriver({ ...bmc, password: 'wrong' }).status(sig())).rejects.toMatchObject({ code: 'auth' });
    await expect(new IpmiDriver({ ...bmc, username: 'nobody' }).status(sig())).rejects.toMatchObject({
      code: 'auth',
    });
  });
});

describe('IPMI driver, a BMC that never answers', () => {
  let hole: Socket;
  let port: number;
  beforeAll(async () => {
    hole = createSocket('udp4');
    hole.on('message', () => {}); // swallows every RMCP packet
    await new Promise<void>((r) => hole.bind(0, '127.0.0.1', () => r()));
    port = hole.address().port;
  });
  afterAll(() => hole.close());

  it('costs the call timeout and then a timeout error, not a stuck call', async () => {
    const d = new IpmiDriver(
      { driver: 'ipmi', address: '127.0.0.1', port, username: 'u', password: 'p' },
      {
        callTimeoutMs: 400,
      },
    );
    const t0 = Date.now();
    await expect(d.status(sig())).rejects.toMatchObject({ code: 'timeout' });
    expect(Date.now() - t0).toBeLessThan(10_000);
  });

  it('stops when the caller aborts', async () => {
    const d = new IpmiDriver({ driver: 'ipmi', address: '127.0.0.1', port, username: 'u', password: 'p' });
    await expect(d.power('on', AbortSignal.timeout(300))).rejects.toMatchObject({ code: 'timeout' });
  });
});

describe('IPMI driver, what the child process gets', () => {
  it('the password only in its environment (IPMI_PASSWORD), -E, -C, OPERATOR on the command line', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'plinth-fakeipmi-'));
    try {
      const fake = path.join(dir, 'ipmitool');
      writeFileSync(
        fake,
        `#!/bin/sh\necho "$*" >> "${dir}/argv"\necho "$IPMI_PASSWORD" > "${dir}/env"\necho "Chassis Power is on"\necho " - Boot Device Selector : Force PXE"\n`,
      );
      chmodSync(fake, 0o755);
      const d = new IpmiDriver(
        { driver: 'ipmi', address: '192.0.2.9', username: 'op', password: 'hunter2', cipherSuite: 8 },
        { ipmitool: fake },
      );
      expect(await d.status(sig())).toBe('on');
      const argv = readFileSync(path.join(dir, 'argv'), 'utf8');
      expect(argv).not.toContain('hunter2');
      expect(argv).toMatch(/-I lanplus -C 8 -H 192\.0\.2\.9 -p 623 -U op -E -L OPERATOR/);
      expect(readFileSync(path.join(dir, 'env'), 'utf8').trim()).toBe('hunter2');
      // The 60 s boot-flag timer is switched off before the device is set, then the flags are read back.
      await d.setBootDevice({ device: 'pxe', persistent: false, uefi: true }, sig());
      const cmds = readFileSync(path.join(dir, 'argv'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .slice(1)
        .map((l) => l.split(' -R 2 ')[1]);
      expect(cmds).toEqual([
        'raw 0x00 0x08 0x03 0x08',
        'chassis bootdev pxe options=efiboot',
        'chassis bootparam get 5',
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('ipmitool output', () => {
  it('maps stderr to error codes', () => {
    expect(ipmiError('> RAKP 2 HMAC is invalid\nError: Unable to establish IPMI v2 / RMCP+ session', 'x').code).toBe(
      'auth',
    );
    expect(ipmiError('Get Auth Capabilities error\nError: Unable to establish IPMI v2 / RMCP+ session', 'x').code).toBe(
      'unreachable',
    );
    expect(ipmiError('Set Chassis Power Control to Up/On failed: Insufficient privilege level', 'x').code).toBe(
      'refused',
    );
    expect(ipmiError('something odd', 'x')).toMatchObject({ code: 'failed', message: /something odd/ });
  });

  it('reads the boot device selector', () => {
    expect(parseBootFlags('   - Boot Device Selector : Force PXE\n')).toBe('pxe');
    expect(parseBootFlags('   - Boot Device Selector : Force Boot from default Hard-Drive\n')).toBe('disk');
    expect(parseBootFlags('   - Boot Device Selector : No override\n')).toBe('none');
    expect(parseBootFlags('   - Boot Device Selector : Force Boot from CD/DVD\n')).toBe('other');
  });
});
