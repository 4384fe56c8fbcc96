import type { Client } from './client.js';
import type { Io, OutputMode } from './output.js';

/** What every command gets: where to print, how, and the API client. */
export type CliContext = {
  io: Io;
  mode: OutputMode;
  client: Client;
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** Aborted on SIGINT: long commands (watch, uploads) stop cleanly. */
  signal: AbortSignal;
};
