/**
 * Where boot loaders are found (src/provision/loaders.ts): --assets-dir first, then the file store, then the
 * search list (directories, or single files such as Debian's /boot/ipxe.efi); symlinks served by their real path;
 * the TFTP source serves only loader names found in the distribution, never the rest of its directory.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createBus } from '../../src/events.js';
import { silentLogger } from '../../src/log.js';
import { loaderIndex, loaderTftpSource, locateLoader, recordedLoaders } from '../../src/provision/loaders.js';
import { openSqliteStore } from '../../src/store/sqlite.js';
import type { Store } from '../../src/store/store.js';

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

describe('loaders recorded in a shared inventory', () => {
  /** The store's reads of the `files` kind, by method. */
  const counted = (inner: Store, withMany: boolean) => {
    const reads = { get: 0, getMany: 0 };
    const store: Store = {
      ...inner,
      get: (kind, key) => {
        if (kind === 'files') reads.get++;
        return inner.get(kind, key);
      },
      getMany: withMany
        ? (kind, keys) => {
            if (kind === 'files') reads.getMany++;
            return inner.getMany!(kind, keys);
          }
        : undefined,
    };
    return { store, reads };
  };
  const until = async (ok: () => boolean) => {
    for (let i = 0; i < 100 && !ok(); i++) await new Promise((r) => setTimeout(r, 5));
  };

  it('reads the four records in one getMany where the store has it, a get each where not; an upload here reads again', async () => {
    const inner = openSqliteStore(path.join(root, 'plinth.db'));
    try {
      await inner.putBatched('files', 'ipxe.efi', { path: 'ipxe.efi', sha256: 'a', size: 1 });
      await inner.putBatched('files', 'other.bin', { path: 'other.bin', sha256: 'b', size: 1 });
      const bus = createBus();
      const many = counted(inner, true);
      const r = recordedLoaders(many.store, bus, silentLogger);
      await until(() => r.has('ipxe.efi'));
      expect(r.has('ipxe.efi')).toBe(true);
      expect(r.has('undionly.kpxe')).toBe(false);
      expect(many.reads).toEqual({ get: 0, getMany: 1 });
      await inner.putBatched('files', 'undionly.kpxe', { path: 'undionly.kpxe', sha256: 'c', size: 1 });
      bus.emit({ type: 'files.uploaded', key: 'undionly.kpxe', data: { size: 1, sha256: 'c' } });
      await until(() => r.has('undionly.kpxe'));
      expect(many.reads).toEqual({ get: 0, getMany: 2 });
      r.close();

      const each = counted(inner, false);
      const r2 = recordedLoaders(each.store, createBus(), silentLogger);
      await until(() => r2.has('undionly.kpxe'));
      expect(r2.has('ipxe.efi')).toBe(true);
      expect(each.reads).toEqual({ get: 4, getMany: 0 });
      r2.close();
    } finally {
      await inner.close();
    }
  });
});
