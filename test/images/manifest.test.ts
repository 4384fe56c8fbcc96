import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { checksumNameOf, parseManifest } from '../../src/images/manifest.js';
import { InvalidError } from '../../src/model/errors.js';

const DIR = path.resolve(import.meta.dirname, '../../assets/manifests');

const errorsOf = (text: string) => {
  try {
    parseManifest(text);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidError);
    return (err as InvalidError).errors.map((e) => `${e.path}: ${e.message}`);
  }
  throw new Error('expected the manifest to be refused');
};

describe('image manifests', () => {
  it('every shipped manifest parses, names real https URLs, and says how it is verified', () => {
    const names = readdirSync(DIR).filter((n) => n.endsWith('.yaml'));
    expect(names.sort()).toEqual([
      'debian-netboot.yaml',
      'fedora-coreos-stable.yaml',
      'flatcar-stable.yaml',
      'talos.yaml',
    ]);
    for (const n of names) {
      const m = parseManifest(readFileSync(path.join(DIR, n), 'utf8'));
      expect(m.artifacts.filter((a) => a.role === 'kernel')).toHaveLength(1);
      for (const a of m.artifacts) expect(new URL(a.url).protocol).toBe('https:');
      // Signed (a keyring, and signatures on checksum files or artifacts), or explicitly unsigned.
      const signed = m.checksums.some((c) => c.signature) || m.artifacts.some((a) => a.signature);
      expect(signed ? Boolean(m.keyring) : m.unsigned).toBe(true);
    }
  });

  it('fingerprints are normalised: spaces out, upper case', () => {
    const m = parseManifest(`
name: x
keyring: k.gpg
fingerprints: ["04b5 4c3c dca7 9751 b16b  c6b5 2256 29df 75b1 88bd"]
artifacts: [{ role: kernel, url: "https://example.org/a/vmlinuz", path: x/vmlinuz, signature: "https://example.org/a/vmlinuz.sig" }]
`);
    expect(m.fingerprints).toEqual(['04B54C3CDCA79751B16BC6B5225629DF75B188BD']);
    expect(checksumNameOf(m.artifacts[0]!)).toBe('vmlinuz');
  });

  it('refuses what would be unsafe or ambiguous, naming the field', () => {
    expect(errorsOf('name: x\nartifacts: []')).toEqual(['artifacts: Too small: expected array to have >=1 items']);
    const e = errorsOf(`
name: x
fingerprints: [nothex]
artifacts:
  - { role: kernel, url: "file:///etc/shadow", path: "../etc/passwd" }
  - { role: kernel, url: "https://e.org/k", path: ".blobs/sha256/aa/x", signature: "https://e.org/k.sig" }
`);
    expect(e.map((x) => x.split(':')[0])).toEqual(
      expect.arrayContaining([
        'fingerprints.0',
        'artifacts.0.url',
        'artifacts.0.path',
        'artifacts.1.path',
        'artifacts',
        'keyring',
      ]),
    );
    expect(errorsOf('name: x\nsurprise: 1\nartifacts: [{ role: kernel, url: "https://e.org/k", path: k }]')).toEqual([
      "surprise: unknown field 'surprise'",
    ]);
    expect(() => parseManifest('{ not: yaml: at all')).toThrow(/not YAML or JSON/);
  });
});
