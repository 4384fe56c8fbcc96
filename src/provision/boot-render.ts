import { renderMachineFile, type ServerView, withholdSecure } from '../boot/render.js';
import type { Bus } from '../events.js';
import { referencedArtifacts } from '../files/pins.js';
import type { BootRecorder } from '../inventory/boots.js';
import { type Resolved, resolveParamsForBoot } from '../inventory/params.js';
import { getPrefs } from '../inventory/resources.js';
import { tokenChecker } from '../inventory/tokens.js';
import type { Logger } from '../log.js';
import { BootEnv } from '../model/bootenv.js';
import type { Machine } from '../model/machine.js';
import { RenderBusyError, RenderError } from '../render/engine.js';
import type { Store } from '../store/store.js';
import { type ArtifactCheck, artifactCheck } from './artifacts.js';
import { validateConfig } from './config-kind.js';
import { type RenderTokens, renderTokens } from './render-token.js';
import type { TrustVerdict } from './trust.js';

export type BootRendererDeps = {
  store: Store;
  bus: Bus;
  log: Logger;
  filesDir: string;
  boots: BootRecorder;
  tokens?: RenderTokens;
  /** The artifact digest check (shared with /files); absent: one of its own. */
  artifacts?: ArtifactCheck;
};

export type RenderView = {
  server: ServerView;
  /** Whether the requester is the machine (src/provision/trust.ts): only then secrets and a token. */
  trust: TrustVerdict;
  via: string;
  /** false: the machine is not in the inventory (served the unknown bootenv without a record): no timeline. */
  record?: boolean;
};

/**
 * Why a request for a machine's file gave none, whatever the transport: the machine does not exist (`not-found`),
 * its bootenv does not, the bootenv has no such template, an artifact no longer matches its pin, the template
 * failed, or the render queue is full. src/http/boot.ts maps these to HTTP statuses, src/provision/tftp-source.ts
 * to TFTP errors.
 */
export type RenderFailure =
  | 'not-found'
  | 'no-bootenv'
  | 'digest-mismatch'
  | 'no-template'
  | 'render-error'
  | 'render-busy';

export type RenderOutcome =
  | { ok: true; text: string; bootEnv: string }
  | { ok: false; reason: RenderFailure; detail: string; bootEnv?: string };

/** What one render reads from the inventory, each read once: prefs, the bootenv, its artifacts, params, templates. */
export type BootContext =
  | { kind: 'no-bootenv'; envName: string }
  | { kind: 'digest-mismatch'; bootEnv: BootEnv; problems: string[] }
  | {
      kind: 'ready';
      /** Bound to its pins: kernel and initrds name what /files serves for this bootenv (see `served`). */
      bootEnv: BootEnv;
      /** Path -> name under /files for every file the bootenv pins or names (src/provision/artifacts.ts). */
      artifacts: Record<string, string>;
      params: Resolved & { secure: Set<string> };
      templates: Record<string, string>;
    };

/** Throws a RenderError when `file` is a template of a config kind and `text` is not a valid config of it. */
export function checkConfig(be: BootEnv, file: string, text: string): void {
  const t = be.templates.find((x) => x.path === file || x.name === file);
  const problems = validateConfig(t?.kind, text);
  if (problems.length)
    throw new RenderError(`${file} is not a valid ${t!.kind} config: ${problems.join('; ')}`, `${be.name}/${t!.name}`);
}

/**
 * Renders a machine's boot files for any transport (HTTP, TFTP): picks the bootEnv (the machine's, or the
 * unknownBootEnv pref), refuses artifacts whose digest does not match, issues the machine token only when the
 * requester is the machine, and records the render (or its error, or the refusal) in the boot timeline.
 */
export function bootRenderer(deps: BootRendererDeps) {
  const { store, bus, log, boots } = deps;
  const artifacts = deps.artifacts ?? artifactCheck(deps);

  const bootEnvOf = async (name: string): Promise<BootEnv | undefined> => {
    const s = await store.get('bootenvs', name);
    return s ? BootEnv.parse(s.doc) : undefined;
  };
  const allTemplates = async (): Promise<Record<string, string>> => {
    const { items } = await store.list('templates');
    return Object.fromEntries(items.map((i) => [i.key, String(i.doc.contents)]));
  };

  /** The machine's bootenv (or the unknownBootEnv pref) and what rendering it needs, or why it cannot be. */
  const loadBootContext = async (m: Machine): Promise<BootContext> => {
    const envName = m.bootEnv ?? (await getPrefs(store)).unknownBootEnv;
    const be = await bootEnvOf(envName);
    if (!be) return { kind: 'no-bootenv', envName };
    const problems = await artifacts.verify(be);
    if (problems.length) return { kind: 'digest-mismatch', bootEnv: be, problems };
    const named = [...(be.kernel ? [be.kernel] : []), ...be.initrds, ...referencedArtifacts(be)];
    const [served, params, templates] = await Promise.all([
      artifacts.served(be, named),
      resolveParamsForBoot(store, m),
      allTemplates(),
    ]);
    // The default iPXE script names kernel and initrds by `bootEnv`: bound to what this bootenv pinned.
    const bound = { ...be, kernel: be.kernel && served[be.kernel], initrds: be.initrds.map((i) => served[i]!) };
    return { kind: 'ready', bootEnv: bound, artifacts: served, params, templates };
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
          detail: `machine '${m.name}': bootenv '${envName}' does not exist`,
        };
      }
      const be = ctx.bootEnv;
      if (ctx.kind === 'digest-mismatch') {
        const bad = ctx.problems;
        const why = `refusing to boot ${be.name}: ${bad.join('; ')}`;
        const missing = bad.every((p) => p.endsWith(' is missing'));
        log.error(
          { machine: m.name, bootEnv: be.name, problems: bad },
          `boot refused: ${missing ? 'pinned artifacts missing' : 'artifact digest mismatch'}: ${why}`,
        );
        await record(m.uuid, { kind: 'refused', detail: why, data: { file } }, { bootEnv: be.name, result: 'failed' });
        bus.emit({ type: 'boot.refused', machine, data: { bootEnv: be.name, problems: bad } });
        return { ok: false, reason: 'digest-mismatch', detail: `Plinth ${why}`, bootEnv: be.name };
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
            artifacts: ctx.artifacts,
          },
          file,
        );
        if (raw === undefined)
          return {
            ok: false,
            reason: 'no-template',
            detail: `bootenv '${be.name}' has no template for '${file}'`,
          };
        // A first-boot config (Ignition, cloud-init, Talos) that is not valid is refused before a token is minted.
        checkConfig(be, file, raw);
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
        // A full render queue is load, not a broken template: the transports let the client retry.
        return {
          ok: false,
          reason: err instanceof RenderBusyError ? 'render-busy' : 'render-error',
          detail: `render failed: ${err.message}`,
          bootEnv: be.name,
        };
      }
    },
  };
}
export type BootRenderer = ReturnType<typeof bootRenderer>;
/** src/http/app.ts names the daemon's boot service by this path. */
