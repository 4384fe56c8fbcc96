/**
 * Retransmission timing of TFTP transfers: the timeout of one transfer (an RFC 6298 style estimate, bounded by the
 * negotiated RFC 2349 timeout) and the one tick that checks every transfer's deadline. No sockets: a transfer asks
 * its timer when to resend and when to give up, and the server's tick tells it when a deadline has passed.
 */

/** Interval of the shared tick, ms; also the clock granularity G of RFC 6298. */
export const TICK_MS = 10;

/** What a transfer does when its deadline passes. */
export type Expiry = 'resend' | 'timeout' | 'unanswered';

export type RetryBudget = {
  /** A transfer fails after maxRto x maxRetries ms without progress. */
  maxRetries: number;
  /** Expiries tolerated while the client has never answered (see limits.ts: the source may be forged). */
  unansweredRetries: number;
};

/** The retransmission timer of one transfer. */
export class RetransmitTimer {
  rto: number;
  deadline: number;
  lastProgressAt: number;
  srtt = 0;
  rttvar = 0;
  /** Retransmission timer expiries so far. */
  timeouts = 0;

  /**
   * `maxRto`: the client's RFC 2349 timeout when it asked one (`fixed`: then never adapted), else the server's.
   * No RTT sample yet: start at the full timeout (RFC 6298 2.1), adapt after the first ACK.
   */
  constructor(
    now: number,
    readonly maxRto: number,
    readonly fixed: boolean,
  ) {
    this.rto = maxRto;
    this.deadline = now + maxRto;
    this.lastProgressAt = now;
  }

  /** An RTT sample (ms) from an ACK of a block sent once (Karn); `floor` is the lowest timeout allowed now. */
  sample(ms: number, floor: number): void {
    // RFC 2349: a client that asked for a timeout gets that interval; adaptive only when it asked none.
    if (this.fixed) return;
    // RFC 6298 section 2, in ms; the tick granularity is the clock granularity G.
    if (this.srtt === 0) {
      this.srtt = ms;
      this.rttvar = ms / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - ms);
      this.srtt = 0.875 * this.srtt + 0.125 * ms;
    }
    this.rto = Math.min(this.maxRto, Math.max(floor, this.srtt + Math.max(TICK_MS, 4 * this.rttvar)));
  }

  /** The deadline has passed: give up, or back off (double the timeout up to the maximum) and resend. */
  expire(now: number, answered: boolean, budget: RetryBudget): Expiry {
    // Never answered: the request may come from a forged address, so the first packet is not repeated to it for the
    // whole retry budget (bounds the reflection and the socket held); a real client whose answer was lost asks again.
    if (!answered && this.timeouts >= budget.unansweredRetries) return 'unanswered';
    if (now - this.lastProgressAt >= this.maxRto * budget.maxRetries) return 'timeout';
    this.timeouts++;
    this.rto = Math.min(this.rto * 2, this.maxRto);
    this.deadline = now + this.rto;
    return 'resend';
  }
}

export type Timed = { readonly timer: RetransmitTimer; expired(now: number): void };

/**
 * One interval for all transfers, running only while there are any (nothing left behind after close()): timers keep
 * firing under load, and sends happen only in reaction to ACKs, ticks and finished reads, never in a self-feeding loop.
 */
export class RetransmitTicker {
  private tick: NodeJS.Timeout | undefined;
  private expiryCheckQueued = false;

  constructor(
    private readonly active: ReadonlySet<Timed>,
    private readonly now: () => number,
  ) {}

  ensure(): void {
    if (this.tick === undefined && this.active.size > 0) this.tick = setInterval(() => this.onTick(), TICK_MS);
  }

  stopIfIdle(): void {
    if (this.tick !== undefined && this.active.size === 0) {
      clearInterval(this.tick);
      this.tick = undefined;
    }
  }

  private onTick(): void {
    if (this.expiryCheckQueued) return;
    const now = this.now();
    for (const t of this.active) {
      if (now >= t.timer.deadline) {
        // Timers run before the poll phase: an ACK that has arrived may still sit unread in its socket. Decide in
        // setImmediate (after this iteration's poll) so a busy loop does not turn a late read into a retransmission.
        this.expiryCheckQueued = true;
        setImmediate(() => this.checkExpired());
        return;
      }
    }
  }

  /** Every transfer whose deadline has passed handles its expiry (also what a test calls with a fake clock). */
  checkExpired(): void {
    this.expiryCheckQueued = false;
    const now = this.now();
    for (const t of this.active) if (now >= t.timer.deadline) t.expired(now);
  }
}
