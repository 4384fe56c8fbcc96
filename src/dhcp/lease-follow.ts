/**
 * The lease table's side of a shared store (issue 17): its claims, tracked per address while they are in flight,
 * and the catch-up reads (`store.leaseChanges`, every second by the server) that teach its index the rows other
 * daemons wrote. A row a catch-up read returns for an address this daemon was writing, or dropped, while the read
 * was out is left alone: its own write may be newer than the row read (the read's snapshot may predate its
 * COMMIT), and its claim's outcome taught the index already (won: its lease; lost: the holder's).
 *
 * A refresh (one address's row re-read, `store.get`: an INIT-REBOOT, renewal, RELEASE or DECLINE) can overlap a
 * catch-up too, whose page is learnt a slice per turn after its query returned, and the index must never go back
 * to an older row. Each read's rows are as of a snapshot taken between its sending and its return, so which of
 * two rows is newer follows from the order of the two reads on this daemon (`tick`: counted as each read is sent
 * and as it returns), not from the clocks of the daemons that wrote them:
 * - a read sent after the other returned is at least as new. A page's row is left alone at an address that a
 *   refresh sent after the page returned has taught (or found no row at: a row deleted since must not come back);
 *   a refresh's row replaces a page's that returned before the refresh was sent.
 * - a read that returned before the other was sent is older: a page sent after a refresh returned is learnt.
 * - two reads that overlapped are in no known order, whichever was sent first: the page's query may wait for a
 *   pool connection, or be planned, while the refresh's runs, so sent first is not snapshot first. Whichever
 *   reaches the index second does not learn its row (unless the index holds that row already) but reads the
 *   address again: a read sent now is newer than both. A page's re-reads are done before its cursor moves (one
 *   that fails has the page read again); a refresh's, before it resolves.
 * A refresh that finds no row learns nothing (a delete reaches the index as `leases.deleted`, `dropped`), so it
 * never replaces a page's row; per the rules above it only keeps a page's older row out.
 */

// A turn of the event loop: setImmediate runs after the poll phase, so the packets that arrived meanwhile go first.
import { setImmediate as nextTurn } from 'node:timers/promises';
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
 * 2 ms (500: 4; the page in all takes no longer), as long as a turn of the store's parsing of the page (PostgreSQL:
 * 500 rows a turn, PARSE_SLICE).
 */
export const LEARN_SLICE = 250;

/** A read in this daemon's order of reads: the ticks it was sent and returned at (the header's rule). */
type Read = { sent: number; returned: number };

export class LeaseFollower {
  /** Where the next catch-up reads from; undefined: not following. */
  cursor: string | undefined;
  // The addresses this daemon is writing (claims in flight), and those it wrote, began writing or dropped since
  // the catch-up read in flight was sent.
  private readonly writing = new Map<number, number>();
  private touched: Set<number> | undefined;
  private catching: Promise<number> | undefined;
  private tick = 0;
  // Per address, the refreshes in flight (n) and the return tick of the last page whose row the index took
  // meanwhile; and, during a catch-up, the last refresh to return since the page being learnt was sent.
  private readonly refreshing = new Map<number, { n: number; page: number }>();
  private readonly refreshed = new Map<number, Read>();

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

  /**
   * The stored row at `address` (RELEASE, DECLINE or REQUEST of a lease the index does not hold live), learnt;
   * read again when the index took a page's row for it that returned after this read was sent (no known order).
   */
  refresh(address: string): Promise<void> {
    const ip = ipInt(address);
    const mine = this.refreshing.get(ip) ?? { n: 0, page: 0 };
    mine.n++;
    this.refreshing.set(ip, mine);
    const sent = ++this.tick;
    const settled = () => {
      if (--mine.n === 0) this.refreshing.delete(ip);
    };
    return this.store.get('leases', address).then(
      (got): Promise<void> | undefined => {
        settled();
        const returned = ++this.tick;
        if (this.touched) this.refreshed.set(ip, { sent, returned });
        if (!got) return;
        const doc = got.doc as Lease;
        const r = this.at(ip);
        if (mine.page > sent && !(r && same(r, doc))) return this.refresh(address);
        this.learn(doc);
      },
      (err) => {
        settled();
        throw err;
      },
    );
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
   * `touched` kept for the whole of it. The cursor moves once a page's rows are all learnt (and the addresses
   * whose rows it could not order against a refresh's read again), so a failed page is read again by the next
   * catch-up and the pages before it are not.
   */
  private async readChanges(read: NonNullable<Store['leaseChanges']>): Promise<number> {
    const touched = new Set<number>(this.writing.keys());
    this.touched = touched;
    let n = 0;
    try {
      for (let more = true; more; ) {
        this.refreshed.clear();
        const sent = ++this.tick;
        const got = await read(this.cursor);
        const page: Read = { sent, returned: ++this.tick };
        const rereads: Promise<void>[] = [];
        const docs = got.docs as Lease[];
        for (let i = 0; i < docs.length; i++) {
          if (i > 0 && i % LEARN_SLICE === 0) await nextTurn();
          const doc = docs[i]!;
          if (typeof doc.address !== 'string') continue;
          const ip = ipInt(doc.address);
          if (!touched.has(ip) && this.take(doc, ip, page, rereads)) n++;
        }
        await Promise.all(rereads);
        this.cursor = got.cursor;
        more = got.more;
      }
    } finally {
      if (this.touched === touched) this.touched = undefined;
      this.refreshed.clear();
    }
    return n;
  }

  /**
   * A page's row at `ip`: learnt (true) unless the index has it, or a refresh that returned after the page was
   * sent taught the index: then left alone when the refresh was sent after the page returned, else read again.
   */
  private take(doc: Lease, ip: number, page: Read, rereads: Promise<void>[]): boolean {
    const r = this.at(ip);
    const differs = !(r && same(r, doc));
    if (differs) {
      const q = this.refreshed.get(ip);
      if (q && q.returned > page.sent) {
        if (q.sent < page.returned) rereads.push(this.refresh(doc.address));
        return false;
      }
      this.learn(doc);
    }
    const f = this.refreshing.get(ip);
    if (f) f.page = page.returned;
    return differs;
  }
}
