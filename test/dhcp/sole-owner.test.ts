/**
 * A subnet one daemon owns alone (issue 17, `owners: [its serverId]`): no other daemon answers its clients, so its
 * offers are not claimed in the shared lease table (one PostgreSQL transaction per DORA instead of two); its ACKs
 * still are. A subnet with an HA pair or without owners still claims each offer. PostgreSQL only.
 */
import { describe, expect, it } from 'vitest';
import { MessageType } from '../../src/dhcp/options.js';
import { soleOwner } from '../../src/dhcp/owners.js';
import type { LeaseClaim } from '../../src/store/store.js';
import { backends, skipUnavailable } from '../store/backends.js';
import { msgType, SUBNET, testEnv } from './helpers.js';

const pgBackend = backends(import.meta.filename).find((x) => x.name === 'postgres')!;

describe('offers in a subnet one daemon owns alone', () => {
  it('soleOwner: this daemon, and only it, among the owners', () => {
    expect(soleOwner({ owners: ['rack-a'] }, 'rack-a')).toBe(true);
    expect(soleOwner({ owners: ['rack-a', 'rack-b'] }, 'rack-a')).toBe(false);
    expect(soleOwner({ owners: ['rack-b'] }, 'rack-a')).toBe(false);
    expect(soleOwner({}, 'rack-a')).toBe(false);
    expect(soleOwner({ owners: ['rack-a'] }, undefined)).toBe(false);
  });

  describe('on PostgreSQL', () => {
    skipUnavailable(pgBackend);

    const claimsOfOneDora = async (owners: string[] | undefined) => {
      const db = await pgBackend.db();
      const store = await db.open();
      await store.create('subnets', SUBNET.name, owners ? { ...SUBNET, owners } : SUBNET);
      const states: string[] = [];
      const claim = store.claimLease!.bind(store);
      store.claimLease = (c: LeaseClaim) => {
        states.push(String(c.doc.state));
        return claim(c);
      };
      const m = await testEnv(async () => {}, { store, serverId: 'rack-a' });
      try {
        const { offer, ack } = await m.dora('52:54:00:aa:00:01');
        expect(offer?.yiaddr).toBeTruthy();
        expect(msgType(ack)).toBe(MessageType.ACK);
        const row = (await store.get('leases', offer!.yiaddr))?.doc;
        expect(row).toMatchObject({ mac: '52:54:00:aa:00:01', state: 'bound', serverId: 'rack-a' });
        return states;
      } finally {
        await m.close();
      }
    };

    it('its own subnet: only the ACK is claimed', async () => {
      expect(await claimsOfOneDora(['rack-a'])).toEqual(['bound']);
    }, 30_000);

    it('an HA pair, or no owners: the offer is claimed first', async () => {
      expect(await claimsOfOneDora(['rack-a', 'rack-b'])).toEqual(['offered', 'bound']);
      expect(await claimsOfOneDora(undefined)).toEqual(['offered', 'bound']);
    }, 30_000);
  });
});
