import { describe, expect, it } from 'vitest';
import { type BootFacts, decideBoot, IPXE_NO_PXEDHCP } from '../../src/boot/decide.js';
import { DEFAULT_QUIRKS, findQuirks, type Quirk } from '../../src/boot/quirks.js';

const base: BootFacts = {
  mac: '52:54:00:00:00:01',
  prefs: { unknownBootEnv: 'discovery' },
  server: { address: '10.99.1.1', httpPort: 8080 },
  mode: 'full',
};
const pxe = (arch: number, extra: Partial<BootFacts> = {}): BootFacts => ({
  ...base,
  arch,
  vendorClass: `PXEClient:Arch:${String(arch).padStart(5, '0')}:UNDI:003000`,
  ...extra,
});

describe('boot decision table', () => {
  const table: [string, BootFacts, string | false][] = [
    ['BIOS PXE -> undionly.kpxe', pxe(0), 'undionly.kpxe'],
    ['x86-64 UEFI (7) -> ipxe.efi', pxe(7), 'ipxe.efi'],
    ['x86-64 UEFI (9) -> ipxe.efi', pxe(9), 'ipxe.efi'],
    ['arm64 UEFI (11) -> ipxe-arm64.efi', pxe(11), 'ipxe-arm64.efi'],
    ['arm64 without its loader -> nothing', pxe(11, { hasLoader: () => false }), false],
    ['iPXE -> the HTTP script', pxe(0, { userClass: ['iPXE'] }), 'http://10.99.1.1:8080/boot/ipxe'],
    [
      'UEFI HTTP Boot -> URL',
      { ...base, arch: 16, vendorClass: 'HTTPClient:Arch:00016:UNDI:003000' },
      'http://10.99.1.1:8080/files/ipxe.efi',
    ],
    ['plain DHCP client -> nothing', { ...base, vendorClass: 'udhcp 1.35.0' }, false],
    ['unmanaged subnet -> nothing', pxe(7, { mode: 'unmanaged' }), false],
    ['unknown arch -> nothing', pxe(6), false],
  ];
  for (const [what, facts, want] of table) {
    it(what, () => {
      const d = decideBoot(facts);
      expect(d.reason.length).toBeGreaterThan(10);
      if (want === false) expect(d.boot).toBe(false);
      else {
        expect(d.boot).toBe(true);
        if (d.boot) {
          expect(d.filename).toBe(want);
          expect(d.nextServer).toBe('10.99.1.1');
        }
      }
    });
  }

  it('iPXE gets 175.176 no-pxedhcp in full mode, never in proxy replies', () => {
    const full = decideBoot(pxe(0, { userClass: ['iPXE'] }));
    const proxy = decideBoot(pxe(0, { userClass: ['iPXE'], mode: 'proxy' }));
    expect(full.boot && full.options).toContainEqual(IPXE_NO_PXEDHCP);
    expect(proxy.boot && proxy.options).toEqual([]);
  });

  it('HTTP Boot replies carry option 60 HTTPClient', () => {
    const d = decideBoot({ ...base, arch: 16, vendorClass: 'HTTPClient:Arch:00016:UNDI:003000' });
    expect(d.boot && d.options.find((o) => o.code === 60)?.value.toString()).toBe('HTTPClient');
  });

  it('the reason names the machine or the unknownBootEnv', () => {
    expect(decideBoot(pxe(7)).reason).toMatch(/unknown machine \(unknownBootEnv discovery\)/);
    const d = decideBoot(pxe(7, { machine: { uuid: 'u', name: 'web1', bootEnv: 'ubuntu' } }));
    expect(d.reason).toMatch(/machine 'web1' \(bootEnv ubuntu\)/);
    expect(d.boot && d.bootEnv).toBe('ubuntu');
  });

  it('quirks are data: a table entry swaps the loader and caps blksize, and the reason says why', () => {
    const quirks: Quirk[] = [
      { match: { macPrefix: '52:54:00', arch: 7 }, loader: 'snponly.efi', why: 'test firmware X' },
      { match: { vendorClass: 'PXEClient:Arch:00000' }, blksize: 1024, why: 'old BIOS ROM' },
    ];
    const efi = decideBoot(pxe(7, { quirks }));
    expect(efi.boot && efi.filename).toBe('snponly.efi');
    expect(efi.reason).toMatch(/quirk: snponly.efi instead \(test firmware X\)/);
    const bios = decideBoot(pxe(0, { quirks }));
    expect(bios.boot && bios.filename).toBe('undionly.kpxe');
    expect(bios.boot && bios.blksize).toBe(1024);
    expect(
      decideBoot(pxe(9, { quirks })).boot && (decideBoot(pxe(9, { quirks })) as { filename: string }).filename,
    ).toBe('ipxe.efi');
  });

  it('the default table sends Hyper-V Gen2 (00:15:5d) to snponly.efi', () => {
    expect(findQuirks(DEFAULT_QUIRKS, { mac: '00:15:5D:01:02:03', arch: 7 }).loader?.name).toBe('snponly.efi');
    expect(findQuirks(DEFAULT_QUIRKS, { mac: '52:54:00:01:02:03', arch: 7 }).loader).toBeUndefined();
  });
});
