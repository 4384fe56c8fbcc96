import { pathToFileURL } from 'node:url';
import { LAB_USAGE, runLab } from '../lab/cli.js';
import type { LabApi } from '../lab/lab.js';
import { VERSION } from '../version.js';
import { FETCH_HELP, fetchBootenv, IMPORT_HELP, importLinuxkit } from './bootenv.js';
import { type Client, createClient } from './client.js';
import type { CliContext } from './context.js';
import { ApiError, EXIT_API, EXIT_OK, EXIT_USAGE, UsageError } from './errors.js';
import { FILES_HELP, runFiles } from './files.js';
import { type Io, outputMode, print } from './output.js';
import { CLI_RESOURCES, PREFS_HELP, resourceHelp, resourceOf, runPrefs, runResource } from './resources.js';
import { runWatch, WATCH_HELP } from './watch.js';

/**
 * `plinth COMMAND ...`: dispatch to one file per concern. Exit codes are a contract with scripts: 0 done,
 * 1 the API (or the network, or a digest check) said no, 2 the command line is wrong.
 */
export const HELP = [
  'Usage: plinth COMMAND [arguments] [options]',
  '',
  "A client of a Plinth daemon's REST API. Run the daemon itself with `plinth serve` (see plinth --help).",
  '',
  'Commands:',
  `  RESOURCE list|show|create|update|patch|delete   RESOURCE: ${Object.keys(CLI_RESOURCES).join(', ')}`,
  '  machines params ID | machines boots ID        resolved params, boot timelines',
  '  prefs show | prefs set KEY=VALUE...           global settings',
  '  files list|show|upload|delete                 files served to machines (upload streams, digest-checked)',
  '  bootenv import-linuxkit PREFIX [--name N]     upload a linuxkit kernel+initrd build as a pinned bootenv',
  "  bootenv fetch NAME                            download a bootenv's artifacts from their urls",
  '  watch [--type PREFIX] [--machine ID]          live events, one line each',
  "  info                                          the daemon's version, listeners and features (no token)",
  '  lab up --vms N [--uefi] | lab status | lab down   rehearse on QEMU VMs that PXE-boot from this Plinth (root)',
  "  help [COMMAND]                                this help, or a command's",
  '',
  'Options (anywhere on the line):',
  '  -o, --output table|json|yaml   default: table on a terminal, json when stdout is a pipe or file',
  '                                 (also PLINTH_OUTPUT)',
  '  --endpoint URL                 the daemon (PLINTH_ENDPOINT; default https://127.0.0.1:8443)',
  '  --token TOKEN                  bearer token (PLINTH_TOKEN; default: the admin.token in $PLINTH_DATA_DIR',
  '                                 or ./var, as the local daemon writes it)',
  '  --ca FILE                      trust the https daemon whose certificate (or CA) is FILE (PLINTH_CA;',
  '                                 default for 127.0.0.1/localhost: <data-dir>/tls/cert.pem as above)',
  '  --fingerprint sha256:HEX       accept only the certificate with this SHA-256 fingerprint, as the daemon',
  '                                 logs it (PLINTH_FINGERPRINT)',
  '  -h, --help                     help for the command',
  '',
  'Exit codes: 0 ok; 1 API error (problem+json detail and field errors on stderr), unreachable daemon or',
  'failed digest check; 2 usage error.',
].join('\n');

const INFO_HELP = "Usage: plinth info\n\nThe daemon's version, uptime, listeners and features (needs no token).";

type Globals = {
  endpoint?: string;
  token?: string;
  output?: string;
  ca?: string;
  fingerprint?: string;
  help: boolean;
  rest: string[];
};

/** Global options may stand anywhere; they are taken out before the command parses its own. */
export function takeGlobals(argv: string[]): Globals {
  const g: Globals = { help: false, rest: [] };
  const valued: Record<string, 'endpoint' | 'token' | 'output' | 'ca' | 'fingerprint'> = {
    '--endpoint': 'endpoint',
    '--token': 'token',
    '--ca': 'ca',
    '--fingerprint': 'fingerprint',
    '--output': 'output',
    '-o': 'output',
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      g.rest.push(...argv.slice(i));
      break;
    }
    if (a === '--help' || a === '-h') {
      g.help = true;
      continue;
    }
    const eq = a.indexOf('=');
    const flag = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const key = valued[flag];
    if (key) {
      let v: string | undefined;
      if (flag !== a) v = a.slice(eq + 1);
      else {
        v = argv[++i];
        if (v === undefined) throw new UsageError(`${flag} needs a value`);
      }
      g[key] = v;
      continue;
    }
    if (/^-o[a-z]+$/.test(a)) {
      g.output = a.slice(2);
      continue;
    }
    g.rest.push(a);
  }
  return g;
}

function helpFor(cmd: string | undefined, verb: string | undefined): string {
  if (!cmd || cmd === 'help') return HELP;
  const kind = resourceOf(cmd);
  if (kind === 'bootenvs' && verb === 'import-linuxkit') return IMPORT_HELP;
  if (kind === 'bootenvs' && verb === 'fetch') return FETCH_HELP;
  if (kind) return resourceHelp(kind);
  if (cmd === 'prefs') return PREFS_HELP;
  if (cmd === 'files') return FILES_HELP;
  if (cmd === 'watch') return WATCH_HELP;
  if (cmd === 'info') return INFO_HELP;
  if (cmd === 'lab') return LAB_USAGE;
  throw new UsageError(`unknown command '${cmd}'`, HELP);
}

