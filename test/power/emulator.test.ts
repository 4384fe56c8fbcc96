/**
 * Plinth's Redfish BMC emulator is realistic enough to test against: two independent Redfish clients packaged by
 * Debian, python3-sushy (OpenStack Ironic's library, session auth) and DMTF's redfishtool (Basic and session auth),
 * drive it through boot override, reset and read-back, and the fake backend sees the machine boot from what they
 * asked. Then the protocol's edges: auth required, stale If-Match refused, values outside the allowable lists and
 * malformed bodies answered with Redfish errors (and the emulator still serving).
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Emulator, startEmulator } from '../../src/power/emulator/server.js';
import { type BootRecord, EmulatedSystem, fakeBackend } from '../../src/power/emulator/system.js';

const run = promisify(execFile);
const USER = 'admin';
const PASS = 'emu-pass-3';

describe('the emulator, driven by sushy and redfishtool', () => {
  let emu: Emulator;
  const boots: BootRecord[] = [];
  beforeAll(async () => {
    const systems = ['1', '2'].map(
      (id) =>
        new EmulatedSystem(
          id,
          `system-${id}`,
          fakeBackend(id, (b) => boots.push(b)),
        ),
    );
    emu = await startEmulator({ systems, username: USER, password: PASS });
  });
  afterAll(() => emu?.close());

  it('python3-sushy: sessions, allowable reset types, a PXE-once UEFI override that the next boot uses', async () => {
    const script = path.join(import.meta.dirname, 'sushy_drive.py');
    const { stdout } = await run('/usr/bin/python3', [script, emu.url, USER, PASS, '1'], { timeout: 20_000 });
    expect(stdout.split('\n')).toEqual([
      "members ['/redfish/v1/Systems/1', '/redfish/v1/Systems/2']",
      'power PowerState.OFF',
      "allowed ['ResetType.FORCE_OFF', 'ResetType.FORCE_RESTART', 'ResetType.GRACEFUL_RESTART', 'ResetType.GRACEFUL_SHUTDOWN', 'ResetType.ON', 'ResetType.POWER_CYCLE']",
      'boot BootSource.PXE BootSourceOverrideEnabled.ONCE BootSourceOverrideMode.UEFI',
      'power PowerState.ON',
      // Once: spent by the boot it chose.
      'boot BootSource.PXE BootSourceOverrideEnabled.DISABLED',
      'power PowerState.OFF',
      '',
    ]);
    expect(boots.filter((b) => b.system === '1').map((b) => `${b.target}/${b.mode}`)).toEqual(['Pxe/UEFI']);
    expect(emu.sessions.size).toBe(0); // sushy deleted its session on exit
  });

  it('redfishtool: setBootOverride, reset, get; a reset type the system does not list is refused by the client', async () => {
    const rt = (auth: string, ...args: string[]) =>
      run(
        'redfishtool',
        ['-r', emu.url.replace('http://', ''), '-S', 'Never', '-u', USER, '-p', PASS, '-A', auth, ...args],
        {
          timeout: 20_000,
        },
      );
    await rt('Basic', '-I', '2', 'Systems', 'setBootOverride', 'Once', 'Pxe');
    await rt('Basic', '-I', '2', 'Systems', 'reset', 'On');
    const got = JSON.parse((await rt('Session', '-I', '2', 'Systems', 'get')).stdout);
    expect(got.PowerState).toBe('On');
    expect(got.Boot.BootSourceOverrideEnabled).toBe('Disabled');
    expect(boots.filter((b) => b.system === '2').map((b) => b.target)).toEqual(['Pxe']);
    await expect(rt('Basic', '-I', '2', 'Systems', 'reset', 'Nmi')).rejects.toMatchObject({
      stderr: expect.stringMatching(/not supported by the remote service/),
    });
    await expect(
      run('redfishtool', ['-r', emu.url.replace('http://', ''), '-S', 'Never', '-u', USER, '-p', 'wrong', 'Systems']),
    ).rejects.toBeTruthy();
  });
});

describe('the emulator, protocol edges', () => {
  let emu: Emulator;
  let sys: EmulatedSystem;
  beforeAll(async () => {
    sys = new EmulatedSystem('a', 'a', fakeBackend('a'));
    emu = await startEmulator({ systems: [sys], username: USER, password: PASS });
  });
  afterAll(() => emu?.close());
  const basic = `Basic ${Buffer.from(`${USER}:${PASS}`).toString('base64')}`;
  const req = (p: string, init: RequestInit = {}) =>
    fetch(`${emu.url}${p}`, { ...init, headers: { Authorization: basic, ...(init.headers ?? {}) } });

  it('serves the service root without auth and nothing else', async () => {
    expect((await fetch(`${emu.url}/redfish/v1/`)).status).toBe(200);
    const r = await fetch(`${emu.url}/redfish/v1/Systems`);
    expect(r.status).toBe(401);
    expect(r.headers.get('www-authenticate')).toMatch(/Basic/);
    expect((await req('/redfish/v1/Systems')).status).toBe(200);
  });

  it('guards the boot override with the ETag and the allowable values', async () => {
    const g = await req('/redfish/v1/Systems/a');
    const etag = g.headers.get('etag')!;
    expect(((await g.json()) as any).Boot.BootSourceOverrideEnabled).toBe('Disabled');
    const patch = (body: string, ifMatch?: string) =>
      req('/redfish/v1/Systems/a', {
        method: 'PATCH',
        body,
        headers: { 'Content-Type': 'application/json', ...(ifMatch ? { 'If-Match': ifMatch } : {}) },
      });
    const ok = await patch(
      '{"Boot":{"BootSourceOverrideEnabled":"Continuous","BootSourceOverrideTarget":"Pxe"}}',
      etag,
    );
    expect(ok.status).toBe(200);
    expect(ok.headers.get('etag')).not.toBe(etag);
    const stale = await patch('{"Boot":{"BootSourceOverrideTarget":"Hdd"}}', etag);
    expect(stale.status).toBe(412);
    expect(((await stale.json()) as any).error.code).toMatch(/PreconditionFailed/);
    expect((await patch('{"Boot":{"BootSourceOverrideTarget":"Floppy"}}')).status).toBe(400);
    expect((await patch('{"Boot":')).status).toBe(400);
    expect((await patch('[1]')).status).toBe(400);
    expect(sys.override).toMatchObject({ enabled: 'Continuous', target: 'Pxe' });
    const reset = await req('/redfish/v1/Systems/a/Actions/ComputerSystem.Reset', {
      method: 'POST',
      body: '{"ResetType":"Explode"}',
    });
    expect(reset.status).toBe(400);
    expect((await req('/redfish/v1/Systems/zz')).status).toBe(404);
    expect((await req('/redfish/v1/Systems/%E0%A4%A')).status).toBe(400);
    expect((await req('/redfish/v1/Systems/a')).status).toBe(200); // still serving
  });

  it('opens and deletes sessions; a token works until it is deleted', async () => {
    const r = await fetch(`${emu.url}/redfish/v1/SessionService/Sessions`, {
      method: 'POST',
      body: JSON.stringify({ UserName: USER, Password: PASS }),
    });
    expect(r.status).toBe(201);
    const token = r.headers.get('x-auth-token')!;
    const loc = r.headers.get('location')!;
    const withToken = (m = 'GET', p = '/redfish/v1/Systems') =>
      fetch(`${emu.url}${p}`, { method: m, headers: { 'X-Auth-Token': token } });
    expect((await withToken()).status).toBe(200);
    expect((await withToken('DELETE', loc)).status).toBe(204);
    expect((await withToken()).status).toBe(401);
    const bad = await fetch(`${emu.url}/redfish/v1/SessionService/Sessions`, {
      method: 'POST',
      body: JSON.stringify({ UserName: USER, Password: 'nope' }),
    });
    expect(bad.status).toBe(401);
  });
});
