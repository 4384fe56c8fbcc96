import { describe, expect, it } from 'vitest';
import { ChecksumFileError, digestFor, parseChecksums } from '../../src/images/checksums.js';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const S512 = 'c'.repeat(128);

describe('checksum files', () => {
  it('SHA256SUMS (Debian, coreutils): text and binary mode, ./ prefixes, junk lines skipped', () => {
    const e = parseChecksums(
      'sha256sums',
      `${A}  ./netboot/debian-installer/amd64/linux\n${B} *initrd.gz\nnot a line\n\n# comment\n`,
    );
    expect(e).toEqual([
      { name: 'netboot/debian-installer/amd64/linux', algorithm: 'sha256', digest: A },
      { name: 'initrd.gz', algorithm: 'sha256', digest: B },
    ]);
    expect(digestFor(e, 'linux')?.digest).toBe(A); // by last segment when the name is not given in full
    expect(digestFor(e, 'netboot/debian-installer/amd64/linux')?.digest).toBe(A);
    expect(digestFor(e, 'missing')).toBeUndefined();
  });

  it("Talos's sha256sum.txt is the same format", () => {
    const e = parseChecksums('sha256sums', `${A}  vmlinuz-amd64\n${B}  initramfs-amd64.xz\n`);
    expect(digestFor(e, 'initramfs-amd64.xz')?.digest).toBe(B);
  });

  it("Flatcar's DIGESTS: sections by algorithm; MD5 and SHA-1 alone are never enough", () => {
    const text = [
      '# MD5 HASH',
      `${'d'.repeat(32)}  flatcar_production_pxe.vmlinuz`,
      '# SHA1 HASH',
      `${'e'.repeat(40)}  flatcar_production_pxe.vmlinuz`,
      `${'e'.repeat(40)}  only_sha1.bin`,
      '# SHA512 HASH',
      `${S512}  flatcar_production_pxe.vmlinuz`,
      `${'f'.repeat(64)}  wrong_length_in_sha512_section`,
    ].join('\n');
    const e = parseChecksums('digests', text);
    expect(digestFor(e, 'flatcar_production_pxe.vmlinuz')).toEqual({
      name: 'flatcar_production_pxe.vmlinuz',
      algorithm: 'sha512',
      digest: S512,
    });
    expect(digestFor(e, 'only_sha1.bin')).toBeUndefined();
    expect(e.find((x) => x.name === 'wrong_length_in_sha512_section')).toBeUndefined();
  });

  it("Debian's Release: only the SHA256 field, with sizes", () => {
    const text = [
      'Origin: Debian',
      'MD5Sum:',
      ` ${'1'.repeat(32)}  1234 main/installer-amd64/current/images/SHA256SUMS`,
      'SHA256:',
      ` ${A}   5678 main/installer-amd64/current/images/SHA256SUMS`,
      ` ${B}     90 main/binary-amd64/Release`,
      'Acquire-By-Hash: yes',
    ].join('\n');
    const e = parseChecksums('debian-release', text);
    expect(e).toHaveLength(2);
    expect(digestFor(e, 'main/installer-amd64/current/images/SHA256SUMS')).toMatchObject({ digest: A, size: 5678 });
  });

  it('refuses an empty file and a name given twice with different digests', () => {
    expect(() => parseChecksums('sha256sums', 'hello\n')).toThrow(ChecksumFileError);
    expect(() => parseChecksums('sha256sums', `${A}  x\n${B}  x\n`)).toThrow(/twice/);
    const e = parseChecksums('sha256sums', `${A}  a/x\n${B}  b/x\n`);
    expect(() => digestFor(e, 'x')).toThrow(/several entries/);
  });
});
