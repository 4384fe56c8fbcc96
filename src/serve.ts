// The daemon's entry (`plinth serve`, `npm start`): src/main.ts decides, from the command line, that this runs.
import { ConfigError, helpText, loadConfig } from './config.js';
import { StartupError, startDaemon } from './daemon.js';
import { createLogger, type Logger } from './log.js';
import { rateLimited } from './log-limit.js';
import { missingNodeFlags } from './node-flags.js';

/**
 * What a stray error does to the process. A rejected promise nobody awaited (a background task's failure, e.g.
 * os.networkInterfaces() throwing EMFILE while descriptors are exhausted) is logged, rate-limited, and the daemon
 * keeps serving: the failed task is a one-off, its state is the promise's own, and Node's default (exit) turned a
 * passing descriptor shortage into an outage. An uncaught exception still ends the process: it can leave a
 * handler half-way through changing shared state (a socket table, a lease in flight), so a restart by the service
 * manager is safer than serving from that state; the log says what happened first.
 */
function installProcessHandlers(log: Logger) {
  let last: unknown;
  const report = rateLimited(10_000, (n) =>
    log.error({ err: last, count: n }, 'unhandled promise rejection (the daemon keeps running): please report it'),
  );
  process.on('unhandledRejection', (reason) => {
    last = reason;
    report();
  });
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception: exiting (state may be inconsistent); restart the daemon');
    log.flush?.();
    process.stderr.write(`plinth: uncaught exception: ${err?.stack ?? err}\n`, () => process.exit(1));
    setTimeout(() => process.exit(1), 1_000).unref();
  });
}

/**
 * `plinth serve`: config, start, signals. Exit codes: 0 clean stop, 1 failed start, 2 bad config. `argv` is the
 * command line after the program (with or without the word `serve`).
 */
export async function serve(argv: string[]): Promise<void> {
  // A closed log pipe (the reader of our stdout went away) must not take the daemon down or block its stop.
  process.stdout.on('error', () => {});
  process.stderr.on('error', () => {});
  let cfg: ReturnType<typeof loadConfig>;
  try {
    cfg = loadConfig(argv, process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`plinth: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  if (cfg === 'help') {
    process.stdout.write(`${helpText()}\n`);
    return;
  }
  const log = createLogger(cfg.logLevel);
  installProcessHandlers(log);
  const missing = missingNodeFlags(process.execArgv, process.env.NODE_OPTIONS);
  if (missing.length)
    log.info(
      { missing },
      "node was started without the daemon's flags (npm start and contrib/plinth.service give them): with V8's default heap settings DHCP replies wait longer at its collections (src/node-flags.ts)",
    );
  let daemon: Awaited<ReturnType<typeof startDaemon>>;
  try {
    daemon = await startDaemon(cfg, log);
  } catch (err) {
    const msg = err instanceof StartupError ? err.message : `start failed: ${(err as Error).stack ?? err}`;
    log.fatal(msg);
    log.flush?.();
    process.stderr.write(`plinth: ${msg}\n`);
    process.exit(1);
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping: closing listeners, finishing requests');
    // A hung close must not keep a service manager waiting for ever.
    const force = setTimeout(() => {
      log.error('stop took over 10 s: exiting anyway');
      process.exit(1);
    }, 10_000);
    force.unref();
    daemon.close().then(
      () => process.exit(0),
      (err) => {
        log.error({ err }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}
