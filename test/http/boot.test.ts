import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import Fastify from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBus } from '../../src/events.js';
import { registerMachineRoutes } from '../../src/http/machine-api.js';
import type { MachineReports } from '../../src/provision/reports.js';
import type { Store } from '../../src/store/store.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

let d: TestDaemon;
const kernel = Buffer.from('pretend kernel\n');
const initrd = Buffer.from('pretend initrd\n');
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const get = async (p: string, headers: Record<string, string> = {}) => {
  const r = await fetch(d.url + p, { headers });
  return { status: r.status, text: await r.text(), headers: r.headers };
};
/** What this daemon's DHCP server publishes when it acknowledges a lease: the evidence that binds MAC and address. */
const acked = (mac: string, address = '127.0.0.1') =>
  d.daemon.bus.emit({
    type: 'lease.acked',
    key: address,
    data: { mac, subnet: 'test', expiresAt: new Date(Date.now() + 3_600_000).toISOString() },
  });
const machineTokens = async () =>
  (await d.daemon.store.list('tokens', { filters: [{ field: 'role', value: 'machine' }] })).total;

beforeAll(async () => {
  d = await startTestDaemon();
  for (const [p, b] of [
    ['lab/vmlinuz', kernel],
    ['lab/initrd.gz', initrd],
  ] as const) {
    const r = await fetch(`${d.url}/api/v1/files/${p}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${d.token}` },
      body: b,
    });
    expect(r.status).toBe(201);
  }
  expect(
    (await d.api('POST', '/api/v1/params', { name: 'console', schema: { type: 'string', default: 'ttyS0' } })).status,
  ).toBe(201);
  const be = await d.api('POST', '/api/v1/bootenvs', {
    name: 'lab',
    kernel: 'lab/vmlinuz',
    initrds: ['lab/initrd.gz'],
    bootParams:
      'console={{ "console" | param }} callback={{ apiUrl }}/machines/{{ machine.uuid }}/callback?token={{ token }}',
    artifacts: [
      { path: 'lab/vmlinuz', sha256: sha(kernel) },
      { path: 'lab/initrd.gz', sha256: sha(initrd) },
    ],
    templates: [
      { name: 'cloud-init', path: 'cloud-init/user-data', contents: '#cloud-config\nhostname: {{ machine.name }}\n' },
    ],
  });
  expect(be.status).toBe(201);
});
afterAll(async () => {
  await d.stop();
});

