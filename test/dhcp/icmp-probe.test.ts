/**
 * The ICMP echo probe behind probeBeforeOffer (src/dhcp/probe.ts; RFC 2131 section 2.2 and 3.1 step 2). Socket-free
 * with a fake addon and fake timers: which replies count, the bound on the wait, send errors, sharing, close. One
 * test uses the real helper on loopback (127.0.0.1 answers); the namespace test (probe-netns.test.ts) covers a peer
 * that answers and one that does not.
 */
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { MAX_PROBES_OUT, openAddressProbe } from '../../src/dhcp/probe.js';
import { type IcmpEcho, type IcmpReplyHandler, native } from '../../src/native/index.js';

const log = pino({ level: 'silent' });

/** A fake addon: records each echo sent; the test answers through `reply`. */
function fakeAddon(kind: 'raw' | 'dgram' = 'raw', sendResult = 1) {
  const sent: { address: string; id: number; seq: number }[] = [];
  let onReply: IcmpReplyHandler | undefined;
  let opened = 0;
  let closed = 0;
  const addon: IcmpEcho = {
    icmpOpen: (cb) => {
      opened++;
      onReply = cb;
      return {};
    },
    icmpKind: () => kind,
    icmpEcho: (_h, address, id, seq) => {
      sent.push({ address, id, seq });
      return sendResult;
    },
    icmpClose: () => {
      closed++;
      return 0;
    },
  };
  return {
    addon,
    sent,
    reply: (address: string, id: number, seq: number) => onReply!(address, id, seq),
    counts: () => ({ opened, closed }),
  };
}

describe('ICMP echo probe (fake socket)', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('an echo reply from the address, with our id and sequence, means in use', async () => {
    const f = fakeAddon();
    const p = openAddressProbe({ log, addon: f.addon, timeoutMs: 500 })!;
    const r = p.probe('10.0.0.5');
    expect(f.sent).toHaveLength(1);
    const { id, seq } = f.sent[0]!;
    f.reply('10.0.0.5', id, seq);
    await expect(r).resolves.toBe(true);
    p.close();
  });

  it('silence until the timeout means free; the socket is opened once, on the first probe', async () => {
    const f = fakeAddon();
    const p = openAddressProbe({ log, addon: f.addon, timeoutMs: 500 })!;
    expect(f.counts().opened).toBe(0);
    const r = p.probe('10.0.0.6');
    let settled = false;
    void r.then(() => {
      settled = true;
    });
    await vi.advanceTimersByTimeAsync(499);
    expect(settled).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    await expect(r).resolves.toBe(false);
    // A reply after the timeout changes nothing and is ignored.
    f.reply('10.0.0.6', f.sent[0]!.id, f.sent[0]!.seq);
    const again = p.probe('10.0.0.7');
    expect(f.counts().opened).toBe(1);
    await vi.advanceTimersByTimeAsync(500);
    await expect(again).resolves.toBe(false);
    p.close();
  });

  it('replies from another address, with another sequence or (raw socket) another identifier do not count', async () => {
    const f = fakeAddon('raw');
    const p = openAddressProbe({ log, addon: f.addon, timeoutMs: 500 })!;
    const r = p.probe('10.0.0.8');
    const { id, seq } = f.sent[0]!;
    f.reply('10.0.0.9', id, seq); // another host
    f.reply('10.0.0.8', id, (seq + 1) & 0xffff); // another probe's sequence
    f.reply('10.0.0.8', (id + 1) & 0xffff, seq); // another pinger on this host
    await vi.advanceTimersByTimeAsync(500);
    await expect(r).resolves.toBe(false);
    p.close();
  });

  it('on a ping socket the kernel owns the identifier: address and sequence decide', async () => {
    const f = fakeAddon('dgram');
    const p = openAddressProbe({ log, addon: f.addon, timeoutMs: 500 })!;
    const r = p.probe('10.0.0.10');
    f.reply('10.0.0.10', 31337, f.sent[0]!.seq);
    await expect(r).resolves.toBe(true);
    p.close();
  });

  it('a send error (no route) is silence at once, without waiting for the timeout', async () => {
    const f = fakeAddon('raw', -113);
    const p = openAddressProbe({ log, addon: f.addon, timeoutMs: 500 })!;
    await expect(p.probe('10.0.0.11')).resolves.toBe(false);
    expect(vi.getTimerCount()).toBe(0);
    p.close();
  });

  it('two probes of one address at once share one echo; different addresses get different sequences', async () => {
    const f = fakeAddon();
    const p = openAddressProbe({ log, addon: f.addon, timeoutMs: 500 })!;
    const a = p.probe('10.0.0.12');
    const b = p.probe('10.0.0.12');
    const c = p.probe('10.0.0.13');
    expect(f.sent.map((s) => s.address)).toEqual(['10.0.0.12', '10.0.0.13']);
    expect(f.sent[0]!.seq).not.toBe(f.sent[1]!.seq);
    f.reply('10.0.0.12', f.sent[0]!.id, f.sent[0]!.seq);
    await expect(Promise.all([a, b])).resolves.toEqual([true, true]);
    await vi.advanceTimersByTimeAsync(500);
    await expect(c).resolves.toBe(false);
    p.close();
  });

  it('close settles probes still out as silence and closes the socket; later probes answer false', async () => {
    const f = fakeAddon();
    const p = openAddressProbe({ log, addon: f.addon, timeoutMs: 500 })!;
    const r = p.probe('10.0.0.14');
    p.close();
    await expect(r).resolves.toBe(false);
    expect(f.counts().closed).toBe(1);
    await expect(p.probe('10.0.0.14')).resolves.toBe(false);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('a bounded number of probes out at once (a DISCOVER flood): the next one fails until some end', async () => {
    expect(MAX_PROBES_OUT).toBeLessThan(0x10000); // sequence numbers stay unique
    const f = fakeAddon();
    const p = openAddressProbe({ log, addon: f.addon, timeoutMs: 500, maxOut: 8 })!;
    const out = Array.from({ length: 8 }, (_, i) => p.probe(`10.0.1.${i}`));
    await expect(p.probe('10.200.0.1')).rejects.toThrow('8 ICMP echo probes already out');
    expect(new Set(f.sent.map((s) => s.seq)).size).toBe(8);
    await vi.advanceTimersByTimeAsync(500);
    await Promise.all(out);
    const later = p.probe('10.200.0.1');
    f.reply('10.200.0.1', f.sent.at(-1)!.id, f.sent.at(-1)!.seq);
    await expect(later).resolves.toBe(true);
    p.close();
  });

  it('a socket that cannot be opened rejects the probe (the state machine offers unprobed and warns)', async () => {
    const f = fakeAddon();
    f.addon.icmpOpen = () => {
      throw Object.assign(new Error('EPERM'), { code: 'EPERM' });
    };
    const p = openAddressProbe({ log, addon: f.addon, timeoutMs: 500 })!;
    await expect(p.probe('10.0.0.15')).rejects.toThrow('EPERM');
    p.close();
  });
});

describe.skipIf(native.icmpEcho === undefined)('ICMP echo probe (the native helper, loopback)', () => {
  it('127.0.0.1 answers: in use', async () => {
    const p = openAddressProbe({ log, timeoutMs: 2000 })!;
    try {
      await expect(p.probe('127.0.0.1')).resolves.toBe(true);
    } finally {
      p.close();
    }
  });
});
