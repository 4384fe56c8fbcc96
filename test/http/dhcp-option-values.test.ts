import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminApp } from '../helpers/boot-service.js';

let app: FastifyInstance;
let token: string;
let close: () => Promise<void>;

beforeAll(async () => {
  ({ app, token, close } = await adminApp('dhcpopt'));
});
afterAll(() => close());

type Problem = { status: number; detail: string; errors?: { path: string; message: string }[] };

async function call(method: 'POST' | 'PUT' | 'PATCH' | 'GET', url: string, body?: unknown) {
  const r = await app.inject({
    method,
    url: `/api/v1${url}`,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { payload: JSON.stringify(body) } : {}),
  });
  return { status: r.statusCode, body: r.json() as any };
}

let n = 0;
const subnet = (options: { code: number; value: unknown }[]) => {
  n++;
  return {
    name: `s${n}`,
    subnet: `10.77.${n}.0/24`,
    activeStart: `10.77.${n}.10`,
    activeEnd: `10.77.${n}.20`,
    options: [{ code: 3, value: `10.77.${n}.1` as unknown }, ...options],
  };
};

/** POSTs a subnet whose second option is bad: 400 naming options.1.value, and nothing stored. */
async function refusedAt1(option: { code: number; value: unknown }, message: RegExp) {
  const s = subnet([option]);
  const r = await call('POST', '/subnets', s);
  expect(r.status).toBe(400);
  const p = r.body as Problem;
  expect(p.errors).toEqual([{ path: 'options.1.value', message: expect.stringMatching(message) }]);
  expect(p.detail).toContain('options.1.value');
  expect((await call('GET', `/subnets/${s.name}`)).status).toBe(404);
}

describe('DHCP option values over the API', () => {
  it('option 19 "True" is accepted with 201 and stored as 1 (true)', async () => {
    const s = subnet([{ code: 19, value: 'True' }]);
    const r = await call('POST', '/subnets', s);
    expect(r.status).toBe(201);
    expect(r.body.options).toEqual([
      { code: 3, value: s.options[0]!.value },
      { code: 19, value: 1 },
    ]);
    expect((await call('GET', `/subnets/${s.name}`)).body.options[1]).toEqual({ code: 19, value: 1 });
  });

  it('option 19 of 2 is refused with 400 naming options.1.value and what it expects', async () => {
    await refusedAt1({ code: 19, value: 2 }, /^option 19 \(ip-forwarding\) is a boolean: true or false .*; got 2$/);
  });

  it('option 1 that is not a contiguous mask is refused', async () => {
    await refusedAt1({ code: 1, value: '255.0.255.0' }, /^option 1 \(subnet-mask\) is a subnet mask/);
  });

  it('option 2 outside the signed 32-bit range is refused', async () => {
    await refusedAt1(
      { code: 2, value: 2 ** 31 },
      /^option 2 \(time-offset\) is an integer from -2147483648 to 2147483647/,
    );
    await refusedAt1({ code: 2, value: -(2 ** 31) - 1 }, /time-offset/);
  });

  it('option 3 that is not an address is refused', async () => {
    const s = subnet([]);
    s.options[0] = { code: 3, value: 'not-an-ip' };
    const r = await call('POST', '/subnets', s);
    expect(r.status).toBe(400);
    expect((r.body as Problem).errors).toEqual([
      { path: 'options.0.value', message: expect.stringMatching(/^option 3 \(router\) is a list of IPv4 addresses/) },
    ]);
  });

  it('boot size (13) and MTU (26) out of range are refused', async () => {
    await refusedAt1({ code: 13, value: 65536 }, /^option 13 \(boot-size\)/);
    await refusedAt1({ code: 26, value: 67 }, /^option 26 \(mtu\) is an integer from 68/);
  });

  it('PUT and PATCH are checked the same way, and reservations too', async () => {
    const s = subnet([]);
    expect((await call('POST', '/subnets', s)).status).toBe(201);
    const put = await call('PUT', `/subnets/${s.name}`, { ...s, options: [{ code: 30, value: 'yes' }] });
    expect(put.status).toBe(400);
    expect((put.body as Problem).errors?.[0]?.path).toBe('options.0.value');
    const patch = await call('PATCH', `/subnets/${s.name}`, { options: [{ code: 30, value: 'off' }] });
    expect(patch.status).toBe(200);
    expect(patch.body.options).toEqual([{ code: 30, value: 0 }]);

    const res = { address: `10.77.${n}.50`, mac: '52:54:00:77:00:01', subnet: s.name };
    const bad = await call('POST', '/reservations', { ...res, options: [{ code: 28, value: '10.77.1' }] });
    expect(bad.status).toBe(400);
    expect((bad.body as Problem).errors).toEqual([
      {
        path: 'options.0.value',
        message: expect.stringMatching(/^option 28 \(broadcast-address\) is an IPv4 address/),
      },
    ]);
    const good = await call('POST', '/reservations', { ...res, options: [{ code: 31, value: 'ON' }] });
    expect(good.status).toBe(201);
    expect(good.body.options).toEqual([{ code: 31, value: 1 }]);
  });
});
