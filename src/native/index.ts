/**
 * The native helper (native/, one N-API addon built by `npm run build:native`, which npm install and npm ci run as
 * postinstall), loaded once and typed once for every user: DHCP sockets, the RA responder, TFTP transfer sockets,
 * page-cache reads, sendfile(2) onto HTTP connections and ICMP echo for the DHCP probe. Callers ask a capability flag (`native.caps.tftpFastPath`) or take a typed view that is
 * undefined when the flag is false (`native.tftpFastPath`), instead of casting the module to a shape of their own.
 *
 * PLINTH_NET_ADDON, when set, is the only path tried (a test or a packaged build points it elsewhere; a wrong path
 * means no addon, never a silent fall-back to another build). A missing addon, or one built for another Node ABI,
 * is not an error: every flag is false and each user falls back (DHCP: one wildcard socket; TFTP: dgram and
 * asynchronous reads; no RA responder) or says how to build it.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** What udpOpen returns: an opaque handle to one transfer socket (an N-API external). */
export type TransferHandle = object;

/**
 * onPacket of udpOpen. A bare ACK: `ack` is its block number and `fired` says the window armed for it has been
 * sent. Any other datagram from the client: ack -1 and the bytes in `msg`. A socket error (ECONNREFUSED: an ICMP
 * port unreachable about the client): ack -2 and its errno name in `err`.
 */
export type TransferPacketHandler = (
  ack: number,
  msg: Buffer | undefined,
  err: string | undefined,
  fired: boolean,
) => void;

/** What icmpOpen returns: an opaque handle to one ICMP socket (an N-API external). */
export type IcmpHandle = object;

/** onReply of icmpOpen: an echo reply from `address` (on a ping socket `id` is the kernel's, not the one sent). */
export type IcmpReplyHandler = (address: string, id: number, seq: number) => void;

/** What dhcpIoOpen returns: an opaque handle to one DHCP socket read by the batch (an N-API external). */
export type DhcpIoHandle = object;

/**
 * onBatch of dhcpIoOpen: datagrams 0..count-1 are in the ring's slots, described by meta[4i..4i+3] (length, source
 * address as a host-order u32, source port, flags: 1 = truncated by the slot). Valid only during the call.
 */
export type DhcpBatchHandler = (count: number) => void;

/** What tcpSendFile returns: an opaque handle to one file being sent (an N-API external). */
export type SendFileHandle = object;

/**
 * onProgress of tcpSendFile: after each writable event that moved bytes (`done` false), and once at the end with
 * `done` true: every byte sent (`err` undefined), the file shorter than promised (`err` "EOF"), or the connection
 * gone (`err` an errno name: EPIPE, ECONNRESET).
 */
export type SendFileProgress = (sent: number, done: boolean, err: string | undefined) => void;

/** What journalOpen returns: an opaque handle to one journal and its thread (an N-API external). */
export type JournalHandle = object;

/**
 * onDurable of journalOpen, once per wakeup of its thread: every record up to `seq` is on disk (fdatasync); the
 * thread writes segment `generation`, whose first record is `generationFirstSeq` (0: none yet). `error`: the
 * journal failed and takes no more records.
 */
export type JournalDurable = (
  seq: number,
  generation: number,
  generationFirstSeq: number,
  error?: string,
  /** journalAppendSend's datagrams the thread could not send: [seq, errno, seq, errno, ...]; undefined when none. */
  sendFailures?: number[],
) => void;

/**
 * Every function the addon exports, with the signatures of the C (native/plinth_net.h lists where each lives).
 * Errors are thrown with the errno's name as `code` (EACCES, EADDRINUSE, ENODEV, EPERM; others E<n>). All optional:
 * an older build may lack some; ask `native.caps`.
 */
