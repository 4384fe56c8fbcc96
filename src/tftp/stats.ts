/**
 * The TFTP server's counters (API info, `/metrics`) and the one log line each transfer ends with. Transfers and the
 * server count into the same object; what a finished transfer adds, and at which level it is logged, is decided here.
 */
import type { Logger } from '../log.js';
import type { rateLimitedLog } from '../log-limit.js';

/** transfersStarted = transfersCompleted + transfersFailed + sizeProbes + active transfers. */
export type TftpStats = {
  transfersStarted: number;
  transfersCompleted: number;
  transfersFailed: number;
  /** ERROR 8 right after our OACK: firmware asking only for tsize (a normal part of PXE boots). */
  sizeProbes: number;
  requestsRefused: number;
  bytesSent: number;
  bytesReceived: number;
  packetsSent: number;
  retransmits: number;
  /** Windows the transfer socket sent by itself the moment their ACK arrived (native sockets; see read.ts arm). */
  windowsOnAck: number;
  malformed: number;
  /** Well-formed packets that make no sense where they arrived (e.g. an ACK on the listening port). */
  unexpected: number;
  duplicateRequests: number;
  /** Requests dropped without reply: a cap was reached and every transfer at it had an answering client. */
  requestsDropped: number;
  /** Unanswered transfers ended to make room for a new request at a cap (also counted in transfersFailed). */
  transfersEvicted: number;
  /** Transfers given up because the client never answered the first packet (also counted in transfersFailed). */
  transfersUnanswered: number;
  /**
   * Requests left unanswered because a transfer socket, or the file (out of descriptors: EMFILE, ENFILE), could not
   * be opened; the client retries.
   */
  openErrors: number;
  /** RFC 2349 timeouts above maxClientTimeout, left out of the OACK. */
  timeoutsDeclined: number;
  /** Gauges: transfers in flight, and transfer sockets open (including uploads dallying after their last ACK). */
  readonly activeTransfers: number;
  readonly openSockets: number;
};

/** How a transfer ended. */
export type Result =
  | 'ok'
  | 'timeout'
  | 'client-error'
  | 'probe'
  | 'read-error'
  | 'write-error'
  | 'cancelled'
  | 'refused'
  | 'unanswered'
  | 'evicted';

/** Zeroed counters; the gauges read the server's live sets (enumerable: the API's info and /metrics read every field). */
export function newStats(gauges: { activeTransfers(): number; openSockets(): number }): TftpStats {
  const stats = {
    transfersStarted: 0,
    transfersCompleted: 0,
    transfersFailed: 0,
    sizeProbes: 0,
    requestsRefused: 0,
    bytesSent: 0,
    bytesReceived: 0,
    packetsSent: 0,
    retransmits: 0,
    windowsOnAck: 0,
    malformed: 0,
    unexpected: 0,
    duplicateRequests: 0,
    requestsDropped: 0,
    transfersEvicted: 0,
    transfersUnanswered: 0,
    openErrors: 0,
    timeoutsDeclined: 0,
    activeTransfers: 0,
    openSockets: 0,
  };
  Object.defineProperties(stats, {
    activeTransfers: { enumerable: true, get: gauges.activeTransfers },
    openSockets: { enumerable: true, get: gauges.openSockets },
  });
  return stats;
}

/** What the log line of a finished transfer says about it. */
export type TransferLine = {
  client: string;
  op: 'read' | 'write';
  file: string;
  mode: string;
  options: Record<string, number>;
  bytes: number;
  durationMs: number;
  retransmits: number;
};

/** Counts a finished transfer and logs it: one line each, except what floods produce by the thousand. */
export function reportTransfer(
  stats: TftpStats,
  log: Logger,
  limited: ReturnType<typeof rateLimitedLog>,
  t: TransferLine,
  result: Result,
): void {
  const line = { ...t, result };
  if (result === 'probe') {
    stats.sizeProbes++;
    log.debug(line, 'tftp size probe (ERROR 8 after OACK)');
    return;
  }
  if (result === 'unanswered' || result === 'evicted') {
    // A flood of forged requests ends this way by the thousand: one line per transfer at debug, a summary at info.
    stats.transfersFailed++;
    if (result === 'unanswered') stats.transfersUnanswered++;
    else stats.transfersEvicted++;
    log.debug(line, 'tftp transfer');
    limited(
      'info',
      result,
      {
        client: t.client,
        file: t.file,
        total: stats[result === 'unanswered' ? 'transfersUnanswered' : 'transfersEvicted'],
      },
      result === 'unanswered'
        ? 'tftp transfers dropped: the client never answered the first packet (gone, or a forged source address)'
        : 'tftp transfers dropped unanswered to make room at a transfer cap (a flood of requests?)',
    );
    return;
  }
  if (result === 'ok') stats.transfersCompleted++;
  else stats.transfersFailed++;
  log.info(line, 'tftp transfer');
}
