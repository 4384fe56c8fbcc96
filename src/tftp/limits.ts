/**
 * Admission of TFTP transfers: how many may be in flight in total and per client address, and which one gives way
 * when a cap is reached. Policy only: no sockets, no timers (the server loop owns those).
 *
 * Why eviction rather than a plain "full": a read request costs a spoofer one datagram, and every request admitted
 * holds a descriptor until the transfer gives up. A transfer whose client has never answered (not one ACK or ERROR from
 * the client's TID) has shown no evidence that anyone asked for it, so when a cap is reached the oldest such transfer
 * is dropped to make room. A flood from forged addresses then only ever displaces its own unanswered transfers, while
 * transfers whose clients answer are never displaced; a real client is turned away only when every slot is held by a
 * client that answers (a genuine overload).
 */

export type AdmissionLimits = {
  /** Transfers in flight (set up or running), all clients together. */
  maxTotal: number;
  /** Transfers in flight from one client address (all its ports). */
  maxPerClient: number;
};

export type Admit<T> = { ok: true; evict?: T } | { ok: false; reason: 'total' | 'client' };

export class Admission<T> {
  private total = 0;
  private readonly perAddress = new Map<string, number>();
  /** Unanswered transfers, oldest first (a Set iterates in insertion order). */
  private readonly unanswered = new Set<T>();
  private readonly unansweredBy = new Map<string, Set<T>>();
  private readonly addressOf = new Map<T, string>();

  constructor(private readonly limits: AdmissionLimits) {}

  get inFlight(): number {
    return this.total;
  }

  inFlightFrom(address: string): number {
    return this.perAddress.get(address) ?? 0;
  }

  /**
   * Whether a new request from `address` may start, and if only by dropping an unanswered transfer, which one (the
   * caller ends it, which releases its slot, then calls acquire).
   */
  admit(address: string): Admit<T> {
    if (this.inFlightFrom(address) >= this.limits.maxPerClient) {
      const victim = first(this.unansweredBy.get(address));
      return victim === undefined ? { ok: false, reason: 'client' } : { ok: true, evict: victim };
    }
    if (this.total >= this.limits.maxTotal) {
      const victim = first(this.unanswered);
      return victim === undefined ? { ok: false, reason: 'total' } : { ok: true, evict: victim };
    }
    return { ok: true };
  }

  acquire(address: string): void {
    this.total++;
    this.perAddress.set(address, this.inFlightFrom(address) + 1);
  }

  release(address: string): void {
    const n = this.inFlightFrom(address);
    if (n <= 0) return;
    this.total--;
    if (n === 1) this.perAddress.delete(address);
    else this.perAddress.set(address, n - 1);
  }

  /** A transfer that has sent its first packet and heard nothing back yet: it may be evicted. */
  awaiting(t: T, address: string): void {
    this.unanswered.add(t);
    this.addressOf.set(t, address);
    let set = this.unansweredBy.get(address);
    if (set === undefined) {
      set = new Set();
      this.unansweredBy.set(address, set);
    }
    set.add(t);
  }

  /** The client answered (or the transfer ended): it is no longer a candidate for eviction. */
  answered(t: T): void {
    const address = this.addressOf.get(t);
    if (address === undefined) return;
    this.addressOf.delete(t);
    this.unanswered.delete(t);
    const set = this.unansweredBy.get(address);
    set?.delete(t);
    if (set?.size === 0) this.unansweredBy.delete(address);
  }

  get unansweredCount(): number {
    return this.unanswered.size;
  }
}

function first<T>(set: Set<T> | undefined): T | undefined {
  if (set === undefined) return undefined;
  for (const x of set) return x;
  return undefined;
}
