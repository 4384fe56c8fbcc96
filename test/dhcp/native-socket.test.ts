/**
 * The DHCP sockets' native path (native/dhcp_io.c, src/dhcp/native-socket.ts): datagrams read by the batch into a
 * ring and replies sent with one sendto each. Packet level on loopback: a burst arrives once each, in order, with
 * its source; an oversized datagram is flagged, not handed on; closing with datagrams queued (or from inside a
 * batch) delivers nothing more; a failed send is reported to the callback, never thrown. Then the server on it:
 * the oversized datagram counted as malformed, a failed reply counted as an error.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { DatagramHandlers, Source } from '../../src/dhcp/bind.js';
import { NativeDhcpSocket, RING_SLOTS, SLOT_BYTES } from '../../src/dhcp/native-socket.js';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import { decode, encode } from '../../src/dhcp/packet.js';
import { type DhcpBatchIo, native } from '../../src/native/index.js';
import { ensureAddon } from './addon.js';
import { capturedLog, ports, request, type TestEnv, testEnv } from './helpers.js';

ensureAddon();
const io = native.dhcpBatchIo;
const sockets = native.dhcpSockets;

type Got = { kind: 'message'; msg: Buffer; src: Source } | { kind: 'oversized'; src: Source; slot: number };

/** A native socket on `address:port` that records what it gets and the size of every batch. */
function open(port: number, address = '127.0.0.1', onMessage?: (n: number, s: NativeDhcpSocket) => void) {
  const got: Got[] = [];
  const batches: number[] = [];
  const counting: DhcpBatchIo = {
    ...io!,
    dhcpIoOpen: (fd, ring, meta, slot, onBatch) =>
      io!.dhcpIoOpen(fd, ring, meta, slot, (n) => {
        batches.push(n);
        onBatch(n);
      }),
  };
  let s: NativeDhcpSocket | undefined;
  const on: DatagramHandlers = {
    // Copied: the view is the ring's, overwritten by the next batch.
    message: (msg, src) => {
      got.push({ kind: 'message', msg: Buffer.from(msg), src });
      onMessage?.(got.length, s!);
    },
    oversized: (src, slot) => got.push({ kind: 'oversized', src, slot }),
    error: (err) => {
      throw err;
    },
  };
  s = new NativeDhcpSocket(counting, sockets!.openUdp4(null, port, address), on);
  return { s, got, batches };
}

async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
}

const sendSync = (s: NativeDhcpSocket, buf: Buffer, port: number, to = '127.0.0.1') => {
  let out: Error | null | undefined;
  s.send(buf, port, to, (err) => {
    out = err;
  });
  return out;
};

const opened: NativeDhcpSocket[] = [];
let env: TestEnv | undefined;
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close();
  await env?.close();
  env = undefined;
});

