// The `plinth` command tree (commander): every command, argument and flag, and the help generated from them.
// Actions import the module that runs them only when chosen, so `plinth info` loads neither zod, YAML nor the
// upload code.
import { Command } from 'commander';
import { VERSION } from '../version.js';
import type { CliContext } from './context.js';
import { UsageError } from './errors.js';
import { FETCH_HELP, FILES_HELP, IMPORT_HELP, PREFS_HELP, WATCH_HELP } from './help.js';
import { CLI_RESOURCES } from './kinds.js';
import { powerCommands } from './power.js';
import { rolloutCommands } from './rollout.js';

/** Runs an action with a context (client, output mode) made from the global options; an exit code or nothing (0). */
export type Runner = (act: (ctx: CliContext) => Promise<unknown>) => Promise<void>;

const resources = () => import('./resources.js');

export const GLOBAL_HELP = `Global options (anywhere on the line):
  -o, --output table|json|yaml   default: table on a terminal, json when stdout is a pipe or file (PLINTH_OUTPUT)
  --endpoint URL                 the daemon (PLINTH_ENDPOINT; default https://127.0.0.1:8443)
  --token TOKEN                  bearer token (PLINTH_TOKEN; default: the admin.token in $PLINTH_DATA_DIR
                                 or ./var, as the local daemon writes it)
  --ca FILE                      trust the https daemon whose certificate (or CA) is FILE (PLINTH_CA;
                                 default for 127.0.0.1/localhost: <data-dir>/tls/cert.pem as above)
  --fingerprint sha256:HEX       accept only the certificate with this SHA-256 fingerprint, as the daemon
                                 logs it (PLINTH_FINGERPRINT)`;

const EXIT_HELP = `Exit codes: 0 ok; 1 API error (problem+json detail and field errors on stderr), unreachable daemon or
failed digest check; 2 usage error.`;

const APPLY_HELP = `Each document is found by its name (id for templates, address for reservations; a machine by uuid or
name): created when absent, updated with only the fields that differ (a JSON Merge Patch, If-Match guarded),
left alone when equal, so applying twice changes nothing the second time. \`plinth apply\` needs \`kind: machine\`
(bootenv, subnet, ...) in each document; \`plinth RESOURCE apply\` takes the kind from the command. Every
document is checked before the first request; the API then applies one at a time, so a refusal stops there
and the report says per document what was created, updated, unchanged, failed and not attempted (exit 1).`;

/**
 * A group (machines, files, prefs) without a verb, or with one it does not know, is a usage error. Set once the
 * group's verbs exist: commander copies a parent's settings into the subcommands made after them.
 */
function groupAction(group: Command, readOnly = false) {
  group.allowUnknownOption().allowExcessArguments();
  group.action((_o, cmd: Command) => {
    const verb = cmd.args[0];
    if (readOnly && verb && ['create', 'update', 'patch', 'apply'].includes(verb))
      throw new UsageError(`${group.name()} are read-only (the DHCP server writes them): list, show or delete them`);
    const verbs = group.commands.map((c) => c.name()).join(', ');
    throw new UsageError(
      verb ? `unknown verb '${verb}' for ${group.name()} (${verbs})` : `${group.name()} needs a verb: ${verbs}`,
    );
  });
}

