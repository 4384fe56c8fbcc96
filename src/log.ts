import pino, { type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/** One JSON line per event; pretty output only for a human at a terminal. */
export function createLogger(level: string, opts: { pretty?: boolean } = {}): Logger {
  const pretty = opts.pretty ?? process.stdout.isTTY === true;
  const options: LoggerOptions = {
    level,
    base: { svc: 'plinth' },
    // Secrets never reach a log line, whatever logs them.
    redact: {
      paths: ['token', '*.token', 'authorization', '*.authorization', 'req.headers.authorization'],
      censor: '[secure]',
    },
  };
  if (pretty) {
    return pino({
      ...options,
      transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l' } },
    });
  }
  // Asynchronous writes off the event loop: lines queue while a write is in flight, so under load one write(2)
  // carries many lines (logging was a third of an API GET at 10k req/s). A kill -9 can lose the last lines, never data.
  return pino(options, pino.destination({ dest: 1, sync: false, minLength: 0 }));
}

/** A logger that drops everything: tests and benchmarks. */
export const silentLogger: Logger = pino({ level: 'silent' });
