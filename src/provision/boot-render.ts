import { renderMachineFile, type ServerView, withholdSecure } from '../boot/render.js';
import type { Bus } from '../events.js';
import { fileInfo } from '../files/store-files.js';
import type { BootRecorder } from '../inventory/boots.js';
import { type Resolved, resolveParamsForBoot } from '../inventory/params.js';
import { getPrefs } from '../inventory/resources.js';
import { tokenChecker } from '../inventory/tokens.js';
import type { Logger } from '../log.js';
import { BootEnv } from '../model/bootenv.js';
import type { Machine } from '../model/machine.js';
import { RenderBusyError, RenderError } from '../render/engine.js';
import type { Store } from '../store/store.js';
import { type RenderTokens, renderTokens } from './render-token.js';
import type { TrustVerdict } from './trust.js';

export type BootServiceDeps = {
  store: Store;
  bus: Bus;
  log: Logger;
  filesDir: string;
  boots: BootRecorder;
  tokens?: RenderTokens;
};

export type RenderView = {
  server: ServerView;
  /** Whether the requester is the machine (src/provision/trust.ts): only then secrets and a token. */
  trust: TrustVerdict;
  via: string;
  /** false: the machine is not in the inventory (served the unknown bootenv without a record): no timeline. */
  record?: boolean;
};

/** Why a render gave no file, whatever the transport (HTTP maps it to `status`; TFTP answers File not found). */
export type RenderFailure = 'no-bootenv' | 'digest-mismatch' | 'no-template' | 'render-error' | 'render-busy';

export type RenderOutcome =
  | { ok: true; text: string; bootEnv: string }
  | { ok: false; reason: RenderFailure; status: number; detail: string; bootEnv?: string };

/** What one render reads from the inventory, each read once: prefs, the bootenv, its artifacts, params, templates. */
export type BootContext =
  | { kind: 'no-bootenv'; envName: string }
  | { kind: 'digest-mismatch'; bootEnv: BootEnv; problems: string[] }
  | {
      kind: 'ready';
      bootEnv: BootEnv;
      params: Resolved & { secure: Set<string> };
      templates: Record<string, string>;
    };

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

  /** The machine's bootenv (or the unknownBootEnv pref) and what rendering it needs, or why it cannot be. */
  const loadBootContext = async (m: Machine): Promise<BootContext> => {
    const envName = m.bootEnv ?? (await getPrefs(store)).unknownBootEnv;
    const be = await bootEnvOf(envName);
    if (!be) return { kind: 'no-bootenv', envName };
    const problems = await verifyArtifacts(be);
    if (problems.length) return { kind: 'digest-mismatch', bootEnv: be, problems };
    const [params, templates] = await Promise.all([resolveParamsForBoot(store, m), allTemplates()]);
    return { kind: 'ready', bootEnv: be, params, templates };
  };

  const tokens =
    deps.tokens ??
    renderTokens({
      store,
      checkToken: tokenChecker(store),
      ttlSeconds: async () => (await getPrefs(store)).knownTokenTtl,
    });

  return {
    bootEnvOf,
    loadBootContext,

    async render(m: Machine, file: string, view: RenderView): Promise<RenderOutcome> {
      const trusted = view.trust.machine;
      // A request served without a machine record (discovery refused to create one) has no timeline.
      const anonymous = view.record === false;
      const record: BootRecorder['record'] = anonymous ? async () => undefined as never : boots.record;
      const machine = anonymous ? undefined : m.uuid;
      const ctx = await loadBootContext(m);
      if (ctx.kind === 'no-bootenv') {
        const envName = ctx.envName;
        await record(m.uuid, { kind: 'render', detail: `bootenv '${envName}' does not exist`, data: { file } });
        return {
          ok: false,
          reason: 'no-bootenv',
          status: 404,
          detail: `machine '${m.name}': bootenv '${envName}' does not exist`,
        };
      }
      const be = ctx.bootEnv;
      if (ctx.kind === 'digest-mismatch') {
        const bad = ctx.problems;
        const why = `refusing to boot ${be.name}: ${bad.join('; ')}`;
        log.error(
          { machine: m.name, bootEnv: be.name, problems: bad },
          `boot refused: artifact digest mismatch: ${why}`,
        );
        await record(m.uuid, { kind: 'refused', detail: why, data: { file } }, { bootEnv: be.name, result: 'failed' });
        bus.emit({ type: 'boot.refused', machine, data: { bootEnv: be.name, problems: bad } });
        return { ok: false, reason: 'digest-mismatch', status: 409, detail: `Plinth ${why}`, bootEnv: be.name };
      }
      try {
        const params = withholdSecure(ctx.params.values, trusted ? undefined : ctx.params.secure);
        const token = await tokens.candidate(m, trusted);
        const raw = await renderMachineFile(
          {
            machine: m,
            bootEnv: be,
            params: params.values,
            server: view.server,
            token: token.value,
            templates: ctx.templates,
          },
          file,
        );
        if (raw === undefined)
          return {
            ok: false,
            reason: 'no-template',
            status: 404,
            detail: `bootenv '${be.name}' has no template for '${file}'`,
          };
        const { text, used } = await tokens.settle(m, token, raw);
        const notes = [
          ...(used && !trusted ? ['without token'] : []),
          ...(params.withheld.length ? ['secure params withheld'] : []),
        ];
        await record(
          m.uuid,
          {
            kind: 'render',
            detail: `${file} of bootenv ${be.name} over ${view.via}${notes.length ? ` (${notes.join(', ')}: request not from the machine)` : ''}`,
            ...(!view.trust.machine && notes.length ? { data: { why: view.trust.why } } : {}),
          },
          { bootEnv: be.name, artifacts: be.artifacts.map((a) => ({ path: a.path, sha256: a.sha256 })) },
        );
        bus.emit({ type: 'boot.rendered', machine, data: { bootEnv: be.name, file } });
        return { ok: true, text, bootEnv: be.name };
      } catch (err) {
        if (!(err instanceof RenderError)) throw err;
        log.warn({ machine: m.name, bootEnv: be.name, file, err: err.message }, 'render failed');
        await record(
          m.uuid,
          { kind: 'render', detail: `render error: ${err.message}`, data: { file } },
          { bootEnv: be.name, result: 'failed' },
        );
        bus.emit({ type: 'render.error', machine, data: { bootEnv: be.name, file, error: err.message } });
        // A full render queue is load, not a broken template: 503 so a client retries.
        const busy = err instanceof RenderBusyError;
        return {
          ok: false,
          reason: busy ? 'render-busy' : 'render-error',
          status: busy ? 503 : 500,
          detail: `render failed: ${err.message}`,
          bootEnv: be.name,
        };
      }
    },
  };
}
export type BootService = ReturnType<typeof bootService>;
