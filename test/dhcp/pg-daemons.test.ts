/**
 * Two DHCP daemons on one PostgreSQL inventory serving one subnet (issue 17), as behind a relay with two helper
 * addresses: every relayed DISCOVER and REQUEST reaches both, the same MACs hit both at once on a pool smaller
 * than the clients. No address is ACKed to two MACs, the table holds no address for two clients (SQL), and after
 * one daemon is killed with SIGKILL mid-load every lease either of them ACKed is in the table. PostgreSQL only.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { MessageType, Opt } from '../../src/dhcp/options.js';
import type { DhcpPacket } from '../../src/dhcp/packet.js';
import { openPgStore } from '../../src/store/pg.js';
import { adminQuery, backends, PG_URL, skipUnavailable } from '../store/backends.js';
import { ip4, listener, msgType, ports, request, SUBNET } from './helpers.js';

const pgBackend = backends(import.meta.filename).find((x) => x.name === 'postgres')!;
const child = fileURLToPath(new URL('./pg-daemon-child.ts', import.meta.url));
const procs: ChildProcess[] = [];
afterAll(() => {
  for (const p of procs) if (p.exitCode === null && !p.signalCode) p.kill('SIGKILL');
});
const mac = (i: number) =>
  `52:54:02:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
const GIADDR = '10.99.1.5';

function start(schema: string, port: number, relayPort: number, serverAddress: string): Promise<ChildProcess> {
  const p = spawn(
    process.execPath,
    ['--import', 'tsx', child, PG_URL!, schema, String(port), String(relayPort), serverAddress],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  procs.push(p);
  return new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error('daemon did not start in 30 s')), 30_000);
    p.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('READY')) {
        clearTimeout(t);
        res(p);
      }
    });
  });
}

describe('two DHCP daemons on one PostgreSQL schema, one subnet', () => {
  skipUnavailable(pgBackend);

  it('never give one address to two clients, and lose no ACKed lease when one is killed -9', async () => {
    const { where: schema } = await pgBackend.db();
    const setup = await openPgStore(PG_URL!, { schema });
    // 40 addresses for 80 clients: the daemons run out, so every address is fought over.
    await setup.create('subnets', 'lab', { ...SUBNET, activeStart: '10.99.1.100', activeEnd: '10.99.1.139' });
    await setup.close();
    const [pa, pb] = [ports(), ports()];
    const relay = await listener(pa.relayPort);
    const [a, b] = await Promise.all([
      start(schema, pa.port, pa.relayPort, '10.99.1.1'),
      start(schema, pb.port, pa.relayPort, '10.99.1.2'),
    ]);
    const acked = new Map<string, string>(); // mac -> address
    const ackedBy = new Map<string, string>(); // mac -> server id
    const toBoth = async (p: DhcpPacket) => Promise.all([relay.send(p, pa.port), relay.send(p, pb.port)]);
    let killed = false;
    try {
      // The relay forwards each client's DISCOVER to both servers; the client takes the first OFFER and REQUESTs
      // it (54 names the chosen server; the other one sees that and stays silent). Bounded: 80 clients, 8 at a
      // time, 500 ms per reply, 20 s in all.
      let next = 0;
      const deadline = Date.now() + 20_000;
      const worker = async () => {
        while (next < 80 && Date.now() < deadline) {
          const i = next++;
          const d = request(MessageType.DISCOVER, mac(i), { giaddr: GIADDR, hops: 1 });
          await toBoth(d);
          // Both OFFERs when both come; odd clients take 10.99.1.2's, even ones 10.99.1.1's, so both daemons ACK.
          const first = await relay.wait(d.xid, 500);
          if (!first) continue;
          const second = await relay.wait(d.xid, 200);
          const want = i % 2 ? '10.99.1.2' : '10.99.1.1';
          const offer = second && [...second.options.get(Opt.ServerId)!].join('.') === want ? second : first;
          const server = offer.options.get(Opt.ServerId)!;
          const r = request(MessageType.REQUEST, mac(i), { xid: d.xid, giaddr: GIADDR, hops: 1 }, [
            [Opt.ServerId, server],
            [Opt.RequestedIp, ip4(offer.yiaddr)],
          ]);
          await toBoth(r);
          // Replies with this xid: a late OFFER may still come; the ACK or NAK is what counts.
          for (let n = 0; n < 3; n++) {
            const reply = await relay.wait(d.xid, 500);
            if (!reply) break;
            if (msgType(reply) === MessageType.OFFER) continue;
            if (msgType(reply) === MessageType.ACK) {
              acked.set(mac(i), reply.yiaddr);
              ackedBy.set(mac(i), [...server].join('.'));
            }
            break;
          }
        }
      };
      const killer = (async () => {
        while (acked.size < 15 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
        a.kill('SIGKILL');
        killed = true;
      })();
      await Promise.all([killer, ...Array.from({ length: 8 }, worker)]);
    } finally {
      await relay.close();
      b.kill('SIGTERM');
    }
    expect(killed).toBe(true);
    // Both answered, and most clients got an address (the pool has 40).
    expect(new Set(ackedBy.values())).toEqual(new Set(['10.99.1.1', '10.99.1.2']));
    expect(acked.size).toBeGreaterThanOrEqual(30);
    // No address was ACKed to two MACs.
    expect(new Set(acked.values()).size).toBe(acked.size);
    // In the table (SQL): every ACKed lease, bound to its MAC; no client with two live rows.
    const rows = await adminQuery(`SELECT key, doc ->> 'mac' AS mac, doc ->> 'state' AS state FROM ${schema}.leases`);
    const byAddress = new Map(rows.rows.map((r) => [r.key as string, r]));
    for (const [m, address] of acked)
      expect(byAddress.get(address), `${m} ${address}`).toMatchObject({ mac: m, state: 'bound' });
    const twice = await adminQuery(
      `SELECT coalesce(doc ->> 'clientId', doc ->> 'mac') AS c FROM ${schema}.leases
       WHERE doc ->> 'state' IN ('offered', 'bound') GROUP BY 1 HAVING count(*) > 1`,
    );
    expect(twice.rows).toEqual([]);
  }, 60_000);
});
