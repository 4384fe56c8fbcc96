/**
 * Leases survive kill -9 under load: every lease whose ACK left the server is in the store afterwards, and
 * after a restart no address a client was ACKed is handed to a second MAC.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import { ip4, listener, msgType, ports, request, SUBNET, testEnv } from './helpers.js';

const dir = mkdtempSync(path.join(tmpdir(), 'plinth-dhcp-kill-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const child = fileURLToPath(new URL('./durability-child.ts', import.meta.url));
const mac = (i: number) =>
  `52:54:01:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;

describe('durability', () => {
  // 'kernel' (--lease-durability): an ACK once the lease is written, not fdatasynced; a kill -9 loses none either.
  it.each(['disk', 'kernel'] as const)(
    '%s: kill -9 under load loses no ACKed lease; after restart no address goes to a second MAC',
    async (durability) => {
      const file = path.join(dir, `plinth-${durability}.db`);
      const setup = openSqliteStore(file);
      await setup.create('subnets', 'lab', { ...SUBNET, activeStart: '10.99.1.2', activeEnd: '10.99.1.250' });
      await setup.close();

      const p = ports();
      const client = await listener(p.clientPort);
      let proc: ChildProcess | undefined;
      const acked = new Map<string, string>(); // mac -> address
      try {
        proc = spawn(
          process.execPath,
          ['--import', 'tsx', child, file, String(p.port), String(p.clientPort), durability],
          {
            stdio: ['ignore', 'pipe', 'inherit'],
          },
        );
        await new Promise<void>((res, rej) => {
          const t = setTimeout(() => rej(new Error('child did not start in 20 s')), 20_000);
          proc!.stdout!.on('data', (d: Buffer) => {
            if (d.toString().includes('READY')) {
              clearTimeout(t);
              res();
            }
          });
        });
        // Load: DORA for up to 240 MACs, 20 at a time, with the kill landing in the middle (bounded: 10 s).
        let next = 0;
        let killed = false;
        const worker = async () => {
          while (!killed && next < 240) {
            const i = next++;
            const d = request(MessageType.DISCOVER, mac(i), { flags: 0x8000 });
            await client.send(d, p.port);
            const offer = await client.wait(d.xid, 500);
            if (!offer || killed) continue;
            const r = request(MessageType.REQUEST, mac(i), { xid: d.xid, flags: 0x8000 }, [
              [Opt.ServerId, offer.options.get(Opt.ServerId)!],
              [Opt.RequestedIp, ip4(offer.yiaddr)],
            ]);
            await client.send(r, p.port);
            const ack = await client.wait(d.xid, 500);
            if (msgType(ack) === MessageType.ACK) acked.set(mac(i), ack!.yiaddr);
          }
        };
        const deadline = Date.now() + 10_000;
        const killer = (async () => {
          while (acked.size < 60 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
          proc!.kill('SIGKILL');
          killed = true;
        })();
        await Promise.all([killer, ...Array.from({ length: 20 }, worker)]);
        await new Promise<void>((res) =>
          proc!.exitCode !== null || proc!.signalCode ? res() : proc!.once('exit', () => res()),
        );
      } finally {
        if (proc && proc.exitCode === null && !proc.signalCode) proc.kill('SIGKILL');
        await client.close();
      }
      expect(acked.size).toBeGreaterThanOrEqual(60);

      // Every ACK that left the server is on disk.
      const env = await testEnv(async () => {}, {}, file);
      try {
        for (const [m, a] of acked) {
          const l = await env.store.get('leases', a);
          expect(l?.doc, `${m} ${a}`).toMatchObject({ mac: m, state: 'bound' });
        }
        // New MACs after the restart never get an ACKed address.
        const taken = new Set(acked.values());
        for (let i = 1000; i < 1060; i++) {
          const { ack } = await env.dora(mac(i));
          expect(msgType(ack)).toBe(MessageType.ACK);
          expect(taken.has(ack!.yiaddr), ack!.yiaddr).toBe(false);
        }
      } finally {
        await env.close();
      }
    },
    60_000,
  );
});
