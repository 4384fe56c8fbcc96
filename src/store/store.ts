/**
 * The inventory's storage interface. Everything that persists goes through it; no SQL lives outside src/store.
 * Deliberately narrow (documents by kind and key, unique values, filtered lists) so that a PostgreSQL backend
 * can follow for several daemons sharing one inventory. Methods are async for that reason even though the
 * SQLite backend is synchronous underneath.
 */

export const KINDS = [
  'machines',
  'bootenvs',
  'templates',
  'subnets',
  'reservations',
  'leases',
  'profiles',
  'params',
  'prefs',
  'tokens',
  'boots',
  'files',
  'audit',
  'rollouts',
  'daemons',
] as const;
export type Kind = (typeof KINDS)[number];

export type Doc = Record<string, unknown>;
/** `json` is the document exactly as stored: responses can send it without a parse/stringify round trip. */
export type Stored<D = Doc> = { key: string; doc: D; etag: string; json: string };

/** A value that must be unique within a kind, e.g. a machine's name or each of its MACs. */
export type UniqueValue = { field: string; value: string };

export type Filter = { field: string; value: string | number | boolean | null; array?: boolean };
export type ListQuery = {
  filters?: Filter[];
  sort?: { field: string; desc?: boolean };
  limit?: number;
  offset?: number;
};

/** An inventory change as other daemons learn of it (issue 17); written in the change's own transaction. */
export type ChangeEvent = { type: string; key?: string; data?: unknown };
/** `event`: appended to the event log (PostgreSQL) in the same transaction; SQLite's one daemon ignores it. */
export type WriteOptions = { ifMatch?: string; event?: ChangeEvent };
export type LoggedEvent = ChangeEvent & { id: number; at: string; serverId: string };

/** The log of changes every daemon on a shared inventory reads (PostgreSQL only; SQLite has one daemon). */
export interface EventLog {
  /** Events after `id`, oldest first, at most `limit` (default 500). */
  since(id: number, limit?: number): Promise<LoggedEvent[]>;
  /** The newest event's id (0 when none): where a daemon starting now begins following. */
  last(): Promise<number>;
  /**
   * Calls `onEvent` for each event after `from`, in id order, whichever daemon wrote it: woken by NOTIFY, and
   * reading `id > last seen` after every notification and every reconnect, so none is missed across an outage.
   */
  follow(from: number, onEvent: (e: LoggedEvent) => void, onGap?: (gap: EventGap) => void): { close(): Promise<void> };
  /**
   * Retention (the leader's duty): deletes the events older than `maxAgeMs` except the newest `keep`, at most
   * `batch` per call (default 10000); returns how many went. A follower left behind the window gets onGap.
   */
  prune(o: { maxAgeMs: number; keep: number; batch?: number }): Promise<number>;
}
/** Events after `after` may have been deleted by retention before this follower read them; `oldest` is kept. */
export type EventGap = { after: number; oldest: number };

/**
 * Whether this daemon holds the inventory's singleton duties (token sweep, lease expiry sweep, rollout driver,
 * event retention; issue 17). One holder at a time: `leader` is true only while the hold is proven recent, so a
 * daemon cut off from the database stops acting before another can take over. `on` hears every change.
 */
export interface Leadership {
  readonly leader: boolean;
  on(fn: (leading: boolean) => void): () => void;
  close(): Promise<void>;
}
export type LeadershipOptions = {
  /** Attempts to take the lead while another holds it, in ms (default 3000). */
  retryMs?: number;
  /** The holder's probe of its connection, in ms (default 2000). */
  probeMs?: number;
  /**
   * How long the server keeps a silent holder's session (and so the lock), in ms (default 15000); the holder gives
   * up after two thirds of it without a successful probe, before the server would let another take it.
   */
  sessionTimeoutMs?: number;
  onError?: (err: Error) => void;
};

/**
 * A lease write that must not take an address from another client (issue 17): `doc` is the whole lease document
 * (address, subnet, mac, clientId?, state, expiresAt), `now` the writer's clock (ISO). It wins when the
 * address has no row, or its row ended (expiresAt <= now, or state expired/released), or the row is the same
 * client's (identifier when both have one, else MAC; not a quarantined DECLINE). A winning offered/bound claim
 * also releases the client's other offered/bound rows in the subnet. One offered/bound row per (subnet,
 * clientId or MAC) holds by constraint (PostgreSQL) or within the write transaction (SQLite).
 */
export type LeaseClaim = { doc: Doc & { address: string; subnet: string; mac: string; state: string }; now: string };
/**
 * A lease the sweep marked expired: what its `lease.expired` event says, and the state it had (`was`). `serverId`:
 * the daemon that wrote the lease before it ended (the row's, as the sweep read it: the one that served the client),
 * absent when the row named none.
 */
export type ExpiredLease = { key: string; mac: string; subnet: string; serverId?: string; was: 'offered' | 'bound' };
/** `event`: the event to log for a lease marked (undefined: none). */
export type ExpireOptions = { limit?: number; event?: (l: ExpiredLease) => ChangeEvent | undefined };
/**
 * `docs`: the rows as stored now (each once per pass, in no particular order); `cursor` (opaque): where the next
 * call starts; `more`: the pass has more rows (a page was full): call again with `cursor` for the rest.
 */
export type LeaseChanges = { cursor: string; docs: Doc[]; more: boolean };
/** A range of IPv4 addresses as integers (start..end), scanned from `from` and wrapping; `now` ISO. */
export type FreeLeaseQuery = { start: number; end: number; from: number; now: string; limit: number };
/** `holder`: the lease that kept the address (or the client's other lease when the client lost a race), if read. */
export type ClaimResult = { ok: true } | { ok: false; holder?: Doc };

