/**
 * `GET|HEAD /peer/v1/blobs/:sha256` (issue 17): another daemon on the inventory fetches a blob this one holds
 * (src/files/peers.ts). Only blobs, named by digest (64 hex digits, so no path of the client's choosing reaches the
 * file system, and the blob store's confinement is checked all the same), and only what is on this disk: a peer
 * asking never makes this daemon ask others, so requests cannot loop. The caller must present the inventory's peer
 * secret (a bearer token compared in constant time); the receiver checks the bytes against the digest anyway, so
 * the secret guards who may read, not what is read. Registered only on a daemon that shares its inventory.
 */
import { timingSafeEqual } from 'node:crypto';
import { stat } from 'node:fs/promises';
import type { FastifyInstance } from 'fastify';
import { blobRel } from '../files/blobs.js';
import { filesCluster } from '../files/cluster.js';
import { confine } from '../files/confine.js';
import { PEER_BLOBS } from '../files/peers.js';
import type { Logger } from '../log.js';
import { sendFile } from './files-serve.js';
import { sendProblem } from './problem.js';

function sameSecret(given: string, secret: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(secret);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function registerPeerBlobs(app: FastifyInstance, deps: { filesDir: string; log: Logger }): void {
  const cluster = filesCluster(deps.filesDir);
  if (!cluster) return;
  app.get<{ Params: { sha256: string } }>(`${PEER_BLOBS}/:sha256`, async (req, reply) => {
    const auth = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (!auth || !sameSecret(auth, cluster.secret)) {
      deps.log.warn({ ip: req.ip }, 'peer blob request without the peer secret: refused');
      return sendProblem(reply, 401, 'peer blobs need the peer secret of this inventory');
    }
    const sha256 = req.params.sha256;
    if (!/^[0-9a-f]{64}$/.test(sha256)) return sendProblem(reply, 400, 'a blob is named by 64 lowercase hex digits');
    const c = await confine(deps.filesDir, blobRel(sha256));
    if (!c.ok) return sendProblem(reply, 400, `blob refused: ${c.reason}`);
    const abs = await cluster.localBlob(sha256);
    const st = abs ? await stat(abs).catch(() => undefined) : undefined;
    if (!abs || !st?.isFile()) return sendProblem(reply, 404, `blob ${sha256} is not on this daemon`);
    return sendFile(req, reply, abs, st.size, st.mtimeMs, st.mtime, deps.log);
  });
}
