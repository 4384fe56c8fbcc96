/**
 * Which network namespaces Plinth created, so it never deletes (or kills processes in) one it did not: each
 * namespace made by src/lab/netns.ts gets a marker file (default /run/plinth-netns/<name>.json, tmpfs, gone at
 * reboot with the namespaces) recording the identity of that very namespace, the device and inode of
 * /run/netns/<name>. A namespace of the same name with no marker, or a different identity (ours was deleted and
 * someone made another), is foreign.
 */
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export type NamespaceId = { dev: number; ino: number };
export type Marker = NamespaceId & { ns: string; createdAt: string; pid: number };

/** iproute2's NETNS_RUN_DIR and the marker directory; environment overrides for tests. */
export const netnsRunDir = () => process.env.PLINTH_NETNS_RUN_DIR ?? '/run/netns';
export const markerDir = () => process.env.PLINTH_NETNS_MARKERS ?? '/run/plinth-netns';

const markerFile = (name: string) => path.join(markerDir(), `${name}.json`);

/** The namespace's identity (nsfs device and inode of its bind mount), or undefined when it does not exist. */
export function namespaceId(name: string): NamespaceId | undefined {
  try {
    const st = statSync(path.join(netnsRunDir(), name));
    return { dev: st.dev, ino: st.ino };
  } catch {
    return undefined;
  }
}

/**
 * A leftover of iproute2 with no namespace behind it: the empty, mode-000 file `ip netns add` mounts the namespace
 * on, no longer mounted (seen after e2e runs here: the mount gone, the file left). Nothing can run in it, so it
 * is no one's lab; `ip netns del` removes the file.
 */
export function staleEntry(name: string): boolean {
  try {
    const st = statSync(path.join(netnsRunDir(), name));
    return st.isFile() && st.size === 0 && (st.mode & 0o777) === 0;
  } catch {
    return false;
  }
}

export function readMarker(name: string): Marker | undefined {
  try {
    const m = JSON.parse(readFileSync(markerFile(name), 'utf8')) as Partial<Marker>;
    return typeof m.dev === 'number' && typeof m.ino === 'number' && m.ns === name ? (m as Marker) : undefined;
  } catch {
    return undefined;
  }
}

export function writeMarker(name: string, id: NamespaceId): void {
  mkdirSync(markerDir(), { recursive: true, mode: 0o700 });
  const m: Marker = { ns: name, ...id, createdAt: new Date().toISOString(), pid: process.pid };
  writeFileSync(markerFile(name), `${JSON.stringify(m)}\n`, { mode: 0o600 });
}

export function forgetMarker(name: string): void {
  rmSync(markerFile(name), { force: true });
}

export type Ownership = 'absent' | 'ours' | 'foreign';

/** A namespace is ours only when a marker names this very namespace (not an earlier one of the same name). */
export function ownership(id: NamespaceId | undefined, marker: Marker | undefined): Ownership {
  if (!id) return 'absent';
  return marker && marker.dev === id.dev && marker.ino === id.ino ? 'ours' : 'foreign';
}

export class ForeignNamespaceError extends Error {
  constructor(readonly ns: string) {
    super(
      `network namespace '${ns}' exists and was not created by Plinth here (no matching marker in ${markerDir()}): ` +
        `it may be someone else's lab, so it is left alone. Choose another name (plinth lab up --name NAME), or, ` +
        `if it is yours, delete it yourself: ip netns del ${ns}`,
    );
  }
}
