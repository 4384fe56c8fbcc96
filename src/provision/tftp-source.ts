/**
 * What the daemon's TFTP service serves: the boot loaders (assets/), uploaded files (data-dir/files) and each
 * machine's rendered files at machines/<uuid>/<path> (src/provision/boot.ts, with the TFTP trust rule). Every file
 * opened carries the blksize cap of its client (`blksizeCap`): the smallest of the machine's `tftp/max-blksize`
 * param, its subnets' `tftpMaxBlksize` and the firmware quirk of its latest boot offer (src/provision/sessions.ts),
 * worked out once, here, and every fetch lands in the timeline of the machine at the client's address.
 */
import type { BlksizeCap } from '../boot/caps.js';
import type { BootRecorder } from '../inventory/boots.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import {
  bufferFile,
  chainSources,
  fileRootSource,
  type OpenResult,
  SourceBusy,
  type TftpSource,
} from '../tftp/source.js';
import type { BootService } from './boot.js';
import type { RenderFailure } from './boot-render.js';
import type { BootSessions } from './sessions.js';
import { blksizeCapFor } from './tftp-caps.js';

export type BootTftpSource = TftpSource;

export type TftpSourceDeps = {
  store: Store;
  log: Logger;
  boots: BootRecorder;
  boot: BootService;
  sessions: BootSessions;
  /**
   * Served before the rendered files, in order: directories (assets, uploaded files) or sources (the loaders found
   * in the distribution's iPXE locations, src/provision/loaders.ts).
   */
  roots: (string | TftpSource)[];
  /** Plinth's address as the client reaches it (the operator's --advertise-address, else the local interface). */
  serverAddress: (client: string) => string;
  httpPort: number;
  /** The global --tftp-max-blksize: a cap at or above it changes nothing and is not reported. */
  maxBlksize: number;
};

const MACHINE_FILE = /^\/?machines\/([0-9a-f-]{36})\/(.+)$/;

/**
 * A render that failed for a reason other than a missing file: thrown, so the TFTP server answers ERROR 0 and logs
 * it (the reason stays in the log and the timeline, never on the wire).
 */
export class TftpRenderFailed extends Error {
  constructor(
    readonly reason: RenderFailure,
    detail: string,
  ) {
    super(detail);
  }
}

/** How each transport-neutral render failure is answered over TFTP (RFC 1350 error codes, via the server). */
export function tftpOutcome(reason: RenderFailure, detail: string): OpenResult {
  switch (reason) {
    case 'not-found':
    case 'no-bootenv':
    case 'no-template':
      return { status: 'not-found', reason: detail }; // ERROR 1 File not found
    case 'digest-mismatch':
      return { status: 'refused', reason: detail }; // ERROR 2 Access violation
    case 'render-busy':
      throw new SourceBusy(detail); // no answer: the client repeats its request
    default:
      throw new TftpRenderFailed(reason, detail); // ERROR 0
  }
}

/** machines/<uuid>/<file>: the machine's bootenv rendered for this client. */
function renderedSource(d: TftpSourceDeps): TftpSource {
  return {
    async open(p, client) {
      const m = MACHINE_FILE.exec(p);
      if (!m) return { status: 'not-found', reason: 'not a machine file' };
      const r = await d.boot.machineFile({
        uuid: m[1]!,
        file: m[2]!,
        transport: 'tftp',
        // UDP sources are forged for free: over TFTP only a fresh DHCP acknowledgement from this daemon counts.
        source: client.address,
        server: { address: d.serverAddress(client.address), httpPort: d.httpPort },
      });
      return r.ok ? bufferFile(r.text) : tftpOutcome(r.reason, r.detail);
    },
  };
}

export function bootTftpSource(d: TftpSourceDeps): BootTftpSource {
  const { store, log, boots } = d;
  const inner = chainSources([
    ...d.roots.map((root) => (typeof root === 'string' ? fileRootSource(root) : root)),
    renderedSource(d),
  ]);

  const capOf = (address: string) =>
    blksizeCapFor(store, address, d.sessions.quirkCap(address)).catch((err) => {
      log.warn(
        { err: (err as Error).message, client: address },
        'tftp: cannot work out the blksize cap of this client; the global maximum applies',
      );
      return undefined;
    });

  return {
    async open(p, client) {
      const [r, who] = await Promise.all([
        inner.open(p, client).then(
          (ok) => ({ ok }),
          (err: unknown) => ({ err }),
        ),
        capOf(client.address),
      ]);
      for (const problem of who?.problems ?? []) log.warn({ client: client.address, file: p }, `tftp: ${problem}`);
      const opened = 'ok' in r ? r.ok : undefined;
      const cap: BlksizeCap | undefined = who?.cap && who.cap.value < d.maxBlksize ? who.cap : undefined;
      const served = opened?.status === 'ok' ? opened : undefined;
      if (cap && served) {
        log.info(
          { client: client.address, file: p, blksize: cap.value, cap: cap.source, why: cap.why },
          `tftp: blksize at most ${cap.value} for ${client.address}: ${cap.why}`,
        );
      }
      const status = opened?.status ?? ('err' in r && r.err instanceof TftpRenderFailed ? r.err.reason : 'error');
      if (who?.machine) {
        boots
          .record(who.machine.uuid, {
            kind: 'tftp',
            detail: `RRQ ${p} -> ${served ? `${served.size} bytes` : status}${cap && served ? `; blksize at most ${cap.value} (${cap.why})` : ''}`,
            data: { path: p, ...(cap ? { blksizeCap: cap.value, blksizeCapWhy: cap.why } : {}) },
          })
          .catch(() => {});
      }
      if ('err' in r) throw r.err;
      return cap && served ? { ...served, blksizeCap: cap.value } : r.ok;
    },
  };
}