function resourceCommands(program: Command, kind: string, run: Runner) {
  const r = CLI_RESOURCES[kind]!;
  const verbs = r.readOnly
    ? 'list, show, delete (the DHCP server writes them)'
    : 'list, show, create, apply, update, patch, delete';
  const g = program
    .command(kind)
    .alias(r.one)
    .description(
      `${verbs}${kind === 'machines' ? ', params, boots' : ''}${kind === 'bootenvs' ? ', import, import-linuxkit, fetch' : ''}`,
    );
  const idHelp = `its ${kind === 'machines' ? 'uuid, name or a MAC' : r.key}`;
  g.command('list')
    .description(`list ${kind}; FIELD=VALUE filters on any top-level field (a list field matches a member)`)
    .argument('[filters...]', 'FIELD=VALUE')
    .option('--sort <field>', 'sort by FIELD; -FIELD sorts descending')
    .option('--limit <n>', 'at most N items')
    .option('--offset <n>', 'skip N items')
    .action((filters, o) =>
      run(async (ctx) =>
        // A bootenv list shows whether each can boot (READY); filtered or paged lists are the generic ones.
        kind === 'bootenvs' && filters.length === 0 && !o.sort && !o.limit && !o.offset
          ? (await import('./bootenv.js')).listBootenvs(ctx)
          : (await resources()).listResources(kind, filters, o, ctx),
      ),
    );
  g.command('show')
    .description(`one ${r.one}`)
    .argument('<id>', idHelp)
    .action((id) =>
      run(async (ctx) =>
        kind === 'bootenvs'
          ? (await import('./bootenv.js')).getBootenv(id, ctx)
          : (await resources()).showResource(kind, id, ctx),
      ),
    );
  if (!r.readOnly) {
    g.command('create')
      .description('create from YAML or JSON (several documents create several, in order)')
      .requiredOption('-f, --file <file>', 'YAML or JSON; - for standard input')
      .action((o) => run(async (ctx) => (await resources()).createResources(kind, o.file, ctx)));
    g.command('apply')
      .description(`create or update ${kind} by ${r.key === 'uuid' ? 'name' : r.key}: idempotent`)
      .requiredOption('-f, --file <file>', 'YAML or JSON; - for standard input')
      .option('--dry-run', 'say what would change, change nothing')
      .addHelpText('after', `\n${APPLY_HELP}`)
      .action((o) => run(async (ctx) => (await import('./apply.js')).applyDocuments(kind, o, ctx)));
    g.command('update')
      .description(`replace the whole ${r.one} (PUT)`)
      .argument('<id>', idHelp)
      .requiredOption('-f, --file <file>', 'YAML or JSON; - for standard input')
      .option('--if-match <etag>', '412 when the object changed since you read it')
      .action((id, o) => run(async (ctx) => (await resources()).updateResource(kind, id, o, ctx)));
    g.command('patch')
      .description('change fields: a JSON Merge Patch object or a JSON Patch array')
      .argument('<id>', idHelp)
      .option('--merge <json>', 'a JSON Merge Patch, like {"bootEnv":"local"}')
      .option('--json-patch <json>', 'a JSON Patch, like [{"op":"add","path":"/macs/-","value":"..."}]')
      .option('-f, --file <file>', 'either kind of patch as YAML or JSON; - for standard input')
      .option('--if-match <etag>', '412 when the object changed since you read it')
      .action((id, o) => run(async (ctx) => (await resources()).patchResource(kind, id, o, ctx)));
  }
  g.command('delete')
    .description(`delete the ${r.one}`)
    .argument('<id>', idHelp)
    .option('--if-match <etag>', '412 when the object changed since you read it')
    .action((id, o) => run(async (ctx) => (await resources()).deleteResource(kind, id, o, ctx)));
  return g;
}

function machineCommands(g: Command, run: Runner) {
  g.command('params')
    .description('resolved params (machine, profiles, global, defaults)')
    .argument('<id>', 'uuid, name or a MAC')
    .option('--sources', 'say where each value came from')
    .action((id, o) => run(async (ctx) => (await resources()).machineParams(id, o, ctx)));
  g.command('boots')
    .description("the machine's boot timelines, newest first")
    .argument('<id>', 'uuid, name or a MAC')
    .action((id) => run(async (ctx) => (await resources()).machineBoots(id, ctx)));
}

function bootenvCommands(g: Command, run: Runner) {
  const bootenv = () => import('./bootenv.js');
  g.command('import-linuxkit')
    .description('upload a linuxkit kernel+initrd build; create a bootenv pinned to it')
    .argument('<prefix>', 'what `linuxkit build -format kernel+initrd -name PREFIX` wrote')
    .option('--name <name>', 'the bootenv (default: the last part of PREFIX)')
    .option('--replace', 're-import over an existing bootenv NAME')
    .addHelpText('after', `\n${IMPORT_HELP}`)
    .action((prefix, o) => run(async (ctx) => (await bootenv()).importLinuxkit(prefix, o, ctx)));
  g.command('fetch')
    .description("download the bootenv's artifacts from their urls, check, upload")
    .argument('<name>', 'the bootenv')
    .option('--force', 'download artifacts the daemon already has')
    .addHelpText('after', `\n${FETCH_HELP}`)
    .action((name, o) => run(async (ctx) => (await bootenv()).fetchBootenv(name, o, ctx)));
  g.command('import')
    .description('fetch, verify (checksum file and its OpenPGP signature) and pin a bootenv from a manifest')
    .argument('<manifest>', 'a manifest file (assets/manifests/*) or - for standard input')
    .option('--replace', 're-import over an existing bootenv')
    .option('--allow-unsigned', "accept a manifest whose checksums carry no OpenPGP signature (Talos's cosign)")
    .action((manifest, o) => run(async (ctx) => (await bootenv()).importBootenv(manifest, o, ctx)));
}

function fileCommands(program: Command, run: Runner) {
  const files = () => import('./files.js');
  const g = program
    .command('files')
    .description('files served to machines (uploads stream, digest-checked)')
    .addHelpText('after', `\n${FILES_HELP}`);
  g.command('list')
    .description("files under the daemon's files root")
    .action(() => run(async (ctx) => (await files()).listFiles(ctx)));
  g.command('show')
    .description('one file: size and sha256')
    .argument('<remote>', 'its path under the files root')
    .action((remote) => run(async (ctx) => (await files()).showFile(remote, ctx)));
  g.command('upload')
    .description('stream LOCAL to REMOTE, hashed first; the daemon keeps nothing that does not match')
    .argument('<local>', 'a local file')
    .argument('[remote]', "default: LOCAL's name; one ending in / keeps the name")
    .option('--sha256 <hex>', 'skip the local hashing: the daemon checks the upload against HEX')
    .action((local, remote, o) => run(async (ctx) => (await files()).uploadCommand(local, remote, o, ctx)));
  g.command('delete')
    .description('delete a file')
    .argument('<remote>', 'its path under the files root')
    .action((remote) => run(async (ctx) => (await files()).deleteFile(remote, ctx)));
  g.command('gc')
    .description('delete stored blobs no path and no bootenv pins (admin); says what it freed')
    .action(() => run(async (ctx) => (await files()).gcFiles(ctx)));
}