export type PlinthNet = {
  /** dhcp_sock.c: a UDP socket bound to `ifname` (SO_BINDTODEVICE) or to all, SO_BROADCAST, on `port`; its fd. */
  openUdp4?(ifname: string | null, port: number, address?: string, reuse?: boolean): number;
  /** dhcp_sock.c: an ARP entry so a unicast reply reaches a client without an address (RFC 2131 4.1); 0. */
  setArp?(fd: number, ifname: string, ip: string, mac: Buffer): number;
  /** dhcp_sock.c: closes an fd opened here that dgram did not adopt (fds 0-2 are left alone); 0. */
  closeFd?(fd: number): number;
  /** ra.c: a raw ICMPv6 socket on `ifname` that sees only Router Solicitations, joined to ff02::2; its fd. */
  openIcmp6?(ifname: string): number;
  /** ra.c: starts a Router Solicitation responder thread on `ifname`; its id (at most 64 at once). */
  raStart?(ifname: string): number;
  /** ra.c: stops a responder and closes its socket; how many RAs it sent (0 for an unknown id). */
  raStop?(id: number): number;
  /** ra.c: how many RAs a responder has sent so far (0 for an unknown id). */
  raAnswered?(id: number): number;
  /** tftp_xfer.c: a transfer socket on an ephemeral port of `bindAddress`, talking only to the client. */
  udpOpen?(
    bindAddress: string,
    peerAddress: string,
    peerPort: number,
    onPacket: TransferPacketHandler,
    gso?: boolean,
    busyPollUs?: number,
  ): TransferHandle;
  /** tftp_xfer.c: the socket's local port (the server's TID). */
  udpLocalPort?(h: TransferHandle): number;
  /** tftp_xfer.c: stops watching and closes the socket (idempotent); 0. */
  udpClose?(h: TransferHandle): number;
  /** tftp_send.c: sends one datagram to the client; 1 when queued, or -errno. */
  udpSend?(h: TransferHandle, buf: Buffer, offset: number, length: number): number;
  /** tftp_send.c: `count` packets laid out `slot` bytes apart, the last `lastLength` long; how many were queued. */
  udpSendBatch?(
    h: TransferHandle,
    buf: Buffer,
    offset: number,
    slot: number,
    count: number,
    lastLength: number,
  ): number;
  /** tftp_send.c: one or two runs to send the moment the bare ACK `ack` arrives; 1, or -EBADF when closed. */
  udpArm?: {
    (
      h: TransferHandle,
      ack: number,
      slot: number,
      buf: Buffer,
      offset: number,
      count: number,
      lastLength: number,
    ): number;
    (
      h: TransferHandle,
      ack: number,
      slot: number,
      buf: Buffer,
      offset: number,
      count: number,
      lastLength: number,
      buf2: Buffer,
      offset2: number,
      count2: number,
      lastLength2: number,
    ): number;
  };
  /** tftp_send.c: cancels an armed window; 0. */
  udpDisarm?(h: TransferHandle): number;
  /**
   * tftp_read.c: `count` DATA packets for blocks `firstBlock`.. into `out`, the payloads read from `fd` at
   * `position` only if all in the page cache; the bytes read when that is `expect`, else -EAGAIN or -errno.
   */
  readPackets?(
    fd: number,
    position: number,
    blksize: number,
    firstBlock: number,
    count: number,
    out: Buffer,
    outOffset: number,
    expect: number,
  ): number;
  /**
   * sendfile.c: `length` bytes of `fileFd` from `position` onto the connected TCP socket `sockFd` (Node's own, used
   * through a dup), watched on Node's loop; the caller has written the headers and queued nothing else.
   */
  tcpSendFile?(
    sockFd: number,
    fileFd: number,
    position: number,
    length: number,
    onProgress: SendFileProgress,
  ): SendFileHandle;
  /** sendfile.c: stops a send and closes its dup of the socket (idempotent); the bytes sent so far. */
  tcpSendFileCancel?(h: SendFileHandle): number;
  /**
   * icmp_echo.c: an ICMP socket watched on Node's loop, raw (CAP_NET_RAW) or else an unprivileged ping socket;
   * onReply for each echo reply. Throws (EPERM, EACCES) when neither is allowed.
   */
  icmpOpen?(onReply: IcmpReplyHandler): IcmpHandle;
  /** icmp_echo.c: which socket icmpOpen got. */
  icmpKind?(h: IcmpHandle): 'raw' | 'dgram';
  /** icmp_echo.c: one echo request to `address`; 1 when queued, or -errno. */
  icmpEcho?(h: IcmpHandle, address: string, id: number, seq: number): number;
  /** icmp_echo.c: stops watching and closes the socket (idempotent); 0. */
  icmpClose?(h: IcmpHandle): number;
  /**
   * dhcp_io.c: watches a socket from openUdp4 (taking its fd over) on Node's loop; each readiness reads up to
   * meta.length / 4 datagrams into `ring` (slots `slotSize` bytes apart) and calls onBatch once with the count.
   */
  dhcpIoOpen?(fd: number, ring: Buffer, meta: Uint32Array, slotSize: number, onBatch: DhcpBatchHandler): DhcpIoHandle;
  /** dhcp_io.c: one datagram to `address` (host-order u32) and `port`, without blocking; 1 when queued, or -errno. */
  dhcpIoSend?(h: DhcpIoHandle, buf: Buffer, offset: number, length: number, address: number, port: number): number;
  /** dhcp_io.c: stops watching and closes the socket (idempotent); 0. */
  dhcpIoClose?(h: DhcpIoHandle): number;
  /** journal.c: an fd holding an exclusive flock on `path`; throws code EWOULDBLOCK when another process has it. */
  journalLock?(path: string): number;
  /** journal.c: starts the journal's thread, writing segments `${prefix}.<generation, 8 hex>` from `generation`. */
  journalOpen?(
    prefix: string,
    generation: number,
    firstSeq: number,
    segmentBytes: number,
    onDurable: JournalDurable,
    /** The group commit's longest wait in µs (0-100,000; 0 or absent: none) and the writes a second it starts at. */
    groupUs?: number,
    groupRate?: number,
    /** 1 (absent): each group is fdatasynced; 0: durable once written to the kernel (leaseDurability 'kernel'). */
    sync?: number,
  ): JournalHandle;
  /**
   * journal.c: [groups written, of them those that waited to group, journaled writes a second last measured,
   * fdatasyncs made (an addon older than the durability setting gives three)].
   */
  journalStats?(h: JournalHandle): [number, number, number, number?];
  /** journal.c: queues one record (code EJOURNAL once the journal failed or closed); its sequence number. */
  journalAppend?(h: JournalHandle, payload: string): number;
  /**
   * journal.c: journalAppend, and `datagram` sent on `fd` to `address` (host-order u32):`port` by the journal's
   * thread right after the fdatasync that makes this record durable (never when the journal fails first); with
   * sync 0 by journalFlush right after its write.
   */
  journalAppendSend?(
    h: JournalHandle,
    payload: string,
    fd: number,
    datagram: Buffer,
    address: number,
    port: number,
  ): number;
  /**
   * journal.c, journalOpen's sync 0 only: writes the records appended since the last call in one pwrite on this
   * thread, then sends their datagrams: [durable seq, generation, its first seq, failed sends as seq, errno, ...].
   * Throws (code EJOURNAL) when the write fails: those records are not durable and their datagrams never leave.
   */
  journalFlush?(h: JournalHandle): number[];
  /** journal.c: wakes the thread for the records queued (once per event-loop turn, so they share one write). */
  journalKick?(h: JournalHandle): void;
  /** journal.c: writes what is queued, stops the thread and closes the file; the highest durable sequence number. */
  journalClose?(h: JournalHandle): number;
};

