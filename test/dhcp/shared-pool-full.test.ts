/**
 * A nearly full pool on a shared lease table (issue 17, PostgreSQL): the other daemon gave every address but one
 * after this daemon loaded its leases, so this daemon's index knows none of them. Its first guess loses the claim;
 * the next candidates come from the database's free addresses, so the DISCOVER is offered the one free address
 * (from the index alone it lost MAX_CLAIMS claims and stayed silent) and the REQUEST is ACKed. PostgreSQL only.
 */
import { describe, expect, it } from 'vitest';
import { loadLeaseTable } from '../../src/dhcp/leases.js';
import { MessageType } from '../../src/dhcp/options.js';
import { createBus } from '../../src/events.js';
import type { SubnetInfo } from '../../src/inventory/cache.js';
import { silentLogger } from '../../src/log.js';
import { intToIp, ipToInt, parseCidr } from '../../src/model/common.js';
import { backends, skipUnavailable } from '../store/backends.js';
import { msgType, SUBNET, testEnv } from './helpers.js';

const pgBackend = backends(import.meta.filename).find((x) => x.name === 'postgres')!;
const subnet = {
  ...SUBNET,
  net: parseCidr(SUBNET.subnet),
  start: ipToInt(SUBNET.activeStart),
  end: ipToInt(SUBNET.activeEnd),
} as unknown as SubnetInfo;

describe('a nearly full shared pool', () => {
  skipUnavailable(pgBackend);

  it("offers the one free address though this daemon's index knows none of the other daemon's leases", async () => {
    const db = await pgBackend.db();
    const store = await db.open();
    await store.create('subnets', SUBNET.name, SUBNET);
    const m = await testEnv(async () => {}, { store });
    try {
      const mac = '52:54:00:aa:00:01';
      // Where this client's scan starts (the default hashed start, on an empty table): the address just before it
      // is the one left free, so a scan from the start passes every other one first.
      const other = await db.open();
      const first = (await loadLeaseTable({ store: other, bus: createBus(), log: silentLogger })).allocate(
        subnet,
        { mac },
        undefined,
        undefined,
      ).address!;
      const free = ipToInt(first) === subnet.start ? subnet.end : ipToInt(first) - 1;
      const now = new Date().toISOString();
      const expiresAt = new Date(Date.now() + 3_600_000).toISOString();
      const filled = [];
      for (let ip = subnet.start, i = 0; ip <= subnet.end; ip++, i++)
        if (ip !== free)
          filled.push(
            other.claimLease!({
              doc: {
                address: intToIp(ip),
                subnet: SUBNET.name,
                mac: `52:54:00:bb:00:${i.toString(16).padStart(2, '0')}`,
                state: 'bound',
                expiresAt,
                updatedAt: now,
              },
              now,
            }),
          );
      expect((await Promise.all(filled)).every((r) => r.ok)).toBe(true);
      const { offer, ack } = await m.dora(mac);
      expect(offer?.yiaddr).toBe(intToIp(free));
      expect(msgType(ack)).toBe(MessageType.ACK);
      expect((await other.get('leases', intToIp(free)))?.doc).toMatchObject({ mac, state: 'bound' });
    } finally {
      await m.close();
    }
  }, 30_000);
});
