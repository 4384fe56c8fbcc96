/** gpgv against a keyring: a good signature names its signer; altered bytes, an unknown key, a signer the manifest
 * does not allow and a file that is no signature are each refused with their own reason. */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SignatureError, verifyClearsigned, verifyDetached } from '../../src/images/verify.js';
import { makeTestKey, type TestKey } from './gpg.js';

let dir: string;
let key: TestKey;
let stranger: TestKey;
const f = (n: string) => path.join(dir, n);

beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'plinth-verify-'));
  key = makeTestKey();
  stranger = makeTestKey('Someone Else <else@test.invalid>');
  key.exportTo(f('keyring.gpg'));
  writeFileSync(f('SHA256SUMS'), `${'a'.repeat(64)}  vmlinuz\n`);
  key.detachSign(f('SHA256SUMS'), f('SHA256SUMS.sig'));
  stranger.detachSign(f('SHA256SUMS'), f('SHA256SUMS.stranger.sig'));
  key.clearSign(f('SHA256SUMS'), f('InRelease'));
});
afterAll(() => {
  key.remove();
  stranger.remove();
  rmSync(dir, { recursive: true, force: true });
});

const problem = async (p: Promise<unknown>) => {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SignatureError);
  return err as SignatureError;
};

describe('OpenPGP signatures (gpgv)', () => {
  it('a good detached signature returns the signer, who may be required by fingerprint', async () => {
    expect(await verifyDetached(f('keyring.gpg'), f('SHA256SUMS.sig'), f('SHA256SUMS'), 'SHA256SUMS')).toBe(
      key.fingerprint,
    );
    const spaced = key.fingerprint.replace(/(.{4})/g, '$1 ').toLowerCase();
    expect(await verifyDetached(f('keyring.gpg'), f('SHA256SUMS.sig'), f('SHA256SUMS'), 'x', [spaced])).toBe(
      key.fingerprint,
    );
  });

  it('altered bytes: bad signature', async () => {
    writeFileSync(f('altered'), `${'b'.repeat(64)}  vmlinuz\n`);
    const e = await problem(verifyDetached(f('keyring.gpg'), f('SHA256SUMS.sig'), f('altered'), 'SHA256SUMS'));
    expect(e.problem).toBe('bad-signature');
    expect(e.message).toContain('BAD');
  });

  it('a key not in the keyring: unknown key, named', async () => {
    const e = await problem(
      verifyDetached(f('keyring.gpg'), f('SHA256SUMS.stranger.sig'), f('SHA256SUMS'), 'SHA256SUMS'),
    );
    expect(e.problem).toBe('unknown-key');
    expect(e.message).toContain(stranger.fingerprint.slice(-16));
  });

  it('a key in the keyring but not among the allowed fingerprints is refused', async () => {
    const e = await problem(
      verifyDetached(f('keyring.gpg'), f('SHA256SUMS.sig'), f('SHA256SUMS'), 'SHA256SUMS', ['0'.repeat(40)]),
    );
    expect(e.problem).toBe('signer-not-allowed');
  });

  it('a file that is no signature is refused', async () => {
    writeFileSync(f('junk.sig'), 'this is not a signature');
    const e = await problem(verifyDetached(f('keyring.gpg'), f('junk.sig'), f('SHA256SUMS'), 'SHA256SUMS'));
    expect(['no-signature', 'bad-signature']).toContain(e.problem);
  });

  it('a clear-signed file: the signed text is extracted', async () => {
    expect(await verifyClearsigned(f('keyring.gpg'), f('InRelease'), f('out.txt'), 'InRelease')).toBe(key.fingerprint);
    expect(readFileSync(f('out.txt'), 'utf8')).toBe(`${'a'.repeat(64)}  vmlinuz\n`);
    writeFileSync(f('Tampered'), readFileSync(f('InRelease'), 'utf8').replace('aaaa', 'aaab'));
    const e = await problem(verifyClearsigned(f('keyring.gpg'), f('Tampered'), f('out2.txt'), 'InRelease'));
    expect(e.problem).toBe('bad-signature');
  });
});