type Fn = keyof PlinthNet;
type Has<K extends Fn> = Required<Pick<PlinthNet, K>>;

/** DHCP sockets bound per interface and ARP entries for unicast replies. */
export type DhcpSockets = Has<'openUdp4' | 'setArp' | 'closeFd'>;
/** The IPv6 Router Solicitation responder. */
export type RaResponder = Has<'openIcmp6' | 'raStart' | 'raStop' | 'raAnswered'>;
/** TFTP transfer sockets driven from C; arming windows is a later addition, hence optional here. */
export type TftpFastPath = Has<'udpOpen' | 'udpLocalPort' | 'udpSend' | 'udpSendBatch' | 'udpClose'> &
  Pick<PlinthNet, 'udpArm' | 'udpDisarm'>;
export type ReadPackets = NonNullable<PlinthNet['readPackets']>;
/** ICMP echo (the DHCP probe before an offer). */
export type IcmpEcho = Has<'icmpOpen' | 'icmpKind' | 'icmpEcho' | 'icmpClose'>;
/** DHCP datagrams read by the batch and replies sent directly (dhcp_io.c). */
export type DhcpBatchIo = Has<'dhcpIoOpen' | 'dhcpIoSend' | 'dhcpIoClose'>;
/** Files onto HTTP connections with sendfile(2). */
export type HttpSendfile = Has<'tcpSendFile' | 'tcpSendFileCancel'>;
/** The store's lease journal (src/store/journal.ts); sending ACKs from its thread is a later addition. */
export type LeaseJournal = Has<
  'journalLock' | 'journalOpen' | 'journalAppend' | 'journalKick' | 'journalClose' | 'journalFlush'
> &
  Pick<PlinthNet, 'journalAppendSend' | 'journalStats'>;

