/**
 * The native helper (native/plinth_net.c, built by `npm run build:native` and npm ci's postinstall), loaded once
 * for every user (DHCP sockets, the RA responder, TFTP transfer sockets). PLINTH_NET_ADDON overrides the path.
 * Absent or built for another Node ABI: undefined, and each caller falls back or explains how to build it.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

let cached: Record<string, unknown> | null | undefined;

export function nativeAddon(): Record<string, unknown> | undefined {
  if (cached !== undefined) return cached ?? undefined;
  cached = null;
  const candidates = [
    process.env.PLINTH_NET_ADDON,
    fileURLToPath(new URL('../native/build/Release/plinth_net.node', import.meta.url)),
  ].filter((p): p is string => !!p);
  const require = createRequire(import.meta.url);
  for (const p of candidates) {
    if (!existsSync(p)) continue;
    try {
      cached = require(p) as Record<string, unknown>;
      break;
    } catch {
      // A stale build for another Node ABI: treat as absent.
    }
  }
  return cached ?? undefined;
}
