/**
 * A PXE client that gets an address but nothing to boot (its loader is missing) is the operator's to fix: the
 * server says why in a warning, once a minute per reason, not silently (an ordinary DHCP client is no warning).
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import type { Logger } from '../../src/log.js';
import { request, SUBNET, type TestEnv, testEnv } from './helpers.js';

let env: TestEnv | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

function capture() {
  const lines: { level: number; msg: string; mac?: string }[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      done();
    },
  });
  return { lines, log: pino({ level: 'info' }, stream) as unknown as Logger };
}

const pxe = (mac: string) =>
  request(MessageType.DISCOVER, mac, { flags: 0x8000 }, [
    [Opt.VendorClass, Buffer.from('PXEClient:Arch:00007:UNDI:003016')],
    [Opt.ClientArch, Buffer.from([0, 7])],
  ]);

describe('a network-boot client with nothing to boot', () => {
  it('gets an address without a boot file, and one warning naming the missing loader', async () => {
    const { lines, log } = capture();
    env = await testEnv(undefined, { log, hasLoader: () => false });
    for (const mac of ['52:54:00:0b:00:01', '52:54:00:0b:00:02']) {
      const d = pxe(mac);
      await env.client.send(d, env.p.port);
      const offer = await env.client.wait(d.xid);
      expect(offer?.yiaddr.startsWith(SUBNET.subnet.split('.').slice(0, 3).join('.'))).toBe(true);
      expect(offer?.options.get(Opt.BootfileName)).toBeUndefined();
    }
    await expect.poll(() => lines.filter((l) => l.msg.startsWith('dhcp: not booting')).length).toBe(1);
    const warn = lines.find((l) => l.msg.startsWith('dhcp: not booting'))!;
    expect(warn.level).toBe(40);
    expect(warn.msg).toMatch(/ipxe\.efi/);
    // An ordinary client (no PXE vendor class, no option 93) is not a warning.
    const plain = request(MessageType.DISCOVER, '52:54:00:0b:00:03', { flags: 0x8000 });
    await env.client.send(plain, env.p.port);
    await env.client.wait(plain.xid);
    expect(lines.filter((l) => l.msg.startsWith('dhcp: not booting'))).toHaveLength(1);
  });
});