async function dispatch(cmd: string, verb: string | undefined, args: string[], ctx: CliContext): Promise<void> {
  const kind = resourceOf(cmd);
  if (kind === 'bootenvs' && verb === 'import-linuxkit') return importLinuxkit(args, ctx);
  if (kind === 'bootenvs' && verb === 'fetch') return fetchBootenv(args, ctx);
  if (kind) return runResource(kind, verb, args, ctx);
  if (cmd === 'prefs') return runPrefs(verb, args, ctx);
  if (cmd === 'files') return runFiles(verb, args, ctx);
  if (cmd === 'watch') return runWatch(verb === undefined ? args : [verb, ...args], ctx);
  if (cmd === 'info') {
    if (verb !== undefined) throw new UsageError(`unexpected argument '${verb}'`, INFO_HELP);
    return print(ctx.io, ctx.mode, (await ctx.client.request('GET', '/info')).body);
  }
  if (cmd === 'version') {
    ctx.io.out(`${VERSION}\n`);
    return;
  }
  if (cmd === 'serve')
    throw new UsageError('serve runs the daemon: start it with bin/plinth.js serve (npx plinth serve)');
  throw new UsageError(`unknown command '${cmd}'`, HELP);
}

/** The lab drives the API with the CLI's client (endpoint and token as for every command). */
function labApi(client: Client): LabApi {
  return {
    json: async (method, path, body, contentType) => {
      const r = await client.request(method, path.replace(/^\/api\/v1/, ''), {
        body,
        contentType,
        allow: [400, 401, 403, 404, 409, 412, 500, 503],
      });
      return { status: r.status, body: r.body };
    },
  };
}

/** The part of a help text up to its first blank line: the usage lines. */
const usageOf = (help: string) => help.split('\n\n')[0]!;

export type RunOptions = { env?: NodeJS.ProcessEnv; cwd?: string; io?: Io; signal?: AbortSignal };

export async function run(argv: string[], o: RunOptions = {}): Promise<number> {
  const env = o.env ?? process.env;
  const io: Io = o.io ?? {
    out: (s) => void process.stdout.write(s),
    err: (s) => void process.stderr.write(s),
    outTTY: Boolean(process.stdout.isTTY),
    errTTY: Boolean(process.stderr.isTTY),
  };
  const signal = o.signal ?? new AbortController().signal;
  try {
    const g = takeGlobals(argv);
    const [cmd, ...after] = g.rest;
    const verb = after[0]?.startsWith('-') ? undefined : after[0];
    const args = verb === undefined ? after : after.slice(1);
    if (g.help || !cmd || cmd === 'help') {
      const topic = cmd === 'help' ? after[0] : cmd;
      const topicVerb = cmd === 'help' ? after[1] : verb;
      io.out(`${helpFor(topic, topicVerb)}\n`);
      return cmd || g.help ? EXIT_OK : EXIT_USAGE;
    }
    const mode = outputMode(g.output, env, io.outTTY);
    const client = createClient({
      endpoint: g.endpoint,
      token: g.token,
      ca: g.ca,
      fingerprint: g.fingerprint,
      env,
      cwd: o.cwd ?? process.cwd(),
      signal,
    });
    if (cmd === 'lab')
      return await runLab(
        verb === undefined ? args : [verb, ...args],
        labApi(client),
        { write: io.out },
        { write: io.err },
      );
    await dispatch(cmd, verb, args, { io, mode, client, env, cwd: o.cwd ?? process.cwd(), signal });
    return EXIT_OK;
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`plinth: ${err.message}\n`);
      if (err.help) io.err(`${usageOf(err.help)}\n(see --help)\n`);
      return EXIT_USAGE;
    }
    if (err instanceof ApiError) {
      io.err(`plinth: ${err.message}\n`);
      // Each field error, unless the detail already ends with it (the daemon's detail quotes the first one).
      for (const e of err.errors)
        if (!err.message.endsWith(`${e.path}: ${e.message}`) && !err.message.endsWith(e.message))
          io.err(`  ${e.path || '(body)'}: ${e.message}\n`);
      return EXIT_API;
    }
    if (signal.aborted) {
      io.err('plinth: interrupted\n');
      return 130;
    }
    io.err(`plinth: unexpected failure: ${(err as Error)?.stack ?? err}\n`);
    return EXIT_API;
  }
}

/** The process entry: bin/plinth.js calls this for every first word that is not the daemon's. */
export async function main(argv = process.argv.slice(2)): Promise<void> {
  // `plinth watch | head -1`: a closed pipe ends the command quietly.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(EXIT_OK);
  });
  const ac = new AbortController();
  let interrupts = 0;
  process.on('SIGINT', () => {
    // The first Ctrl-C stops cleanly (an upload in flight is abandoned, the daemon keeps nothing); a second one
    // does not wait.
    if (++interrupts > 1) process.exit(130);
    ac.abort();
  });
  const code = await run(argv, { signal: ac.signal });
  // fetch keeps idle connections open for seconds: exit now, once what was printed has been written.
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
