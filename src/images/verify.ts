/**
 * OpenPGP signature checks by Debian's `gpgv` (package gpgv): a verifier only, with no trust database, no key
 * import and no network, checking against exactly the keyring file it is given. Chosen over an npm OpenPGP
 * library because it is the verifier apt itself trusts with every Debian archive, it gets Debian's security
 * updates with the host, and it adds no parser of untrusted packets to the daemon's process (it runs as a child).
 * Its machine-readable `--status-fd` lines say what happened; its exit status alone would not tell a bad signature
 * from an unknown key.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';

export type SignatureProblem = 'bad-signature' | 'unknown-key' | 'signer-not-allowed' | 'no-signature' | 'gpgv-missing';

export class SignatureError extends Error {
  constructor(
    readonly problem: SignatureProblem,
    message: string,
  ) {
    super(message);
  }
}

/** The upper-case hex fingerprint without spaces: what gpgv's VALIDSIG line carries. */
export function normalFingerprint(f: string): string {
  return f.replace(/\s+/g, '').toUpperCase();
}

type Run = { code: number; status: string[]; stderr: string };

async function gpgv(args: string[]): Promise<Run> {
  // An empty home: gpgv must not pick up a trustedkeys.kbx of whoever runs the daemon.
  const home = await mkdtemp(path.join(tmpdir(), 'plinth-gpgv-'));
  try {
    return await new Promise<Run>((resolve, reject) => {
      execFile(
        'gpgv',
        ['--status-fd', '1', ...args],
        { env: { ...process.env, GNUPGHOME: home, LC_ALL: 'C' }, timeout: 60_000, maxBuffer: 1 << 20 },
        (err, stdout, stderr) => {
          if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') {
            reject(
              new SignatureError(
                'gpgv-missing',
                'gpgv is not installed on the daemon host: apt-get install gpgv (signatures cannot be checked without it)',
              ),
            );
            return;
          }
          const code = err ? Number((err as { code?: number }).code ?? 2) : 0;
          const status = String(stdout)
            .split('\n')
            .filter((l) => l.startsWith('[GNUPG:] '))
            .map((l) => l.slice(9));
          resolve({ code, status, stderr: String(stderr) });
        },
      );
    });
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}

/**
 * Reads gpgv's verdict: the signer's primary-key fingerprint when the signature is good, made by a key in the
 * keyring, and (when `allowed` is not empty) by one of the allowed fingerprints; else a SignatureError naming why.
 */
function verdict(r: Run, what: string, allowed: string[]): string {
  const line = (tag: string) => r.status.find((s) => s.startsWith(`${tag} `) || s === tag);
  const bad = line('BADSIG');
  if (bad)
    throw new SignatureError(
      'bad-signature',
      `the signature of ${what} is BAD (key ${bad.split(' ')[1]}): its bytes were altered or it was signed over other bytes`,
    );
  const revoked = line('REVKEYSIG');
  if (revoked)
    throw new SignatureError('bad-signature', `${what} is signed by key ${revoked.split(' ')[1]}, which is revoked`);
  // Several signatures (Debian's InRelease carries two or three): enough that one is good and allowed; a BAD one
  // anywhere was refused above.
  const valid = r.status.filter((x) => x.startsWith('VALIDSIG ')).map((x) => x.split(' '));
  const allow = allowed.map(normalFingerprint);
  const signers = valid.map((f) => ({ primary: normalFingerprint(f[10] ?? f[1]!), key: normalFingerprint(f[1]!) }));
  const ok = signers.find((v) => allow.length === 0 || allow.includes(v.primary) || allow.includes(v.key));
  if (ok) return ok.primary;
  if (signers.length)
    throw new SignatureError(
      'signer-not-allowed',
      `${what} is signed by ${signers.map((v) => v.primary).join(', ')}, in the keyring but not among the manifest's fingerprints (${allow.join(', ')})`,
    );
  const nokey = line('NO_PUBKEY') ?? line('ERRSIG');
  if (nokey) {
    const keyid = nokey.split(' ')[1];
    throw new SignatureError(
      'unknown-key',
      `${what} is signed by key ${keyid}, which is not in the configured keyring: add the vendor's key to the keyring (after checking its fingerprint), or fix the manifest`,
    );
  }
  if (r.status.some((x) => x.startsWith('NODATA')))
    throw new SignatureError('no-signature', `${what}: no OpenPGP signature found in the signature file`);
  throw new SignatureError(
    'bad-signature',
    `the signature of ${what} could not be verified: ${r.stderr.trim().split('\n').pop() || `gpgv exit ${r.code}`}`,
  );
}

/** A detached signature (`.asc`, `.sig`, `.gpg`) over `data`. Returns the signer's primary fingerprint. */
export async function verifyDetached(
  keyring: string,
  sig: string,
  data: string,
  what: string,
  allowed: string[] = [],
): Promise<string> {
  return verdict(await gpgv(['--keyring', path.resolve(keyring), sig, data]), what, allowed);
}

/** A clear-signed text (InRelease, DIGESTS.asc): the signer, and the signed text extracted by gpgv to `out`. */
export async function verifyClearsigned(
  keyring: string,
  file: string,
  out: string,
  what: string,
  allowed: string[] = [],
): Promise<string> {
  return verdict(await gpgv(['--keyring', path.resolve(keyring), '--output', out, file]), what, allowed);
}
