/**
 * Which files roots belong to a daemon sharing its inventory with others (issue 17), and what such a root can do
 * that a lone daemon's cannot: fetch a blob the inventory knows but this data dir lacks. One entry per files root,
 * set by the daemon at start (src/files/peers.ts) and read by every reader of the root: /files and the peer
 * endpoint (src/http), TFTP's file roots (src/tftp/source.ts), the file index (store-files.ts). A root with no
 * entry (SQLite, or tests) behaves exactly as before: its disk is the truth.
 */

/** A blob no source would give with the right digest: the reader answers 502 (HTTP) or an error (TFTP). */
export class BlobUnavailable extends Error {}

export type FilesCluster = {
  /** This daemon's serverId: written into the file records it makes, so it knows which mtimes are its own. */
  serverId: string;
  /**
   * For a request of `rel` (confined, relative to the root): the absolute path to serve instead of the root's own
   * `rel` (a blob fetched or already here, because the inventory maps `rel` to a digest this path does not hold),
   * or undefined to serve the root's file as it is. Throws BlobUnavailable when no source had the right bytes.
   */
  resolve(rel: string): Promise<string | undefined>;
  /** The blob of `sha256`, fetched from a peer or the origin when absent: its absolute path. */
  ensureBlob(sha256: string, size?: number): Promise<string>;
  /**
   * The blob of `sha256` on this disk for a peer asking (never fetched from others): the blob store's, else a path
   * this daemon recorded with that digest and still holds (a file copied in by hand), taken into the blob store.
   */
  localBlob(sha256: string): Promise<string | undefined>;
  /** The secret peers present at /peer/v1/blobs (src/http/peer-blobs.ts). */
  secret: string;
};

const roots = new Map<string, FilesCluster>();

export function setFilesCluster(root: string, c: FilesCluster | undefined): void {
  if (c) roots.set(root, c);
  else roots.delete(root);
}

/** The cluster entry of a files root, or undefined for a lone daemon's. */
export function filesCluster(root: string): FilesCluster | undefined {
  return roots.get(root);
}
