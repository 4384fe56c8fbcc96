/** The subnet model's range rules (issue 13): no range is a subnet of reservations; half a range is refused. */
import { describe, expect, it } from 'vitest';
import { Subnet } from '../../src/model/subnet.js';

const base = { name: 's', subnet: '10.0.0.0/24' };
const messages = (v: unknown) => {
  const r = Subnet.safeParse(v);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
};

describe('Subnet ranges', () => {
  it('accepts a subnet without activeStart/activeEnd (reservations and INFORM only), with or without onlyReservations', () => {
    expect(messages(base)).toEqual([]);
    expect(messages({ ...base, onlyReservations: true })).toEqual([]);
    expect(Subnet.parse(base).activeStart).toBeUndefined();
  });

  it('refuses half a range, naming the missing end', () => {
    const fix =
      'set both activeStart and activeEnd for a dynamic range, or neither for a subnet that serves reservations only';
    expect(messages({ ...base, activeStart: '10.0.0.10' })).toEqual([`activeEnd: ${fix}`]);
    expect(messages({ ...base, activeEnd: '10.0.0.10' })).toEqual([`activeStart: ${fix}`]);
  });

  it('still checks a range that is given', () => {
    expect(messages({ ...base, activeStart: '10.0.0.10', activeEnd: '10.0.0.20' })).toEqual([]);
    expect(messages({ ...base, activeStart: '10.0.0.20', activeEnd: '10.0.0.10' })).toEqual([
      'activeEnd: activeEnd 10.0.0.10 is before activeStart 10.0.0.20',
    ]);
    expect(messages({ ...base, activeStart: '10.0.0.10', activeEnd: '10.0.1.20' })).toEqual([
      'activeEnd: 10.0.1.20 is outside 10.0.0.0/24',
    ]);
  });
});
