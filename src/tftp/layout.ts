/**
 * DATA packets laid out ready to send, and shared between transfers.
 *
 * A chunk of a file becomes its DATA packets (opcode, block number, payload) back to back, `4 + blksize` bytes apart,
 * so a window is one contiguous range: one send, no per-packet copy. The block number of a packet depends only on its
 * offset in the file, never on the client, so sixteen PXE clients fetching the same initrd with the same blksize can
 * send from the very same buffers: the file is read and laid out once, not once per client. The cache is a small LRU
 * bounded in bytes; a transfer keeps its own references to the chunks it is sending, so eviction never pulls a buffer
 * from under a window.
 */
import { native, type ReadPackets } from '../native/index.js';
import { OP } from './codec.js';

/** `count` packets for blocks `first`.. from `data` (file bytes starting at block `first`); the last may be short. */
export function layoutPackets(data: Buffer, first: number, count: number, blksize: number): Buffer {
  const slot = 4 + blksize;
  const out = Buffer.allocUnsafe(count * slot);
  for (let i = 0; i < count; i++) {
    const off = i * slot;
    out[off] = 0;
    out[off + 1] = OP.DATA;
    out.writeUInt16BE((first + i) & 0xffff, off + 2);
    const from = i * blksize;
    if (from < data.length) data.copy(out, off + 4, from, Math.min(data.length, from + blksize));
  }
  return out;
}

let readPackets: ReadPackets | null | undefined;

/**
 * The same layout read straight from a file descriptor when its bytes are all in the page cache (one preadv2 with
 * RWF_NOWAIT into the packet slots, native helper): no thread-pool round trip, no intermediate buffer, no copy loop.
 * `bytes` is how many file bytes the `count` blocks hold (less than count * blksize at the end of the file).
 * Undefined when that cannot be done now (not cached, no helper, an old kernel): read asynchronously instead.
 */
export function layoutPacketsNow(
  fd: number,
  position: number,
  bytes: number,
  first: number,
  count: number,
  blksize: number,
): Buffer | undefined {
  if (readPackets === undefined) {
    readPackets = native.readPackets ?? null;
  }
  if (readPackets === null) return undefined;
  const out = Buffer.allocUnsafe(count * (4 + blksize));
  const n = readPackets(fd, position, blksize, first, count, out, 0, bytes);
  if (n !== bytes) return undefined;
  // The last packet's unused tail is never sent; zero it anyway so no stale heap bytes sit in the buffer.
  out.fill(0, (count - 1) * (4 + blksize) + 4 + (bytes - (count - 1) * blksize));
  return out;
}

export type PacketCache = {
  /** The chunk under `key` (content identity, blksize, chunk geometry and index), made by `make` on a miss. */
  get(key: string, bytes: number, make: () => Promise<Buffer>): Promise<Buffer>;
  readonly bytes: number;
};

export function packetCache(maxBytes: number): PacketCache {
  const entries = new Map<string, { p: Promise<Buffer>; bytes: number }>();
  let total = 0;
  function drop(key: string): void {
    const e = entries.get(key);
    if (e === undefined) return;
    entries.delete(key);
    total -= e.bytes;
  }
  return {
    get bytes() {
      return total;
    },
    get(key, bytes, make) {
      const hit = entries.get(key);
      if (hit !== undefined) {
        // Refresh its LRU position.
        entries.delete(key);
        entries.set(key, hit);
        return hit.p;
      }
      const p = make();
      const e = { p, bytes };
      // A failed read must not stay cached.
      p.catch(() => entries.get(key) === e && drop(key));
      entries.set(key, e);
      total += bytes;
      while (total > maxBytes && entries.size > 1) drop(entries.keys().next().value as string);
      return p;
    },
  };
}
