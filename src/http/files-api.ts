import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Bus } from '../events.js';
import {
  FileDigestMismatch,
  FileRefused,
  fileInfo,
  listFiles,
  removeFile,
  writeFileAtomically,
} from '../files/store-files.js';
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';
import { API } from './app.js';
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

function refused(err: unknown): never {
  if (err instanceof FileRefused) throw new HttpProblem(400, err.message, [{ path: 'path', message: err.message }]);
  if (err instanceof FileDigestMismatch)
    throw new HttpProblem(400, err.message, [{ path: 'sha256', message: err.message }]);
  throw err;
}

/** Upload, list and delete files under <data-dir>/files; serving them is files-serve.ts. */
export function registerFileRoutes(app: FastifyInstance, deps: Deps) {
  const tmpDir = path.join(path.dirname(deps.filesDir), 'tmp');

  app.get(`${API}/files`, async (_req, reply) => {
    const files = await listFiles(deps.store, deps.filesDir);
    reply.header('x-total-count', String(files.length));
    return files;
  });

  app.get<{ Params: { '*': string } }>(`${API}/files/*`, async (req) => {
    const rel = relOf(req.params['*']);
    const info = await fileInfo(deps.store, deps.filesDir, rel).catch(refused);
    if (!info) throw new HttpProblem(404, `file '${rel}' does not exist`);
    return info;
  });

  app.delete<{ Params: { '*': string } }>(`${API}/files/*`, async (req, reply) => {
    const rel = relOf(req.params['*']);
    if (!(await removeFile(deps.store, deps.filesDir, rel).catch(refused))) {
      throw new HttpProblem(404, `file '${rel}' does not exist`);
    }
    deps.bus.emit({ type: 'files.deleted', key: rel });
    return reply.code(204).send();
  });

  // Raw streaming upload: any media type, any size; the body is never buffered or parsed.
  app.register(async (scope) => {
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_req, _payload, done) => done(null));
    scope.put<{ Params: { '*': string }; Querystring: { sha256?: string } }>(`${API}/files/*`, async (req, reply) => {
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
        return refused(err);
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
