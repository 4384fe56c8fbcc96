/**
 * The iPXE boot loaders PXE firmware chainloads (README: assets/): where each is found (--assets-dir first, then
 * the distribution's iPXE locations, --loader-search), which the DHCP decision may offer (a loader found there or
 * uploaded to the file store, which comes before the distribution), the TFTP source that serves each from where it was found, what /api/v1/info
 * reports, and the start-up warning that says which are missing and how to get them.
 */
import { realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Bus } from '../events.js';
import { fileRecords } from '../files/store-files.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import { fileRootSource, type TftpSource } from '../tftp/source.js';

/** Every loader the boot decision can name (src/boot/decide.ts LOADERS, plus the SNP-only quirk loader). */
export const LOADER_FILES = ['undionly.kpxe', 'ipxe.efi', 'snponly.efi', 'ipxe-arm64.efi'];

/** Debian's and Fedora's ipxe packages: /usr/lib/ipxe/*, /boot/ipxe.efi (Debian), /usr/share/ipxe/* (Fedora). */
export const DEFAULT_LOADER_SEARCH = ['/usr/lib/ipxe', '/boot/ipxe.efi', '/usr/share/ipxe'];

export type FoundLoader = {
  name: string;
  /** The file served: its real path (Debian's /usr/lib/ipxe/ipxe.efi is a symlink into /boot). */
  path: string;
  /** assets: --assets-dir; distribution: a --loader-search entry; files: uploaded to the file store. */
  source: 'assets' | 'distribution' | 'files';
};

export type LoaderIndex = {
  /** Where a loader is served from, or undefined when Plinth does not have it. */
  find(name: string): FoundLoader | undefined;
  has(name: string): boolean;
  /** Every known loader found, in LOADER_FILES order (for /api/v1/info). */
  list(): FoundLoader[];
  missing(): string[];
};

/** Looked up in this order: assetsDir, filesDir, then each search entry. */
export type LoaderSearch = {
  assetsDir: string;
  /** Directories (any loader by name in it) or files (the loader of that base name), in order. */
  search: string[];
  /** The file store: an uploaded loader counts, served from there by the file routes. */
  filesDir?: string;
  /**
   * Several daemons on one inventory: whether a loader of this name was uploaded to the file store through any
   * of them (its record), so this daemon offers it too and its file routes fetch the bytes on first use.
   */
  recorded?: (name: string) => boolean;
  /** How long a look-up is reused: a DISCOVER storm costs no stat per packet, an apt-get install shows up soon. */
  ttlMs?: number;
};

function regularFile(p: string): string | undefined {
  try {
    if (!statSync(p).isFile()) return undefined;
    return realpathSync(p);
  } catch {
    return undefined;
  }
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** One look-up of `name` along the search order, uncached. */
export function locateLoader(name: string, s: LoaderSearch): FoundLoader | undefined {
  const inAssets = regularFile(path.join(s.assetsDir, name));
  if (inAssets) return { name, path: inAssets, source: 'assets' };
  // What the operator put there (assets, an upload) wins over the distribution's copy.
  const uploaded = s.filesDir ? regularFile(path.join(s.filesDir, name)) : undefined;
  if (uploaded) return { name, path: uploaded, source: 'files' };
  if (s.filesDir && s.recorded?.(name)) return { name, path: path.join(s.filesDir, name), source: 'files' };
  for (const entry of s.search) {
    const candidate = isDir(entry) ? path.join(entry, name) : path.basename(entry) === name ? entry : undefined;
    const real = candidate && regularFile(candidate);
    if (real) return { name, path: real, source: 'distribution' };
  }
  return undefined;
}

export function loaderIndex(s: LoaderSearch): LoaderIndex {
  const ttl = s.ttlMs ?? 5000;
  const cache = new Map<string, { at: number; found: FoundLoader | undefined }>();
  const find = (name: string) => {
    const hit = cache.get(name);
    if (hit && Date.now() - hit.at < ttl) return hit.found;
    const found = locateLoader(name, s);
    // Only names asked for are cached, so the map stays as small as the set of loader names.
    if (LOADER_FILES.includes(name)) cache.set(name, { at: Date.now(), found });
    return found;
  };
  return {
    find,
    has: (name) => find(name) !== undefined,
    list: () => LOADER_FILES.map(find).filter((f): f is FoundLoader => f !== undefined),
    missing: () => LOADER_FILES.filter((n) => !find(n)),
  };
}

/**
 * The loader names the shared inventory has a file record for: read at start, every 5 s (the four keys in one
 * statement, `getMany`; a file record is not in the event log, so an upload through another daemon is seen
 * within 5 s, plus the index's own 5 s) and at once after an upload or delete here; a synchronous look-up for the
 * DHCP path.
 */
export function recordedLoaders(store: Store, bus: Bus, log: Logger): { has(name: string): boolean; close(): void } {
  let names = new Set<string>();
  const refresh = async () => {
    try {
      names = new Set((await fileRecords(store, LOADER_FILES)).keys());
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'boot loaders: cannot read the uploaded loaders from the inventory');
    }
  };
  void refresh();
  const timer = setInterval(() => void refresh(), 5000);
  timer.unref();
  const off = bus.on((e) => {
    if ((e.type === 'files.uploaded' || e.type === 'files.deleted') && LOADER_FILES.includes(e.key ?? ''))
      void refresh();
  });
  return {
    has: (name) => names.has(name),
    close() {
      clearInterval(timer);
      off();
    },
  };
}

/**
 * TFTP: a loader found outside the file roots (a distribution path), by its exact name only, so a search
 * directory such as /usr/lib/ipxe is never browsable as a whole. Files in the assets dir and the file store are
 * served by their own roots.
 */
export function loaderTftpSource(index: LoaderIndex): TftpSource {
  const byDir = new Map<string, TftpSource>();
  return {
    async open(requested, client) {
      const name = requested.replace(/^\/+/, '');
      const found = LOADER_FILES.includes(name) ? index.find(name) : undefined;
      if (found?.source !== 'distribution') return { status: 'not-found', reason: 'not a distribution loader' };
      const dir = path.dirname(found.path);
      let root = byDir.get(dir);
      if (!root) {
        root = fileRootSource(dir);
        byDir.set(dir, root);
      }
      return root.open(path.basename(found.path), client);
    },
  };
}

/** Say once at start where each loader comes from, and which are missing and how to get them. */
export function checkAssets(index: LoaderIndex, assetsDir: string, log: Logger) {
  const found = index.list();
  if (found.length) {
    log.info(
      { loaders: Object.fromEntries(found.map((f) => [f.name, f.path])) },
      `boot loaders: ${found.map((f) => `${f.name} (${f.source})`).join(', ')}`,
    );
  }
  // ipxe-arm64.efi is optional: only arm64 UEFI clients need it, and the decision says so when one asks.
  const missing = index.missing().filter((f) => f !== 'ipxe-arm64.efi');
  if (missing.length) {
    log.warn(
      { assetsDir, missing },
      `boot loaders missing: ${missing.join(', ')}. PXE clients that need them get no boot file until they are ` +
        `there: apt-get install ipxe (found in /usr/lib/ipxe and /boot), or copy them into ${assetsDir}/`,
    );
  }
}