describe('iPXE boot over HTTP', () => {
  it('the generic script chains to the machine script by MAC, with the facts discovery needs', async () => {
    const r = await get('/boot/ipxe');
    expect(r.status).toBe(200);
    expect(r.text.startsWith('#!ipxe\n')).toBe(true);
    expect(r.text).toContain(`${d.url}/boot/ipxe/\${netX/mac:hexhyp}?arch=\${buildarch}`);
    expect(r.text).toContain('uuid=${uuid}');
  });

  it('a known machine gets its bootenv script: kernel, initrd=, rendered params and a callback token', async () => {
    const m = await d.api('POST', '/api/v1/machines', {
      name: 'n1',
      macs: ['52:54:00:00:01:01'],
      bootEnv: 'lab',
    });
    expect(m.status).toBe(201);
    acked('52:54:00:00:01:01');
    const r = await get('/boot/ipxe/52-54-00-00-01-01?arch=x86_64');
    expect(r.status).toBe(200);
    const lines = r.text.split('\n');
    expect(lines[0]).toBe('#!ipxe');
    const k = lines.find((l) => l.startsWith('kernel '))!;
    expect(k).toContain(
      `${d.url}/files/lab/vmlinuz initrd=initrd.gz console=ttyS0 callback=${d.url}/api/v1/machines/${m.body.uuid}/callback?token=`,
    );
    expect(lines).toContain(`initrd ${d.url}/files/lab/initrd.gz`);
    const token = /token=(\S+)/.exec(k)![1]!;
    expect(token.length).toBeGreaterThan(20);

    // The machine's own token: reaches its own callback, not the rest of the API.
    const cb = await fetch(`${d.url}/api/v1/machines/${m.body.uuid}/callback?event=booted&ip=127.0.0.1&token=${token}`);
    expect(cb.status).toBe(200);
    const other = await fetch(`${d.url}/api/v1/machines`, { headers: { authorization: `Bearer ${token}` } });
    expect(other.status).toBe(403);
    const boots = await d.api('GET', `/api/v1/machines/${m.body.uuid}/boots`);
    expect(boots.status).toBe(200);
    const b = boots.body[0];
    expect(b.bootEnv).toBe('lab');
    expect(b.result).toBe('booted');
    expect(b.artifacts).toEqual([
      { path: 'lab/vmlinuz', sha256: sha(kernel) },
      { path: 'lab/initrd.gz', sha256: sha(initrd) },
    ]);
    expect(b.events.map((e: { kind: string }) => e.kind)).toEqual(['http', 'render', 'callback']);
  });

  it('renders the bootenv templates per machine at /machines/<uuid>/<path>', async () => {
    const m = await d.api('GET', '/api/v1/machines/n1');
    const r = await get(`/machines/${m.body.uuid}/cloud-init/user-data`);
    expect(r.status).toBe(200);
    expect(r.text).toBe('#cloud-config\nhostname: n1\n');
    expect((await get(`/machines/${m.body.uuid}/nope`)).status).toBe(404);
  });

  it('no token is rendered for a request that is not from the machine', async () => {
    const m = await d.api('POST', '/api/v1/machines', {
      name: 'far',
      macs: ['52:54:00:00:01:02'],
      bootEnv: 'lab',
      address: '10.9.9.9',
    });
    const r = await get('/boot/ipxe/52:54:00:00:01:02');
    expect(r.text).toMatch(/callback=\S+\?token=$/m);
    const boots = await d.api('GET', `/api/v1/machines/${m.body.uuid}/boots`);
    expect(boots.body[0].events.find((e: { kind: string }) => e.kind === 'render').detail).toContain('without token');
  });

  it('an unknown MAC is registered and boots unknownBootEnv; another NIC of the same hardware is recognised', async () => {
    const uuid = '8c1f0d4e-1111-2222-3333-444455556666';
    acked('52:54:00:00:02:01');
    const r = await get(`/boot/ipxe/52-54-00-00-02-01?arch=x86_64&platform=pcbios&uuid=${uuid}&serial=SN123`);
    expect(r.status).toBe(200);
    expect(r.text).toContain('discovery/vmlinuz');
    const list = await d.api('GET', '/api/v1/machines?macs=52:54:00:00:02:01');
    expect(list.body).toHaveLength(1);
    const m = list.body[0];
    expect(m).toMatchObject({ name: 'd-525400000201', bootEnv: 'discovery', arch: 'amd64', address: '127.0.0.1' });
    expect(m.inventory).toMatchObject({ smbiosUuid: uuid, serial: 'SN123' });
    // Same SMBIOS UUID from a second NIC (which this daemon's DHCP acknowledged): the MAC joins the same record.
    acked('52:54:00:00:02:02');
    await get(`/boot/ipxe/52-54-00-00-02-02?arch=x86_64&uuid=${uuid.toUpperCase()}`);
    const again = await d.api('GET', `/api/v1/machines/${m.uuid}`);
    expect(again.body.macs).toEqual(['52:54:00:00:02:01', '52:54:00:00:02:02']);
    expect((await d.api('GET', '/api/v1/machines?name=d-525400000202')).body).toEqual([]);
    // QEMU's all-zero UUID is not an identity.
    acked('52:54:00:00:02:03');
    await get('/boot/ipxe/52-54-00-00-02-03?uuid=00000000-0000-0000-0000-000000000000');
    acked('52:54:00:00:02:04');
    await get('/boot/ipxe/52-54-00-00-02-04?uuid=00000000-0000-0000-0000-000000000000');
    expect((await d.api('GET', '/api/v1/machines?name=d-525400000204')).body).toHaveLength(1);
  });

  it('a missing required param is a render error naming the param and the machine, in the script and the timeline', async () => {
    await d.api('POST', '/api/v1/bootenvs', { name: 'needs', kernel: 'lab/vmlinuz', requiredParams: ['disk'] });
    const m = await d.api('POST', '/api/v1/machines', { name: 'n2', macs: ['52:54:00:00:03:01'], bootEnv: 'needs' });
    const r = await get('/boot/ipxe/52:54:00:00:03:01');
    expect(r.text).toContain("needs param 'disk', which is not set for machine 'n2'");
    expect(r.text).not.toContain('kernel ');
    const boots = await d.api('GET', `/api/v1/machines/${m.body.uuid}/boots`);
    expect(boots.body[0].result).toBe('failed');
    expect(boots.body[0].events.at(-1).detail).toContain("param 'disk'");
  });

  it('a template error names the template and the line', async () => {
    await d.api('POST', '/api/v1/templates', { id: 'broken', contents: 'ok\n{{ machine.name | nosuchfilter }}' });
    await d.api('POST', '/api/v1/bootenvs', {
      name: 'tpl',
      templates: [{ name: 'ipxe', path: 'boot.ipxe', templateId: 'broken' }],
    });
    await d.api('POST', '/api/v1/machines', { name: 'n3', macs: ['52:54:00:00:04:01'], bootEnv: 'tpl' });
    const r = await get('/boot/ipxe/52:54:00:00:04:01');
    expect(r.text).toContain('bootenv tpl / ipxe line 2: undefined filter: nosuchfilter');
  });

  it('a tampered artifact is refused: no boot script, no download, a clear reason', async () => {
    await d.api('POST', '/api/v1/machines', { name: 'n4', macs: ['52:54:00:00:05:01'], bootEnv: 'lab' });
    writeFileSync(path.join(d.dataDir, 'files/lab/initrd.gz'), 'tampered\n');
    const r = await get('/boot/ipxe/52:54:00:00:05:01');
    expect(r.text).toContain('refusing to boot lab: lab/initrd.gz has sha256');
    expect(r.text).not.toMatch(/^kernel /m);
    const f = await get('/files/lab/initrd.gz');
    expect(f.status).toBe(409);
    expect(f.text).toContain('pins');
    writeFileSync(path.join(d.dataDir, 'files/lab/initrd.gz'), initrd);
    expect((await get('/files/lab/initrd.gz')).status).toBe(200);
  });

  it('boot-once bootenvs fall back to local after one successful boot', async () => {
    await d.api('POST', '/api/v1/bootenvs', { name: 'installer', kernel: 'lab/vmlinuz', onlyOnce: true });
    const m = await d.api('POST', '/api/v1/machines', {
      name: 'n5',
      macs: ['52:54:00:00:06:01'],
      bootEnv: 'installer',
      address: '127.0.0.1',
    });
    const r = await get('/boot/ipxe/52:54:00:00:06:01');
    const token = /token=(\S*)/.exec(r.text)?.[1];
    const cb = await fetch(`${d.url}/api/v1/machines/${m.body.uuid}/callback`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${/Plinth/.test(r.text) && token ? token : d.token}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({ event: 'booted' }),
    });
    expect(cb.status).toBe(200);
    expect(((await cb.json()) as { bootEnv: string }).bootEnv).toBe('local');
    expect((await d.api('GET', `/api/v1/machines/${m.body.uuid}`)).body.bootEnv).toBe('local');
  });

  it('discovery reports inventory with the machine token; NIC MACs join the record', async () => {
    const m = await d.api('POST', '/api/v1/machines', {
      name: 'n6',
      macs: ['52:54:00:00:07:01'],
      address: '127.0.0.1',
    });
    const inv = await d.api('PUT', `/api/v1/machines/${m.body.uuid}/inventory`, {
      cpus: 4,
      memoryMiB: 8192,
      serial: 'ABC',
      nics: [
        { name: 'eth0', mac: '52:54:00:00:07:01' },
        { name: 'eth1', mac: '52-54-00-00-07-02' },
      ],
      disks: [{ name: 'nvme0n1', sizeBytes: 512e9 }],
    });
    expect(inv.status).toBe(200);
    expect(inv.body.macs).toEqual(['52:54:00:00:07:01', '52:54:00:00:07:02']);
    expect(inv.body.inventory).toMatchObject({ cpus: 4, serial: 'ABC' });
  });
});

