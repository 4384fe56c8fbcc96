/**
 * The lease table's side of a shared store (issue 17): its claims, tracked per address while they are in flight,
 * and the catch-up reads (`store.leaseChanges`, every second by the server) that teach its index the rows other
 * daemons wrote. A row a catch-up read returns for an address this daemon was writing, or dropped, while the read
 * was out is left alone: its own write may be newer than the row read (the read's snapshot may predate its
 * COMMIT), and its claim's outcome taught the index already (won: its lease; lost: the holder's).
 */

import type { Lease } from '../model/subnet.js';
import type { Store } from '../store/store.js';
import { ipInt } from './ip.js';
import type { Client, LeaseRec } from './lease-types.js';

/** FNV-1a of the client's identifier (its MAC without one): where its scan starts in a shared pool. */
export function scanStartOf(c: Client, size: number): number {
  const key = c.id ?? c.mac;
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return (h >>> 0) % size;
}

/** Whether a stored lease says what the index's record says (its updatedAt aside). */
const same = (r: LeaseRec, d: Lease) =>
  r.state === d.state &&
  r.expiresAt === d.expiresAt &&
  r.mac === d.mac &&
  r.subnet === d.subnet &&
  r.clientId === d.clientId &&
  r.hostname === d.hostname;

/**
 * Rows a catch-up learns (and publishes the events of) per turn of the event loop: a page is up to 5,000 rows
 * (`leasePageSize`), which in one turn held the DHCP packets queued behind it for the whole page (5,000 changed
 * rows, a listener serialising each event as SSE does, this 2-core VM: 120-260 ms). A slice of 250 takes about
 * 2 ms (500: 4; the page in all takes no longer), under the turn that parsed the page (3-28 ms, the store's).
 */
export const LEARN_SLICE = 250;

/** A turn of the event loop: setImmediate runs after the poll phase, so the packets that arrived meanwhile go first. */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

export class LeaseFollower {
  /** Where the next catch-up reads from; undefined: not following. */
  cursor: string | undefined;
  // The addresses this daemon is writing (claims in flight), and those it wrote, began writing or dropped since
  // the catch-up read in flight was sent.
  private readonly writing = new Map<number, number>();
  private touched: Set<number> | undefined;
  private catching: Promise<number> | undefined;

  constructor(
    private readonly store: Store,
    /** What the index holds at an address. */
    private readonly at: (ip: number) => LeaseRec | undefined,
    /** Puts another daemon's lease in the index (replacing what it had at that address), publishing its event. */
    private readonly learn: (d: Lease) => void,
  ) {}

  /** Claims `doc` at `ip` in the store; false when another daemon's client holds it (the index learns its lease). */
  claim(ip: number, doc: Omit<LeaseRec, 'ip' | 'exp'>, now: string): Promise<boolean> {
    this.writing.set(ip, (this.writing.get(ip) ?? 0) + 1);
    this.touched?.add(ip);
    const settled = () => {
      const n = this.writing.get(ip)! - 1;
      if (n > 0) this.writing.set(ip, n);
      else this.writing.delete(ip);
      this.touched?.add(ip);
    };
    return this.store.claimLease!({ doc, now }).then(
      (r) => {
        settled();
        if (r.ok) return true;
        if (r.holder) this.learn(r.holder as Lease);
        return false;
      },
      (err) => {
        settled();
        throw err;
      },
    );
  }

  /** The stored row at `address` (RELEASE, DECLINE or REQUEST of a lease the index does not hold live), learnt. */
  refresh(address: string): Promise<void> {
    return this.store.get('leases', address).then((got) => {
      if (got) this.learn(got.doc as Lease);
    });
  }

  /** The index drops `ip`: a catch-up read out now must not bring its row back. */
  dropped(ip: number): void {
    this.touched?.add(ip);
  }

  /** One catch-up read at a time (a call meanwhile shares it); undefined when not following. */
  catchUp(): Promise<number> | undefined {
    const read = this.store.leaseChanges;
    if (!this.store.sharedLeases || !read || this.cursor === undefined) return undefined;
    this.catching ??= this.readChanges(read.bind(this.store)).finally(() => {
      this.catching = undefined;
    });
    return this.catching;
  }

  /**
   * A catch-up: the pages of the store's pass one after another (each query lets the event loop run between
   * them), each page's rows learnt LEARN_SLICE at a time with a turn of the event loop between slices, in order,
   * `touched` kept for the whole of it. The cursor moves once a page's rows are all learnt, so a failed page is
   * read again by the next catch-up and the pages before it are not.
   */
  private async readChanges(read: NonNullable<Store['leaseChanges']>): Promise<number> {
    const touched = new Set<number>(this.writing.keys());
    this.touched = touched;
    let n = 0;
    try {
      for (let more = true; more; ) {
        const got = await read(this.cursor);
        const docs = got.docs as Lease[];
        for (let i = 0; i < docs.length; i++) {
          if (i > 0 && i % LEARN_SLICE === 0) await nextTurn();
          const doc = docs[i]!;
          if (typeof doc.address !== 'string') continue;
          const ip = ipInt(doc.address);
          if (touched.has(ip)) continue;
          const r = this.at(ip);
          if (r && same(r, doc)) continue;
          this.learn(doc);
          n++;
        }
        this.cursor = got.cursor;
        more = got.more;
      }
    } finally {
      if (this.touched === touched) this.touched = undefined;
    }
    return n;
  }
}