describe.skipIf(!io || !sockets)('DHCP sockets on the native path', () => {
  it('delivers a burst from several sources once each, in order, with source address and port, by the batch', async () => {
    const { port } = ports();
    const rx = open(port);
    // Three senders, one on another loopback address, sending in turn.
    const tx = [open(port + 1), open(port + 2, '127.0.0.2'), open(port + 3)];
    opened.push(rx.s, ...tx.map((t) => t.s));
    const n = 300;
    for (let i = 0; i < n; i++) {
      const b = Buffer.alloc(300 + ((i * 37) % 1200), i & 255);
      b.writeUInt32BE(i, 0);
      expect(sendSync(tx[i % 3]!.s, b, port)).toBeNull();
    }
    await until(() => rx.got.length >= n);
    expect(rx.got).toHaveLength(n);
    rx.got.forEach((g, i) => {
      if (g.kind !== 'message') throw new Error(`datagram ${i}: ${g.kind}`);
      expect(g.msg.readUInt32BE(0)).toBe(i);
      expect(g.msg.length).toBe(300 + ((i * 37) % 1200));
      expect(g.msg[g.msg.length - 1]).toBe(i & 255);
      expect(g.src).toEqual({ address: i % 3 === 1 ? '127.0.0.2' : '127.0.0.1', port: port + 1 + (i % 3) });
    });
    // Sent in one turn, read by the ring's worth: one call per batch, not per datagram.
    expect(rx.batches.reduce((a, b) => a + b, 0)).toBe(n);
    expect(Math.max(...rx.batches)).toBe(RING_SLOTS);
    expect(rx.batches.length).toBeLessThanOrEqual(Math.ceil(n / RING_SLOTS) + 1);
    // Nothing more arrives later (each exactly once).
    await new Promise((r) => setTimeout(r, 50));
    expect(rx.got).toHaveLength(n);
  });

  it('flags a datagram longer than the slot and hands on the ones around it intact', async () => {
    const { port } = ports();
    const rx = open(port);
    const tx = open(port + 1);
    opened.push(rx.s, tx.s);
    const sizes = [100, SLOT_BYTES + 1, SLOT_BYTES, 3000, 240];
    for (const [i, len] of sizes.entries()) expect(sendSync(tx.s, Buffer.alloc(len, i + 1), port)).toBeNull();
    await until(() => rx.got.length >= sizes.length);
    const src = { address: '127.0.0.1', port: port + 1 };
    expect(rx.got.map((g) => (g.kind === 'message' ? g.msg.length : -1))).toEqual([100, -1, SLOT_BYTES, -1, 240]);
    expect(rx.got[1]).toEqual({ kind: 'oversized', src, slot: SLOT_BYTES });
    expect(rx.got[3]).toEqual({ kind: 'oversized', src, slot: SLOT_BYTES });
    for (const i of [0, 2, 4]) {
      const g = rx.got[i]!;
      expect(g.kind === 'message' && g.msg.every((b) => b === i + 1)).toBe(true);
      expect(g.src).toEqual(src);
    }
  });

  it('delivers nothing once closed, with datagrams queued or from inside a batch; the port is free again', async () => {
    const { port } = ports();
    const tx = open(port + 1);
    opened.push(tx.s);
    // Closed in the same turn as the burst: everything is still queued in the kernel.
    const rx = open(port);
    for (let i = 0; i < 100; i++) sendSync(tx.s, Buffer.alloc(300), port);
    await rx.s.close();
    await new Promise((r) => setTimeout(r, 50));
    expect(rx.got).toHaveLength(0);
    // The fd was closed with it: the same port binds again.
    const again = open(port, '127.0.0.1', (count, s) => {
      if (count === 5) void s.close();
    });
    for (let i = 0; i < 100; i++) sendSync(tx.s, Buffer.alloc(300), port);
    await new Promise((r) => setTimeout(r, 100));
    expect(again.got).toHaveLength(5);
    expect(again.batches).toEqual([RING_SLOTS]);
    // A send on a closed socket is a failed send, not an exception.
    expect(sendSync(again.s, Buffer.alloc(10), port + 1)).toMatchObject({ code: 'EBADF', syscall: 'send' });
    await again.s.close(); // idempotent
  });

  it('reports a failed send to the callback with its errno name, never throws', async () => {
    const { port } = ports();
    const tx = open(port);
    opened.push(tx.s);
    // UDP refuses port 0 (EINVAL) synchronously: the deterministic stand-in for EAGAIN/ENOBUFS, the same path.
    expect(sendSync(tx.s, Buffer.alloc(300), 0)).toMatchObject({
      code: 'EINVAL',
      syscall: 'send',
      address: '127.0.0.1',
      port: 0,
      message: 'send EINVAL 127.0.0.1:0',
    });
    // Not a dotted quad: refused without a lookup.
    expect(sendSync(tx.s, Buffer.alloc(300), port, 'localhost')).toMatchObject({ code: 'EINVAL' });
    expect(sendSync(tx.s, Buffer.alloc(300), 70000)).toMatchObject({ code: 'EINVAL' });
  });

  it('decode keeps nothing of the bytes it was given (the ring slot is reused by the next batch)', () => {
    const p = request(MessageType.DISCOVER, '52:54:00:00:00:01', { sname: 'srv', file: 'boot.efi' }, [
      [Opt.ClientId, Buffer.from([1, 0x52, 0x54, 0, 0, 0, 1])],
    ]);
    const wire = encode(p);
    const d = decode(wire);
    if (!d.ok) throw new Error(d.message);
    const before = JSON.stringify({ ...d.packet, options: [...d.packet.options] });
    wire.fill(0xee);
    expect(JSON.stringify({ ...d.packet, options: [...d.packet.options] })).toBe(before);
  });
});

describe.skipIf(!io || !sockets)('the DHCP server on the native path', () => {
  it('counts an oversized datagram as malformed, logged with the malformed log, no reply', async () => {
    const { log, lines } = capturedLog();
    env = await testEnv(undefined, { log });
    await env.client.send(Buffer.alloc(3000, 1), env.p.port);
    await until(() => env!.server.stats.malformed > 0, 1000);
    expect(env.server.stats).toMatchObject({ received: 1, malformed: 1 });
    const logged = lines.filter((l) => l.includes('malformed'));
    expect(logged).toHaveLength(1);
    expect(JSON.parse(logged[0]!)).toMatchObject({ src: '127.0.0.1', code: 'oversized' });
    // A real client is still served.
    expect((await env.dora('52:54:00:00:00:02')).ack?.yiaddr).toBeDefined();
  });

  it('counts a reply the socket refuses as an error and goes on serving', async () => {
    let refuse = true;
    env = await testEnv(undefined, {
      replyTo: (d) => ({ address: '127.0.0.1', port: refuse ? 0 : d.port }),
    });
    const d = request(MessageType.DISCOVER, '52:54:00:00:00:03', { flags: 0x8000 });
    await env.client.send(d, env.p.port);
    await until(() => env!.server.stats.errors > 0, 1000);
    expect(env.server.stats).toMatchObject({ received: 1, offers: 1, errors: 1 });
    refuse = false;
    expect((await env.dora('52:54:00:00:00:03')).ack?.yiaddr).toBeDefined();
  });
});
