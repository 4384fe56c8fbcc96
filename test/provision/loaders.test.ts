/**
 * Where boot loaders are found (src/provision/loaders.ts): --assets-dir first, then the file store, then the
 * search list (directories, or single files such as Debian's /boot/ipxe.efi); symlinks served by their real path;
 * the TFTP source serves only loader names found in the distribution, never the rest of its directory.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loaderIndex, loaderTftpSource, locateLoader } from '../../src/provision/loaders.js';

let root: string;
let assets: string;
let distro: string;
let boot: string;
let files: string;
const client = { address: '127.0.0.1', port: 1 };

beforeEach(() => {
  root = mkdtempSync(path.join(tmpdir(), 'plinth-loaders-'));
  assets = path.join(root, 'assets');
  distro = path.join(root, 'usr-lib-ipxe');
  boot = path.join(root, 'boot');
  files = path.join(root, 'files');
  for (const d of [assets, distro, boot, files]) mkdirSync(d);
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

describe('loader search', () => {
  it('takes the assets dir first, then the file store (uploads), then the search list in order', () => {
    const other = path.join(root, 'usr-share-ipxe');
    mkdirSync(other);
    writeFileSync(path.join(other, 'undionly.kpxe'), 'second');
    const s = { assetsDir: assets, search: [distro, other], filesDir: files };
    expect(locateLoader('undionly.kpxe', s)).toMatchObject({
      source: 'distribution',
      path: path.join(other, 'undionly.kpxe'),
    });
    writeFileSync(path.join(distro, 'undionly.kpxe'), 'distro');
    expect(locateLoader('undionly.kpxe', s)).toMatchObject({
      source: 'distribution',
      path: path.join(distro, 'undionly.kpxe'),
    });
    writeFileSync(path.join(files, 'undionly.kpxe'), 'uploaded');
    expect(locateLoader('undionly.kpxe', s)).toMatchObject({ source: 'files' });
    writeFileSync(path.join(assets, 'undionly.kpxe'), 'assets');
    expect(locateLoader('undionly.kpxe', s)).toMatchObject({
      source: 'assets',
      path: path.join(assets, 'undionly.kpxe'),
    });
    expect(locateLoader('ipxe.efi', s)).toBeUndefined();
  });

  it('a file entry provides only the loader of its name; a symlink is served by its real path', () => {
    writeFileSync(path.join(boot, 'ipxe.efi'), 'efi');
    symlinkSync(path.join(boot, 'ipxe.efi'), path.join(distro, 'ipxe.efi'));
    const fileOnly = { assetsDir: assets, search: [path.join(boot, 'ipxe.efi')] };
    expect(locateLoader('ipxe.efi', fileOnly)).toEqual({
      name: 'ipxe.efi',
      path: path.join(boot, 'ipxe.efi'),
      source: 'distribution',
    });
    expect(locateLoader('snponly.efi', fileOnly)).toBeUndefined();
    expect(locateLoader('ipxe.efi', { assetsDir: assets, search: [distro] })?.path).toBe(path.join(boot, 'ipxe.efi'));
    // A dangling link or a directory of a loader's name is not a loader.
    symlinkSync(path.join(boot, 'gone'), path.join(distro, 'snponly.efi'));
    mkdirSync(path.join(distro, 'undionly.kpxe'));
    expect(locateLoader('snponly.efi', { assetsDir: assets, search: [distro] })).toBeUndefined();
    expect(locateLoader('undionly.kpxe', { assetsDir: assets, search: [distro] })).toBeUndefined();
  });

  it('lists what it has and what is missing, and sees a newly installed loader after its TTL', async () => {
    writeFileSync(path.join(distro, 'undionly.kpxe'), 'bios');
    const index = loaderIndex({ assetsDir: assets, search: [distro], ttlMs: 20 });
    expect(index.list().map((l) => l.name)).toEqual(['undionly.kpxe']);
    expect(index.missing()).toEqual(['ipxe.efi', 'snponly.efi', 'ipxe-arm64.efi']);
    expect(index.has('ipxe.efi')).toBe(false);
    writeFileSync(path.join(distro, 'ipxe.efi'), 'efi');
    await new Promise((r) => setTimeout(r, 40));
    expect(index.has('ipxe.efi')).toBe(true);
  });
});

describe('loader TFTP source', () => {
  it('serves a distribution loader by name, and nothing else from its directory', async () => {
    writeFileSync(path.join(boot, 'ipxe.efi'), 'EFI-BYTES');
    symlinkSync(path.join(boot, 'ipxe.efi'), path.join(distro, 'ipxe.efi'));
    writeFileSync(path.join(distro, 'ipxe.iso'), 'iso');
    writeFileSync(path.join(assets, 'undionly.kpxe'), 'assets');
    const src = loaderTftpSource(loaderIndex({ assetsDir: assets, search: [distro] }));
    for (const name of ['ipxe.efi', '/ipxe.efi']) {
      const r = await src.open(name, client);
      expect(r.status).toBe('ok');
      if (r.status === 'ok') {
        expect((await r.read(0, 100)).toString()).toBe('EFI-BYTES');
        r.close();
      }
    }
    expect((await src.open('ipxe.iso', client)).status).toBe('not-found');
    expect((await src.open('../boot/ipxe.efi', client)).status).toBe('not-found');
    // The assets dir is served by its own root, not by this source.
    expect((await src.open('undionly.kpxe', client)).status).toBe('not-found');
  });
});
