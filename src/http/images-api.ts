/**
 * Images under the API: `POST /bootenvs/import` (a verified import from a manifest, src/images/import.ts) and
 * `GET /bootenvs/:name/status` (is every pinned artifact's blob present with its digest? which are missing?).
 */
import type { FastifyInstance } from 'fastify';
import type { Bus } from '../events.js';
import { pinNewBootenvs } from '../files/pin-new.js';
import { fileInfo } from '../files/store-files.js';
import { DownloadError } from '../images/fetch.js';
import { ImportError, importManifest } from '../images/import.js';
import { parseManifest, validateManifest } from '../images/manifest.js';
import { SignatureError } from '../images/verify.js';
import type { Logger } from '../log.js';
import { BootEnv } from '../model/bootenv.js';
import { artifactCheck } from '../provision/artifacts.js';
import type { Store } from '../store/store.js';
import { problemOf } from './errors.js';
import { HttpProblem } from './problem.js';

type Deps = { store: Store; bus: Bus; log: Logger; filesDir: string; dataDir: string };

type ImportBody = { manifest?: unknown; replace?: boolean; allowUnsigned?: boolean };

/** Why an import was refused, as a status: verification failures are 422, the upstream's own failure 502. */
function importProblem(err: unknown): never {
  if (err instanceof SignatureError)
    throw new HttpProblem(err.problem === 'gpgv-missing' ? 503 : 422, err.message, [
      { path: 'signature', message: err.problem },
    ]);
  if (err instanceof ImportError)
    throw new HttpProblem(422, err.message, [{ path: 'artifacts', message: err.problem }]);
  if (err instanceof DownloadError) throw new HttpProblem(502, err.message, [{ path: 'url', message: 'download' }]);
  throw err;
}

export function registerImageRoutes(app: FastifyInstance, deps: Deps) {
  const artifacts = artifactCheck(deps);
  const unpin = pinNewBootenvs({ ...deps, infoOf: (rel) => fileInfo(deps.store, deps.filesDir, rel) });
  app.addHook('onClose', async () => {
    artifacts.close();
    unpin();
  });

  app.get<{ Params: { name: string } }>('/bootenvs/:name/status', async (req) => {
    const s = await deps.store.get('bootenvs', req.params.name);
    if (!s) throw new HttpProblem(404, `bootenv '${req.params.name}' does not exist`);
    const be = BootEnv.parse(s.doc);
    const r = await artifacts.readiness(be);
    return {
      name: be.name,
      ...r,
      ...(be.artifacts.length === 0
        ? { note: 'pins no artifacts: what it boots is whatever its paths hold when a machine asks' }
        : {}),
    };
  });

  app.post<{ Body: ImportBody | string }>('/bootenvs/import', async (req, reply) => {
    const body = (typeof req.body === 'object' && req.body !== null ? req.body : {}) as ImportBody;
    if (body.manifest === undefined)
      throw new HttpProblem(400, 'give the manifest: {"manifest": {...} or "<yaml text>"}', [
        { path: 'manifest', message: 'required' },
      ]);
    const m = typeof body.manifest === 'string' ? parseManifest(body.manifest) : validateManifest(body.manifest);
    // The client gone (the connection closed): the downloads stop and their temp files go.
    const ac = new AbortController();
    const gone = () => ac.abort();
    req.raw.socket.once('close', gone);
    reply.raw.once('finish', () => req.raw.socket.off('close', gone));
    const run = (onProgress?: (e: Progress) => void) =>
      importManifest(deps, m, {
        replace: body.replace === true,
        allowUnsigned: body.allowUnsigned === true,
        signal: ac.signal,
        onProgress,
      })
        .catch(importProblem)
        .then(async (r) => ({ ...r, ready: (await artifacts.readiness({ artifacts: r.artifacts })).ready }));
    // A client that asks for NDJSON (the CLI on a terminal) gets progress lines as the downloads run, then the
    // result (or the problem) as the last line: a 100 MB root image is minutes of silence otherwise.
    if (!String(req.headers.accept ?? '').includes('application/x-ndjson')) return reply.code(201).send(await run());
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    const line = (o: unknown) => res.write(`${JSON.stringify(o)}\n`);
    try {
      line({ result: await run(throttled(line)) });
    } catch (err) {
      const p = problemOf(err);
      if (p.status >= 500) deps.log.error({ err }, 'import failed');
      line({ problem: { status: p.status, detail: p.detail, errors: p.errors } });
    }
    res.end();
  });
}

type Progress = { url: string; bytes: number; total?: number };

/** At most 4 progress lines a second per URL, and always the last. */
function throttled(send: (o: unknown) => void) {
  const last = new Map<string, number>();
  return (e: Progress) => {
    const now = Date.now();
    if (now - (last.get(e.url) ?? 0) < 250 && e.bytes !== e.total) return;
    last.set(e.url, now);
    send({ progress: e });
  };
}
