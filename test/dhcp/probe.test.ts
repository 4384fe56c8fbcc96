/**
 * probeBeforeOffer (issue 13; ISC dhcpd's ping-check, dnsmasq's ping): the state machine asks an injected
 * `probe(address)` before offering a new address; one that answers is quarantined as a DECLINE would
 * (RFC 2131 4.3.3) and the next is probed. Socket-free: the probe is a function of the test.
 */
import { describe, expect, it } from 'vitest';
import { MessageType } from '../../src/dhcp/options.js';
import { Reservation } from '../../src/model/subnet.js';
import { bound, machine, pkt, replied, silent, subnet } from './machine-harness.js';

const C = 'aa:00:00:00:03:01';
const probing = () => subnet({ probeBeforeOffer: true });
/** A probe that records what it was asked and answers `inUse(address)`. */
function recorder(inUse: (a: string) => boolean) {
  const asked: string[] = [];
  const probe = async (a: string) => {
    asked.push(a);
    return inUse(a);
  };
  return { asked, probe };
}

describe('probeBeforeOffer', () => {
  it('an address that answers is quarantined and the next free one offered; each probed once', async () => {
    const { asked, probe } = recorder((a) => a === '10.99.1.100');
    const m = await machine({ probe });
    const o = replied(await m.ask(pkt(MessageType.DISCOVER, C), probing()));
    expect(o.reply.yiaddr).toBe('10.99.1.101');
    expect(asked).toEqual(['10.99.1.100', '10.99.1.101']);
    expect(m.leases.get('10.99.1.100')?.state).toBe('declined');
    expect(m.leases.get('10.99.1.101')).toMatchObject({ state: 'offered', mac: C });
    // The quarantined address is not offered to the next client either.
    const next = replied(await m.ask(pkt(MessageType.DISCOVER, 'aa:00:00:00:03:02'), probing()));
    expect(next.reply.yiaddr).toBe('10.99.1.102');
  });

  it('off by default: no probe asked', async () => {
    const { asked, probe } = recorder(() => true);
    const m = await machine({ probe });
    expect(replied(await m.ask(pkt(MessageType.DISCOVER, C))).reply.yiaddr).toBe('10.99.1.100');
    expect(asked).toEqual([]);
  });

  it('at most 3 addresses probed for one DISCOVER, then silence (the client retries)', async () => {
    const { asked, probe } = recorder(() => true);
    const m = await machine({ probe });
    const s = silent(await m.ask(pkt(MessageType.DISCOVER, C), probing()));
    expect(s.reason).toBe('3 addresses probed, all in use');
    expect(asked).toHaveLength(3);
  });

  it("never for a reservation or the client's own lease (the client itself may answer)", async () => {
    const { asked, probe } = recorder(() => true);
    const res = Reservation.parse({ subnet: 'lab', mac: C, address: '10.99.1.50' });
    const m = await machine({ reservations: [res], probe });
    expect(replied(await m.ask(pkt(MessageType.DISCOVER, C), probing())).reply.yiaddr).toBe('10.99.1.50');
    const own = await bound(m, 'aa:00:00:00:03:03');
    asked.length = 0;
    const again = replied(await m.ask(pkt(MessageType.DISCOVER, 'aa:00:00:00:03:03'), probing()));
    expect(again.reply.yiaddr).toBe(own);
    expect(asked).toEqual([]);
  });

  it('a probe that throws, or a server without a probe: offered unprobed, with a warning', async () => {
    const m = await machine({
      probe: async () => {
        throw new Error('EPERM');
      },
    });
    expect(replied(await m.ask(pkt(MessageType.DISCOVER, C), probing())).reply.yiaddr).toBe('10.99.1.100');
    expect(m.warnings).toContain('dhcp: address probe failed; offering unprobed');
    const n = await machine();
    expect(replied(await n.ask(pkt(MessageType.DISCOVER, C), probing())).reply.yiaddr).toBe('10.99.1.100');
    expect(n.warnings).toContain('dhcp: probeBeforeOffer is set but this server has no probe; offering unprobed');
  });
});
