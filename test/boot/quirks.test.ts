/** Operator firmware quirks: validated as data (the `firmwareQuirks` pref), put before the built-in table. */
import { describe, expect, it } from 'vitest';
import { decideBoot } from '../../src/boot/decide.js';
import { DEFAULT_QUIRKS, findQuirks, quirkTable } from '../../src/boot/quirks.js';
import { Prefs } from '../../src/model/profile.js';
import { FirmwareQuirk } from '../../src/model/quirk.js';

const issues = (v: unknown) => {
  const r = FirmwareQuirk.safeParse(v);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
};

describe('a firmware quirk as operators write it', () => {
  it('accepts each match field alone and normalises a MAC prefix', () => {
    expect(issues({ match: { arch: 7 }, blksize: 1024, why: 'QEMU UEFI TFTP client' })).toEqual([]);
    expect(issues({ match: { vendorClass: 'PXEClient:Arch:00007' }, loader: 'snponly.efi', why: 'x' })).toEqual([]);
    const q = FirmwareQuirk.parse({ match: { macPrefix: '00-15-5D' }, loader: 'snponly.efi', why: 'Hyper-V' });
    expect(q.match.macPrefix).toBe('00:15:5d');
  });

  it('names the field of each mistake', () => {
    expect(issues({ match: {}, blksize: 1024, why: 'x' })).toEqual([
      expect.stringMatching(/^match: give at least one of vendorClass, arch, macPrefix/),
    ]);
    expect(issues({ match: { arch: 7 }, blksize: 7, why: 'x' })).toEqual([expect.stringMatching(/^blksize: /)]);
    expect(issues({ match: { arch: 7 }, blksize: 65465, why: 'x' })).toEqual([expect.stringMatching(/^blksize: /)]);
    expect(issues({ match: { arch: 7 }, blksize: 1024.5, why: 'x' })).toEqual([expect.stringMatching(/^blksize: /)]);
    for (const loader of ['../etc/passwd', 'efi/snponly.efi', '/snponly.efi', 'a\\b', '.hidden', '']) {
      expect(issues({ match: { arch: 7 }, loader, why: 'x' }), loader).toEqual([expect.stringMatching(/^loader: /)]);
    }
    expect(issues({ match: { arch: 7 }, blksize: 1024 })).toEqual([expect.stringMatching(/^why: /)]);
    expect(issues({ match: { arch: 7 }, blksize: 1024, why: '  ' })).toEqual([expect.stringMatching(/^why: /)]);
    expect(issues({ match: { arch: 7 }, why: 'does nothing' })).toEqual([
      'loader: a quirk sets loader, blksize or both',
    ]);
    expect(issues({ match: { macPrefix: '00:15:5' }, blksize: 1024, why: 'x' })).toEqual([
      expect.stringMatching(/^match.macPrefix: expected a MAC prefix/),
    ]);
    expect(issues({ match: { arch: 7, vendor: 'x' }, blksize: 1024, why: 'x' })).toEqual([
      expect.stringMatching(/^match: .*vendor/),
    ]);
  });

  it('is a pref: empty by default, its errors carry the entry index', () => {
    expect(Prefs.parse({}).firmwareQuirks).toEqual([]);
    const r = Prefs.safeParse({ firmwareQuirks: [{ match: { arch: 7 }, blksize: 1024, why: 'x' }, { match: {} }] });
    expect(r.success).toBe(false);
    expect(r.error?.issues.map((i) => i.path.join('.'))).toEqual(
      expect.arrayContaining(['firmwareQuirks.1.match', 'firmwareQuirks.1.why']),
    );
  });
});

describe('the quirk table: operator entries first', () => {
  const hyperV = {
    mac: '00:15:5d:01:02:03',
    arch: 7,
    vendorClass: 'PXEClient:Arch:00007:UNDI:003000',
    prefs: { unknownBootEnv: 'discovery' },
    server: { address: '10.99.1.1', httpPort: 8091 },
    mode: 'full' as const,
  };

  it('with no operator entries it is the built-in table', () => {
    expect(quirkTable([])).toEqual(DEFAULT_QUIRKS);
    const d = decideBoot({ ...hyperV, quirks: quirkTable([]) });
    expect(d.boot && d.filename).toBe('snponly.efi');
    expect(d.reason).toMatch(/quirk: snponly.efi instead \(Hyper-V Gen2 .*\) \[built-in\]/);
  });

  it('an operator entry overrides a built-in one for the fields it sets, and the reason names it', () => {
    const operator = [
      FirmwareQuirk.parse({ match: { arch: 99 }, blksize: 512, why: 'not this one' }),
      FirmwareQuirk.parse({
        match: { macPrefix: '00:15:5D' },
        loader: 'ipxe.efi',
        blksize: 1024,
        why: 'our iPXE build drives the synthetic NIC',
      }),
    ];
    const table = quirkTable(operator);
    expect(table.slice(2)).toEqual(DEFAULT_QUIRKS);
    expect(findQuirks(table, hyperV)).toEqual({
      loader: { name: 'ipxe.efi', why: 'our iPXE build drives the synthetic NIC', from: 'prefs firmwareQuirks[1]' },
      blksize: { value: 1024, why: 'our iPXE build drives the synthetic NIC', from: 'prefs firmwareQuirks[1]' },
    });
    const d = decideBoot({ ...hyperV, quirks: table });
    expect(d.boot && d.filename).toBe('ipxe.efi');
    expect(d.boot && d.blksize).toBe(1024);
    expect(d.reason).toMatch(
      /quirk: ipxe.efi instead \(our iPXE build drives the synthetic NIC\) \[prefs firmwareQuirks\[1\]\]/,
    );
    expect(d.reason).toMatch(/blksize capped at 1024 \(our iPXE build .*\) \[prefs firmwareQuirks\[1\]\]/);
  });

  it('an operator entry that sets only blksize leaves the built-in loader in place', () => {
    const table = quirkTable([FirmwareQuirk.parse({ match: { arch: 7 }, blksize: 1024, why: 'QEMU UEFI TFTP' })]);
    const d = decideBoot({ ...hyperV, quirks: table });
    expect(d.boot && d.filename).toBe('snponly.efi');
    expect(d.boot && d.blksize).toBe(1024);
  });
});
