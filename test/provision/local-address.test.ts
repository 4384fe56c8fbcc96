/**
 * localAddressFor runs on every TFTP render: it must not list the interfaces each time, and must not throw when
 * os.networkInterfaces() fails with EMFILE (descriptor exhaustion, e.g. under a TFTP flood).
 */
import { afterEach, describe, expect, it, vi } from 'vitest';

const calls = { n: 0, fail: false };
vi.mock('node:os', async (orig) => {
  const real = await orig<typeof import('node:os')>();
  return {
    ...real,
    networkInterfaces: () => {
      calls.n++;
      if (calls.fail)
        throw Object.assign(new Error('EMFILE: too many open files, uv_interface_addresses'), { code: 'EMFILE' });
      return {
        eth0: [
          {
            address: '10.1.2.3',
            netmask: '255.255.255.0',
            family: 'IPv4',
            mac: '',
            internal: false,
            cidr: '10.1.2.3/24',
          },
        ],
      };
    },
  };
});

afterEach(() => {
  vi.useRealTimers();
});

describe('localAddressFor', () => {
  it('answers from a cached interface list, keeps the last good one when listing fails, and refreshes later', async () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const { localAddressFor } = await import('../../src/provision/local-address.js');
    expect(localAddressFor('10.1.2.50')).toBe('10.1.2.3');
    expect(localAddressFor('10.9.9.9')).toBeUndefined();
    for (let i = 0; i < 100; i++) localAddressFor('10.1.2.50');
    expect(calls.n).toBe(1);
    calls.fail = true;
    vi.advanceTimersByTime(10_000);
    expect(() => localAddressFor('10.1.2.50')).not.toThrow();
    expect(localAddressFor('10.1.2.50')).toBe('10.1.2.3');
    expect(calls.n).toBe(2);
    calls.fail = false;
    vi.advanceTimersByTime(10_000);
    expect(localAddressFor('10.1.2.50')).toBe('10.1.2.3');
    expect(calls.n).toBe(3);
  });
});
