/** The TFTP blksize cap arithmetic (pure): machine param, subnet, firmware quirk; the smallest wins, with its reason. */
import { describe, expect, it } from 'vitest';
import { BLKSIZE_PARAM, chooseCap, paramCap, smallestCap, subnetCap } from '../../src/boot/caps.js';
import { withholdSecure } from '../../src/boot/render.js';
import { Subnet } from '../../src/model/subnet.js';

const subnet = (name: string, cidr: string, tftpMaxBlksize?: number) =>
  Subnet.parse({ name, subnet: cidr, proxy: true, ...(tftpMaxBlksize ? { tftpMaxBlksize } : {}) });

describe('subnet caps', () => {
  it('the subnets containing the address apply, the smallest wins; others and uncapped ones do not', () => {
    const subnets = [
      subnet('wide', '10.0.0.0/8', 1400),
      subnet('rack', '10.1.2.0/24', 1024),
      subnet('other', '10.9.0.0/16', 512),
      subnet('plain', '10.1.0.0/16'),
    ];
    expect(subnetCap(subnets, '10.1.2.3')).toEqual({
      value: 1024,
      source: 'subnet',
      why: "subnet 'rack' (10.1.2.0/24) tftpMaxBlksize 1024",
    });
    expect(subnetCap(subnets, '10.1.3.3')?.value).toBe(1400);
    expect(subnetCap(subnets, '192.168.0.1')).toBeUndefined();
  });

  it('smallestCap keeps the first of equal caps', () => {
    const a = { value: 1024, source: 'machine' as const, why: 'a' };
    const b = { value: 1024, source: 'subnet' as const, why: 'b' };
    expect(smallestCap([undefined, a, b])).toBe(a);
    expect(smallestCap([])).toBeUndefined();
  });
});

describe('caps from facts, without a store', () => {
  it('paramCap names where the value came from, and reports a value that is not a blksize', () => {
    expect(paramCap('vm', { values: {}, sources: {} })).toEqual({});
    expect(paramCap('vm', { values: { [BLKSIZE_PARAM]: 1024 }, sources: { [BLKSIZE_PARAM]: 'profile:q' } })).toEqual({
      cap: { value: 1024, source: 'machine', why: `param ${BLKSIZE_PARAM} from profile:q of machine 'vm' = 1024` },
    });
    expect(paramCap('vm', { values: { [BLKSIZE_PARAM]: 4 }, sources: { [BLKSIZE_PARAM]: 'machine' } }).problem).toBe(
      `param ${BLKSIZE_PARAM} from machine of machine 'vm' is 4, not an integer in 8..65464: ignored`,
    );
  });

  it('chooseCap lists machine, subnet, quirk in that order and keeps the smallest', () => {
    const subnets = [subnet('rack', '10.1.2.0/24', 1024)];
    const machine = { cap: { value: 800, source: 'machine' as const, why: 'm' } };
    const quirk = { value: 600, source: 'quirk' as const, why: 'q' };
    const r = chooseCap({ address: '10.1.2.9', machine, subnets, quirk });
    expect(r.all.map((c) => c.source)).toEqual(['machine', 'subnet', 'quirk']);
    expect(r.cap).toBe(quirk);
    expect(chooseCap({ address: '10.1.2.9', machine, subnets }).cap).toBe(machine.cap);
    expect(chooseCap({ address: '10.9.9.9', subnets }).cap).toBeUndefined();
    expect(chooseCap({ address: '10.1.2.9', machine: { problem: 'bad' }, subnets }).problems).toEqual(['bad']);
  });
});

describe('withholdSecure', () => {
  it('blanks secure params for anyone but the machine and names those that had a value', () => {
    const values = { user: 'u', password: 'p', key: '' };
    expect(withholdSecure(values, undefined)).toEqual({ values, withheld: [] });
    expect(withholdSecure(values, new Set(['password', 'key']))).toEqual({
      values: { user: 'u', password: '', key: '' },
      withheld: ['password'],
    });
  });
});
