import { ConfigError, helpText, loadConfig } from './config.js';
import { StartupError, startDaemon } from './daemon.js';
import { createLogger } from './log.js';

/** The daemon's entry: config, start, signals. Exit codes: 0 clean stop, 1 failed start, 2 bad config. */
async function main() {
  // A closed log pipe (the reader of our stdout went away) must not take the daemon down or block its stop.
  process.stdout.on('error', () => {});
  process.stderr.on('error', () => {});
  let cfg: ReturnType<typeof loadConfig>;
  try {
    cfg = loadConfig(process.argv.slice(2), process.env);
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

main();
