/**
 * Builds the native socket helper (native/, see native/README.md) when it is missing, for tests and the benchmark:
 * npm ci's postinstall (`npm run build:native`) builds it but does not fail when it cannot, and a checkout without
 * an install has none. Uses the node-gyp that ships with npm and the headers installed beside node (no download),
 * as build:native does. Needs g++, make, python3.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, realpathSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
export const ADDON_FILE = path.join(root, 'native/build/Release/plinth_net.node');

export function ensureAddon(): boolean {
  if (existsSync(ADDON_FILE)) return true;
  const nodePrefix = path.dirname(path.dirname(realpathSync(process.execPath)));
  let npmDir: string;
  try {
    npmDir = path.dirname(path.dirname(realpathSync(execFileSync('which', ['npm'], { encoding: 'utf8' }).trim())));
  } catch {
    return false;
  }
  const gyp = path.join(npmDir, 'node_modules/node-gyp/bin/node-gyp.js');
  if (!existsSync(gyp) || !existsSync(path.join(nodePrefix, 'include/node/node_api.h'))) return false;
  // Test files run in parallel workers: one builds (mkdir is the lock), the others wait for its result.
  const lock = path.join(root, 'native/.build-lock');
  try {
    mkdirSync(lock);
  } catch {
    const end = Date.now() + 120_000;
    while (existsSync(lock) && Date.now() < end) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
    return existsSync(ADDON_FILE);
  }
  try {
    execFileSync(process.execPath, [gyp, 'rebuild', '-C', path.join(root, 'native'), `--nodedir=${nodePrefix}`], {
      stdio: 'ignore',
      timeout: 120_000,
    });
  } catch {
    return false;
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
  return existsSync(ADDON_FILE);
}
