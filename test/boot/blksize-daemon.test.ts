/**
 * TFTP blksize caps end to end: a subnet's `tftpMaxBlksize` and the `tftp/max-blksize` param (machine ->
 * profiles -> global) cap the blksize in the OACK of a real transfer on loopback; the smallest cap wins and the
 * machine's boot timeline says which one and why.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { tftpGet } from '../tftp/client.js';

let d: TestDaemon;
let port: number;
const body = Buffer.alloc(5000, 'x');
beforeAll(async () => {
  d = await startTestDaemon({ tftp: true, tftpPort: 0 });
  port = (await d.api('GET', '/api/v1/info')).body.listeners.tftp.port;
  const up = await fetch(`${d.url}/api/v1/files/caps/loader.bin`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${d.token}` },
    body,
  });
  expect(up.status).toBe(201);
});
afterAll(async () => {
  await d.stop();
});

/** The blksize the server grants a client asking for 1468, checked against the blocks it really sent. */
async function granted(): Promise<number> {
  const r = await tftpGet(port, 'caps/loader.bin', { options: [['blksize', '1468']] });
  expect(r.error).toBeUndefined();
  expect(r.data.equals(body)).toBe(true);
  const blksize = Number(r.oack?.find(([k]) => k === 'blksize')?.[1]);
  expect(r.dataPackets).toBe(Math.floor(body.length / blksize) + 1);
  return blksize;
}

describe('TFTP blksize caps per subnet and per machine', () => {
  it('the smallest of subnet, profile and machine caps is granted, and the timeline names it', async () => {
    expect(await granted()).toBe(1468);

    // Per subnet: every client with an address in it.
    const s = await d.api('POST', '/api/v1/subnets', { name: 'loop', subnet: '127.0.0.0/8', proxy: true });
    expect(s.status).toBe(201);
    expect((await d.api('PATCH', '/api/v1/subnets/loop', { tftpMaxBlksize: 1200 })).status).toBe(200);
    expect(await granted()).toBe(1200);

    // Per class of machines: a profile sets the param; the machine at this address uses the profile.
    expect(
      (await d.api('POST', '/api/v1/profiles', { name: 'qemu-uefi', params: { 'tftp/max-blksize': 1024 } })).status,
    ).toBe(201);
    const m = await d.api('POST', '/api/v1/machines', {
      name: 'vm-uefi',
      macs: ['52:54:00:7f:10:01'],
      address: '127.0.0.1',
      profiles: ['qemu-uefi'],
    });
    expect(m.status).toBe(201);
    expect(await granted()).toBe(1024);
    await expect
      .poll(async () =>
        (await d.api('GET', `/api/v1/machines/${m.body.uuid}/boots`)).body[0]?.events.map(
          (e: { detail: string }) => e.detail,
        ),
      )
      .toContain(
        "RRQ caps/loader.bin -> 5000 bytes; blksize at most 1024 (param tftp/max-blksize from profile:qemu-uefi of machine 'vm-uefi' = 1024)",
      );

    // The machine's own value wins over its profile's (params resolution), but the subnet's 1200 is smaller.
    expect(
      (await d.api('PATCH', `/api/v1/machines/${m.body.uuid}`, { params: { 'tftp/max-blksize': 1300 } })).status,
    ).toBe(200);
    expect(await granted()).toBe(1200);
    await expect
      .poll(async () =>
        (await d.api('GET', `/api/v1/machines/${m.body.uuid}/boots`)).body[0]?.events.map(
          (e: { detail: string }) => e.detail,
        ),
      )
      .toContain(
        "RRQ caps/loader.bin -> 5000 bytes; blksize at most 1200 (subnet 'loop' (127.0.0.0/8) tftpMaxBlksize 1200)",
      );

    // Caps above the global maximum change nothing; removing them restores it.
    expect((await d.api('PATCH', '/api/v1/subnets/loop', { tftpMaxBlksize: null })).status).toBe(200);
    expect(
      (await d.api('PATCH', `/api/v1/machines/${m.body.uuid}`, { params: { 'tftp/max-blksize': 9000 } })).status,
    ).toBe(200);
    expect(await granted()).toBe(1468);
    expect(
      (await d.api('PATCH', `/api/v1/machines/${m.body.uuid}`, { params: { 'tftp/max-blksize': 512 } })).status,
    ).toBe(200);
    expect(await granted()).toBe(512);
  });

  it('refuses caps out of the RFC 2348 range, naming the field', async () => {
    const s = await d.api('POST', '/api/v1/subnets', {
      name: 'bad-cap',
      subnet: '10.55.0.0/24',
      proxy: true,
      tftpMaxBlksize: 7,
    });
    expect(s.status).toBe(400);
    expect(s.body.errors[0].path).toBe('tftpMaxBlksize');
    const m = await d.api('POST', '/api/v1/machines', { name: 'bad-cap', params: { 'tftp/max-blksize': 'big' } });
    expect(m.status).toBe(400);
    expect(m.body.errors[0].path).toBe('params.tftp/max-blksize');
    const p = await d.api('POST', '/api/v1/profiles', { name: 'bad-cap', params: { 'tftp/max-blksize': 70000 } });
    expect(p.status).toBe(400);
    // The param is defined at first start, with its schema and what it does.
    const def = await d.api('GET', '/api/v1/params/tftp%2Fmax-blksize');
    expect(def.status).toBe(200);
    expect(def.body.schema).toEqual({ type: 'integer', minimum: 8, maximum: 65464 });
  });
});
