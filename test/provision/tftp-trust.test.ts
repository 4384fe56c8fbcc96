/**
 * TFTP renders follow the same trust rule as HTTP, except that only DHCP evidence counts (a UDP source is forged
 * for free): a machine's secure params and token never go to a bare source address, even its recorded one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestDaemon, type TestDaemon } from '../helpers/daemon.js';
import { tftpGet } from '../tftp/client.js';

let d: TestDaemon;
let port: number;
beforeAll(async () => {
  d = await startTestDaemon({ tftp: true, tftpPort: 0 });
  port = (await d.api('GET', '/api/v1/info')).body.listeners.tftp.port;
  expect(
    (await d.api('POST', '/api/v1/params', { name: 'bmcpw', secure: true, schema: { type: 'string' } })).status,
  ).toBe(201);
  const be = await d.api('POST', '/api/v1/bootenvs', {
    name: 'tftp-secret',
    templates: [
      {
        name: 'grub',
        path: 'grub/grub.cfg',
        contents: 'set pw={{ params.bmcpw }}/{{ "bmcpw" | param }}\nset token={{ token }}\n',
      },
    ],
  });
  expect(be.status).toBe(201);
});
afterAll(async () => {
  await d.stop();
});

const machineTokens = async () =>
  (await d.daemon.store.list('tokens', { filters: [{ field: 'role', value: 'machine' }] })).total;

describe('TFTP renders and trust', () => {
  it('from the recorded address without DHCP evidence: secure params blanked, no token minted', async () => {
    const m = await d.api('POST', '/api/v1/machines', {
      name: 'tt-1',
      macs: ['52:54:00:7e:00:01'],
      bootEnv: 'tftp-secret',
      address: '127.0.0.1',
      params: { bmcpw: 'hunter2' },
    });
    expect(m.status).toBe(201);
    const before = await machineTokens();
    const r = await tftpGet(port, `machines/${m.body.uuid}/grub/grub.cfg`);
    expect(r.error).toBeUndefined();
    expect(r.data.toString()).toBe('set pw=/\nset token=\n');
    expect(await machineTokens()).toBe(before);
    // An active lease in the store is HTTP-only evidence: over TFTP it does not count.
    await d.daemon.store.putBatched('leases', '127.0.0.1', {
      address: '127.0.0.1',
      mac: '52:54:00:7e:00:01',
      subnet: 'x',
      state: 'bound',
      expiresAt: new Date(Date.now() + 600_000).toISOString(),
    });
    expect((await tftpGet(port, `machines/${m.body.uuid}/grub/grub.cfg`)).data.toString()).toBe(
      'set pw=/\nset token=\n',
    );
    await d.daemon.store.putBatched('leases', '127.0.0.1', null);
    await expect
      .poll(async () =>
        (await d.api('GET', `/api/v1/machines/${m.body.uuid}/boots`)).body[0]?.events.map(
          (e: { detail: string }) => e.detail,
        ),
      )
      .toContain(
        'grub/grub.cfg of bootenv tftp-secret over TFTP (without token, secure params withheld: request not from the machine)',
      );
  });

  it('after this daemon acknowledged its MAC at that address: both reach it', async () => {
    const m = await d.api('POST', '/api/v1/machines', {
      name: 'tt-2',
      macs: ['52:54:00:7e:00:02'],
      bootEnv: 'tftp-secret',
      params: { bmcpw: 'hunter2' },
    });
    d.daemon.bus.emit({
      type: 'lease.acked',
      key: '127.0.0.1',
      data: { mac: '52:54:00:7e:00:02', subnet: 'x', expiresAt: '2099-01-01T00:00:00.000Z' },
    });
    const before = await machineTokens();
    const r = await tftpGet(port, `machines/${m.body.uuid}/grub/grub.cfg`);
    const text = r.data.toString();
    expect(text).toMatch(/^set pw=hunter2\/hunter2\nset token=[\w-]{40,}\n$/);
    expect(await machineTokens()).toBe(before + 1);
    const token = /token=(\S+)/.exec(text)![1]!;
    const cb = await fetch(`${d.url}/api/v1/machines/${m.body.uuid}/callback?event=booted&token=${token}`);
    expect(cb.status).toBe(200);
  });

  it('a proxyDHCP boot-server ACK (proxy.acked) is evidence too', async () => {
    const m = await d.api('POST', '/api/v1/machines', {
      name: 'tt-3',
      macs: ['52:54:00:7e:00:03'],
      bootEnv: 'tftp-secret',
      params: { bmcpw: 'hunter2' },
    });
    const path = `machines/${m.body.uuid}/grub/grub.cfg`;
    expect((await tftpGet(port, path)).data.toString()).toBe('set pw=/\nset token=\n');
    d.daemon.bus.emit({ type: 'proxy.acked', key: '127.0.0.1', data: { mac: '52:54:00:7e:00:03', subnet: 'x' } });
    expect((await tftpGet(port, path)).data.toString()).toContain('set pw=hunter2/hunter2');
  });

  it('a boot that fetches over TFTP and then HTTP mints one token (one boot renderer for both transports)', async () => {
    const m = await d.api('POST', '/api/v1/machines', {
      name: 'tt-4',
      macs: ['52:54:00:7e:00:04'],
      bootEnv: 'tftp-secret',
      params: { bmcpw: 'hunter2' },
    });
    d.daemon.bus.emit({
      type: 'lease.acked',
      key: '127.0.0.1',
      data: { mac: '52:54:00:7e:00:04', subnet: 'x', expiresAt: '2099-01-01T00:00:00.000Z' },
    });
    const before = await machineTokens();
    const overTftp = (await tftpGet(port, `machines/${m.body.uuid}/grub/grub.cfg`)).data.toString();
    const overHttp = await (await fetch(`${d.url}/machines/${m.body.uuid}/grub/grub.cfg`)).text();
    const tokenOf = (t: string) => /token=(\S+)/.exec(t)?.[1];
    expect(tokenOf(overTftp)).toMatch(/^[\w-]{40,}$/);
    expect(tokenOf(overHttp)).toBe(tokenOf(overTftp));
    expect(await machineTokens()).toBe(before + 1);
  });
});
