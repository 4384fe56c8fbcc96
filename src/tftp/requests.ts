/**
 * From a request to what its transfer needs: the file (RRQ) or the upload (WRQ), and the negotiated options. Every
 * refusal is answered here through the server's `refuse` (one ERROR from the listening port); a temporary failure
 * (out of descriptors) is left unanswered through `openFailed`, so the client retries. No transfer socket yet.
 */
import { stat } from 'node:fs/promises';
import { confine } from '../files/confine.js';
import type { Logger } from '../log.js';
import type { rateLimitedLog } from '../log-limit.js';
import {
  ERR,
  type Limits,
  NEGOTIATION_FAILED,
  type Negotiated,
  negotiate,
  type OptionList,
  toNetascii,
} from './codec.js';
import { bufferFile, SourceBusy, type TftpClient, type TftpFile, type TftpSource } from './source.js';
import type { TftpStats } from './stats.js';
import { type UploadSink, uploadFile } from './write.js';

export type RequestEnv = {
  readonly log: Logger;
  readonly limited: ReturnType<typeof rateLimitedLog>;
  readonly stats: TftpStats;
  readonly source: TftpSource;
  /** The server-wide limits; a file's own blksizeCap lowers maxBlksize for its transfer. */
  readonly limits: Required<Limits>;
  readonly uploadDir?: string;
  readonly maxUploadBytes: number;
  readonly netasciiMax: number;
  closing(): boolean;
  refuse(client: TftpClient, code: number, message: string, why: string, filename: string): void;
  openFailed(err: unknown, key: string, what: 'a transfer socket' | 'the file'): void;
};

export type Request = { client: TftpClient; filename: string; mode: string; options: OptionList };

/** Temporary: descriptors run out under a flood (ours or another service's) and come back when it passes. */
export function outOfDescriptors(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EMFILE' || code === 'ENFILE';
}

/** blksize is granted up to the smaller of the server's maximum and the file's own cap (a firmware quirk's). */
export function limitsFor(limits: Required<Limits>, blksizeCap: number | undefined): Limits {
  if (blksizeCap === undefined || !(blksizeCap > 0)) return limits;
  return { ...limits, maxBlksize: Math.min(limits.maxBlksize, blksizeCap) };
}

function declinedTimeout(env: RequestEnv, neg: Negotiated, key: string): void {
  if (neg.timeoutDeclined === undefined) return;
  env.stats.timeoutsDeclined++;
  env.log.debug(
    { client: key, asked: neg.timeoutDeclined, max: env.limits.maxTimeout },
    'tftp: client timeout above the cap left out of the OACK; the server timeout applies',
  );
}

/** The file an RRQ asks for, opened, and the options granted; undefined when the request was refused or dropped. */
export async function prepareRead(
  env: RequestEnv,
  r: Request,
): Promise<{ file: TftpFile; neg: Negotiated } | undefined> {
  const { client, filename, mode } = r;
  const key = `${client.address}:${client.port}`;
  let opened: Awaited<ReturnType<TftpSource['open']>>;
  try {
    opened = await env.source.open(filename, client);
  } catch (err) {
    if (outOfDescriptors(err) || err instanceof SourceBusy) {
      env.openFailed(err, key, 'the file');
      return undefined;
    }
    // A source that throws (a rendering bug, a broken store) is answered, not left to the client's timeout; logged
    // at most once per interval, as a flood can make every request fail the same way.
    env.limited('error', 'source', { err, client: key, file: filename }, 'tftp source failed');
    env.refuse(client, ERR.NOT_DEFINED, 'Internal error', 'source threw', filename);
    return undefined;
  }
  if (opened.status !== 'ok') {
    if (opened.status === 'not-found')
      env.refuse(client, ERR.FILE_NOT_FOUND, 'File not found', opened.reason, filename);
    else env.refuse(client, ERR.ACCESS_VIOLATION, 'Access violation', opened.reason, filename);
    return undefined;
  }
  const cap = opened.blksizeCap;
  let file: TftpFile = opened;
  if (mode === 'netascii') {
    if (opened.size > env.netasciiMax) {
      opened.close();
      env.refuse(client, ERR.ACCESS_VIOLATION, 'File too large for netascii, use octet', 'netascii size cap', filename);
      return undefined;
    }
    try {
      const raw = await opened.read(0, opened.size);
      file = bufferFile(toNetascii(raw));
    } finally {
      opened.close();
    }
  }
  if (env.closing()) {
    file.close();
    return undefined;
  }
  const neg = negotiate(r.options, limitsFor(env.limits, cap), file.size);
  if (neg.refused) {
    file.close();
    env.refuse(client, ERR.OPTION_NEGOTIATION, NEGOTIATION_FAILED, neg.refused, filename);
    return undefined;
  }
  declinedTimeout(env, neg, key);
  return { file, neg };
}

/** Where a WRQ's bytes go, and the options granted; undefined when the request was refused or dropped. */
export async function prepareWrite(
  env: RequestEnv,
  r: Request,
): Promise<{ sink: UploadSink; neg: Negotiated } | undefined> {
  const { client, filename, mode } = r;
  const key = `${client.address}:${client.port}`;
  if (env.uploadDir === undefined) {
    env.refuse(client, ERR.ACCESS_VIOLATION, 'Uploads are disabled', 'WRQ without uploadDir', filename);
    return undefined;
  }
  if (mode !== 'octet') {
    env.refuse(client, ERR.ILLEGAL_OPERATION, 'Uploads must use octet mode', `mode ${mode}`, filename);
    return undefined;
  }
  const c = await confine(env.uploadDir, filename);
  if (!c.ok) {
    env.refuse(client, ERR.ACCESS_VIOLATION, 'Access violation', c.reason, filename);
    return undefined;
  }
  const target = await stat(c.abs).catch(() => undefined);
  if (target && !target.isFile()) {
    env.refuse(client, ERR.ACCESS_VIOLATION, 'Access violation', `${c.abs} is not a regular file`, filename);
    return undefined;
  }
  // RFC 7440 applies to uploads as to downloads: windowsize is granted up to the same maximum.
  const neg = negotiate(r.options, env.limits);
  if (neg.refused) {
    env.refuse(client, ERR.OPTION_NEGOTIATION, NEGOTIATION_FAILED, neg.refused, filename);
    return undefined;
  }
  declinedTimeout(env, neg, key);
  if (neg.tsize !== undefined && neg.tsize > env.maxUploadBytes) {
    env.refuse(client, ERR.DISK_FULL, 'Upload too large', `tsize ${neg.tsize}`, filename);
    return undefined;
  }
  try {
    return { sink: await uploadFile(c.abs), neg };
  } catch (err) {
    if (outOfDescriptors(err) || err instanceof SourceBusy) {
      env.openFailed(err, key, 'the file');
      return undefined;
    }
    env.refuse(client, ERR.ACCESS_VIOLATION, 'Access violation', `cannot create: ${String(err)}`, filename);
    return undefined;
  }
}
