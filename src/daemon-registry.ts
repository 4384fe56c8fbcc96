/**
 * Daemon identity (issue 17): each daemon sharing an inventory has a `serverId` and a heartbeat document in the
 * `daemons` kind, rewritten every few seconds, so operators (GET /api/v1/daemons) and the other daemons can tell
 * which are up. A daemon that stops cleanly says so (`stoppedAt`); one killed simply stops beating and is
 * listed as not alive once three beats are missed. With SQLite there is one daemon, listed all the same.
 */
import os from 'node:os';
import type { Logger } from './log.js';
import type { Store } from './store/store.js';

export type DaemonDoc = {
  serverId: string;
  host: string;
  pid: number;
  version: string;
  backend: string;
  startedAt: string;
  beatAt: string;
  beatSeconds: number;
  stoppedAt?: string;
  /** Where its API answers, as it advertises it (for an operator, and later for peers fetching files). */
  api?: string;
  /** Where peers fetch blobs from it (`<peerUrl>/peer/v1/blobs/<sha256>`, src/files/peers.ts): --advertise-url. */
  peerUrl?: string;
  /** Whether it held the singleton duties (src/leader.ts) at its last beat. */
  leader?: boolean;
};
export type DaemonState = DaemonDoc & { alive: boolean; leader: boolean };

/** Beats missed before a daemon is listed as not alive. */
const MISSED = 3;

/** The default serverId: the host name, cut to what a serverId may hold. */
export function defaultServerId(): string {
  const h = os
    .hostname()
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '')
    .slice(0, 63);
  return h || 'plinth';
}

/** Every daemon that ever beat on this inventory, by serverId, with whether it is alive at `now`. */
export async function listDaemons(store: Store, now = Date.now()): Promise<DaemonState[]> {
  const { items } = await store.list('daemons');
  return items.map((i) => {
    const d = i.doc as DaemonDoc;
    const fresh = now - Date.parse(d.beatAt) < MISSED * d.beatSeconds * 1000;
    const alive = d.stoppedAt === undefined && fresh;
    // A dead daemon's last beat may say it led: it no longer does.
    return { ...d, alive, leader: alive && d.leader === true };
  });
}

export type Registry = {
  serverId: string;
  /** Writes the heartbeat now (a change of leader shows at once). */
  beat(): void;
  close(): Promise<void>;
};

/**
 * Writes this daemon's heartbeat now (awaited: a daemon that cannot write its inventory does not start) and every
 * `beatSeconds`. Warns when another live daemon beats under the same serverId on another host or pid: two daemons
 * with one name would be indistinguishable in every record they write.
 */
export async function startRegistry(
  store: Store,
  me: { serverId: string; version: string; backend: string; api?: string; peerUrl?: string },
  log: Logger,
  beatSeconds = 10,
  leading?: () => boolean,
): Promise<Registry> {
  const startedAt = new Date().toISOString();
  const doc = (): DaemonDoc => ({
    serverId: me.serverId,
    host: os.hostname(),
    pid: process.pid,
    version: me.version,
    backend: me.backend,
    startedAt,
    beatAt: new Date().toISOString(),
    beatSeconds,
    ...(me.api ? { api: me.api } : {}),
    ...(me.peerUrl ? { peerUrl: me.peerUrl } : {}),
    ...(leading ? { leader: leading() } : {}),
  });
  const other = (await listDaemons(store)).find((d) => d.serverId === me.serverId && d.alive);
  if (other && (other.host !== os.hostname() || (other.pid !== process.pid && pidAlive(other.pid)))) {
    log.warn(
      { serverId: me.serverId, host: other.host, pid: other.pid, beatAt: other.beatAt },
      'another live daemon beats under this serverId: give each daemon its own --server-id',
    );
  }
  await store.putBatched('daemons', me.serverId, doc());
  log.info({ serverId: me.serverId, beatSeconds }, 'daemon registered');
  const beat = () =>
    store.putBatched('daemons', me.serverId, doc()).catch((err) => log.warn({ err }, 'heartbeat not written'));
  const timer = setInterval(beat, beatSeconds * 1000).unref();
  let closing: Promise<void> | undefined;
  return {
    serverId: me.serverId,
    beat: () => void beat(),
    close() {
      closing ??= (async () => {
        clearInterval(timer);
        await store
          .putBatched('daemons', me.serverId, { ...doc(), stoppedAt: new Date().toISOString() })
          .catch((err) => log.warn({ err }, 'stop not recorded in the daemons list'));
      })();
      return closing;
    },
  };
}

/** Whether a process of this host has that PID: a daemon restarted after kill -9 finds its own fresh heartbeat. */
function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
