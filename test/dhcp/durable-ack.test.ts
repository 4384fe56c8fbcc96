/**
 * ACKs sent by the store the moment their lease is durable (src/dhcp/durable-ack.ts, native/journal.c
 * journalAppendSend): with a file store's lease journal and the native socket path, the journal's thread sends
 * the ACK and the server only the OFFER; without the journal the server sends both; a send the socket refuses is
 * counted like one of the server's own.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { NativeDhcpSocket } from '../../src/dhcp/native-socket.js';
import { MessageType } from '../../src/dhcp/options.js';
import { native } from '../../src/native/index.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import { msgType, SUBNET, testEnv } from './helpers.js';

const dir = mkdtempSync(path.join(tmpdir(), 'plinth-durable-ack-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());
let n = 0;
const dbFile = () => path.join(dir, `plinth-${++n}.db`);
const setup = async (s: Parameters<NonNullable<Parameters<typeof testEnv>[0]>>[0]) => {
  await s.create('subnets', SUBNET.name, SUBNET);
};

describe.skipIf(!native.caps.journalSend || !native.dhcpBatchIo)('ACKs sent by the lease journal', () => {
  it('with the journal, the ACK leaves from the store once the lease is on disk; the server sends the OFFER', async () => {
    const send = vi.spyOn(NativeDhcpSocket.prototype, 'send');
    const file = dbFile();
    const t = await testEnv(setup, {}, file);
    try {
      const { offer, ack } = await t.dora('52:54:00:aa:00:01');
      expect(msgType(offer)).toBe(MessageType.OFFER);
      expect(msgType(ack)).toBe(MessageType.ACK);
      expect(ack!.yiaddr).toBe(offer!.yiaddr);
      // The server's socket sent one reply (the OFFER); the ACK went out from the journal's thread, to where the
      // server would have sent it (the destination and the test's rewrite both applied).
      expect(send).toHaveBeenCalledTimes(1);
      expect(t.dests.map((d) => d.address)).toEqual(['255.255.255.255', '255.255.255.255']);
      // The ACK can reach the client before the server's loop has run the durable callback that counts it.
      await vi.waitFor(() => expect(t.server.stats.acks).toBe(1));
      expect(t.server.stats.errors).toBe(0);
    } finally {
      await t.close();
    }
    const after = openSqliteStore(file);
    expect((await after.list('leases')).items.map((i) => i.doc.state)).toEqual(['bound']);
    await after.close();
  });

  it('without the journal (a memory store), the server sends the ACK itself', async () => {
    const send = vi.spyOn(NativeDhcpSocket.prototype, 'send');
    const t = await testEnv(setup);
    try {
      const { ack } = await t.dora('52:54:00:aa:00:02');
      expect(msgType(ack)).toBe(MessageType.ACK);
      expect(send).toHaveBeenCalledTimes(2);
    } finally {
      await t.close();
    }
  });

  it('an ACK the socket refuses from the journal thread is counted as a failed send', async () => {
    const send = vi.spyOn(NativeDhcpSocket.prototype, 'send');
    const file = dbFile();
    let replies = 0;
    // The second reply (the ACK) to port 0, which sendto refuses (EINVAL).
    const t = await testEnv(
      setup,
      { replyTo: () => ({ address: '127.0.0.1', port: ++replies === 2 ? 0 : t.p.clientPort }) },
      file,
    );
    try {
      const { offer, ack } = await t.dora('52:54:00:aa:00:03');
      expect(msgType(offer)).toBe(MessageType.OFFER);
      expect(ack).toBeUndefined();
      await vi.waitFor(() => expect(t.server.stats.acks).toBe(1));
      expect(send).toHaveBeenCalledTimes(1);
      expect(t.server.stats.errors).toBe(1);
    } finally {
      await t.close();
    }
  });
});