describe('secrets reach only their machine (trust: token or DHCP evidence, never the address field)', () => {
  const secretEnv = {
    name: 'secret-env',
    kernel: 'lab/vmlinuz',
    bootParams: 'pw={{ "rootpw" | param }} token={{ token }}',
    templates: [
      {
        name: 'user-data',
        path: 'user-data',
        contents: 'password: {{ params.rootpw }} / {{ "rootpw" | param }}\ncallback: {{ apiUrl }}?token={{ token }}\n',
      },
      { name: 'plain', path: 'plain', contents: 'hostname: {{ machine.name }}\n' },
    ],
  };
  const timeline = async (uuid: string) =>
    (await d.api('GET', `/api/v1/machines/${uuid}/boots`)).body[0].events.map((e: { detail: string }) => e.detail);

  beforeAll(async () => {
    expect(
      (await d.api('POST', '/api/v1/params', { name: 'rootpw', secure: true, schema: { type: 'string' } })).status,
    ).toBe(201);
    expect((await d.api('POST', '/api/v1/bootenvs', secretEnv)).status).toBe(201);
  });

  it('a request from the address on record, without evidence, gets secure params blanked and no token', async () => {
    const m = await d.api('POST', '/api/v1/machines', {
      name: 's1',
      macs: ['52:54:00:00:10:01'],
      bootEnv: 'secret-env',
      address: '127.0.0.1',
      params: { rootpw: 's3cret-pw' },
    });
    expect(m.status).toBe(201);
    const before = await machineTokens();
    const r = await get('/boot/ipxe/52:54:00:00:10:01');
    expect(r.text).toMatch(/pw= token=$/m);
    const u = await get(`/machines/${m.body.uuid}/user-data`);
    expect(u.text).toBe(`password:  / \ncallback: ${d.url}/api/v1?token=\n`);
    expect(r.text + u.text).not.toContain('s3cret-pw');
    expect(await machineTokens()).toBe(before);
    expect(await timeline(m.body.uuid)).toContain(
      'user-data of bootenv secret-env over HTTP (without token, secure params withheld: request not from the machine)',
    );
  });

  it('a machine with no address is not claimed by the first requester (no trust on first use)', async () => {
    const m = await d.api('POST', '/api/v1/machines', {
      name: 's2',
      macs: ['52:54:00:00:10:02'],
      bootEnv: 'secret-env',
      params: { rootpw: 's3cret-pw' },
    });
    const r = await get('/boot/ipxe/52:54:00:00:10:02');
    expect(r.text).not.toContain('s3cret-pw');
    expect(r.text).toMatch(/token=$/m);
    const after = (await d.api('GET', `/api/v1/machines/${m.body.uuid}`)).body;
    expect(after.address).toBeUndefined();
    expect(after.lastSeen).toBeUndefined();
  });

  it('with a DHCP ACK binding its MAC to the source address it gets both; one token row serves a whole boot', async () => {
    const m = await d.api('POST', '/api/v1/machines', {
      name: 's3',
      macs: ['52:54:00:00:10:03'],
      bootEnv: 'secret-env',
      params: { rootpw: 's3cret-pw' },
    });
    // Another MAC's ACK at this address is no evidence for this machine.
    acked('52:54:00:00:99:99');
    expect((await get('/boot/ipxe/52:54:00:00:10:03')).text).not.toContain('s3cret-pw');
    const before = await machineTokens();
    acked('52:54:00:00:10:03');
    const r = await get('/boot/ipxe/52:54:00:00:10:03');
    const token = /token=(\S+)$/m.exec(r.text)?.[1];
    expect(r.text).toContain('pw=s3cret-pw');
    expect(token?.length).toBeGreaterThan(20);
    const u = await get(`/machines/${m.body.uuid}/user-data`);
    expect(u.text).toBe(`password: s3cret-pw / s3cret-pw\ncallback: ${d.url}/api/v1?token=${token}\n`);
    // No token for a file that does not exist or does not carry one; the same token for the rest of the boot.
    expect((await get(`/machines/${m.body.uuid}/nope`)).status).toBe(404);
    expect((await get(`/machines/${m.body.uuid}/plain`)).text).toBe('hostname: s3\n');
    expect(await machineTokens()).toBe(before + 1);
    const cb = await fetch(`${d.url}/api/v1/machines/${m.body.uuid}/callback?event=installing&token=${token}`);
    expect(cb.status).toBe(200);
  });

  it('a release ends the evidence; an active lease in the store binds over HTTP', async () => {
    const mac = '52:54:00:00:10:04';
    await d.api('POST', '/api/v1/machines', {
      name: 's4',
      macs: [mac],
      bootEnv: 'secret-env',
      params: { rootpw: 's3cret-pw' },
    });
    acked(mac);
    expect((await get(`/boot/ipxe/${mac}`)).text).toContain('s3cret-pw');
    d.daemon.bus.emit({ type: 'lease.released', key: '127.0.0.1', data: { mac, subnet: 'test' } });
    expect((await get(`/boot/ipxe/${mac}`)).text).not.toContain('s3cret-pw');
    const lease = (state: string, expiresAt: string) =>
      d.daemon.store.putBatched('leases', '127.0.0.1', { address: '127.0.0.1', mac, subnet: 'test', state, expiresAt });
    await lease('bound', new Date(Date.now() - 1000).toISOString());
    expect((await get(`/boot/ipxe/${mac}`)).text).not.toContain('s3cret-pw');
    await lease('bound', new Date(Date.now() + 600_000).toISOString());
    expect((await get(`/boot/ipxe/${mac}`)).text).toContain('s3cret-pw');
    await d.daemon.store.putBatched('leases', '127.0.0.1', null);
  });

  it('the machine token or an admin token (Bearer or ?token=) makes the request the machine', async () => {
    const m = await d.api('POST', '/api/v1/machines', {
      name: 's5',
      macs: ['52:54:00:00:10:05'],
      bootEnv: 'secret-env',
      params: { rootpw: 's3cret-pw' },
    });
    const url = `/machines/${m.body.uuid}/user-data`;
    expect((await get(url)).text).not.toContain('s3cret-pw');
    expect((await get(url, { authorization: `Bearer ${d.token}` })).text).toContain('s3cret-pw');
    expect((await get(`${url}?token=${d.token}`)).text).toContain('s3cret-pw');
    expect((await get(`${url}?token=not-a-token`)).text).not.toContain('s3cret-pw');
  });
});

