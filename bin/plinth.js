#!/usr/bin/env node
// The `plinth` command: registers tsx's loader so the TypeScript sources run as they are, then starts the daemon
// or the CLI. The daemon runs as it always has: with no arguments, with `serve`, or with only its own flags
// (a first argument starting with `-`). Any other first word, or a first argument that is one of the CLI's
// global options, is a CLI command (src/cli/main.ts).
import { register } from 'tsx/esm/api';

const CLI_GLOBALS = ['--endpoint', '--token', '--output', '-o'];

/** @param {string[]} argv */
function isDaemon(argv) {
  const first = argv[0];
  if (first === undefined || first === 'serve') return true;
  if (first.startsWith('-')) {
    const flag = first.startsWith('--') ? first.split('=')[0] : first;
    return !CLI_GLOBALS.includes(flag) && !/^-o[a-z]+$/.test(first);
  }
  return false;
}

register();
if (isDaemon(process.argv.slice(2))) await import('../src/main.ts');
else await (await import('../src/cli/main.ts')).main(process.argv.slice(2));
