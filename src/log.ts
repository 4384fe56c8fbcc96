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

/**
 * Writes lines exactly as `log.info({...fields}, msg)` would (the logger's level, time and bindings, then the
 * fields, then msg), built from a template: for the one line every HTTP request leaves, pino's per-line work (the
 * redaction paths walked over fields that never hold a secret, the generic serializer) was a tenth of an API
 * GET's CPU time. `fields` is the JSON object's inside, escaped by the caller (`"a":1,"b":"x"`). Lines wait for
 * the end of the event-loop turn and go to the destination then, one write call each, so that a turn that
 * answered 16 requests sends them in one or two write(2)s (the destination gathers while a write is in flight).
 * `on()` says whether a line would be written now: a caller asks it before building `fields`, so that below `info`
 * (the level can change while the daemon runs) no line's strings are made at all.
 */
export type InfoLines = ((fields: string) => void) & { on(): boolean };

export function infoLines(log: Logger, msg: string): InfoLines {
  const l = log as Logger & Record<symbol, unknown>;
  const tail = `,"msg":${JSON.stringify(msg)}}\n`;
  let pending: string[] = [];
  const flush = () => {
    const lines = pending;
    pending = [];
    const stream = l[pino.symbols.streamSym] as { write(s: string): unknown };
    for (const line of lines) stream.write(line);
  };
  const on = () => log.isLevelEnabled('info');
  const write = (fields: string) => {
    if (!on()) return;
    const time = (l[pino.symbols.timeSym] as () => string)();
    if (pending.length === 0) setImmediate(flush);
    pending.push(`{"level":${log.levels.values.info}${time}${l[pino.symbols.chindingsSym]},${fields}${tail}`);
  };
  return Object.assign(write, { on });
}
