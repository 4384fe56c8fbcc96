import path from 'node:path';
import type { BootEnv } from '../model/bootenv.js';
import type { Machine } from '../model/machine.js';
import { RenderError, renderTemplate } from '../render/engine.js';

/**
 * What one machine gets rendered: its iPXE script and the bootenv's templates (cloud-init, Ignition, kickstart,
 * a Talos config ...), each with the machine's context. Pure apart from the inputs it is given: the caller
 * resolves params, loads templates and issues the token.
 */
export type ServerView = {
  /** The address the machine reaches Plinth at (the interface that answered it). */
  address: string;
  httpPort: number;
};

export type RenderRequest = {
  machine: Machine;
  bootEnv: BootEnv;
  params: Record<string, unknown>;
  server: ServerView;
  token?: string;
  templates: Record<string, string>;
  /**
   * Where /files serves each file the bootenv pins or names, for this bootenv (src/provision/artifacts.ts
   * `served`): path -> name under /files. Templates get the URLs as `artifacts["<path>"]`.
   */
  artifacts?: Record<string, string>;
};

export function baseUrl(s: ServerView): string {
  return `http://${s.address}:${s.httpPort}`;
}

/**
 * The iPXE script used when a bootenv has no `ipxe` template of its own: kernel, initrds, command line.
 * Debian's iPXE on UEFI loses an initrd that the kernel command line does not name (`initrd=<name>`), so each
 * initrd is named unless bootParams already does it.
 */
export function defaultIpxeTemplate(be: BootEnv): string {
  if (!be.kernel) {
    return '#!ipxe\necho Plinth: bootenv {{ bootEnv.name }} has no kernel and no ipxe template: nothing to boot\nsleep 10\nexit 1\n';
  }
  const names = be.initrds.map((i) => path.posix.basename(i));
  const initrdArgs = /(^|\s)initrd=/.test(be.bootParams) ? '' : names.map((n) => ` initrd=${n}`).join('');
  const lines = [
    '#!ipxe',
    'echo Plinth: {{ machine.name }} boots {{ bootEnv.name }}',
    `kernel {{ files }}/${be.kernel}${initrdArgs} {{ bootParams }}`,
    ...be.initrds.map((i) => `initrd {{ files }}/${i}`),
    'boot',
  ];
  return `${lines.join('\n')}\n`;
}

/** The bootenv's own template for `file` (matched by template name or path), or the default iPXE script. */
export function templateFor(
  be: BootEnv,
  file: string,
  templates: Record<string, string>,
): { name: string; source: string } | undefined {
  const t = be.templates.find((x) => x.path === file || x.name === file);
  if (t) {
    const source = t.contents ?? templates[t.templateId!];
    if (source === undefined)
      throw new RenderError(`bootenv ${be.name}: template '${t.templateId}' does not exist`, `${be.name}/${t.name}`);
    return { name: `bootenv ${be.name} / ${t.name}`, source };
  }
  if (file === 'ipxe' || file === 'boot.ipxe')
    return { name: `bootenv ${be.name} / default ipxe`, source: defaultIpxeTemplate(be) };
  return undefined;
}

/** Render one file of the machine's bootenv. Missing required params are an error naming param and machine. */
export async function renderMachineFile(req: RenderRequest, file: string): Promise<string | undefined> {
  const { machine, bootEnv, params, server } = req;
  const tpl = templateFor(bootEnv, file, req.templates);
  if (!tpl) return undefined;
  for (const p of bootEnv.requiredParams) {
    if (params[p] === undefined) {
      throw new RenderError(
        `bootenv ${bootEnv.name} needs param '${p}', which is not set for machine '${machine.name}': set it on the machine or a profile`,
        tpl.name,
      );
    }
  }
  const base = baseUrl(server);
  const known = new Set([...bootEnv.requiredParams, ...bootEnv.optionalParams, ...Object.keys(params)]);
  const context: Record<string, unknown> = {
    machine: { ...machine, params: undefined },
    params,
    bootEnv: { name: bootEnv.name, os: bootEnv.os, kernel: bootEnv.kernel, initrds: bootEnv.initrds },
    server: { address: server.address, httpUrl: base, tftp: server.address },
    files: `${base}/files`,
    artifacts: Object.fromEntries(Object.entries(req.artifacts ?? {}).map(([p, rel]) => [p, `${base}/files/${rel}`])),
    machineUrl: `${base}/machines/${machine.uuid}`,
    apiUrl: `${base}/api/v1`,
    token: req.token ?? '',
  };
  // {{ "console" | param }}: the resolved value; unknown names are an error, not a silent empty string. Run as
  // data inside the render process (a function filter would call back to the event loop for every use).
  const param = { values: params, known: [...known], machine: machine.name };
  context.bootParams = await renderTemplate({
    name: `bootenv ${bootEnv.name} / bootParams`,
    source: bootEnv.bootParams,
    context,
    templates: req.templates,
    param,
  });
  return renderTemplate({ name: tpl.name, source: tpl.source, context, templates: req.templates, param });
}

/**
 * Secure params reach only the machine: for anyone else (`secure` given: the names of the secure params) they
 * render as ''. `withheld` names those that had a value, for the timeline.
 */
export function withholdSecure(
  values: Record<string, unknown>,
  secure: ReadonlySet<string> | undefined,
): { values: Record<string, unknown>; withheld: string[] } {
  if (!secure) return { values, withheld: [] };
  const out = { ...values };
  const names: string[] = [];
  for (const k of Object.keys(out)) {
    if (!secure.has(k)) continue;
    if (out[k] !== '' && out[k] !== undefined) names.push(k);
    out[k] = '';
  }
  return { values: out, withheld: names };
}
