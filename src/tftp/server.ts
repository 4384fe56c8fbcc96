/**
 * The TFTP server (RFC 1350 + 2347/2348/2349/7440): the listening socket, requests (de-duplicated, admitted under the
 * limits of limits.ts, dispatched to a read or write transfer), one retransmission tick for all transfers, counters,
 * and closing. Knows nothing about what to boot: paths go to a `TftpSource`.
 *
 * One ephemeral UDP socket per transfer (RFC 1350 TID), talking only to its client (transport.ts). What happens on
 * it is the transfer's business (read.ts: windows, arming; write.ts: uploads); the server only opens it, hands its
 * datagrams over and closes it when the transfer ends.
 */
import dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { bindFailure } from '../bind-error.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { rateLimitedLog } from '../log-limit.js';
import { decodePacket, ERR, encodeError } from './codec.js';
import { packetCache } from './layout.js';
import { Admission } from './limits.js';
import type { TftpServerOptions } from './options.js';
import { type ReadEnv, ReadTransfer } from './read.js';
import { outOfDescriptors, prepareRead, prepareWrite, type Request, type RequestEnv } from './requests.js';
import { RetransmitTicker } from './retransmit.js';
import type { TftpClient } from './source.js';
import { newStats, type Result, reportTransfer, type TftpStats } from './stats.js';
import type { Slot, Transfer, TransferPort } from './transfer.js';
import { openTransferSocket, type TransferHandlers, type TransferSocket } from './transport.js';
import { WriteTransfer } from './write.js';

export type { TftpServerOptions } from './options.js';
export type { TftpStats } from './stats.js';

export type TftpServer = {
  readonly address: string;
  readonly port: number;
  /** Live counters (read-only view). */
  readonly stats: Readonly<TftpStats>;
  activeTransfers(): number;
  /** Stops listening, cancels every transfer, releases every socket, file and timer. */
  close(): Promise<void>;
};

/** Added to the retransmission floor per transfer in flight (see rtoFloor). */
const LOAD_FLOOR_MS_PER_TRANSFER = 5;

/**
 * A request being set up or transferred, by client "addr:port": a retransmitted request must not fork a second
 * transfer, while a different request from the same port (a firmware that re-asks right after its ERROR 8 probe,
 * racing the ERROR on the transfer socket) replaces the old transfer.
 */
type Entry = { raw: Buffer; slot: Slot; transfer?: Transfer };

export async function startTftpServer(opts: TftpServerOptions): Promise<TftpServer> {
  const listener = await bindListener(opts.address ?? '0.0.0.0', opts.port ?? 69);
  const s = new Server(opts, listener);
  const bound = listener.address();
  return {
    address: bound.address,
    port: bound.port,
    stats: s.stats,
    activeTransfers: () => s.active.size,
    close: () => s.close(),
  };
}

async function bindListener(bindAddress: string, wantPort: number): Promise<dgram.Socket> {
  const listener = dgram.createSocket({ type: 'udp4' });
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
  return listener;
}

class Server {
  readonly active = new Set<Transfer>();
  private readonly transferSockets = new Set<TransferPort>();
  readonly stats = newStats({
    activeTransfers: () => this.active.size,
    openSockets: () => this.transferSockets.size,
  });
  private readonly log: Logger;
  private readonly limited: ReturnType<typeof rateLimitedLog>;
  private readonly admission: Admission<Transfer>;
  private readonly byClient = new Map<string, Entry>();
  private readonly socketsClosing = new Set<Promise<void>>();
  private readonly dallying = new Set<NodeJS.Timeout>();
  private readonly pending = new Set<Promise<void>>();
  private readonly listenerClosed: Promise<void>;
  private readonly ticker = new RetransmitTicker(this.active, () => performance.now());
  private readonly timeoutMs: number;
  private readonly minTimeoutMs: number;
  private readonly env: ReadEnv;
  private readonly requests: RequestEnv;
  private closing = false;

