import { networkInterfaces } from 'node:os';
import type { Bus } from '../events.js';
import { fileInfo } from '../files/store-files.js';
import type { BootRecorder } from '../inventory/boots.js';
import { resolveParams } from '../inventory/params.js';
import { getPrefs } from '../inventory/resources.js';
import { issueToken, newToken } from '../inventory/tokens.js';
import type { Logger } from '../log.js';
import { BootEnv } from '../model/bootenv.js';
import { cidrContains } from '../model/common.js';
import type { Machine } from '../model/machine.js';
import { RenderError } from '../render/engine.js';
import type { Store } from '../store/store.js';
import { renderMachineFile, type ServerView } from './render.js';

export type BootServiceDeps = { store: Store; bus: Bus; log: Logger; filesDir: string; boots: BootRecorder };

export type RenderOutcome =
  | { ok: true; text: string; bootEnv: string }
  | { ok: false; status: number; detail: string; bootEnv?: string };

/** The local IPv4 address on the client's subnet: what "Plinth's address" is for that client. */
export function localAddressFor(client: string): string | undefined {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.family === 'IPv4' && !a.internal && a.cidr && cidrContains(a.cidr, client)) return a.address;
    }
  }
  return undefined;
}

/**
 * Renders a machine's boot files for any transport (HTTP, TFTP): picks the bootEnv (the machine's, or the
 * unknownBootEnv pref), refuses artifacts whose digest does not match, issues the machine token only when the
 * requester is the machine, and records the render (or its error, or the refusal) in the boot timeline.
 */
export function bootService(deps: BootServiceDeps) {
  const { store, bus, log, boots } = deps;

  const bootEnvOf = async (name: string): Promise<BootEnv | undefined> => {
    const s = await store.get('bootenvs', name);
    return s ? BootEnv.parse(s.doc) : undefined;
  };
  const allTemplates = async (): Promise<Record<string, string>> => {
    const { items } = await store.list('templates');
    return Object.fromEntries(items.map((i) => [i.key, String(i.doc.contents)]));
  };

  /** A bootenv's artifacts must match their digests: an immutable image is exactly the bytes it was pinned to. */
  const verifyArtifacts = async (be: BootEnv) => {
    const bad: string[] = [];
    for (const a of be.artifacts) {
      const info = await fileInfo(store, deps.filesDir, a.path).catch(() => undefined);
      if (!info) bad.push(`${a.path} is missing`);
      else if (info.sha256 !== a.sha256) bad.push(`${a.path} has sha256 ${info.sha256}, bootenv pins ${a.sha256}`);
    }
    return bad;
  };

  const issueMachineToken = async (m: Machine): Promise<string> => {
    const prefs = await getPrefs(store);
    const token = newToken();
    const now = Date.now();
    await issueToken(store, token, {
      name: `machine ${m.name}`,
      role: 'machine',
      machine: m.uuid,
      createdAt: new Date(now).toISOString(),
      expiresAt: new Date(now + prefs.knownTokenTtl * 1000).toISOString(),
    });
    return token;
  };

  return {
    bootEnvOf,

    async render(
      m: Machine,
      file: string,
      view: { server: ServerView; trusted: boolean; via: string },
    ): Promise<RenderOutcome> {
      const prefs = await getPrefs(store);
      const envName = m.bootEnv ?? prefs.unknownBootEnv;
      const be = await bootEnvOf(envName);
      if (!be) {
        await boots.record(m.uuid, { kind: 'render', detail: `bootenv '${envName}' does not exist`, data: { file } });
        return { ok: false, status: 404, detail: `machine '${m.name}': bootenv '${envName}' does not exist` };
      }
      const bad = await verifyArtifacts(be);
      if (bad.length) {
        const why = `refusing to boot ${be.name}: ${bad.join('; ')}`;
        log.error(
          { machine: m.name, bootEnv: be.name, problems: bad },
          `boot refused: artifact digest mismatch: ${why}`,
        );
        await boots.record(
          m.uuid,
          { kind: 'refused', detail: why, data: { file } },
          { bootEnv: be.name, result: 'failed' },
        );
        bus.emit({ type: 'boot.refused', machine: m.uuid, data: { bootEnv: be.name, problems: bad } });
        return { ok: false, status: 409, detail: `Plinth ${why}`, bootEnv: be.name };
      }
      const token = view.trusted ? await issueMachineToken(m) : undefined;
      try {
        const { values } = await resolveParams(store, m);
        const text = await renderMachineFile(
          { machine: m, bootEnv: be, params: values, server: view.server, token, templates: await allTemplates() },
          file,
        );
        if (text === undefined)
          return { ok: false, status: 404, detail: `bootenv '${be.name}' has no template for '${file}'` };
        await boots.record(
          m.uuid,
          {
            kind: 'render',
            detail: `${file} of bootenv ${be.name} over ${view.via}${view.trusted ? '' : ' (without token: request not from the machine)'}`,
          },
          { bootEnv: be.name, artifacts: be.artifacts.map((a) => ({ path: a.path, sha256: a.sha256 })) },
        );
        bus.emit({ type: 'boot.rendered', machine: m.uuid, data: { bootEnv: be.name, file } });
        return { ok: true, text, bootEnv: be.name };
      } catch (err) {
        if (!(err instanceof RenderError)) throw err;
        log.warn({ machine: m.name, bootEnv: be.name, file, err: err.message }, 'render failed');
        await boots.record(
          m.uuid,
          { kind: 'render', detail: `render error: ${err.message}`, data: { file } },
          { bootEnv: be.name, result: 'failed' },
        );
        bus.emit({ type: 'render.error', machine: m.uuid, data: { bootEnv: be.name, file, error: err.message } });
        return { ok: false, status: 500, detail: `render failed: ${err.message}`, bootEnv: be.name };
      }
    },
  };
}
export type BootService = ReturnType<typeof bootService>;