describe('discovery is adopted only from DHCP evidence, rate-limited and capped', () => {
  it('an unknown MAC without evidence is served the unknown bootenv without a record or token', async () => {
    const before = (await d.api('GET', '/api/v1/machines')).body.length;
    // Bounded flood from one host: 40 random MACs, none acknowledged by this daemon's DHCP.
    for (let i = 0; i < 40; i++) {
      const r = await get(`/boot/ipxe/52-54-00-ee-00-${i.toString(16).padStart(2, '0')}?arch=x86_64`);
      expect(r.text).toContain('discovery/vmlinuz');
      expect(r.text).toMatch(/plinth\.token=(\s|$)/);
    }
    expect((await d.api('GET', '/api/v1/machines')).body.length).toBe(before);
  });

  it("a new MAC claiming a known machine's SMBIOS UUID is not adopted without evidence", async () => {
    const uuid = '8c1f0d4e-aaaa-2222-3333-444455556666';
    const mac = '52:54:00:00:20:01';
    acked(mac);
    await get(`/boot/ipxe/${mac}?arch=x86_64&uuid=${uuid}`);
    const m = (await d.api('GET', `/api/v1/machines?macs=${mac}`)).body[0];
    expect(m.inventory.smbiosUuid).toBe(uuid);
    const r = await get(`/boot/ipxe/52-54-00-00-20-02?uuid=${uuid}`);
    expect(r.text).toContain('discovery/vmlinuz');
    expect((await d.api('GET', `/api/v1/machines/${m.uuid}`)).body.macs).toEqual([mac]);
    expect((await d.api('GET', '/api/v1/machines?macs=52:54:00:00:20:02')).body).toEqual([]);
  });
});