  constructor(
    private readonly opts: TftpServerOptions,
    private readonly listener: dgram.Socket,
  ) {
    const log = opts.logger ?? silentLogger;
    this.log = log;
    this.limited = rateLimitedLog(log);
    this.admission = new Admission<Transfer>({
      maxTotal: opts.maxTransfers ?? 1024,
      maxPerClient: opts.maxTransfersPerClient ?? 256,
    });
    this.timeoutMs = opts.timeoutMs ?? 1000;
    this.minTimeoutMs = Math.min(opts.minTimeoutMs ?? 200, this.timeoutMs);
    this.env = {
      stats: this.stats,
      log,
      now: () => performance.now(),
      rtoFloor: () => this.rtoFloor(),
      maxRetries: opts.maxRetries ?? 5,
      unansweredRetries: opts.unansweredRetries ?? 2,
      answered: (t) => this.admission.answered(t),
      finished: (t, result) => this.finished(t, result),
      packets: packetCache(opts.packetCacheBytes ?? 32 * 1024 * 1024),
      armWindows: opts.armWindows !== false,
    };
    this.requests = {
      log,
      limited: this.limited,
      stats: this.stats,
      source: opts.source,
      limits: {
        maxBlksize: opts.maxBlksize ?? 1468,
        maxWindowsize: opts.maxWindowsize ?? 64,
        maxTimeout: opts.maxClientTimeout ?? 10,
      },
      uploadDir: opts.uploadDir,
      maxUploadBytes: opts.maxUploadBytes ?? 256 * 1024 * 1024,
      netasciiMax: opts.netasciiMaxBytes ?? 16 * 1024 * 1024,
      closing: () => this.closing,
      refuse: (client, code, message, why, filename) => this.refuse(client, code, message, why, filename),
      openFailed: (err, key, what) => this.openFailed(err, key, what),
    };
    this.listenerClosed = new Promise<void>((resolve) => listener.once('close', resolve));
    listener.on('error', (err) => log.error({ err }, 'tftp listening socket error'));
    listener.on('message', (msg, rinfo) => {
      try {
        this.onRequest(msg, rinfo);
      } catch (err) {
        // Nothing a datagram does may take the daemon down; the request is lost, its client retries.
        this.limited(
          'error',
          'listener',
          { err, client: `${rinfo.address}:${rinfo.port}` },
          'tftp request handling failed',
        );
      }
    });
  }

  /**
   * Why the floor is not a few ms: with many clients on one host (atftp's own conformance script starts 200 at
   * once) round trips jump by hundreds of ms when the CPUs are shared, and every early retransmission is a
   * duplicate block the client reports and answers, adding load exactly when there is least to spare. The floor
   * grows by 5 ms per transfer in flight (200 transfers: 1 s, tftp-hpa's fixed timeout); one client on a lossy
   * link keeps the quick 200 ms.
   */
  private rtoFloor(): number {
    return Math.min(this.timeoutMs, Math.max(this.minTimeoutMs, LOAD_FLOOR_MS_PER_TRANSFER * this.active.size));
  }

  private onRequest(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    if (this.closing) return;
    const d = decodePacket(msg);
    if (!d.ok) {
      // Garbage gets no answer: answering would make us a reflector.
      this.stats.malformed++;
      return;
    }
    const p = d.packet;
    if (p.op !== 'RRQ' && p.op !== 'WRQ') {
      this.stats.unexpected++;
      return;
    }
    const client = { address: rinfo.address, port: rinfo.port };
    const key = `${rinfo.address}:${rinfo.port}`;
    const existing = this.byClient.get(key);
    if (existing !== undefined) {
      const old = existing.transfer;
      if (existing.raw.equals(msg) || old === undefined || old.done) {
        // A client resending its request because our first packet is late: the running transfer's timer covers it.
        this.stats.duplicateRequests++;
        return;
      }
      old.finish(old instanceof ReadTransfer && old.probing ? 'probe' : 'cancelled');
    }
    if (p.mode !== 'octet' && p.mode !== 'netascii') {
      const mode = JSON.stringify(p.mode).slice(0, 40);
      this.refuse(client, ERR.ILLEGAL_OPERATION, `Unsupported mode ${mode}`, 'mode', p.filename);
      return;
    }
    if (!this.admit(client, p.filename)) return;
    const entry: Entry = { raw: Buffer.from(msg), slot: { address: client.address, held: true } };
    this.byClient.set(key, entry);
    const r: Request = { client, filename: p.filename, mode: p.mode, options: p.options };
    const work = (p.op === 'RRQ' ? this.startRead(entry, r) : this.startWrite(entry, r))
      .catch((err) => {
        this.log.error({ err, client: key, file: p.filename }, 'tftp request failed');
      })
      .finally(() => {
        // Keep the entry (and its slot) while its transfer runs; finish() removes it.
        if (entry.transfer === undefined || entry.transfer.done) {
          this.releaseSlot(entry.slot);
          if (this.byClient.get(key) === entry) this.byClient.delete(key);
        }
        this.pending.delete(work);
      });
    this.pending.add(work);
  }

