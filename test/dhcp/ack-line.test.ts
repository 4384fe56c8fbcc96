/**
 * The ACK's info line (one per DORA at the default level) is written from a template (log.ts infoLines) instead of
 * pino's object path: it must read exactly as `log.info({ mac, address, subnet }, 'dhcp: ACK')` wrote it.
 */
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import type { Logger } from '../../src/log.js';
import { ip4, request, SUBNET, type TestEnv, testEnv } from './helpers.js';

let env: TestEnv | undefined;
afterEach(async () => {
  await env?.close();
  env = undefined;
});

function capture(level: string) {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      done();
    },
  });
  return { lines, log: pino({ level, base: { svc: 'plinth' } }, stream) as unknown as Logger };
}

async function dora(e: TestEnv, mac: string): Promise<string> {
  const d = request(MessageType.DISCOVER, mac, { flags: 0x8000 });
  await e.client.send(d, e.p.port);
  const offer = await e.client.wait(d.xid);
  const r = request(MessageType.REQUEST, mac, { flags: 0x8000 }, [
    [Opt.ServerId, offer!.options.get(Opt.ServerId)!],
    [Opt.RequestedIp, ip4(offer!.yiaddr)],
  ]);
  await e.client.send(r, e.p.port);
  const ack = await e.client.wait(r.xid);
  expect(ack?.options.get(Opt.MessageType)?.[0]).toBe(MessageType.ACK);
  return ack!.yiaddr;
}

describe("the ACK's log line", () => {
  it('has the fields, level, bindings and message pino writes for log.info', async () => {
    const { lines, log } = capture('info');
    env = await testEnv(undefined, { log });
    const address = await dora(env, '52:54:00:0c:00:01');
    await expect.poll(() => lines.filter((l) => l.msg === 'dhcp: ACK').length).toBe(1);
    const got = lines.find((l) => l.msg === 'dhcp: ACK')!;
    log.info({ mac: '52:54:00:0c:00:01', address, subnet: SUBNET.name }, 'dhcp: ACK');
    await expect.poll(() => lines.filter((l) => l.msg === 'dhcp: ACK').length).toBe(2);
    const want = lines.filter((l) => l.msg === 'dhcp: ACK')[1]!;
    expect(Object.keys(got)).toEqual(Object.keys(want));
    expect({ ...got, time: 0 }).toEqual({ ...want, time: 0 });
    expect(got).toMatchObject({ level: 30, svc: 'plinth', mac: '52:54:00:0c:00:01', address, subnet: 'lab' });
  });

  it('is not written below info', async () => {
    const { lines, log } = capture('warn');
    env = await testEnv(undefined, { log });
    await dora(env, '52:54:00:0c:00:02');
    await new Promise((r) => setTimeout(r, 50));
    expect(lines.filter((l) => l.msg === 'dhcp: ACK')).toHaveLength(0);
  });
});
