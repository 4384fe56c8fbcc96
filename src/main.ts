// The `plinth` program's one entry (bin/plinth.js runs its compiled form, `npm run dev` its source): the daemon
// for `serve`, the REST client for everything else. Each side is loaded only when chosen, so `plinth info` never
// loads fastify, SQLite or the protocol servers and starts in a fraction of the daemon's time.
import { VERSION } from './version.js';

/** Options of the CLI itself: a line starting with one of them is a CLI command, not daemon flags. */
const CLI_FIRST = new Set(['--endpoint', '--token', '--output', '-o', '--ca', '--fingerprint', '-h', '--help']);
const VERSION_FLAGS = new Set(['-V', '--version']);

/**
 * Which side a command line is for. `serve` (the documented form) and, as before the CLI existed, a line that
 * starts with a daemon flag (`plinth --no-dhcp`, what scripts and the test helpers run) start the daemon. A bare
 * `plinth` is the CLI's usage: a typo or a curious operator must never start a DHCP server.
 */
export function isDaemon(argv: string[]): boolean {
  const first = argv[0];
  if (first === undefined) return false;
  if (first === 'serve') return true;
  if (!first.startsWith('-') || first === '-') return false;
  const flag = first.startsWith('--') ? first.split('=')[0]! : first;
  return !CLI_FIRST.has(flag) && !VERSION_FLAGS.has(flag) && !/^-o[a-z]+$/.test(first);
}

export async function plinth(argv: string[]): Promise<void> {
  // Restoring replaces the database file: the daemon's side (it opens SQLite), never the REST client's.
  if (argv[0] === 'restore') {
    process.exitCode = await (await import('./backup.js')).runRestore(argv.slice(1));
    return;
  }
  if (!isDaemon(argv)) return (await import('./cli/main.js')).main(argv);
  // The daemon's own option parser would print Node's raw parseArgs complaint for --version.
  if (argv.some((a) => VERSION_FLAGS.has(a))) {
    process.stdout.write(`${VERSION}\n`);
    return;
  }
  return (await import('./serve.js')).serve(argv);
}

await plinth(process.argv.slice(2));