  /**
   * Takes a transfer slot for a new request (limits.ts), ending the oldest unanswered transfer if a cap needs it.
   * Without a slot the request is dropped silently: an ERROR would be one more packet reflected at a possibly forged
   * source, and PXE firmware aborts the boot on an ERROR but simply repeats its request after silence.
   */
  private admit(client: TftpClient, filename: string): boolean {
    const a = this.admission.admit(client.address);
    if (!a.ok) {
      this.stats.requestsDropped++;
      this.limited(
        'warn',
        `busy:${a.reason}`,
        {
          client: `${client.address}:${client.port}`,
          file: filename,
          inFlight: this.admission.inFlight,
          fromClient: this.admission.inFlightFrom(client.address),
          dropped: this.stats.requestsDropped,
        },
        a.reason === 'client'
          ? 'tftp request dropped: this client has --tftp-max-per-client transfers in flight, all answering'
          : 'tftp request dropped: --tftp-max-transfers transfers in flight, all answering; raise it if this is real load',
      );
      return false;
    }
    if (a.evict !== undefined) a.evict.finish('evicted');
    this.admission.acquire(client.address);
    return true;
  }

  private async startRead(entry: Entry, r: Request): Promise<void> {
    const prepared = await prepareRead(this.requests, r);
    if (prepared === undefined) return;
    const { file, neg } = prepared;
    let opened: Awaited<ReturnType<Server['transferSocket']>>;
    try {
      opened = await this.transferSocket(r.client);
    } catch (err) {
      file.close();
      this.openFailed(err, `${r.client.address}:${r.client.port}`, 'a transfer socket');
      return;
    }
    if (this.closing) {
      file.close();
      this.closeSocket(opened.sock);
      return;
    }
    const t = new ReadTransfer(opened.sock, { ...r, neg, timeoutMs: this.timeoutMs, slot: entry.slot }, this.env, file);
    opened.bind(t);
    this.begin(entry, t);
  }

  private async startWrite(entry: Entry, r: Request): Promise<void> {
    const prepared = await prepareWrite(this.requests, r);
    if (prepared === undefined) return;
    const { sink, neg } = prepared;
    let opened: Awaited<ReturnType<Server['transferSocket']>>;
    try {
      if (this.closing) throw new Error('closing');
      opened = await this.transferSocket(r.client);
    } catch (err) {
      await sink.abort();
      if (!this.closing) this.openFailed(err, `${r.client.address}:${r.client.port}`, 'a transfer socket');
      return;
    }
    const req = { ...r, neg, timeoutMs: this.timeoutMs, slot: entry.slot };
    const t = new WriteTransfer(opened.sock, req, this.env, sink, this.requests.maxUploadBytes);
    opened.bind(t);
    if (this.closing) {
      t.finish('cancelled');
      return;
    }
    this.begin(entry, t);
  }

  private begin(entry: Entry, t: Transfer): void {
    entry.transfer = t;
    this.active.add(t);
    this.admission.awaiting(t, t.client.address);
    this.stats.transfersStarted++;
    this.ticker.ensure();
    t.start();
  }

