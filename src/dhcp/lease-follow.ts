/**
 * The lease table's side of a shared store (issue 17): its claims, tracked per address while they are in flight,
 * and the catch-up reads (`store.leaseChanges`, every second by the server) that teach its index the rows other
 * daemons wrote. A row a catch-up read returns for an address this daemon was writing, or dropped, while the read
 * was out is left alone: its own write may be newer than the row read (the read's snapshot may predate its
 * COMMIT), and its claim's outcome taught the index already (won: its lease; lost: the holder's).
 *
 * Three reads teach the index a row at an address: a catch-up page (its rows learnt a slice per turn after its
 * query returned), a refresh (one address's row re-read, `store.get`: an INIT-REBOOT, renewal, RELEASE or
 * DECLINE) and a lost claim's holder row (read by the claim's statement: the row that kept the address, or the
 * client's other lease, at another address). Any two can overlap, and the index must never go back to an older
 * row. Each read's rows are as of a snapshot taken between its sending and its return, so which of two rows is
 * newer follows from the order of the two reads on this daemon (`tick`: counted as each read is sent and as it
 * returns), not from the clocks of the daemons that wrote them. Per address the follower keeps the ticks of the
 * last read whose row the index took (`taken`), and a read's row that reaches the index:
 * - is learnt when the read was sent after that one returned: at least as new. So is a page sent after a refresh
 *   returned, or a refresh's row after a page that returned before the refresh was sent.
 * - is left alone when the read returned before that one was sent: older. So is a page's row at an address that a
 *   refresh sent after the page returned has taught, or found no row at (a row deleted since must not come back).
 * - when the two overlapped, they are in no known order, whichever was sent first: a query may wait for a pool
 *   connection, or be planned, while the other's runs, so sent first is not snapshot first. The row is not learnt
 *   (unless the index holds it already) and the address is read again: a read sent now is newer than both. A
 *   page's re-reads are done before its cursor moves (one that fails has the page read again); a refresh's, before
 *   it resolves; a lost claim's, before it does.
 * A refresh that finds no row learns nothing (a delete reaches the index as `leases.deleted`, `dropped`, which
 * counts as a read that found none, sent as it arrives), so it never replaces another read's row; it only keeps an
 * older one out. A won claim counts as a read of its own row (the index holds its lease as of its COMMIT), so a
 * refresh or holder row that overlapped it reads the address again, not replacing the lease with a row that may
 * predate it; and a refresh or holder row that comes back while this daemon is writing its address waits for those
 * claims' outcomes, then is ordered against them (a page's row is left alone, above). Ticks are kept only while a
 * claim or refresh sent before that read returned is out, or the page being learnt is (a holder row can be at any
 * address; a read sent after they returned is newer anyway): the reads of the last few ms, or a page's rows while
 * it is learnt, never one per address of the pools.
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
  // Per address, the claims this daemon has in flight there and the reads waiting for their outcomes; and the
  // addresses it wrote, began writing or dropped since the catch-up read in flight was sent.
  private readonly writing = new Map<number, { n: number; waiting: (() => void)[] }>();
  private touched: Set<number> | undefined;
  private catching: Promise<number> | undefined;
  private tick = 0;
  // The send ticks of the claims and refreshes out (in order: ticks only grow) and of the page being read or
  // learnt; per address, the last read whose row the index took, while one of those was sent before it returned.
  private readonly out = new Set<number>();
  private pageSent: number | undefined;
  private readonly taken = new Map<number, Read>();

  constructor(
    private readonly store: Store,
    /** What the index holds at an address. */
    private readonly at: (ip: number) => LeaseRec | undefined,
    /** Puts another daemon's lease in the index (replacing what it had at that address), publishing its event. */
    private readonly learn: (d: Lease) => void,
  ) {}

  /**
   * Claims `doc` at `ip` in the store; false when another daemon's client holds it (the index learns its lease,
   * the holder row, ordered as a read sent and returned with the claim).
   */
  claim(ip: number, doc: Omit<LeaseRec, 'ip' | 'exp'>, now: string): Promise<boolean> {
    const w = this.writing.get(ip) ?? { n: 0, waiting: [] };
    w.n++;
    this.writing.set(ip, w);
    this.touched?.add(ip);
    const sent = this.send();
    const settled = (): Read => {
      if (--w.n === 0) {
        this.writing.delete(ip);
        for (const go of w.waiting.splice(0)) go();
      }
      this.touched?.add(ip);
      return { sent, returned: ++this.tick };
    };
    return this.store.claimLease!({ doc, now }).then(
      async (r) => {
        const q = settled();
        const holder = r.ok ? undefined : (r.holder as Lease | undefined);
        if (typeof holder?.address === 'string') {
          await this.arrive(holder.address, q, holder);
          return false;
        }
        // Won: the index holds its lease as of its COMMIT, which a read overlapping the claim is ordered against.
        this.out.delete(sent);
        if (r.ok) this.took(ip, q);
        this.prune();
        return r.ok;
      },
      (err) => {
        settled();
        this.out.delete(sent);
        this.prune();
        throw err;
      },
    );
  }

  /** The stored row at `address` (RELEASE, DECLINE or REQUEST of a lease the index does not hold live), learnt. */
  refresh(address: string): Promise<void> {
    const sent = this.send();
    return this.store.get('leases', address).then(
      (got) => this.arrive(address, { sent, returned: ++this.tick }, got?.doc as Lease | undefined),
      (err) => {
        this.out.delete(sent);
        this.prune();
        throw err;
      },
    );
  }

  /**
   * The index drops `ip` (`leases.deleted`): a catch-up read out now must not bring its row back, and a refresh
   * or holder row read before the delete reached this daemon must not either. The delete counts as a read that
   * found no row, sent and returned now (it committed before): a refresh or claim out now reads the address again.
   */
  dropped(ip: number): void {
    this.touched?.add(ip);
    const now = ++this.tick;
    this.took(ip, { sent: now, returned: now });
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
   * whose rows it could not order against another read's read again), so a failed page is read again by the next
   * catch-up and the pages before it are not.
   */
  private async readChanges(read: NonNullable<Store['leaseChanges']>): Promise<number> {
    const touched = new Set<number>(this.writing.keys());
    this.touched = touched;
    let n = 0;
    try {
      for (let more = true; more; ) {
        const sent = ++this.tick;
        this.pageSent = sent;
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
        this.pageSent = undefined;
        this.prune();
        await Promise.all(rereads);
        this.cursor = got.cursor;
        more = got.more;
      }
    } finally {
      if (this.touched === touched) this.touched = undefined;
      this.pageSent = undefined;
      this.prune();
    }
    return n;
  }

  /** A page's row at `ip`, ordered (the header's rule): true when learnt and the index held another row. */
  private take(doc: Lease, ip: number, page: Read, rereads: Promise<void>[]): boolean {
    const how = this.order(ip, page, doc);
    if (how === 'again') rereads.push(this.refresh(doc.address));
    if (how !== 'take') return false;
    this.took(ip, page, true);
    const r = this.at(ip);
    if (r && same(r, doc)) return false;
    this.learn(doc);
    return true;
  }

  /**
   * A refresh's or a lost claim's holder row `doc` (undefined: none found) at `address`, once the claims this
   * daemon has in flight there have their outcomes: learnt, left alone, or the address read again (before the
   * returned promise resolves).
   */
  private async arrive(address: string, q: Read, doc: Lease | undefined): Promise<void> {
    const ip = ipInt(address);
    for (let w = this.writing.get(ip); w; w = this.writing.get(ip)) await this.outcome(w);
    this.out.delete(q.sent);
    const how = this.order(ip, q, doc);
    if (how === 'take') this.took(ip, q);
    this.prune();
    if (how === 'again') return this.refresh(address);
    if (how === 'take' && doc) this.learn(doc);
  }

  /** Settles once the claims of `w` have all returned (and their outcomes taught the index). */
  private outcome(w: { waiting: (() => void)[] }): Promise<void> {
    return new Promise((go) => w.waiting.push(go));
  }

  /**
   * Where a read's row `doc` (undefined: none) at `ip` stands against the last read whose row the index took
   * there: 'take' when sent after that one returned (or none is kept), or overlapping it with the row the index
   * holds; 'keep' when it returned before that one was sent, or overlapped it and found no row; else 'again'.
   */
  private order(ip: number, q: Read, doc: Lease | undefined): 'take' | 'keep' | 'again' {
    const last = this.taken.get(ip);
    if (!last || last.returned < q.sent) return 'take';
    if (q.returned < last.sent || !doc) return 'keep';
    const r = this.at(ip);
    return r && same(r, doc) ? 'take' : 'again';
  }

  /** A claim or refresh sent now: its tick. */
  private send(): number {
    const sent = ++this.tick;
    this.out.add(sent);
    return sent;
  }

  /**
   * The index took read `q`'s row at `ip` (or `q` found none): kept while a read sent before `q` returned is out
   * (a claim or refresh; the page being learnt, unless `q` is that page), as only such a read can be in no known
   * order with it, or older.
   */
  private took(ip: number, q: Read, page = false): void {
    this.taken.delete(ip);
    if (this.floor(!page) < q.returned) this.taken.set(ip, q);
  }

  /** The tick the oldest read out was sent at (a claim or refresh; and the page being learnt when `page`). */
  private floor(page: boolean): number {
    const first = this.out.values().next();
    const f = first.done ? Number.POSITIVE_INFINITY : first.value;
    return page && this.pageSent !== undefined ? Math.min(f, this.pageSent) : f;
  }

  /** Drops the kept reads no read out needs, oldest first (`taken` is in the order they were kept). */
  private prune(): void {
    const floor = this.floor(true);
    for (const [ip, q] of this.taken) {
      if (q.returned >= floor) break;
      this.taken.delete(ip);
    }
  }
}