describe('machine API routes: parse, call, reply', () => {
  it('callback and inventory are marked for machine tokens (config.machineToken); the timeline is not', async () => {
    const calls: unknown[][] = [];
    const reports = {
      callback: async (...a: unknown[]) => {
        calls.push(['callback', ...a.slice(0, 3)]);
        return { ok: 1 };
      },
      inventory: async (...a: unknown[]) => {
        calls.push(['inventory', ...a]);
        return { ok: 2 };
      },
      bootsOf: async (id: string) => {
        calls.push(['boots', id]);
        return [];
      },
    } as unknown as MachineReports;
    const app = Fastify();
    const marked: Record<string, boolean> = {};
    app.addHook('onRequest', async (req) => {
      marked[`${req.method} ${req.routeOptions.url}`] = req.routeOptions.config.machineToken === true;
    });
    const deps = { store: {} as Store, bus: createBus(), secureNames: async () => new Set<string>(), reports };
    await app.register(async (api) => registerMachineRoutes(api, deps), { prefix: '/api/v1' });
    const id = '11111111-2222-4333-8444-555555555555';
    const post = (url: string, payload: Record<string, unknown>) => app.inject({ method: 'POST', url, payload });
    expect((await post(`/api/v1/machines/${id}/callback`, { event: 'booted', data: { ip: '1' } })).json()).toEqual({
      ok: 1,
    });
    expect((await post(`/api/v1/machines/${id}/callback`, { event: 'Bad Event' })).statusCode).toBe(400);
    expect((await app.inject(`/api/v1/machines/${id}/callback?event=booted&ip=2&token=t`)).statusCode).toBe(200);
    expect(
      (await app.inject({ method: 'PUT', url: `/api/v1/machines/${id}/inventory`, payload: { cpus: 2 } })).json(),
    ).toEqual({
      ok: 2,
    });
    expect(
      (await app.inject({ method: 'PUT', url: `/api/v1/machines/${id}/inventory`, payload: [1] })).statusCode,
    ).toBe(400);
    expect((await app.inject(`/api/v1/machines/${id}/boots`)).statusCode).toBe(200);
    expect(marked).toEqual({
      'POST /api/v1/machines/:id/callback': true,
      'GET /api/v1/machines/:id/callback': true,
      'PUT /api/v1/machines/:id/inventory': true,
      'GET /api/v1/machines/:id/boots': false,
    });
    expect(calls).toEqual([
      ['callback', id, 'booted', { ip: '1' }],
      ['callback', id, 'booted', { ip: '2' }],
      ['inventory', id, { cpus: 2 }],
      ['boots', id],
    ]);
    await app.close();
  });
});