  /**
   * A socket per transfer: source port = our TID, and only the client's TID gets through. Packets go to the transfer
   * `bind` later sets (none can arrive before our first packet, sent after that).
   */
  private async transferSocket(client: TftpClient): Promise<{ sock: TransferSocket; bind(t: Transfer): void }> {
    let t: Transfer | undefined;
    const handlers: TransferHandlers = {
      onAck: (block, fired) => t?.onAck(block, fired),
      onMessage: (msg) => t?.onMessage(msg),
      onError: (code) => t?.onError(code),
    };
    const openSocket = this.opts.openSocket ?? openTransferSocket;
    const sock = await openSocket(this.opts.address ?? '0.0.0.0', client, handlers, {
      native: this.opts.nativeSockets,
      gso: this.opts.gso,
      busyPollUs: this.opts.busyPollUs ?? 200,
    });
    this.transferSockets.add(sock);
    return {
      sock,
      bind: (x) => {
        t = x;
      },
    };
  }

  /** The server's part of ending a transfer (the transfer has released its file or upload). */
  private finished(t: Transfer, result: Result): void {
    this.active.delete(t);
    this.admission.answered(t);
    this.releaseSlot(t.slot);
    if (this.byClient.get(t.key)?.transfer === t) this.byClient.delete(t.key);
    this.ticker.stopIfIdle();
    if (t.kind === 'write' && result === 'ok') {
      // RFC 1350 section 6: dally so a lost final ACK can be repeated when the client resends its last block.
      const timer = setTimeout(
        () => {
          this.dallying.delete(timer);
          this.closeSocket(t.port);
        },
        Math.min(t.timer.maxRto, 2000),
      );
      this.dallying.add(timer);
    } else {
      this.closeSocket(t.port);
    }
    reportTransfer(this.stats, this.log, this.limited, t.line(), result);
  }

  private releaseSlot(slot: Slot): void {
    if (!slot.held) return;
    slot.held = false;
    this.admission.release(slot.address);
  }

  private closeSocket(sock: TransferPort): void {
    if (!this.transferSockets.delete(sock)) return;
    const p = sock.close().catch(() => {});
    this.socketsClosing.add(p);
    void p.finally(() => this.socketsClosing.delete(p));
  }

  private refuse(client: TftpClient, code: number, message: string, why: string, filename: string): void {
    if (this.closing) return;
    this.stats.requestsRefused++;
    const who = `${client.address}:${client.port}`;
    this.log.info({ client: who, file: filename, code, reason: why }, 'tftp request refused');
    // From the listening socket: the client takes the first reply's port as our TID, and this is the only packet.
    this.listener.send(encodeError(code, message), client.port, client.address);
  }

  /**
   * Descriptor exhaustion and the like: the request goes unanswered (its client retries; firmware aborts the boot on
   * an ERROR), the daemon carries on.
   */
  private openFailed(err: unknown, key: string, what: 'a transfer socket' | 'the file'): void {
    this.stats.openErrors++;
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    this.limited(
      'warn',
      `open:${what}:${code}`,
      { err, code, client: key, total: this.stats.openErrors },
      outOfDescriptors(err)
        ? `tftp: cannot open ${what}, out of file descriptors: raise the open-files limit (LimitNOFILE, ulimit -n) or lower --tftp-max-transfers; requests go unanswered until then`
        : `tftp: cannot open ${what}; the request goes unanswered`,
    );
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.listener.close();
    await Promise.allSettled([...this.pending]);
    for (const t of [...this.active]) {
      t.port.send(encodeError(ERR.NOT_DEFINED, 'server shutting down'));
      t.finish('cancelled');
    }
    // Dallying upload sockets: close them now rather than when their timers fire.
    for (const timer of this.dallying) clearTimeout(timer);
    this.dallying.clear();
    for (const sock of [...this.transferSockets]) this.closeSocket(sock);
    await Promise.all([this.listenerClosed, ...this.socketsClosing]);
    this.ticker.stopIfIdle();
  }
}