const NEEDS = {
  dhcpSockets: ['openUdp4', 'setArp', 'closeFd'],
  raResponder: ['openIcmp6', 'raStart', 'raStop', 'raAnswered'],
  tftpFastPath: ['udpOpen', 'udpLocalPort', 'udpSend', 'udpSendBatch', 'udpClose'],
  tftpArmedWindows: ['udpArm', 'udpDisarm'],
  readPackets: ['readPackets'],
  httpSendfile: ['tcpSendFile', 'tcpSendFileCancel'],
  icmpEcho: ['icmpOpen', 'icmpKind', 'icmpEcho', 'icmpClose'],
  dhcpBatchIo: ['dhcpIoOpen', 'dhcpIoSend', 'dhcpIoClose'],
  leaseJournal: ['journalLock', 'journalOpen', 'journalAppend', 'journalKick', 'journalClose', 'journalFlush'],
  journalSend: ['journalAppendSend'],
  journalStats: ['journalStats'],
} satisfies Record<string, Fn[]>;

/** Every function name the facade types, by capability; the addon exports exactly these (test/native). */
export const NATIVE_FUNCTIONS: readonly Fn[] = Object.values(NEEDS).flat();

export type NativeCaps = { readonly [K in keyof typeof NEEDS]: boolean };

type Loaded = { addon: PlinthNet | undefined; path: string | undefined; caps: NativeCaps };
let loaded: Loaded | undefined;

/** The default build (node-gyp's output) unless PLINTH_NET_ADDON names another file. */
export function addonPath(): string {
  const override = process.env.PLINTH_NET_ADDON;
  if (override) return override;
  return fileURLToPath(new URL('../../native/build/Release/plinth_net.node', import.meta.url));
}

function load(): Loaded {
  if (loaded !== undefined) return loaded;
  const file = addonPath();
  let addon: PlinthNet | undefined;
  if (existsSync(file)) {
    try {
      addon = createRequire(import.meta.url)(file) as PlinthNet;
    } catch {
      // A stale build for another Node ABI: treat as absent.
    }
  }
  const has = (names: Fn[]) => addon !== undefined && names.every((n) => typeof addon[n] === 'function');
  const caps = Object.freeze({
    dhcpSockets: has(NEEDS.dhcpSockets),
    raResponder: has(NEEDS.raResponder),
    tftpFastPath: has(NEEDS.tftpFastPath),
    tftpArmedWindows: has(NEEDS.tftpArmedWindows),
    readPackets: has(NEEDS.readPackets),
    httpSendfile: has(NEEDS.httpSendfile),
    icmpEcho: has(NEEDS.icmpEcho),
    dhcpBatchIo: has(NEEDS.dhcpBatchIo),
    leaseJournal: has(NEEDS.leaseJournal),
    journalSend: has(NEEDS.journalSend),
    journalStats: has(NEEDS.journalStats),
  });
  loaded = { addon, path: addon === undefined ? undefined : file, caps };
  return loaded;
}

/** The addon, loaded on first use: its flags, and a typed view per capability (undefined when it is absent). */
export const native = {
  get caps(): NativeCaps {
    return load().caps;
  },
  /** The file the addon was loaded from; undefined when none was. */
  get path(): string | undefined {
    return load().path;
  },
  /** Every export, each possibly missing; prefer the views below. */
  get addon(): PlinthNet | undefined {
    return load().addon;
  },
  get dhcpSockets(): DhcpSockets | undefined {
    const l = load();
    return l.caps.dhcpSockets ? (l.addon as DhcpSockets) : undefined;
  },
  get raResponder(): RaResponder | undefined {
    const l = load();
    return l.caps.raResponder ? (l.addon as RaResponder) : undefined;
  },
  get tftpFastPath(): TftpFastPath | undefined {
    const l = load();
    return l.caps.tftpFastPath ? (l.addon as TftpFastPath) : undefined;
  },
  get readPackets(): ReadPackets | undefined {
    const l = load();
    return l.caps.readPackets ? l.addon?.readPackets : undefined;
  },
  get httpSendfile(): HttpSendfile | undefined {
    const l = load();
    return l.caps.httpSendfile ? (l.addon as HttpSendfile) : undefined;
  },
  get icmpEcho(): IcmpEcho | undefined {
    const l = load();
    return l.caps.icmpEcho ? (l.addon as IcmpEcho) : undefined;
  },
  get dhcpBatchIo(): DhcpBatchIo | undefined {
    const l = load();
    return l.caps.dhcpBatchIo ? (l.addon as DhcpBatchIo) : undefined;
  },
  get leaseJournal(): LeaseJournal | undefined {
    const l = load();
    return l.caps.leaseJournal ? (l.addon as LeaseJournal) : undefined;
  },
};