/**
 * A datagram (the DHCP server's ACK) to send once a putBatched write is durable. A store that can send it from
 * the thread that made the write durable (the SQLite store's lease journal, native/journal.c) sets `taken`
 * when it accepts it and calls `sent` after the write resolves; otherwise `taken` stays false and the caller
 * sends it itself after awaiting the write. Either way it never leaves before the write is durable.
 */
export interface DurableSend {
  readonly fd: number;
  readonly buf: Buffer;
  /** Host-order IPv4 address. */
  readonly address: number;
  readonly port: number;
  taken: boolean;
  /** The send's outcome, called once just before the write resolves: 0 sent, else the errno (never when it rejects). */
  sent(errno: number): void;
}

export interface Store {
  get(kind: Kind, key: string): Promise<Stored | undefined>;
  /**
   * The documents of those of `keys` that exist, in key order (bytes): one statement on PostgreSQL where `get`s
   * would be one each, for a poll of a few known keys (src/provision/loaders.ts). Optional: without it, `get` each.
   */
  getMany?(kind: Kind, keys: readonly string[]): Promise<Stored[]>;
  list(kind: Kind, q?: ListQuery): Promise<{ items: Stored[]; total: number }>;
  /** Key owning a unique value (machine by MAC or name). */
  keyOf(kind: Kind, field: string, value: string): Promise<string | undefined>;
  create(kind: Kind, key: string, doc: Doc, uniques?: UniqueValue[], opts?: WriteOptions): Promise<Stored>;
  replace(kind: Kind, key: string, doc: Doc, uniques?: UniqueValue[], opts?: WriteOptions): Promise<Stored>;
  remove(kind: Kind, key: string, opts?: WriteOptions): Promise<void>;
  /**
   * Upsert without unique checks, for records the daemon writes at packet rate (leases, heartbeats, file
   * records). Writes made in one event-loop turn share one transaction and one fsync; the promise resolves
   * only once the batch is durable, so a caller can acknowledge after awaiting it.
   */
  putBatched(kind: Kind, key: string, doc: Doc | null, send?: DurableSend): Promise<void>;
  /** A conditional lease write (LeaseClaim); resolves once committed, so a winning `bound` claim may be ACKed. Both backends have it. */
  claimLease?(claim: LeaseClaim): Promise<ClaimResult>;
  /**
   * Up to `limit` addresses of the range (dotted, in the range's order from `from`, wrapping) that a claim could
   * take now: no lease row, or one that ended. For a daemon whose claims keep losing to other daemons' clients
   * (its index does not know their leases): its next candidates. PostgreSQL only (SQLite's one daemon knows all).
   */
  freeLeaseAddresses?(q: FreeLeaseQuery): Promise<string[]>;
  /**
   * Whether other daemons write leases to this store (PostgreSQL): the DHCP server then persists every lease
   * with claimLease. SQLite has one daemon, whose in-memory index is the authority (putBatched).
   */
  readonly sharedLeases?: boolean;
  /** Singleton duties among daemons sharing the store (PostgreSQL); absent: this daemon is the only one. */
  leadership?(o?: LeadershipOptions): Leadership;
  /**
   * Marks `expired` the offered/bound leases whose expiresAt is before `before` (ISO), in one transaction per call,
   * at most `o.limit` (default 1000); returns the leases marked, by address. The leader's sweep of the shared lease
   * table, its one writer of ended leases (each daemon's reclaim only updates its memory there). `o.event`: an
   * event per lease marked, appended to the event log in the same transaction (PostgreSQL; SQLite ignores it).
   */
  expireLeases?(before: string, o?: ExpireOptions): Promise<ExpiredLease[]>;
  /**
   * The lease rows committed since `cursor` (from an earlier call), whoever wrote them except this daemon (the
   * rows whose `serverId` is the store's, when it was opened with one: pg-lease-changes.ts), and the cursor to ask
   * from next; without a cursor, none and the cursor of now (take it before loading the table). What a daemon
   * sharing the lease table follows its index by (PostgreSQL; absent on SQLite: its one daemon writes them all).
   * Deleted rows are not in it: their delete is an event (`leases.deleted`). Paged: a call returns at most a page
   * of rows (the store's `leasePageSize`), with `more` while the pass that began at `cursor` has others; a row
   * rewritten during a pass comes, as it is then, in the next.
   */
  leaseChanges?(cursor?: string): Promise<LeaseChanges>;
  /** The shared event log, where the backend has one (PostgreSQL). */
  readonly events?: EventLog;
  /** Whether the store still answers (for /info and health checks). */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

export class StoreError extends Error {}
export class NotFoundError extends StoreError {
  constructor(
    readonly kind: Kind,
    readonly key: string,
  ) {
    super(`${kind.replace(/s$/, '')} '${key}' does not exist`);
  }
}
export class ConflictError extends StoreError {
  constructor(
    readonly kind: Kind,
    readonly field: string,
    readonly value: string,
    readonly owner: string,
  ) {
    super(
      field === 'key'
        ? `${kind.replace(/s$/, '')} '${value}' already exists`
        : `${field} '${value}' already belongs to ${kind.replace(/s$/, '')} '${owner}'`,
    );
  }
}
export class PreconditionError extends StoreError {
  constructor(
    readonly kind: Kind,
    readonly key: string,
  ) {
    super(`${kind.replace(/s$/, '')} '${key}' has changed since it was read (If-Match does not match its ETag)`);
  }
}
/** The backend failed (disk full, database locked, I/O error): the API answers 503, nothing is half-written. */
export class BackendError extends StoreError {}

/** Plinth's error for anything a backend throws: its own errors as they are, the driver's as a BackendError. */
export function asStoreError(err: unknown): StoreError {
  return err instanceof StoreError ? err : new BackendError(`storage failed: ${(err as Error).message}`);
}
