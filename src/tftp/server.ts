/**
 * TFTP server loop (RFC 1350 + 2347/2348/2349/7440). Knows nothing about what to boot: paths go to a `TftpSource`.
 *
 * One ephemeral UDP socket per transfer (RFC 1350 TID), talking only to its client: a DATA or ACK from anyone else
 * gets ERROR 5 and leaves the transfer alone (transport.ts). Reads are go-back-N windows (windowsize 1 is lock-step),
 * a window's packets sent from shared ready-made buffers (packets.ts) in one batch; block numbers wrap 65535 -> 0 so
 * files past 32 MiB at blksize 512 transfer whole. Retransmission uses an adaptive timeout (RFC 6298 style estimate,
 * bounded by the negotiated RFC 2349 timeout) driven by one shared timer, so timers keep firing under load: sends
 * happen only in response to ACKs, timer ticks and finished disk reads, never in a self-feeding loop.
 */
import dgram from 'node:dgram';
import { open, rename, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { bindFailure } from '../bind-error.js';
import { confine } from '../files/confine.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { rateLimitedLog } from '../log-limit.js';
import { Admission } from './limits.js';
import {
  decodePacket,
  ERR,
  encodeAck,
  encodeError,
  encodeOack,
  type Limits,
  NEGOTIATION_FAILED,
  type Negotiated,
  negotiate,
} from './packet.js';
import { layoutPackets, layoutPacketsNow, packetCache } from './packets.js';
import { bufferFile, type TftpClient, type TftpFile, type TftpSource } from './source.js';
import { openTransferSocket, type TransferHandlers, type TransferSocket } from './transport.js';

export type TftpServerOptions = {
  source: TftpSource;
  /** Listening address; default 0.0.0.0 (udp4). */
  address?: string;
  /** Default 69; 0 picks a free port (tests). */
  port?: number;
  logger?: Logger;
  /** Largest blksize granted (default 1468: one Ethernet frame, no IP fragments through firmware NICs). */
  maxBlksize?: number;
  /** Per-client cap (subnet or machine policy), e.g. <= 1024 for UEFI clients that mis-negotiate large blocks. */
  maxBlksizeFor?: (clientAddress: string) => number | undefined;
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
   * the socket before its ACK arrives (`armWindows`, default true; see arm). For tests and A/B figures.
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
  /** Windows the transfer socket sent by itself the moment their ACK arrived (native sockets; see arm). */
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

export type TftpServer = {
  readonly address: string;
  readonly port: number;
  /** Live counters (read-only view). */
  readonly stats: Readonly<TftpStats>;
  activeTransfers(): number;
  /** Stops listening, cancels every transfer, releases every socket, file and timer. */
  close(): Promise<void>;
};

type Result =
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

/** A transfer slot (see limits.ts), held from the request until its transfer ends or never starts. */
type Slot = { address: string; held: boolean };

type Common = {
  sock: TransferSocket;
  key: string;
  client: TftpClient;
  filename: string;
  mode: string;
  neg: Negotiated;
  startedAt: number;
  lastProgressAt: number;
  deadline: number;
  rto: number;
  maxRto: number;
  srtt: number;
  rttvar: number;
  bytes: number;
  retransmits: number;
  done: boolean;
  slot: Slot;
  /** Any datagram from the client's TID yet: until then the source address may be forged. */
  answered: boolean;
  /** Retransmission timer expiries so far. */
  timeouts: number;
};

type ReadTransfer = Common & {
  kind: 'read';
  file: TftpFile;
  size: number;
  blksize: number;
  window: number;
  /** Absolute number of the final block (always shorter than blksize, possibly empty). */
  last: number;
  /** OACK bytes when options were granted: then it is "block 0" and needs ACK 0. */
  oack?: Buffer;
  /** First block not yet acknowledged. */
  base: number;
  next: number;
  /** Highest block sent so far. */
  hi: number;
  /** Retransmitted since the last progress: no RTT sample then (Karn). */
  rtx: boolean;
  lastTxAt: number;
  chunkBlocks: number;
  /** Packet-ready chunks (header + payload per block, back to back), by chunk index. */
  chunks: Map<number, Buffer>;
  /** The socket holds the next window, to send when ACK `hi` arrives (see arm). */
  armed: boolean;
  loading: Set<number>;
};

type WriteTransfer = Common & {
  kind: 'write';
  blksize: number;
  /** Next block expected (absolute). */
  expected: number;
  lastAck: Buffer;
  fh?: import('node:fs/promises').FileHandle;
  tmp: string;
  final: string;
  writing: boolean;
  maxBytes: number;
  dallyTimer?: NodeJS.Timeout;
};

type Transfer = ReadTransfer | WriteTransfer;

const TICK_MS = 10;
/** Added to the retransmission floor per transfer in flight (see rtoFloor). */
const LOAD_FLOOR_MS_PER_TRANSFER = 5;
/** Bytes of file data per chunk read from the source. */
const CHUNK_TARGET = 128 * 1024;

/** RFC 1350 netascii for a Unix file: LF -> CR LF, a bare CR -> CR NUL (what tftp-hpa and BSD do). */
export function toNetascii(buf: Buffer): Buffer {
  let extra = 0;
  for (let i = 0; i < buf.length; i++) if (buf[i] === 0x0a || buf[i] === 0x0d) extra++;
  if (extra === 0) return buf;
  const out = Buffer.allocUnsafe(buf.length + extra);
  let o = 0;
  for (let i = 0; i < buf.length; i++) {
    const c = buf[i];
    if (c === 0x0a) {
      out[o++] = 0x0d;
      out[o++] = 0x0a;
    } else if (c === 0x0d) {
      out[o++] = 0x0d;
      out[o++] = 0x00;
    } else out[o++] = c;
  }
  return out;
}

/** Temporary: descriptors run out under a flood (ours or another service's) and come back when it passes. */
function outOfDescriptors(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EMFILE' || code === 'ENFILE';
}

export async function startTftpServer(opts: TftpServerOptions): Promise<TftpServer> {
  const log = opts.logger ?? silentLogger;
  const bindAddress = opts.address ?? '0.0.0.0';
  const defaultMaxBlksize = opts.maxBlksize ?? 1468;
  const maxWindowsize = opts.maxWindowsize ?? 64;
  const timeoutMs = opts.timeoutMs ?? 1000;
  const minTimeoutMs = Math.min(opts.minTimeoutMs ?? 200, timeoutMs);
  const maxRetries = opts.maxRetries ?? 5;
  const maxClientTimeout = opts.maxClientTimeout ?? 10;
  const unansweredRetries = opts.unansweredRetries ?? 2;
  const openSocket = opts.openSocket ?? openTransferSocket;
  const maxUploadBytes = opts.maxUploadBytes ?? 256 * 1024 * 1024;
  const netasciiMax = opts.netasciiMaxBytes ?? 16 * 1024 * 1024;

  const stats: TftpStats = {
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
  const active = new Set<Transfer>();
  const transferSockets = new Set<TransferSocket>();
  // Enumerable getters: the API's info and /metrics read every numeric field of stats.
  Object.defineProperties(stats, {
    activeTransfers: { enumerable: true, get: () => active.size },
    openSockets: { enumerable: true, get: () => transferSockets.size },
  });
  const admission = new Admission<Transfer>({
    maxTotal: opts.maxTransfers ?? 1024,
    maxPerClient: opts.maxTransfersPerClient ?? 256,
  });
  const limited = rateLimitedLog(log);
  const packets = packetCache(opts.packetCacheBytes ?? 32 * 1024 * 1024);
  /**
   * Requests being set up or transferred, by client "addr:port": a retransmitted request must not fork a second
   * transfer, while a different request from the same port (a firmware that re-asks right after its ERROR 8 probe,
   * racing the ERROR on the transfer socket) replaces the old transfer.
   */
  type Entry = { raw: Buffer; slot: Slot; transfer?: Transfer };
  const byClient = new Map<string, Entry>();
  const socketsClosing = new Set<Promise<void>>();
  const dallying = new Set<NodeJS.Timeout>();
  const pending = new Set<Promise<void>>();
  let tick: NodeJS.Timeout | undefined;
  let closing = false;

  const listener = dgram.createSocket({ type: 'udp4' });
  const listenerClosed = new Promise<void>((resolve) => listener.once('close', resolve));
  const wantPort = opts.port ?? 69;
  try {
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.bind(wantPort, bindAddress, () => {
        listener.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    listener.close();
    const code = (err as NodeJS.ErrnoException).code;
    // The same formatter as DHCP and HTTP; keeps `code` (EADDRINUSE, EACCES, ...) so callers can still branch on it.
    const why = bindFailure(
      'TFTP',
      `${bindAddress}:${wantPort}${code ? ` (${code})` : ''}`,
      wantPort,
      err as NodeJS.ErrnoException,
      {
        port: '--tftp-port',
        off: '--no-tftp',
        holders: 'another TFTP server (tftpd-hpa, dnsmasq --enable-tftp, atftpd)',
        check: 'check the tftp address and port settings',
      },
    );
    throw Object.assign(new Error(`tftp: ${why}`, { cause: err }), { code });
  }
  listener.on('error', (err) => log.error({ err }, 'tftp listening socket error'));
  const bound = listener.address();

  // ------------------------------------------------------------------------------------------------------------
  // Timers: one interval for all transfers, only while there are any (nothing left behind after close()).

  function ensureTick(): void {
    if (tick === undefined && active.size > 0) tick = setInterval(onTick, TICK_MS);
  }
  function stopTickIfIdle(): void {
    if (tick !== undefined && active.size === 0) {
      clearInterval(tick);
      tick = undefined;
    }
  }
  let expiryCheckQueued = false;
  function onTick(): void {
    if (expiryCheckQueued) return;
    const now = performance.now();
    for (const t of active) {
      if (now >= t.deadline) {
        // Timers run before the poll phase: an ACK that has arrived may still sit unread in its socket. Decide in
        // setImmediate (after this iteration's poll) so a busy loop does not turn a late read into a retransmission.
        expiryCheckQueued = true;
        setImmediate(checkExpired);
        return;
      }
    }
  }
  function checkExpired(): void {
    expiryCheckQueued = false;
    const now = performance.now();
    for (const t of active) if (now >= t.deadline) onTimeout(t, now);
  }

  function sampleRtt(t: Common, sample: number): void {
    // RFC 2349: a client that asked for a timeout gets that interval; adaptive only when it asked none.
    if (t.neg.timeout !== undefined) return;
    // RFC 6298 section 2, in ms; the tick granularity is the clock granularity G.
    if (t.srtt === 0) {
      t.srtt = sample;
      t.rttvar = sample / 2;
    } else {
      t.rttvar = 0.75 * t.rttvar + 0.25 * Math.abs(t.srtt - sample);
      t.srtt = 0.875 * t.srtt + 0.125 * sample;
    }
    t.rto = Math.min(t.maxRto, Math.max(rtoFloor(), t.srtt + Math.max(TICK_MS, 4 * t.rttvar)));
  }

  /**
   * Why the floor is not a few ms: with many clients on one host (atftp's own conformance script starts 200 at
   * once) round trips jump by hundreds of ms when the CPUs are shared, and every early retransmission is a
   * duplicate block the client reports and answers, adding load exactly when there is least to spare. The floor
   * grows by 5 ms per transfer in flight (200 transfers: 1 s, tftp-hpa's fixed timeout); one client on a lossy
   * link keeps the quick 200 ms.
   */
  function rtoFloor(): number {
    return Math.min(timeoutMs, Math.max(minTimeoutMs, LOAD_FLOOR_MS_PER_TRANSFER * active.size));
  }

  function onTimeout(t: Transfer, now: number): void {
    // Never answered: the request may come from a forged address, so the first packet is not repeated to it for the
    // whole retry budget (bounds the reflection and the socket held); a real client whose answer was lost asks again.
    if (!t.answered && t.timeouts >= unansweredRetries) {
      finish(t, 'unanswered');
      return;
    }
    if (now - t.lastProgressAt >= t.maxRto * maxRetries) {
      finish(t, 'timeout');
      return;
    }
    t.timeouts++;
    t.rto = Math.min(t.rto * 2, t.maxRto);
    t.deadline = now + t.rto;
    if (t.kind === 'read') {
      // RFC 7440 section 4: on timeout resend the window from the first unacknowledged block.
      t.rtx = true;
      t.next = t.base;
      pump(t);
    } else if (!t.writing) {
      t.retransmits++;
      stats.retransmits++;
      sendRaw(t, t.lastAck);
    }
  }

  function sendRaw(t: Common, buf: Buffer): void {
    stats.packetsSent++;
    t.sock.send(buf);
  }

  function releaseSlot(slot: Slot): void {
    if (!slot.held) return;
    slot.held = false;
    admission.release(slot.address);
  }

  function closeSocket(sock: TransferSocket): void {
    if (!transferSockets.delete(sock)) return;
    const p = sock.close().catch(() => {});
    socketsClosing.add(p);
    void p.finally(() => socketsClosing.delete(p));
  }

  // ------------------------------------------------------------------------------------------------------------
  // Reads.

  function chunkOf(t: ReadTransfer, block: number): number {
    return Math.floor((block - 1) / t.chunkBlocks);
  }

  function load(t: ReadTransfer, idx: number): void {
    if (t.loading.has(idx) || t.chunks.has(idx)) return;
    const first = idx * t.chunkBlocks + 1;
    if (first > t.last) return;
    const n = Math.min(t.chunkBlocks, t.last - first + 1);
    const pos = (first - 1) * t.blksize;
    t.loading.add(idx);
    const make = () => {
      // Warm file: laid out now, in one system call between two windows. Otherwise a thread-pool read.
      if (t.file.fd !== undefined) {
        const now = layoutPacketsNow(t.file.fd, pos, Math.min(n * t.blksize, t.size - pos), first, n, t.blksize);
        if (now !== undefined) return Promise.resolve(now);
      }
      return t.file.read(pos, n * t.blksize).then((data) => layoutPackets(data, first, n, t.blksize));
    };
    // Same content, same blksize: the same packets, whoever asks (see packets.ts).
    const loaded =
      t.file.id === undefined
        ? make()
        : packets.get(`${t.file.id}|${t.blksize}|${t.chunkBlocks}|${idx}`, n * (4 + t.blksize), make);
    loaded.then(
      (pkt) => {
        t.loading.delete(idx);
        if (t.done) return;
        t.chunks.set(idx, pkt);
        pump(t);
      },
      (err) => {
        t.loading.delete(idx);
        if (t.done) return;
        log.warn({ err, client: t.key, file: t.filename }, 'tftp read failed');
        sendRaw(t, encodeError(ERR.NOT_DEFINED, 'read error'));
        finish(t, 'read-error');
      },
    );
  }

  /**
   * Sends what the window allows from `next`; stops (to be called again) when a chunk is not loaded yet. The blocks of
   * a window that sit in one chunk are contiguous packets there, so they leave in one batch (one system call with the
   * native socket).
   */
  function pump(t: ReadTransfer): void {
    // RFC 2347: the OACK stands alone until the client acknowledges it with ACK 0.
    const limit = t.base === 0 ? 0 : Math.min(t.base + t.window - 1, t.last);
    const slot = 4 + t.blksize;
    let sent = false;
    while (t.next <= limit) {
      const b = t.next;
      if (b === 0) {
        sendRaw(t, t.oack!);
        if (t.hi >= 0) {
          t.retransmits++;
          stats.retransmits++;
        } else t.hi = 0;
        t.next = 1;
        sent = true;
        continue;
      }
      const idx = chunkOf(t, b);
      const pkt = t.chunks.get(idx);
      if (pkt === undefined) {
        load(t, idx);
        break;
      }
      const i = b - 1 - idx * t.chunkBlocks;
      // Read ahead one chunk as soon as the transfer enters this one.
      if (i === 0) load(t, idx + 1);
      const end = Math.min(limit, (idx + 1) * t.chunkBlocks);
      const count = end - b + 1;
      // Only the file's final block is short, and it can only be the last of a run.
      const lastLen = packetLength(t, end);
      t.sock.sendBatch(pkt, i * slot, slot, count, lastLen);
      sentRun(t, b, end, lastLen);
      sent = true;
    }
    if (sent) t.lastTxAt = performance.now();
    arm(t);
  }

  /** Bookkeeping for blocks b..end just sent (`lastLen`: bytes of the packet of `end`). */
  function sentRun(t: ReadTransfer, b: number, end: number, lastLen: number): void {
    const count = end - b + 1;
    stats.packetsSent += count;
    const fresh = end - Math.max(b - 1, t.hi);
    if (fresh > 0) {
      const bytes = (fresh - 1) * t.blksize + lastLen - 4;
      t.bytes += bytes;
      stats.bytesSent += bytes;
      t.hi = end;
    }
    const again = count - Math.max(0, fresh);
    t.retransmits += again;
    stats.retransmits += again;
    t.next = end + 1;
  }

  /** Length of the packet of block `end` (only the file's final block is short). */
  function packetLength(t: ReadTransfer, end: number): number {
    return 4 + Math.min(t.blksize, t.size - (end - 1) * t.blksize);
  }

  /**
   * Where the window is fully sent and the next one is already laid out, hand it to the socket now: the native socket
   * sends it the moment the ACK of this window arrives, before any JavaScript runs (onAck then only does the
   * bookkeeping, while the client is busy with the new window). Without it, the round trip of every window carries
   * the event loop's turn and this file's work, which is what kept one windowed client below atftpd.
   */
  function arm(t: ReadTransfer): void {
    if (t.sock.arm === undefined || opts.armWindows === false) return;
    const from = t.hi + 1;
    const to = Math.min(t.hi + t.window, t.last);
    const steady = t.base > 0 && t.next === from && t.hi === Math.min(t.base + t.window - 1, t.last) && from <= to;
    const idxA = chunkOf(t, from);
    const idxB = chunkOf(t, to);
    const a = steady ? t.chunks.get(idxA) : undefined;
    const b = idxB === idxA ? a : t.chunks.get(idxB);
    if (a === undefined || b === undefined) {
      if (t.armed) {
        t.armed = false;
        t.sock.disarm?.();
      }
      return;
    }
    const slot = 4 + t.blksize;
    const endA = Math.min(to, (idxA + 1) * t.chunkBlocks);
    const offA = (from - 1 - idxA * t.chunkBlocks) * slot;
    if (idxB === idxA) t.sock.arm(t.hi & 0xffff, slot, a, offA, endA - from + 1, packetLength(t, endA));
    else t.sock.arm(t.hi & 0xffff, slot, a, offA, endA - from + 1, slot, b, 0, to - endA, packetLength(t, to));
    t.armed = true;
  }

  /** The socket sent the armed window (blocks hi+1..) when this ACK came in: account for it as pump would have. */
  function armedSent(t: ReadTransfer): void {
    stats.windowsOnAck++;
    const from = t.next;
    const to = Math.min(t.hi + t.window, t.last);
    const idxA = chunkOf(t, from);
    const endA = Math.min(to, (idxA + 1) * t.chunkBlocks);
    sentRun(t, from, endA, packetLength(t, endA));
    if (endA < to) sentRun(t, endA + 1, to, packetLength(t, to));
    // Read ahead as pump does when a run starts a chunk.
    if (from - 1 === idxA * t.chunkBlocks) load(t, idxA + 1);
    if (endA < to) load(t, idxA + 2);
    t.lastTxAt = performance.now();
  }

  function onAck(t: ReadTransfer, block: number, fired: boolean): void {
    if (t.done) return;
    // Whatever came in, the socket is no longer armed (it sent the window, or dropped it).
    t.armed = false;
    // Map the 16-bit number onto [base-1, hi]: block numbers wrap past 65535 (rollover to 0).
    const delta = (block - (t.base - 1)) & 0xffff;
    const abs = t.base - 1 + delta;
    // Sorcerer's Apprentice (RFC 1123 4.2.3.1): a duplicate ACK never triggers a resend. Future blocks: garbage.
    if (delta === 0 || abs > t.hi) return;
    const now = performance.now();
    if (!t.rtx && abs === t.hi) sampleRtt(t, now - t.lastTxAt);
    t.rtx = false;
    const oldChunk = t.base > 0 ? chunkOf(t, t.base) : 0;
    t.base = abs + 1;
    t.lastProgressAt = now;
    if (t.base > t.last) {
      finish(t, 'ok');
      return;
    }
    // Armed only for ACK hi with everything up to hi sent, so the window sent is exactly hi+1.. (see arm).
    if (fired) armedSent(t);
    // RFC 7440: an ACK inside the window means the receiver lost the next block: resend from there.
    else if (abs < t.next - 1) t.next = t.base;
    const baseChunk = chunkOf(t, t.base);
    if (baseChunk !== oldChunk) for (const k of t.chunks.keys()) if (k < baseChunk) t.chunks.delete(k);
    pump(t);
    t.deadline = now + t.rto;
  }

  // ------------------------------------------------------------------------------------------------------------
  // Writes (lock-step; RFC 7440 windowsize is only granted on reads).

  async function onData(t: WriteTransfer, block: number, data: Buffer): Promise<void> {
    if (block === ((t.expected - 1) & 0xffff)) {
      // Our ACK was lost: the receiver re-acknowledges a duplicate (this is not the sender-side apprentice bug).
      // Also while dallying after the final block (finished, socket still open).
      if (!t.writing) sendRaw(t, t.lastAck);
      return;
    }
    if (t.done || t.writing) return;
    if (block !== (t.expected & 0xffff)) return;
    if (data.length > t.blksize) {
      sendRaw(t, encodeError(ERR.ILLEGAL_OPERATION, 'block larger than blksize'));
      finish(t, 'client-error');
      return;
    }
    if (t.bytes + data.length > t.maxBytes) {
      sendRaw(t, encodeError(ERR.DISK_FULL, 'upload too large'));
      finish(t, 'write-error');
      return;
    }
    t.writing = true;
    try {
      let off = 0;
      while (off < data.length) {
        const { bytesWritten } = await t.fh!.write(data, off, data.length - off, t.bytes + off);
        off += bytesWritten;
      }
    } catch (err) {
      t.writing = false;
      if (t.done) return;
      log.warn({ err, client: t.key, file: t.filename }, 'tftp upload write failed');
      sendRaw(t, encodeError(ERR.DISK_FULL, 'write failed'));
      finish(t, 'write-error');
      return;
    }
    t.writing = false;
    if (t.done) return;
    t.bytes += data.length;
    stats.bytesReceived += data.length;
    t.lastAck = encodeAck(t.expected);
    const now = performance.now();
    t.lastProgressAt = now;
    t.deadline = now + t.rto;
    t.expected++;
    if (data.length < t.blksize) {
      try {
        await t.fh!.close();
        t.fh = undefined;
        // Complete: replace the target in one step (readers see the old file or the new one, never a part).
        await rename(t.tmp, t.final);
      } catch (err) {
        if (t.done) return;
        log.warn({ err, file: t.final }, 'tftp upload could not be put in place');
        sendRaw(t, encodeError(ERR.DISK_FULL, 'write failed'));
        finish(t, 'write-error');
        return;
      }
      if (t.done) return;
      sendRaw(t, t.lastAck);
      finish(t, 'ok');
      return;
    }
    sendRaw(t, t.lastAck);
  }

  // ------------------------------------------------------------------------------------------------------------
  // Transfer lifecycle.

  function finish(t: Transfer, result: Result): void {
    if (t.done) return;
    t.done = true;
    active.delete(t);
    admission.answered(t);
    releaseSlot(t.slot);
    if (byClient.get(t.key)?.transfer === t) byClient.delete(t.key);
    stopTickIfIdle();
    const durationMs = Math.round(performance.now() - t.startedAt);
    if (t.kind === 'read') {
      t.file.close();
      t.chunks.clear();
    } else if (result !== 'ok') {
      const fh = t.fh;
      t.fh = undefined;
      void (async () => {
        await fh?.close().catch(() => {});
        await unlink(t.tmp).catch(() => {});
      })();
    }
    if (t.kind === 'write' && result === 'ok') {
      // RFC 1350 section 6: dally so a lost final ACK can be repeated when the client resends its last block.
      const timer = setTimeout(
        () => {
          dallying.delete(timer);
          closeSocket(t.sock);
        },
        Math.min(t.maxRto, 2000),
      );
      dallying.add(timer);
      t.dallyTimer = timer;
    } else {
      closeSocket(t.sock);
    }
    const options: Record<string, number> = { blksize: t.blksize };
    if (t.kind === 'read') options.windowsize = t.window;
    if (t.neg.tsize !== undefined) options.tsize = t.kind === 'read' ? t.size : t.neg.tsize;
    if (t.neg.timeout !== undefined) options.timeout = t.neg.timeout;
    const line = {
      client: t.key,
      op: t.kind,
      file: t.filename,
      mode: t.mode,
      options,
      bytes: t.bytes,
      durationMs,
      retransmits: t.retransmits,
      result,
    };
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
          client: t.key,
          file: t.filename,
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

  /** Anything but a bare ACK (those go straight to onAck). */
  function onTransferMessage(t: Transfer, msg: Buffer): void {
    if (t.kind === 'read') t.armed = false; // any datagram disarms the socket
    const d = decodePacket(msg);
    if (!d.ok) {
      stats.malformed++;
      return;
    }
    const p = d.packet;
    if (p.op === 'ERROR') {
      if (t.kind === 'read' && p.code === ERR.OPTION_NEGOTIATION && t.base === 0 && t.oack !== undefined) {
        finish(t, 'probe');
      } else {
        log.debug({ client: t.key, code: p.code, message: p.message }, 'tftp client sent ERROR');
        finish(t, 'client-error');
      }
      return;
    }
    if (t.kind === 'write' && p.op === 'DATA') {
      void onData(t, p.block, p.data);
      return;
    }
    stats.unexpected++;
  }

  function onSocketError(t: Transfer, code: string): void {
    log.debug({ code, client: t.key }, 'tftp transfer socket error');
    // ICMP port unreachable on a connected socket: the client has gone, stop now rather than retransmit into the void.
    // Anything else (ENOBUFS under load, ...) is left to the retransmission timer.
    if (code === 'ECONNREFUSED' && !t.done) finish(t, 'client-error');
  }

  /**
   * A socket per transfer: source port = our TID, and only the client's TID gets through. Packets go to the transfer
   * `bind` later sets (none can arrive before our first packet, sent after that).
   */
  async function transferSocket(client: TftpClient): Promise<{ sock: TransferSocket; bind(t: Transfer): void }> {
    let t: Transfer | undefined;
    const heard = (x: Transfer) => {
      if (x.answered) return;
      x.answered = true;
      admission.answered(x);
    };
    const handlers: TransferHandlers = {
      onAck: (block, fired) => {
        if (t === undefined) return;
        heard(t);
        if (t.kind === 'read') onAck(t, block, fired);
        else stats.unexpected++;
      },
      onMessage: (msg) => {
        if (t === undefined) return;
        heard(t);
        onTransferMessage(t, msg);
      },
      onError: (code) => t !== undefined && onSocketError(t, code),
    };
    const sock = await openSocket(bindAddress, client, handlers, {
      native: opts.nativeSockets,
      gso: opts.gso,
      busyPollUs: opts.busyPollUs ?? 200,
    });
    transferSockets.add(sock);
    return {
      sock,
      bind: (x) => {
        t = x;
      },
    };
  }

  function common(
    sock: TransferSocket,
    entry: Entry,
    client: TftpClient,
    filename: string,
    mode: string,
    neg: Negotiated,
  ): Common {
    const key = `${client.address}:${client.port}`;
    const now = performance.now();
    const maxRto = neg.timeout !== undefined ? neg.timeout * 1000 : timeoutMs;
    return {
      sock,
      key,
      client,
      filename,
      mode,
      neg,
      startedAt: now,
      lastProgressAt: now,
      // No RTT sample yet: start at the full timeout (RFC 6298 2.1), adapt after the first ACK.
      rto: maxRto,
      deadline: now + maxRto,
      maxRto,
      srtt: 0,
      rttvar: 0,
      bytes: 0,
      retransmits: 0,
      done: false,
      slot: entry.slot,
      answered: false,
      timeouts: 0,
    };
  }

  /**
   * Descriptor exhaustion and the like: the request goes unanswered (its client retries; firmware aborts the boot on
   * an ERROR), the daemon carries on.
   */
  function openFailed(err: unknown, key: string, what: 'a transfer socket' | 'the file'): void {
    stats.openErrors++;
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    limited(
      'warn',
      `open:${what}:${code}`,
      { err, code, client: key, total: stats.openErrors },
      outOfDescriptors(err)
        ? `tftp: cannot open ${what}, out of file descriptors: raise the open-files limit (LimitNOFILE, ulimit -n) or lower --tftp-max-transfers; requests go unanswered until then`
        : `tftp: cannot open ${what}; the request goes unanswered`,
    );
  }

  function refuse(client: TftpClient, code: number, message: string, why: string, filename: string): void {
    if (closing) return;
    stats.requestsRefused++;
    log.info({ client: `${client.address}:${client.port}`, file: filename, code, reason: why }, 'tftp request refused');
    // From the listening socket: the client takes the first reply's port as our TID, and this is the only packet.
    listener.send(encodeError(code, message), client.port, client.address);
  }

  async function limitsFor(address: string): Promise<Limits> {
    let cap = defaultMaxBlksize;
    try {
      const per = opts.maxBlksizeFor?.(address);
      if (per !== undefined && per > 0) cap = Math.min(cap, per);
    } catch (err) {
      log.warn({ err, client: address }, 'maxBlksizeFor failed; using the global maximum');
    }
    return { maxBlksize: cap, maxWindowsize, maxTimeout: maxClientTimeout };
  }

  function declinedTimeout(neg: Negotiated, key: string): void {
    if (neg.timeoutDeclined === undefined) return;
    stats.timeoutsDeclined++;
    log.debug(
      { client: key, asked: neg.timeoutDeclined, max: maxClientTimeout },
      'tftp: client timeout above the cap left out of the OACK; the server timeout applies',
    );
  }

  async function startRead(
    client: TftpClient,
    entry: Entry,
    filename: string,
    mode: string,
    options: Array<[string, string]>,
  ): Promise<void> {
    const key = `${client.address}:${client.port}`;
    let opened: Awaited<ReturnType<TftpSource['open']>>;
    try {
      opened = await opts.source.open(filename, client);
    } catch (err) {
      if (outOfDescriptors(err)) {
        openFailed(err, key, 'the file');
        return;
      }
      // A source that throws (a rendering bug, a broken store) is answered, not left to the client's timeout; logged
      // at most once per interval, as a flood can make every request fail the same way.
      limited('error', 'source', { err, client: key, file: filename }, 'tftp source failed');
      refuse(client, ERR.NOT_DEFINED, 'Internal error', 'source threw', filename);
      return;
    }
    if (opened.status !== 'ok') {
      if (opened.status === 'not-found') refuse(client, ERR.FILE_NOT_FOUND, 'File not found', opened.reason, filename);
      else refuse(client, ERR.ACCESS_VIOLATION, 'Access violation', opened.reason, filename);
      return;
    }
    let file: TftpFile = opened;
    if (mode === 'netascii') {
      if (opened.size > netasciiMax) {
        opened.close();
        refuse(client, ERR.ACCESS_VIOLATION, 'File too large for netascii, use octet', 'netascii size cap', filename);
        return;
      }
      try {
        const raw = await opened.read(0, opened.size);
        file = bufferFile(toNetascii(raw));
      } finally {
        opened.close();
      }
    }
    if (closing) {
      file.close();
      return;
    }
    const neg = negotiate(options, await limitsFor(client.address), file.size);
    if (neg.refused) {
      file.close();
      refuse(client, ERR.OPTION_NEGOTIATION, NEGOTIATION_FAILED, neg.refused, filename);
      return;
    }
    declinedTimeout(neg, key);
    let opened2: Awaited<ReturnType<typeof transferSocket>>;
    try {
      opened2 = await transferSocket(client);
    } catch (err) {
      file.close();
      openFailed(err, key, 'a transfer socket');
      return;
    }
    const sock = opened2.sock;
    if (closing) {
      file.close();
      closeSocket(sock);
      return;
    }
    const blksize = neg.blksize;
    const window = neg.windowsize;
    const t: ReadTransfer = {
      ...common(sock, entry, client, filename, mode, neg),
      kind: 'read',
      file,
      size: file.size,
      blksize,
      window,
      last: Math.floor(file.size / blksize) + 1,
      oack: neg.oack.length > 0 ? encodeOack(neg.oack) : undefined,
      base: neg.oack.length > 0 ? 0 : 1,
      next: neg.oack.length > 0 ? 0 : 1,
      hi: neg.oack.length > 0 ? -1 : 0,
      rtx: false,
      lastTxAt: 0,
      // A whole number of windows per chunk: a window then lies in one chunk (one send) unless a loss shifted it.
      chunkBlocks: window * Math.ceil(Math.ceil(CHUNK_TARGET / blksize) / window),
      chunks: new Map(),
      armed: false,
      loading: new Set(),
    };
    opened2.bind(t);
    entry.transfer = t;
    active.add(t);
    admission.awaiting(t, client.address);
    stats.transfersStarted++;
    ensureTick();
    pump(t);
  }

  async function startWrite(
    client: TftpClient,
    entry: Entry,
    filename: string,
    mode: string,
    options: Array<[string, string]>,
  ): Promise<void> {
    if (opts.uploadDir === undefined) {
      refuse(client, ERR.ACCESS_VIOLATION, 'Uploads are disabled', 'WRQ without uploadDir', filename);
      return;
    }
    if (mode !== 'octet') {
      refuse(client, ERR.ILLEGAL_OPERATION, 'Uploads must use octet mode', `mode ${mode}`, filename);
      return;
    }
    const c = await confine(opts.uploadDir, filename);
    if (!c.ok) {
      refuse(client, ERR.ACCESS_VIOLATION, 'Access violation', c.reason, filename);
      return;
    }
    const target = await stat(c.abs).catch(() => undefined);
    if (target && !target.isFile()) {
      refuse(client, ERR.ACCESS_VIOLATION, 'Access violation', `${c.abs} is not a regular file`, filename);
      return;
    }
    const neg = negotiate(
      options.filter(([n]) => n !== 'windowsize'),
      await limitsFor(client.address),
    );
    if (neg.refused) {
      refuse(client, ERR.OPTION_NEGOTIATION, NEGOTIATION_FAILED, neg.refused, filename);
      return;
    }
    declinedTimeout(neg, `${client.address}:${client.port}`);
    if (neg.tsize !== undefined && neg.tsize > maxUploadBytes) {
      refuse(client, ERR.DISK_FULL, 'Upload too large', `tsize ${neg.tsize}`, filename);
      return;
    }
    const tmp = path.join(
      path.dirname(c.abs),
      `.${path.basename(c.abs)}.upload-${process.pid}-${Math.random().toString(36).slice(2)}`,
    );
    let fh: import('node:fs/promises').FileHandle;
    try {
      fh = await open(tmp, 'wx', 0o644);
    } catch (err) {
      if (outOfDescriptors(err)) {
        openFailed(err, `${client.address}:${client.port}`, 'the file');
        return;
      }
      refuse(client, ERR.ACCESS_VIOLATION, 'Access violation', `cannot create: ${String(err)}`, filename);
      return;
    }
    let opened: Awaited<ReturnType<typeof transferSocket>>;
    try {
      if (closing) throw new Error('closing');
      opened = await transferSocket(client);
    } catch (err) {
      await fh.close().catch(() => {});
      await unlink(tmp).catch(() => {});
      if (!closing) openFailed(err, `${client.address}:${client.port}`, 'a transfer socket');
      return;
    }
    const sock = opened.sock;
    const first = neg.oack.length > 0 ? encodeOack(neg.oack) : encodeAck(0);
    const t: WriteTransfer = {
      ...common(sock, entry, client, filename, mode, neg),
      kind: 'write',
      blksize: neg.blksize,
      expected: 1,
      lastAck: first,
      fh,
      tmp,
      final: c.abs,
      writing: false,
      maxBytes: maxUploadBytes,
    };
    opened.bind(t);
    if (closing) {
      finish(t, 'cancelled');
      return;
    }
    entry.transfer = t;
    active.add(t);
    admission.awaiting(t, client.address);
    stats.transfersStarted++;
    ensureTick();
    sendRaw(t, first);
  }

  /**
   * Takes a transfer slot for a new request (limits.ts), ending the oldest unanswered transfer if a cap needs it.
   * Without a slot the request is dropped silently: an ERROR would be one more packet reflected at a possibly forged
   * source, and PXE firmware aborts the boot on an ERROR but simply repeats its request after silence.
   */
  function admit(client: TftpClient, filename: string): boolean {
    const a = admission.admit(client.address);
    if (!a.ok) {
      stats.requestsDropped++;
      limited(
        'warn',
        `busy:${a.reason}`,
        {
          client: `${client.address}:${client.port}`,
          file: filename,
          inFlight: admission.inFlight,
          fromClient: admission.inFlightFrom(client.address),
          dropped: stats.requestsDropped,
        },
        a.reason === 'client'
          ? 'tftp request dropped: this client has --tftp-max-per-client transfers in flight, all answering'
          : 'tftp request dropped: --tftp-max-transfers transfers in flight, all answering; raise it if this is real load',
      );
      return false;
    }
    if (a.evict !== undefined) finish(a.evict, 'evicted');
    admission.acquire(client.address);
    return true;
  }

  listener.on('message', (msg, rinfo) => {
    try {
      onRequest(msg, rinfo);
    } catch (err) {
      // Nothing a datagram does may take the daemon down; the request is lost, its client retries.
      limited('error', 'listener', { err, client: `${rinfo.address}:${rinfo.port}` }, 'tftp request handling failed');
    }
  });

  function onRequest(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (closing) return;
    const d = decodePacket(msg);
    if (!d.ok) {
      // Garbage gets no answer: answering would make us a reflector.
      stats.malformed++;
      return;
    }
    const p = d.packet;
    if (p.op !== 'RRQ' && p.op !== 'WRQ') {
      stats.unexpected++;
      return;
    }
    const client = { address: rinfo.address, port: rinfo.port };
    const key = `${rinfo.address}:${rinfo.port}`;
    const existing = byClient.get(key);
    if (existing !== undefined) {
      const old = existing.transfer;
      if (existing.raw.equals(msg) || old === undefined || old.done) {
        // A client resending its request because our first packet is late: the running transfer's timer covers it.
        stats.duplicateRequests++;
        return;
      }
      finish(old, old.kind === 'read' && old.base === 0 && old.oack !== undefined ? 'probe' : 'cancelled');
    }
    if (p.mode !== 'octet' && p.mode !== 'netascii') {
      refuse(
        client,
        ERR.ILLEGAL_OPERATION,
        `Unsupported mode ${JSON.stringify(p.mode).slice(0, 40)}`,
        'mode',
        p.filename,
      );
      return;
    }
    if (!admit(client, p.filename)) return;
    const entry: Entry = { raw: Buffer.from(msg), slot: { address: client.address, held: true } };
    byClient.set(key, entry);
    const work = (p.op === 'RRQ' ? startRead : startWrite)(client, entry, p.filename, p.mode, p.options)
      .catch((err) => {
        log.error({ err, client: key, file: p.filename }, 'tftp request failed');
      })
      .finally(() => {
        // Keep the entry (and its slot) while its transfer runs; finish() removes it.
        if (entry.transfer === undefined || entry.transfer.done) {
          releaseSlot(entry.slot);
          if (byClient.get(key) === entry) byClient.delete(key);
        }
        pending.delete(work);
      });
    pending.add(work);
  }

  return {
    address: bound.address,
    port: bound.port,
    stats,
    activeTransfers: () => active.size,
    async close() {
      if (closing) return;
      closing = true;
      listener.close();
      await Promise.allSettled([...pending]);
      for (const t of [...active]) {
        t.sock.send(encodeError(ERR.NOT_DEFINED, 'server shutting down'));
        finish(t, 'cancelled');
      }
      // Dallying upload sockets: close them now rather than when their timers fire.
      for (const timer of dallying) clearTimeout(timer);
      dallying.clear();
      for (const sock of [...transferSockets]) closeSocket(sock);
      await Promise.all([listenerClosed, ...socketsClosing]);
      stopTickIfIdle();
    },
  };
}
