/**
 * What a TFTP server is started with (server.ts). Every field has a default; the daemon maps its configuration
 * (`--tftp-*`) onto these.
 */
import type { Logger } from '../log.js';
import type { TftpSource } from './source.js';
import type { openTransferSocket } from './transport.js';

export type TftpServerOptions = {
  source: TftpSource;
  /** Listening address; default 0.0.0.0 (udp4). */
  address?: string;
  /** Default 69; 0 picks a free port (tests). */
  port?: number;
  logger?: Logger;
  /**
   * Largest blksize granted (default 1468: one Ethernet frame, no IP fragments through firmware NICs). A file the
   * source opens may lower it for its own transfer (`blksizeCap`, e.g. a firmware quirk of the machine asking).
   */
  maxBlksize?: number;
  /** Largest windowsize granted (RFC 7440); default 64. */
  maxWindowsize?: number;
  /** Retransmission timeout when the client asked none (RFC 2349 default), ms; upper bound of the adaptive one. */
  timeoutMs?: number;
  /**
   * Lower bound of the adaptive retransmission timeout, ms (default 200, Linux TCP's minimum RTO). It rises with
   * the number of transfers in flight (see rtoFloor), up to the maximum.
   */
  minTimeoutMs?: number;
  /**
   * A transfer fails after (maximum timeout x maxRetries) ms without progress (default 5: 5 s, or 5x the client's
   * RFC 2349 timeout). Retransmissions back off from the adaptive timeout up to the maximum, so their number is bounded.
   */
  maxRetries?: number;
  /**
   * WRQ is refused (ERROR 2) unless set; uploads are then confined to this directory. An upload is written to a
   * temporary file and renamed over the target only once complete (as atftpd and tftp-hpa replace files): a failed
   * upload never leaves a half-written file under the real name.
   */
  uploadDir?: string;
  /** Upload size limit in bytes (default 256 MiB); larger ones get ERROR 3. */
  maxUploadBytes?: number;
  /** netascii is converted in memory: files larger than this are refused in that mode (default 16 MiB). */
  netasciiMaxBytes?: number;
  /** Bytes of ready-to-send DATA packets shared between transfers of the same file (default 32 MiB). */
  packetCacheBytes?: number;
  /**
   * Transfer sockets through the native helper when it is built (default true; see transport.ts), and with it a
   * window sent as one UDP GSO datagram (`gso`, default true) rather than one sendmmsg, and the next window handed to
   * the socket before its ACK arrives (`armWindows`, default true; see read.ts arm). For tests and A/B figures.
   */
  nativeSockets?: boolean;
  gso?: boolean;
  armWindows?: boolean;
  /**
   * After a send, a transfer whose client answers within this many microseconds waits for the answer by polling its
   * socket instead of letting the thread sleep (default 200; 0 turns it off). On virtual machines waking a halted
   * vCPU costs tens of microseconds per window, more than sending it; the poll gives way the moment any other socket,
   * timer-free handle or finished read of the loop is ready, and never runs for clients slower than the bound
   * (real firmware on a real LAN usually is). Native sockets only.
   */
  busyPollUs?: number;
  /**
   * Transfers in flight at once, all clients together (default 1024), and from one client address (default 256:
   * atftp's own conformance script runs 200 clients from one host). At a cap the oldest transfer whose client never
   * answered gives way; if every slot is held by a client that answers, the request is dropped without a reply
   * (see limits.ts and the README for why no ERROR).
   */
  maxTransfers?: number;
  maxTransfersPerClient?: number;
  /**
   * Largest RFC 2349 timeout granted, in seconds (default 10); a larger one is left out of the OACK and the server's
   * own timeout applies. A granted timeout is the retransmission interval, not adapted (RFC 2349).
   */
  maxClientTimeout?: number;
  /**
   * Retransmissions of a transfer's first packet (OACK, DATA 1, or ACK 0 of an upload) while its client has never
   * answered (default 2), one retransmission interval apart; then the transfer is dropped. Bounds what a request from
   * a forged address gets sent (1 + this many packets) and how long its socket is held (3 s at the defaults).
   */
  unansweredRetries?: number;
  /** Opens transfer sockets; tests inject one that fails (EMFILE). */
  openSocket?: typeof openTransferSocket;
};
