import { describe, expect, it } from 'vitest';
import { Bmc } from '../../src/model/machine.js';

const ok = (b: Record<string, unknown>) => Bmc.safeParse(b).success;

describe('machine bmc settings', () => {
  it('takes a host name, an IPv4 or IPv6 address, and for Redfish an http(s) base URL', () => {
    expect(ok({ driver: 'ipmi', address: 'bmc-r1-07.example' })).toBe(true);
    expect(ok({ driver: 'ipmi', address: '10.0.0.7', cipherSuite: 3 })).toBe(true);
    expect(ok({ driver: 'redfish', address: '[fd00::7]' })).toBe(true);
    expect(ok({ driver: 'redfish', address: 'http://10.250.0.254:8000' })).toBe(true);
    expect(ok({ driver: 'redfish', address: 'https://bmc7/', systemId: 'lab-vm-1' })).toBe(true);
  });

  it('refuses anything else, naming the field', () => {
    for (const address of ['bmc 7', 'ftp://bmc7', 'http://bmc7/redfish/v1?x=1', 'bmc7;reboot', '']) {
      const r = Bmc.safeParse({ driver: 'redfish', address });
      expect(r.success, address).toBe(false);
      expect(r.error?.issues[0]?.path).toEqual(['address']);
    }
    const ipmiUrl = Bmc.safeParse({ driver: 'ipmi', address: 'http://10.0.0.7' });
    expect(ipmiUrl.success).toBe(false);
    expect(ipmiUrl.error?.issues[0]?.path).toEqual(['address']);
    expect(ok({ driver: 'ipmi', address: '10.0.0.7', cipherSuite: 18 })).toBe(false);
    expect(ok({ driver: 'ipmi', address: '10.0.0.7', systemId: '../x' })).toBe(false);
    expect(ok({ driver: 'smoke-signals', address: '10.0.0.7' })).toBe(false);
  });
});
