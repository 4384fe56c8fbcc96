// A render worker (worker_threads): Liquid runs here so that a template that loops, includes itself or eats
// memory stalls only this thread, which the pool (pool.ts) terminates and replaces, never the event loop.
// Plain CommonJS so that it loads the same way under tsx, vitest and plain node.
//
// In:  { id, name, source, context, templates, param?, hostFilters: [names] }
// Out: { id, ok: true, text } | { id, ok: false, message, line? } | { id, call: { name, args } } (a host filter)
// A host filter is a function the caller passed (it cannot cross threads): the worker asks the main thread to
// run it and blocks on `signal` until the answer is on `replies` (Atomics.wait + receiveMessageOnPort).
'use strict';
const { parentPort, workerData, receiveMessageOnPort } = require('node:worker_threads');
const { Liquid } = require(workerData.liquid);

const signal = new Int32Array(workerData.signal);
const replies = workerData.replies;
const LIMITS = workerData.limits;

/** An error our own filters raise: its message reaches the caller as it is (Liquid wraps it). */
class FilterError extends Error {}

function hostFilter(id, name) {
  return (...args) => {
    Atomics.store(signal, 0, 0);
    try {
      parentPort.postMessage({ id, call: { name, args } });
    } catch {
      throw new FilterError(`filter '${name}': its argument cannot be passed on`);
    }
    if (Atomics.wait(signal, 0, 0, workerData.callTimeoutMs) === 'timed-out') {
      throw new FilterError(`filter '${name}' did not answer`);
    }
    const m = receiveMessageOnPort(replies);
    if (!m) throw new FilterError(`filter '${name}' did not answer`);
    if (m.message.ok) return m.message.value;
    throw m.message.render ? new FilterError(m.message.message) : new Error(m.message.message);
  };
}

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
  for (const name of job.hostFilters ?? []) engine.registerFilter(name, hostFilter(job.id, name));
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

parentPort.on('message', (job) => {
  render(job).then(
    (out) => parentPort.postMessage(out),
    (err) => parentPort.postMessage({ id: job.id, ok: false, message: firstLine(err) }),
  );
});
