// A render worker: a child process of the daemon (pool.ts starts it with an empty environment and a heap cap).
// Liquid runs here so that a template that loops, includes itself or eats memory stalls or kills only this
// process, which the pool replaces. A process, not a worker thread: V8 ends the whole process when one
// allocation overshoots the heap cap by more than a worker thread's 16 MB of slack (the last doubling of an
// array by `concat`, a `split` into millions of parts), so in a thread a template could abort the daemon.
// Plain CommonJS so that it loads the same way under tsx, vitest and plain node.
//
// argv: [liquidjs's path, Liquid's limits as JSON]
// In (IPC, advanced serialization): { id, name, source, context, templates, param? }
// Out: { ready: true } once loaded, then per job { id, ok: true, text } | { id, ok: false, message, line? }
'use strict';
const { Liquid } = require(process.argv[2]);

const LIMITS = JSON.parse(process.argv[3]);

/** An error our own filters raise: its message reaches the caller as it is (Liquid wraps it). */
class FilterError extends Error {}

/** {{ "name" | param }}: the resolved value; a known name without a value is ''; anything else an error. */
function paramFilter(spec) {
  const known = new Set(spec.known);
  return (name) => {
    const n = String(name);
    if (Object.hasOwn(spec.values, n) && spec.values[n] !== undefined) return spec.values[n];
    if (known.has(n)) return '';
    throw new FilterError(`param '${n}' is not set for machine '${spec.machine}'`);
  };
}

function lineOf(err) {
  const pos = err?.token?.getPosition?.();
  if (pos) return pos[0];
  const m = /line:(\d+)/.exec(String(err?.message));
  return m ? Number(m[1]) : undefined;
}

function firstLine(err) {
  return String(err?.message ?? err)
    .split('\n')[0]
    .replace(/, line:\d+, col:\d+$/, '')
    .replace(/^ENOENT: Failed to lookup "([^"]*)".*$/, "included template '$1' does not exist");
}

async function render(job) {
  const engine = new Liquid({
    templates: job.templates ?? {},
    ownPropertyOnly: true,
    strictFilters: true,
    strictVariables: false,
    dynamicPartials: true,
    extname: '',
    ...LIMITS,
  });
  if (job.param) engine.registerFilter('param', paramFilter(job.param));
  let tpl;
  try {
    tpl = engine.parse(job.source);
  } catch (err) {
    return { id: job.id, ok: false, message: firstLine(err), line: lineOf(err) };
  }
  try {
    return { id: job.id, ok: true, text: await engine.render(tpl, job.context) };
  } catch (err) {
    const cause = err?.originalError;
    return {
      id: job.id,
      ok: false,
      message: cause instanceof FilterError ? cause.message : firstLine(err),
      line: lineOf(err),
    };
  }
}

process.on('message', (job) => {
  render(job).then(
    (out) => process.send(out),
    (err) => process.send({ id: job.id, ok: false, message: firstLine(err) }),
  );
});
// The daemon went away (stopped, or killed with -9): nothing is left to render for.
process.on('disconnect', () => process.exit(0));
// Loaded: the pool starts a render's clock from here, not from the spawn (pool.ts).
process.send({ ready: true });