function otherCommands(program: Command, run: Runner) {
  const prefs = program.command('prefs').description('global settings');
  prefs.command('show').action(() => run(async (ctx) => (await resources()).showPrefs(ctx)));
  prefs
    .command('set')
    .argument('<assignments...>', 'KEY=VALUE')
    .option('--if-match <etag>', '412 when the prefs changed since you read them')
    .addHelpText('after', `\n${PREFS_HELP}`)
    .action((a, o) => run(async (ctx) => (await resources()).setPrefs(a, o, ctx)));
  program
    .command('apply')
    .description('create or update what a file of documents describes (each with a kind): idempotent')
    .requiredOption('-f, --file <file>', 'YAML or JSON; - for standard input')
    .option('--dry-run', 'say what would change, change nothing')
    .addHelpText('after', `\n${APPLY_HELP}`)
    .action((o) => run(async (ctx) => (await import('./apply.js')).applyDocuments(undefined, o, ctx)));
  program
    .command('watch')
    .description('live events, one line each, until Ctrl-C')
    .option('--type <prefix>', 'only events whose type starts with PREFIX (comma-separate several: lease.,boot.)')
    .option('--machine <id>', 'only events of one machine (uuid, name or MAC)')
    .option('--count <n>', 'stop after N events')
    .addHelpText('after', `\n${WATCH_HELP}`)
    .action((o) => run(async (ctx) => (await import('./watch.js')).runWatch(o, ctx)));
  program
    .command('info')
    .description("the daemon's version, uptime, listeners and features (needs no token)")
    .action(() =>
      run(async (ctx) => {
        const { print } = await import('./output.js');
        print(ctx.io, ctx.mode, (await ctx.client.request('GET', '/info')).body);
      }),
    );
  program
    .command('backup')
    .description("save a consistent copy of the running daemon's database to FILE (admin token; owner-only file)")
    .argument('<file>')
    .addHelpText('after', '\nRestore it with the daemon stopped, on its host: plinth restore FILE [--data-dir DIR]')
    .action((file) => run(async (ctx) => (await import('./backup.js')).backupCommand(ctx, file)));
  program
    .command('restore')
    .description(
      'replace the database with a backup (daemon stopped, on its host): plinth restore FILE [--data-dir DIR]',
    )
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .action(() => {
      throw new UsageError(
        'restore runs on the daemon side: plinth restore FILE [--data-dir DIR], not from within the CLI',
      );
    });
  program
    .command('lab')
    .description('rehearse on QEMU VMs that PXE-boot from this Plinth (root): lab up|status|down (plinth lab --help)')
    .argument('[args...]')
    .helpOption(false)
    .allowUnknownOption()
    .action((args) => run(async (ctx) => (await import('./lab.js')).runLabCommand(args, ctx)));
  program
    .command('bmc-emulator')
    .description('a Redfish BMC emulator for N fake or QEMU machines (plinth bmc-emulator --help)')
    .argument('[args...]')
    .helpOption(false)
    .allowUnknownOption()
    .action((args) =>
      run(async (ctx) =>
        (await import('../power/emulator/cli.js')).runEmulatorCommand(args, {
          out: ctx.io.out,
          err: ctx.io.err,
          signal: ctx.signal,
        }),
      ),
    );
  program
    .command('serve')
    .description('run the daemon (its flags: plinth serve --help; npm start runs it too)')
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .action(() => {
      throw new UsageError(
        'serve runs the daemon: start it with plinth serve (bin/plinth.js), not from within the CLI',
      );
    });
  program.command('version', { hidden: true }).action(() => run(async (ctx) => ctx.io.out(`${VERSION}\n`)));
}

export function buildProgram(run: Runner): Command {
  const program = new Command('plinth')
    .usage('COMMAND [arguments] [options]')
    .description(
      "A client of a Plinth daemon's REST API, and the daemon itself: plinth serve [options] (plinth serve --help).",
    )
    .version(VERSION, '-V, --version', 'print the version')
    .addHelpText('after', `\n${GLOBAL_HELP}\n\n${EXIT_HELP}`);
  for (const kind of Object.keys(CLI_RESOURCES)) {
    const g = resourceCommands(program, kind, run);
    if (kind === 'machines') machineCommands(g, run);
    if (kind === 'bootenvs') bootenvCommands(g, run);
  }
  fileCommands(program, run);
  powerCommands(program, run);
  rolloutCommands(program, run);
  otherCommands(program, run);
  for (const c of program.commands) if (c.commands.length) groupAction(c, CLI_RESOURCES[c.name()]?.readOnly);
  return program;
}
