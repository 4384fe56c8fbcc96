import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Bus } from '../events.js';
import { blobRel, collectGarbage } from '../files/blobs.js';
import { filesCluster } from '../files/cluster.js';
import { pinnedDigests } from '../files/pins.js';
import {
  FileDigestMismatch,
  FileRefused,
  fileInfo,
  fileRecord,
  listFiles,
  removeFile,
  removeStaleUploads,
  writeFileAtomically,
} from '../files/store-files.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import { HttpProblem } from './problem.js';

type Deps = { store: Store; bus: Bus; filesDir: string; log: Logger };

function relOf(wild: string | undefined): string {
  let rel: string;
  try {
    rel = decodeURIComponent(wild ?? '');
  } catch {
    throw new HttpProblem(400, 'the file path is not valid percent-encoding', [
      { path: 'path', message: 'bad encoding' },
    ]);
  }
  return rel;
}

/**
 * What the file system said, as a status and a detail the operator can act on (a 500 said nothing). The data
 * directory's location is not in the detail: it is not the client's business.
 */
export function fsProblem(err: unknown, rel: string): HttpProblem | undefined {
  const code = (err as NodeJS.ErrnoException)?.code;
  const at = [{ path: 'path', message: String(code) }];
  switch (code) {
    case 'EISDIR':
      return new HttpProblem(409, `'${rel}' is a directory: upload to a file name inside it`, at);
    case 'ENOTDIR':
    case 'EEXIST':
      return new HttpProblem(409, `a part of '${rel}' is a file, not a directory: pick another path`, at);
    case 'ENOSPC':
    case 'EDQUOT':
      return new HttpProblem(
        507,
        `no space left for '${rel}' on the daemon's data disk: nothing was kept; free space (delete files) and retry`,
        at,
      );
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new HttpProblem(
        403,
        `the daemon may not write '${rel}' (${code}): check the ownership and mode of its data directory's files/ and tmp/`,
        at,
      );
    case 'ENAMETOOLONG':
      return new HttpProblem(400, `a name in '${rel}' is too long for the file system`, at);
    default:
      return undefined;
  }
}

function refused(err: unknown, rel = ''): never {
  if (err instanceof FileRefused) throw new HttpProblem(400, err.message, [{ path: 'path', message: err.message }]);
  if (err instanceof FileDigestMismatch)
    throw new HttpProblem(400, err.message, [{ path: 'sha256', message: err.message }]);
  throw fsProblem(err, rel) ?? err;
}

/** Upload, list and delete files under <data-dir>/files; serving them is files-serve.ts. */
export function registerFileRoutes(app: FastifyInstance, deps: Deps) {
  const tmpDir = path.join(path.dirname(deps.filesDir), 'tmp');
  // Temp files of uploads that a kill -9 interrupted: removed at start (only those older than this start).
  const started = new Date();
  app.addHook('onReady', async () => {
    const removed = await removeStaleUploads(tmpDir, started).catch((err) => {
      deps.log.warn({ err, tmpDir }, 'stale upload temp files could not be removed');
      return [];
    });
    if (removed.length) deps.log.info({ count: removed.length }, 'removed temp files of interrupted uploads');
  });

  // Mark and sweep of the blob store (src/files/blobs.ts): admin only (a write route that says nothing is).
  app.post('/files/gc', async () => {
    const r = await collectGarbage(deps.filesDir, () => pinnedDigests(deps.store));
    // Several daemons: a blob's record says the cluster holds it; only the daemon that recorded it drops it here
    // (a copy fetched from it and collected here says nothing about the original).
    const cluster = filesCluster(deps.filesDir);
    for (const b of r.removed) {
      const rec = cluster && (await fileRecord(deps.store, blobRel(b.sha256)));
      if (!rec || rec.serverId === undefined || rec.serverId === cluster.serverId) {
        await deps.store.putBatched('files', blobRel(b.sha256), null);
      }
    }
    deps.log.info({ removed: r.removed.length, freedBytes: r.freedBytes, kept: r.kept }, 'files: blobs collected');
    return r;
  });

  app.get('/files', async (_req, reply) => {
    const files = await listFiles(deps.store, deps.filesDir);
    reply.header('x-total-count', String(files.length));
    return files;
  });

  app.get<{ Params: { '*': string } }>('/files/*', async (req) => {
    const rel = relOf(req.params['*']);
    const info = await fileInfo(deps.store, deps.filesDir, rel).catch(refused);
    if (!info) throw new HttpProblem(404, `file '${rel}' does not exist`);
    return info;
  });

  app.delete<{ Params: { '*': string } }>('/files/*', async (req, reply) => {
    const rel = relOf(req.params['*']);
    if (!(await removeFile(deps.store, deps.filesDir, rel).catch((err) => refused(err, rel)))) {
      throw new HttpProblem(404, `file '${rel}' does not exist`);
    }
    deps.bus.emit({ type: 'files.deleted', key: rel });
    return reply.code(204).send();
  });

  // Raw streaming upload: any media type, any size; the body is never buffered or parsed.
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_req, _payload, done) => done(null));
    scope.put<{ Params: { '*': string }; Querystring: { sha256?: string } }>('/files/*', async (req, reply) => {
      const rel = relOf(req.params['*']);
      const expect = (req.headers['x-checksum-sha256'] as string | undefined) ?? req.query.sha256;
      if (expect !== undefined && !/^[0-9a-fA-F]{64}$/.test(expect)) {
        throw new HttpProblem(400, 'the expected sha256 must be 64 hex digits', [
          { path: 'sha256', message: 'not a sha256' },
        ]);
      }
      const { info, created } = await writeFileAtomically(
        deps.store,
        deps.filesDir,
        tmpDir,
        rel,
        req.raw,
        expect,
      ).catch((err) => {
        if (req.raw.destroyed || (err as NodeJS.ErrnoException).code === 'ERR_STREAM_PREMATURE_CLOSE') {
          deps.log.warn({ path: rel }, 'upload interrupted: nothing was kept');
        }
        return refused(err, rel);
      });
      deps.log.info({ path: info.path, size: info.size, sha256: info.sha256 }, 'file uploaded');
      deps.bus.emit({ type: 'files.uploaded', key: info.path, data: { size: info.size, sha256: info.sha256 } });
      const loc = `/files/${info.path.split('/').map(encodeURIComponent).join('/')}`;
      return reply
        .code(created ? 201 : 200)
        .header('location', loc)
        .send({ ...info, url: loc });
    });
  });
}
