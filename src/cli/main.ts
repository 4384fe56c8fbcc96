import { type Command, CommanderError } from 'commander';
import { type Client, createClient } from './client.js';
import { ApiError, EXIT_API, EXIT_OK, EXIT_USAGE, UsageError } from './errors.js';
import { type Io, outputMode } from './output.js';
import { buildProgram, type Runner } from './program.js';

/**
 * `plinth COMMAND ...`: the command line, parsed by commander (program.ts), run with a client made from the
 * global options. Exit codes are a contract with scripts: 0 done, 1 the API (or the network, or a digest check)
 * said no, 2 the command line is wrong.
 */
type Globals = {
  endpoint?: string;
  token?: string;
  output?: string;
  ca?: string;
  fingerprint?: string;
  rest: string[];
};

/** Global options may stand anywhere; they are taken out before the command parses its own. */
export function takeGlobals(argv: string[]): Globals {
  const g: Globals = { rest: [] };
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

const MACHINE_UUID = /machine '([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})'/gi;

/**
 * A daemon's message may name a machine by its generated uuid (`macs '...' already belongs to machine '<uuid>'`):
 * the operator knows it by name, so each one is looked up once and replaced. A lookup that fails leaves the uuid.
 */
export async function withMachineNames(err: ApiError, client: Client): Promise<ApiError> {
  const uuids = [...new Set([...err.message.matchAll(MACHINE_UUID)].map((m) => m[1]!))];
  if (uuids.length === 0) return err;
  const names = new Map<string, string>();
  for (const u of uuids.slice(0, 5)) {
    try {
      const r = await client.request('GET', `/machines/${u}`, { allow: [404] });
      const name = (r.body as { name?: unknown } | undefined)?.name;
      if (r.status === 200 && typeof name === 'string' && name) names.set(u.toLowerCase(), name);
    } catch {}
  }
  const rename = (text: string) =>
    text.replace(MACHINE_UUID, (all, u: string) => {
      const name = names.get(u.toLowerCase());
      return name ? `machine '${name}'` : all;
    });
  const errors = err.errors.map((e) => ({ ...e, message: rename(e.message) }));
  return new ApiError(rename(err.message), err.status, errors);
}

export type RunOptions = { env?: NodeJS.ProcessEnv; cwd?: string; io?: Io; signal?: AbortSignal };

/** Commander's errors and help go through `io` (tests capture them) and end in an exception, not process.exit. */
function quietTree(cmd: Command, io: Io, onError: (c: Command) => void) {
  cmd.exitOverride();
  cmd.configureOutput({ writeOut: io.out, writeErr: io.err, outputError: () => onError(cmd) });
  for (const sub of cmd.commands) quietTree(sub, io, onError);
}

/** `Usage: plinth machines patch [options] <id>` and where to read more. */
function usageHint(cmd: Command | undefined): string {
  if (!cmd) return '(see plinth --help)\n';
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return `${cmd.helpInformation().split('\n')[0]}\n(see ${names.join(' ')} --help)\n`;
}

function report(err: unknown, io: Io, signal: AbortSignal, where: Command | undefined): number {
  if (err instanceof CommanderError) {
    if (err.exitCode === 0) return EXIT_OK;
    io.err(`plinth: ${err.message.replace(/^error: /, '')}\n${usageHint(where)}`);
    return EXIT_USAGE;
  }
  if (err instanceof UsageError) {
    io.err(`plinth: ${err.message}\n${usageHint(where)}`);
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

export async function run(argv: string[], o: RunOptions = {}): Promise<number> {
  const env = o.env ?? process.env;
  const cwd = o.cwd ?? process.cwd();
  const io: Io = o.io ?? {
    out: (s) => void process.stdout.write(s),
    err: (s) => void process.stderr.write(s),
    outTTY: Boolean(process.stdout.isTTY),
    errTTY: Boolean(process.stderr.isTTY),
  };
  const signal = o.signal ?? new AbortController().signal;
  let code = EXIT_OK;
  let where: Command | undefined;
  try {
    const g = takeGlobals(argv);
    const runner: Runner = async (act) => {
      const mode = outputMode(g.output, env, io.outTTY);
      const { endpoint, token, ca, fingerprint } = g;
      const client = createClient({ endpoint, token, ca, fingerprint, env, cwd, signal });
      try {
        const r = await act({ io, mode, client, env, cwd, signal });
        if (typeof r === 'number') code = r;
      } catch (err) {
        throw err instanceof ApiError ? await withMachineNames(err, client) : err;
      }
    };
    const program = buildProgram(runner);
    quietTree(program, io, (c) => {
      where = c;
    });
    program.hook('preAction', (_self, action) => {
      where = action;
    });
    // A bare `plinth` is a question, not a command: the usage, and the status of a wrong command line.
    if (g.rest.length === 0) {
      io.out(program.helpInformation());
      return EXIT_USAGE;
    }
    await program.parseAsync(g.rest, { from: 'user' });
    return code;
  } catch (err) {
    return report(err, io, signal, where);
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
