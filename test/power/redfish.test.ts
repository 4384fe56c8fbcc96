/**
 * Plinth's Redfish driver against the emulator (fake backend, whose boot hook plays the machine): power actions
 * verified in PowerState, a PXE-once override that the next power-on boots from, a BMC that answers the override
 * PATCH with 200 and keeps nothing (override-ignored), If-Match sent where the BMC demands it, a reset type chosen
 * from what the system lists, sessions opened and deleted, Basic auth, bad credentials, several systems, a
 * self-signed BMC trusted only with insecureTLS, and BMCs that refuse or never answer.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { loadTls } from '../../src/http/tls.js';
import type { BmcSettings } from '../../src/power/driver.js';
import { type Emulator, type EmulatorOptions, startEmulator } from '../../src/power/emulator/server.js';
import { type BootRecord, EmulatedSystem, fakeBackend } from '../../src/power/emulator/system.js';
import { baseUrl, RedfishDriver } from '../../src/power/redfish.js';

const sig = () => AbortSignal.timeout(20_000);
const USER = 'plinth';
const PASS = 'rf-pass-7';
const fast = { pollMs: 20, verifyTimeoutMs: 2000 };

let emu: Emulator | undefined;
afterEach(async () => {
  await emu?.close();
  emu = undefined;
});

async function oneSystem(o: Partial<EmulatorOptions> = {}, ignoreOverride = false) {
  const boots: BootRecord[] = [];
  const sys = new EmulatedSystem(
    'node1',
    'node1',
    fakeBackend('node1', (b) => boots.push(b)),
    ignoreOverride,
  );
  emu = await startEmulator({ systems: [sys], username: USER, password: PASS, ...o });
  const bmc: BmcSettings = { driver: 'redfish', address: emu.url, username: USER, password: PASS };
  return { sys, boots, bmc, emu };
}

describe('Redfish driver', () => {
  it('powers on, off, cycles and resets, each verified; a PXE-once override is what the next boot uses', async () => {
    const { boots, bmc, sys, emu } = await oneSystem();
    const d = new RedfishDriver(bmc, fast);
    expect(await d.status(sig())).toBe('off');
    await d.setBootDevice({ device: 'pxe', persistent: false, uefi: true }, sig());
    expect(sys.override).toEqual({ enabled: 'Once', target: 'Pxe', mode: 'UEFI' });
    await d.power('cycle', sig()); // off: cycle powers it on
    expect(await d.status(sig())).toBe('on');
    await d.power('reset', sig());
    await d.power('cycle', sig());
    await d.power('off', sig());
    expect(await d.status(sig())).toBe('off');
    // The override was spent by the first boot; later boots come from the disk.
    expect(boots.map((b) => `${b.target}/${b.mode}`)).toEqual(['Pxe/UEFI', 'Hdd/UEFI', 'Hdd/UEFI']);
    // One session for the driver's life, deleted by close().
    expect(emu.sessions.size).toBe(1);
    await d.close();
    expect(emu.sessions.size).toBe(0);
  });

  it('reports a BMC that accepts the override and keeps nothing as override-ignored', async () => {
    const { bmc } = await oneSystem({}, true);
    const d = new RedfishDriver(bmc, fast);
    await expect(d.setBootDevice({ device: 'pxe', persistent: true, uefi: false }, sig())).rejects.toMatchObject({
      code: 'override-ignored',
      message: /BootSourceOverrideEnabled=Disabled/,
    });
    await d.close();
  });

  it('sends If-Match with the ETag it read (a BMC that demands it answers 428 without)', async () => {
    const { bmc, sys } = await oneSystem({ requireIfMatch: true });
    const d = new RedfishDriver(bmc, fast);
    await d.setBootDevice({ device: 'disk', persistent: true, uefi: false }, sig());
    expect(sys.override).toEqual({ enabled: 'Continuous', target: 'Hdd', mode: 'Legacy' });
    await d.close();
  });

  it('picks a reset type the system lists: without PowerCycle or ForceRestart, ForceOff then On', async () => {
    const { bmc, sys, boots } = await oneSystem();
    sys.resetTypes = ['On', 'ForceOff'];
    const d = new RedfishDriver(bmc, fast);
    await d.power('on', sig());
    await d.power('cycle', sig());
    await d.power('reset', sig());
    expect(boots).toHaveLength(3);
    sys.resetTypes = ['Nmi'];
    await expect(d.power('off', sig())).rejects.toMatchObject({ code: 'unsupported', message: /Nmi/ });
    await d.close();
  });

  it('speaks Basic auth when asked; bad credentials are an auth error either way', async () => {
    const { bmc, emu } = await oneSystem();
    const b = new RedfishDriver(bmc, { ...fast, auth: 'basic' });
    expect(await b.status(sig())).toBe('off');
    expect(emu.sessions.size).toBe(0);
    await b.close();
    for (const auth of ['basic', 'session'] as const)
      await expect(new RedfishDriver({ ...bmc, password: 'wrong' }, { auth }).status(sig())).rejects.toMatchObject({
        code: 'auth',
      });
  });

  it('needs bmc.systemId when the BMC has several systems', async () => {
    const systems = ['a', 'b'].map((id) => new EmulatedSystem(id, id, fakeBackend(id)));
    emu = await startEmulator({ systems, username: USER, password: PASS });
    const bmc: BmcSettings = { driver: 'redfish', address: emu.url, username: USER, password: PASS };
    await expect(new RedfishDriver(bmc).status(sig())).rejects.toThrow(/2 systems: set the machine's bmc.systemId/);
    const d = new RedfishDriver({ ...bmc, systemId: 'b' }, fast);
    await d.power('on', sig());
    expect(await systems[1]!.backend.power()).toBe('On');
    expect(await systems[0]!.backend.power()).toBe('Off');
    await d.close();
  });

  it('trusts a self-signed BMC only with insecureTLS, for that BMC only', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'plinth-rf-tls-'));
    try {
      const tls = await loadTls({ dataDir: dir });
      const { bmc } = await oneSystem({ tls });
      expect(bmc.address).toMatch(/^https:/);
      await expect(new RedfishDriver(bmc).status(sig())).rejects.toMatchObject({
        code: 'failed',
        message: /insecureTLS/,
      });
      const d = new RedfishDriver({ ...bmc, insecureTLS: true }, fast);
      expect(await d.status(sig())).toBe('off');
      await d.close();
      // The other driver (no insecureTLS) still refuses: the switch did not leak into the process.
      await expect(new RedfishDriver(bmc).status(sig())).rejects.toMatchObject({ code: 'failed' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('Redfish driver, BMCs that do not answer', () => {
  let silent: Server;
  afterAll(() => silent?.close());

  it('a closed port is unreachable; a BMC that accepts and never answers costs the call timeout', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
    const port = (closed.address() as { port: number }).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const bmc: BmcSettings = { driver: 'redfish', address: `http://127.0.0.1:${port}`, username: 'u', password: 'p' };
    await expect(new RedfishDriver(bmc).status(sig())).rejects.toMatchObject({ code: 'unreachable' });

    silent = createServer(() => {}); // accepts, reads nothing, says nothing
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    const sport = (silent.address() as { port: number }).port;
    const d = new RedfishDriver({ ...bmc, address: `http://127.0.0.1:${sport}` }, { callTimeoutMs: 300 });
    await expect(d.status(sig())).rejects.toMatchObject({ code: 'timeout' });
    await expect(
      new RedfishDriver({ ...bmc, address: `http://127.0.0.1:${sport}` }).power('on', AbortSignal.timeout(200)),
    ).rejects.toMatchObject({ code: 'timeout' });
  });

  it('takes a host (https, optional port) or a URL as the address', () => {
    expect(baseUrl({ driver: 'redfish', address: '10.0.0.5' }).href).toBe('https://10.0.0.5/');
    expect(baseUrl({ driver: 'redfish', address: '10.0.0.5', port: 8443 }).href).toBe('https://10.0.0.5:8443/');
    expect(baseUrl({ driver: 'redfish', address: 'fd00::5' }).href).toBe('https://[fd00::5]/');
    expect(baseUrl({ driver: 'redfish', address: 'http://127.0.0.1:8000' }).href).toBe('http://127.0.0.1:8000/');
  });
});

describe('createDriver', () => {
  it('builds the driver the settings name; manual refuses with a reason', async () => {
    const { createDriver } = await import('../../src/power/index.js');
    const { IpmiDriver } = await import('../../src/power/ipmi.js');
    expect(createDriver({ driver: 'ipmi', address: '192.0.2.1' })).toBeInstanceOf(IpmiDriver);
    expect(createDriver({ driver: 'redfish', address: '192.0.2.1' })).toBeInstanceOf(RedfishDriver);
    const m = createDriver({ driver: 'manual', address: '' });
    expect(await m.status(sig())).toBe('unknown');
    await expect(m.power('on', sig())).rejects.toMatchObject({ code: 'unsupported' });
  });
});
