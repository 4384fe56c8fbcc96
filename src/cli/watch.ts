import YAML from 'yaml';
import { isUuid } from '../uuid.js';
import { problemOf, seg } from './client.js';
import type { CliContext } from './context.js';
import { ApiError, UsageError } from './errors.js';
import { cell } from './output.js';

/**
 * An event as /api/v1/events streams it (src/events.ts's PlinthEvent on the wire): read from the network, so
 * only its envelope is assumed; `data` is shown as it came.
 */
export type StreamedEvent = {
  type: string;
  key?: string;
  machine?: string;
  at: string;
  data?: Record<string, unknown>;
};

/**
 * Server-Sent Events (https://html.spec.whatwg.org/multipage/server-sent-events.html): lines of `field: value`,
 * an event ends at a blank line, `data` lines join with newlines, lines starting with ':' are comments.
 */
export function sseParser(onData: (data: string) => void) {
  let buf = '';
  let data: string[] = [];
  return (chunk: string) => {
    buf += chunk;
    let i = buf.search(/\r\n|\r|\n/);
    while (i >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(buf[i] === '\r' && buf[i + 1] === '\n' ? i + 2 : i + 1);
      if (line === '') {
        if (data.length) onData(data.join('\n'));
        data = [];
      } else if (!line.startsWith(':')) {
        const c = line.indexOf(':');
        const field = c < 0 ? line : line.slice(0, c);
        const value = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
        if (field === 'data') data.push(value);
      }
      i = buf.search(/\r\n|\r|\n/);
    }
  };
}

export function eventLine(e: StreamedEvent): string {
  const parts = [e.at, e.type];
  if (e.key !== undefined) parts.push(`key=${e.key}`);
  if (e.machine !== undefined && e.machine !== e.key) parts.push(`machine=${e.machine}`);
  if (e.data && Object.keys(e.data).length) parts.push(cell(e.data, 400));
  return parts.join('  ');
}

export type WatchOptions = { type?: string; machine?: string; count?: string };

export async function runWatch(values: WatchOptions, ctx: CliContext): Promise<void> {
  const { client, io, mode } = ctx;
  let count: number | undefined;
  if (values.count !== undefined) {
    count = Number(values.count);
    if (!Number.isInteger(count) || count < 1) throw new UsageError('--count takes a whole number from 1');
  }
  let machine = values.machine;
  // The stream filters by uuid; a name or MAC is looked up once (a uuid may name a machine not created yet).
  if (machine && !isUuid(machine))
    machine = ((await client.request('GET', `/machines/${seg(machine)}`)).body as { uuid: string }).uuid;

  const stop = new AbortController();
  const onAbort = () => stop.abort();
  ctx.signal.addEventListener('abort', onAbort);
  const url = client.url('/events', { type: values.type, machine });
  let r: Response;
  try {
    r = await client.fetch(url, {
      headers: { accept: 'text/event-stream', ...client.authHeaders() },
      signal: stop.signal,
    });
  } catch (err) {
    if (stop.signal.aborted) return;
    throw await client.explain(err);
  }
  if (r.status === 404)
    throw new ApiError(
      'this daemon has no event stream (GET /api/v1/events answered 404): it is older than this CLI; upgrade it',
      404,
    );
  if (!r.ok || !r.body) {
    const text = await r.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {}
    const { detail, errors } = problemOf(r.status, body, text);
    throw new ApiError(detail, r.status, errors);
  }
  io.err(`watching events at ${client.base} (Ctrl-C to stop)\n`);

  let seen = 0;
  const parse = sseParser((data) => {
    if (count !== undefined && seen >= count) return;
    let e: StreamedEvent;
    try {
      e = JSON.parse(data);
    } catch {
      io.err(`plinth: skipped an event that is not JSON: ${data.slice(0, 200)}\n`);
      return;
    }
    seen++;
    if (mode === 'json') io.out(`${JSON.stringify(e)}\n`);
    else if (mode === 'yaml') io.out(`---\n${YAML.stringify(e)}`);
    else io.out(`${eventLine(e)}\n`);
    if (count !== undefined && seen >= count) stop.abort();
  });
  const decoder = new TextDecoder();
  try {
    for await (const chunk of r.body as AsyncIterable<Uint8Array>) parse(decoder.decode(chunk, { stream: true }));
  } catch (err) {
    if (stop.signal.aborted) return;
    const cause = (err as { cause?: { code?: string } }).cause;
    throw new ApiError(
      `the event stream from ${client.base} was cut (${cause?.code ?? (err as Error).message}): the daemon stopped, or dropped this consumer for reading too slowly; run plinth watch again`,
    );
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
  }
  if (stop.signal.aborted) return;
  throw new ApiError(
    'the daemon closed the event stream (it stopped, or dropped this consumer for reading too slowly): run plinth watch again',
  );
}
