import pino, { type Logger } from 'pino';

export type { Logger };

/** One JSON line per event; pretty output only for a human at a terminal. */
export function createLogger(level: string, opts: { pretty?: boolean } = {}): Logger {
  const pretty = opts.pretty ?? process.stdout.isTTY === true;
  return pino({
    level,
    base: { svc: 'plinth' },
    // Secrets never reach a log line, whatever logs them.
    redact: {
      paths: ['token', '*.token', 'authorization', '*.authorization', 'req.headers.authorization'],
      censor: '[secure]',
    },
    ...(pretty
      ? { transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l' } } }
      : {}),
  });
}

/** A logger that drops everything: tests and benchmarks. */
export const silentLogger: Logger = pino({ level: 'silent' });
