/**
 * A throwaway OpenPGP key for the tests, made with gpg in a temp GNUPGHOME (ed25519: generated in well under a
 * second), its public keyring exported in the binary form gpgv reads, and helpers that sign files with it.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

export type TestKey = {
  home: string;
  fingerprint: string;
  /** The public key alone, binary (gpg --export). */
  exportTo(file: string): void;
  detachSign(file: string, out: string): void;
  clearSign(file: string, out: string): void;
  remove(): void;
};

export function makeTestKey(uid = 'Plinth Test Signer <signer@test.invalid>'): TestKey {
  const home = mkdtempSync(path.join(tmpdir(), 'plinth-gpg-'));
  const gpg = (...args: string[]) =>
    execFileSync(
      'gpg',
      ['--homedir', home, '--batch', '--yes', '--pinentry-mode', 'loopback', '--passphrase', '', ...args],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    ).toString();
  gpg('--quick-gen-key', uid, 'ed25519', 'sign', 'never');
  const fingerprint = /^fpr:+([0-9A-F]{40}):/m.exec(gpg('--with-colons', '--list-keys'))![1]!;
  return {
    home,
    fingerprint,
    exportTo: (file) => void gpg('--output', file, '--export', fingerprint),
    detachSign: (file, out) => void gpg('--local-user', fingerprint, '--output', out, '--detach-sign', file),
    clearSign: (file, out) => void gpg('--local-user', fingerprint, '--output', out, '--clearsign', file),
    remove: () => rmSync(home, { recursive: true, force: true }),
  };
}
