/**
 * The iPXE boot loaders PXE firmware chainloads (README: assets/): which the DHCP decision may offer (a loader
 * in assets/ or uploaded to the file store), and the start-up warning that says which are missing and how to get
 * them.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../log.js';

export const LOADER_FILES = ['undionly.kpxe', 'ipxe.efi', 'snponly.efi'];

/** Whether a loader file exists in assets/ or the file store (e.g. ipxe-arm64.efi is optional). */
export function loaderPresence(assetsDir: string, filesDir: string): (name: string) => boolean {
  return (name) => existsSync(path.join(assetsDir, name)) || existsSync(path.join(filesDir, name));
}

/** Say once at start which boot loaders are missing and how to get them. */
export function checkAssets(assetsDir: string, log: Logger) {
  const missing = LOADER_FILES.filter((f) => !existsSync(path.join(assetsDir, f)));
  if (missing.length) {
    log.warn(
      { assetsDir, missing },
      `boot loaders missing in ${assetsDir}: ${missing.join(', ')}. PXE firmware cannot chainload iPXE until they are there: ` +
        `apt-get install ipxe; cp /usr/lib/ipxe/undionly.kpxe /usr/lib/ipxe/snponly.efi /boot/ipxe.efi ${assetsDir}/`,
    );
  }
}
