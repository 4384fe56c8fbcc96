/**
 * Boot sessions (src/provision/sessions.ts): the last boot offer per MAC, found by the client's address, whether
 * the address came with the offer (server ACK, proxy 4011 ciaddr) or with a lease acknowledged later.
 */
import { describe, expect, it } from 'vitest';
import type { BootOffer } from '../../src/boot/session.js';
import { createBus } from '../../src/events.js';
import { bootSessions } from '../../src/provision/sessions.js';

const offer = (over: Partial<BootOffer> = {}): BootOffer => ({
  mac: '52:54:00:aa:00:01',
  mode: 'server',
  bootEnv: 'local',
  filename: 'snponly.efi',
  reason: 'x86-64 UEFI; quirk',
  blksize: { value: 1024, why: 'NIC X UEFI TFTP [prefs firmwareQuirks[0]]' },
  ...over,
});

describe('boot sessions', () => {
  it('an offer with an address caps that address; the why names the quirk', () => {
    const s = bootSessions(undefined);
    s.record(offer({ mode: 'proxy', address: '10.0.0.5' }));
    expect(s.quirkCap('10.0.0.5')).toEqual({
      value: 1024,
      source: 'quirk',
      why: 'firmware quirk: NIC X UEFI TFTP [prefs firmwareQuirks[0]]',
    });
    expect(s.at('10.0.0.5')?.mode).toBe('proxy');
    expect(s.quirkCap('10.0.0.6')).toBeUndefined();
  });

  it('an offer without an address applies once a lease for that MAC is acknowledged', () => {
    const bus = createBus();
    const s = bootSessions(bus);
    s.record(offer({ mac: '52:54:00:AA:00:02' }));
    expect(s.quirkCap('10.0.0.7')).toBeUndefined();
    bus.emit({
      type: 'lease.acked',
      key: '10.0.0.7',
      data: { mac: '52:54:00:aa:00:02', subnet: 'lab', expiresAt: '2099-01-01T00:00:00.000Z' },
    });
    expect(s.quirkCap('10.0.0.7')?.value).toBe(1024);
    // Another MAC's lease at that address: that MAC has no offer, so no cap.
    bus.emit({
      type: 'lease.acked',
      key: '10.0.0.7',
      data: { mac: '52:54:00:aa:00:03', subnet: 'lab', expiresAt: '2099-01-01T00:00:00.000Z' },
    });
    expect(s.quirkCap('10.0.0.7')).toBeUndefined();
    s.close();
    bus.emit({
      type: 'lease.acked',
      key: '10.0.0.8',
      data: { mac: '52:54:00:aa:00:02', subnet: 'lab', expiresAt: '2099-01-01T00:00:00.000Z' },
    });
    expect(s.quirkCap('10.0.0.8')).toBeUndefined();
  });

  it("the MAC's latest offer counts: iPXE's next request without the quirk lifts the cap", () => {
    const s = bootSessions(undefined);
    s.record(offer({ address: '10.0.0.9' }));
    expect(s.quirkCap('10.0.0.9')?.value).toBe(1024);
    s.record(offer({ address: '10.0.0.9', filename: 'http://x/boot/ipxe', blksize: undefined }));
    expect(s.quirkCap('10.0.0.9')).toBeUndefined();
  });

  it('drops malformed offers and addresses without throwing, and stays bounded', () => {
    const s = bootSessions(undefined, { max: 3 });
    expect(() => s.record(offer({ mac: 'not-a-mac', address: '10.0.0.1' }))).not.toThrow();
    expect(() => s.record(undefined as unknown as BootOffer)).not.toThrow();
    s.record(offer({ mac: '52:54:00:aa:00:10', address: '999.0.0.1' }));
    expect(s.size()).toEqual({ macs: 1, addresses: 0 });
    for (let i = 0; i < 10; i++) s.record(offer({ mac: `52:54:00:aa:01:0${i}`, address: `10.0.1.${i}` }));
    expect(s.size()).toEqual({ macs: 3, addresses: 3 });
    expect(s.quirkCap('10.0.1.9')?.value).toBe(1024);
    expect(s.quirkCap('10.0.1.0')).toBeUndefined();
  });
});
