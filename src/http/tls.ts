import { createHash, createPrivateKey, webcrypto, X509Certificate } from 'node:crypto';
import { chmod, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { hostname, networkInterfaces } from 'node:os';
import path from 'node:path';

/** What the HTTPS listener serves and what the log and /api/v1/info say about it. */
export type TlsMaterial = {
  key: Buffer;
  cert: Buffer;
  /** `sha256:` and the lower-case hex SHA-256 of the leaf certificate's DER: what `plinth --fingerprint` pins. */
  fingerprint: string;
  source: 'operator' | 'self-signed';
  /** Where the certificate is, for the log and the CLI's `--ca`. */
  certFile: string;
  subject: string;
  notAfter: string;
  /** true when this start created it. */
  created: boolean;
};

export class TlsError extends Error {}

/** The pin form of a certificate (PEM or DER): `sha256:<hex>` of its DER encoding. */
export function fingerprintOf(cert: Buffer | string): string {
  const x = new X509Certificate(cert);
  return `sha256:${createHash('sha256').update(x.raw).digest('hex')}`;
}

/** `sha256:AB:CD...`, `AB:CD...` or `abcd...` as `sha256:abcd...`; undefined when it is not a SHA-256. */
export function normalizeFingerprint(s: string): string | undefined {
  const hex = s
    .trim()
    .replace(/^sha-?256[:=]/i, '')
    .replace(/:/g, '')
    .toLowerCase();
  return /^[0-9a-f]{64}$/.test(hex) ? `sha256:${hex}` : undefined;
}

/**
 * The operator's certificate and key, or the self-signed pair under `<dataDir>/tls` (created at first start,
 * key 0600). The key must match the certificate: a mismatch is found here, not at the first handshake.
 */
export async function loadTls(opts: {
  dataDir: string;
  certFile?: string;
  keyFile?: string;
  /** Extra names the self-signed certificate covers (the advertise address). */
  altNames?: string[];
}): Promise<TlsMaterial> {
  if (opts.certFile && opts.keyFile) return readPair(opts.certFile, opts.keyFile, 'operator', false);
  const dir = path.join(opts.dataDir, 'tls');
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  const have = await stat(certFile).then(
    () => true,
    () => false,
  );
  if (have) return readPair(certFile, keyFile, 'self-signed', false);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const { cert, key } = await selfSigned(opts.altNames ?? []);
  // Key first (0600 from its creation), then the certificate by rename: a crash leaves no certificate without key.
  await writeFile(`${keyFile}.tmp`, key, { mode: 0o600 });
  await chmod(`${keyFile}.tmp`, 0o600);
  await rename(`${keyFile}.tmp`, keyFile);
  await writeFile(`${certFile}.tmp`, cert, { mode: 0o644 });
  await rename(`${certFile}.tmp`, certFile);
  return readPair(certFile, keyFile, 'self-signed', true);
}

async function readPair(
  certFile: string,
  keyFile: string,
  source: TlsMaterial['source'],
  created: boolean,
): Promise<TlsMaterial> {
  const read = async (f: string, what: string) => {
    try {
      return await readFile(f);
    } catch (err) {
      throw new TlsError(
        `TLS: cannot read the ${what} ${f}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}; fix the file, or set --tls off`,
      );
    }
  };
  const cert = await read(certFile, 'certificate');
  const key = await read(keyFile, 'private key');
  let x: X509Certificate;
  try {
    x = new X509Certificate(cert);
  } catch (err) {
    throw new TlsError(`TLS: ${certFile} is not a PEM certificate: ${(err as Error).message}`);
  }
  let matches: boolean;
  try {
    matches = x.checkPrivateKey(createPrivateKey(key));
  } catch (err) {
    throw new TlsError(`TLS: ${keyFile} is not a PEM private key: ${(err as Error).message}`);
  }
  if (!matches) throw new TlsError(`TLS: the key ${keyFile} does not belong to the certificate ${certFile}`);
  return {
    key,
    cert,
    fingerprint: fingerprintOf(cert),
    source,
    certFile,
    subject: x.subject.replace(/\n/g, ', '),
    notAfter: new Date(x.validTo).toISOString(),
    created,
  };
}

/** Every name a client may use for this host today: its hostname, localhost and its interface addresses. */
function localNames(extra: string[]): { dns: string[]; ip: string[] } {
  const dns = new Set(['localhost']);
  const ip = new Set(['127.0.0.1', '::1']);
  const h = hostname();
  if (h && !isIP(h)) dns.add(h);
  try {
    for (const list of Object.values(networkInterfaces()))
      for (const a of list ?? []) if (!a.internal && !a.address.startsWith('fe80')) ip.add(a.address);
  } catch {
    // Out of descriptors at first start: the certificate names fewer addresses; a fingerprint pin still works.
  }
  for (const e of extra) (isIP(e) ? ip : dns).add(e);
  return { dns: [...dns], ip: [...ip] };
}

/**
 * An ECDSA P-256 certificate valid for ten years: nobody renews a self-signed certificate, its users pin it.
 * @peculiar/x509 builds it (Node 20's crypto parses X.509 but cannot issue one); it is loaded only here, at first
 * start, with the Reflect polyfill its dependency injection needs.
 */
async function selfSigned(extra: string[]): Promise<{ cert: string; key: string }> {
  await import('reflect-metadata');
  const x509 = await import('@peculiar/x509');
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const names = localNames(extra);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: Buffer.from(webcrypto.getRandomValues(new Uint8Array(16)))
      .toString('hex')
      .replace(/^[89a-f]/, '1'),
    name: `CN=plinth ${hostname() || 'daemon'}`,
    notBefore: new Date(now - 3_600_000),
    notAfter: new Date(now + 3650 * 86_400_000),
    keys,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        ...names.dns.map((value) => ({ type: 'dns' as const, value })),
        ...names.ip.map((value) => ({ type: 'ip' as const, value })),
      ]),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const key = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END PRIVATE KEY-----\n`;
  return { cert: cert.toString('pem'), key };
}
