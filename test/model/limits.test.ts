import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BootEnv } from '../../src/model/bootenv.js';
import { hostBitsSet, Mac } from '../../src/model/common.js';
import { Machine } from '../../src/model/machine.js';
import { Subnet } from '../../src/model/subnet.js';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';

const issues = (r: { success: boolean; error?: { issues: { message: string; path: PropertyKey[] }[] } }) =>
  (r.error?.issues ?? []).map((i) => `${i.path.join('.')}: ${i.message}`);

describe('model limits (unit)', () => {
  it('says when a subnet has host bits set, naming the network meant', () => {
    expect(hostBitsSet('10.0.0.5/24')).toBe('subnet 10.0.0.5/24 has host bits set; did you mean 10.0.0.0/24?');
    expect(hostBitsSet('10.0.0.0/24')).toBeUndefined();
    expect(hostBitsSet('10.0.0.5/32')).toBeUndefined();
    expect(hostBitsSet('0.0.0.0/0')).toBeUndefined();
    expect(hostBitsSet('192.168.1.129/25')).toBe(
      'subnet 192.168.1.129/25 has host bits set; did you mean 192.168.1.128/25?',
    );
  });

  it('refuses broadcast, zero and multicast MACs; keeps locally administered unicast ones', () => {
    expect(issues(Mac.safeParse('FF-FF-FF-FF-FF-FF'))).toEqual([
      ": ff:ff:ff:ff:ff:ff is the broadcast address, not a NIC's MAC",
    ]);
    expect(issues(Mac.safeParse('00:00:00:00:00:00'))[0]).toContain('all zero');
    expect(issues(Mac.safeParse('01:00:5e:00:00:01'))[0]).toContain('multicast');
    expect(issues(Mac.safeParse('33:33:00:00:00:01'))[0]).toContain('multicast');
    expect(Mac.safeParse('52:54:00:12:34:56').data).toBe('52:54:00:12:34:56');
    expect(Mac.safeParse('02:00:00:00:00:01').success).toBe(true);
  });

  it('caps MACs, profiles, params and inventory of a machine', () => {
    const macs = Array.from(
      { length: 65 },
      (_, i) => `52:54:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
    );
    expect(issues(Machine.safeParse({ name: 'm', macs }))).toEqual(['macs: a machine has at most 64 MACs']);
    expect(Machine.safeParse({ name: 'm', macs: macs.slice(0, 64) }).success).toBe(true);
    expect(issues(Machine.safeParse({ name: 'm', params: { big: 'x'.repeat(300 * 1024) } }))[0]).toMatch(
      /^params: params is \d+ bytes as JSON; at most 262144 are kept$/,
    );
    let deep: unknown = 1;
    for (let i = 0; i < 5000; i++) deep = { a: deep };
    expect(issues(Machine.safeParse({ name: 'm', params: { deep } }))).toEqual([
      'params: params is nested deeper than 32 levels',
    ]);
    expect(issues(Machine.safeParse({ name: 'm', inventory: { deep } }))).toEqual([
      'inventory: inventory is nested deeper than 32 levels',
    ]);
    expect(issues(Machine.safeParse({ name: 'm', description: 'x'.repeat(4097) }))[0]).toMatch(/^description: /);
  });

  it('caps the arrays of a bootenv', () => {
    expect(issues(BootEnv.safeParse({ name: 'b', initrds: Array(65).fill('x') }))).toEqual([
      'initrds: at most 64 initrds',
    ]);
    expect(issues(BootEnv.safeParse({ name: 'b', requiredParams: Array(257).fill('p') }))).toEqual([
      'requiredParams: at most 256 required params',
    ]);
    expect(issues(BootEnv.safeParse({ name: 'b', description: 'x'.repeat(5000) }))[0]).toMatch(/^description: /);
  });

  it('subnet options are capped', () => {
    const s = { name: 's', subnet: '10.0.0.0/24', activeStart: '10.0.0.10', activeEnd: '10.0.0.20' };
    expect(Subnet.safeParse(s).success).toBe(true);
    expect(issues(Subnet.safeParse({ ...s, options: Array(256).fill({ code: 15, value: 'x' }) }))).toEqual([
      'options: at most 255 DHCP options',
    ]);
  });
});

describe('model limits over the API', () => {
  let d: TestDaemon;
  beforeAll(async () => {
    d = await startTestDaemon();
  });
  afterAll(async () => {
    await d.stop();
  });

  it('400s a subnet with host bits set, naming the field and the network meant', async () => {
    const r = await d.api('POST', '/api/v1/subnets', {
      name: 'lab',
      subnet: '10.0.0.5/24',
      activeStart: '10.0.0.10',
      activeEnd: '10.0.0.20',
    });
    expect(r.status).toBe(400);
    expect(r.body.errors).toContainEqual({
      path: 'subnet',
      message: 'subnet 10.0.0.5/24 has host bits set; did you mean 10.0.0.0/24?',
    });
  });

  it('400s broadcast and zero MACs on machines and reservations', async () => {
    const b = await d.api('POST', '/api/v1/machines', { name: 'bc', macs: ['ff:ff:ff:ff:ff:ff'] });
    expect(b.status).toBe(400);
    expect(b.body.errors).toContainEqual({
      path: 'macs.0',
      message: "ff:ff:ff:ff:ff:ff is the broadcast address, not a NIC's MAC",
    });
    const z = await d.api('POST', '/api/v1/machines', { name: 'z', macs: ['52:54:00:00:00:01', '00:00:00:00:00:00'] });
    expect(z.status).toBe(400);
    expect(z.body.errors[0].path).toBe('macs.1');
  });

  it('400s a multicast MAC on a reservation; records stored before these rules can still be changed', async () => {
    const s = { name: 'net', subnet: '10.9.0.0/24', activeStart: '10.9.0.10', activeEnd: '10.9.0.20' };
    expect((await d.api('POST', '/api/v1/subnets', s)).status).toBe(201);
    const r = await d.api('POST', '/api/v1/reservations', {
      address: '10.9.0.5',
      mac: '01:00:5e:00:00:01',
      subnet: 'net',
    });
    expect(r.status).toBe(400);
    expect(r.body.errors[0].path).toBe('mac');
    // Stored by an older version (or a DHCP conformance suite): editing another field still works.
    await d.daemon.store.create('machines', '6f1d2c3b-0000-4000-8000-000000000001', {
      uuid: '6f1d2c3b-0000-4000-8000-000000000001',
      name: 'old',
      macs: ['00:00:00:00:00:00'],
      bootEnv: 'local',
    });
    const m = await d.api('PATCH', '/api/v1/machines/6f1d2c3b-0000-4000-8000-000000000001', {
      description: 'still editable',
    });
    expect(m.status).toBe(200);
    await d.daemon.store.create('subnets', 'legacy', {
      ...s,
      name: 'legacy',
      subnet: '10.8.0.7/24',
      activeStart: '10.8.0.10',
      activeEnd: '10.8.0.20',
    });
    expect((await d.api('PATCH', '/api/v1/subnets/legacy', { description: 'x' })).status).toBe(200);
    const moved = await d.api('PATCH', '/api/v1/subnets/legacy', { subnet: '10.8.0.9/24' });
    expect(moved.status).toBe(400);
    expect(moved.body.errors[0]).toEqual({
      path: 'subnet',
      message: 'subnet 10.8.0.9/24 has host bits set; did you mean 10.8.0.0/24?',
    });
  });

  it('400s a machine with 300,000 MACs', async () => {
    const macs = Array.from(
      { length: 70_000 },
      (_, i) => `52:54:${[i >> 16, (i >> 8) & 255, i & 255, 1].map((n) => n.toString(16).padStart(2, '0')).join(':')}`,
    );
    const r = await d.api('POST', '/api/v1/machines', { name: 'many', macs });
    expect(r.status).toBe(400);
    expect(r.body.errors).toContainEqual({ path: 'macs', message: 'a machine has at most 64 MACs' });
    expect((await d.api('GET', '/api/v1/machines/many')).status).toBe(404);
  });

  it('400s 5,000-deep params (was a 503 from the store), and params deeper than 32 levels', async () => {
    const nest = (n: number) => {
      let body = '1';
      for (let i = 0; i < n; i++) body = `{"a":${body}}`;
      return body;
    };
    // The body parser refuses it before the model sees it (the JSON depth limit, 64).
    const r = await d.api('POST', '/api/v1/machines', `{"name":"deep","params":{"x":${nest(5000)}}}`);
    expect(r.status).toBe(400);
    expect(r.body.errors).toContainEqual({ path: '(body)', message: 'too deeply nested' });
    // Within the parser's limit but past the model's.
    const r2 = await d.api('POST', '/api/v1/machines', `{"name":"deep","params":{"x":${nest(40)}}}`);
    expect(r2.status).toBe(400);
    expect(r2.body.errors).toContainEqual({ path: 'params', message: 'params is nested deeper than 32 levels' });
    expect((await d.api('GET', '/api/v1/machines/deep')).status).toBe(404);
  });
});
