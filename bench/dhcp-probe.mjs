// Loaded into Plinth's DHCP daemon by `bench:dhcp` (node --import): what its event loop and V8's GC did during
// the measured period, the parts a REQUEST->ACK tail is made of. SIGUSR2 starts a period; the next one
// writes the period's figures as one JSON line to PLINTH_PROBE_OUT (a file, so it survives the kill -9 that
// follows for the durability check) and starts a new one. Plain JavaScript: loaded before tsx.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import { writeHeapSnapshot } from 'node:v8';

const out = process.env.PLINTH_PROBE_OUT;
if (out) {
  // PLINTH_PROBE_RESOLUTION_MS: the delay monitor's timer period (default 1): it wakes the event loop that often.
  const eld = monitorEventLoopDelay({ resolution: Number(process.env.PLINTH_PROBE_RESOLUTION_MS) || 1 });
  eld.enable();
  let gc = fresh();
  // The store's group commit records its timings here (src/store/sqlite-batch.ts).
  const batchStats = { sizes: [], commits: [], tx: [], waits: [] };
  globalThis[Symbol.for('plinth.store.batchStats')] = batchStats;
  function fresh() {
    return { count: 0, totalMs: 0, maxMs: 0, over1ms: 0, over5ms: 0, byKind: {} };
  }
  // perf_hooks' gc kinds: 1 minor (scavenge), 2 major (mark-compact), 4 incremental, 8 weak callbacks.
  const kinds = { 1: 'minor', 4: 'major', 8: 'incremental', 16: 'weakcb' }; // perf_hooks.constants.NODE_PERFORMANCE_GC_*
  // PLINTH_PROBE_GC_LOG=FILE: each collection of the period (ms from its start, duration, kind), one per line.
  const gcLog = process.env.PLINTH_PROBE_GC_LOG;
  let gcEvents = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const k = kinds[e.detail?.kind ?? e.kind] ?? 'other';
      if (gcLog) gcEvents.push(`${(e.startTime - started).toFixed(2)} ${e.duration.toFixed(2)} ${k}`);
      gc.count++;
      gc.totalMs += e.duration;
      gc.maxMs = Math.max(gc.maxMs, e.duration);
      if (e.duration > 1) gc.over1ms++;
      if (e.duration > 5) gc.over5ms++;
      if (!gc.byKind[k]) gc.byKind[k] = { count: 0, totalMs: 0, maxMs: 0 };
      const b = gc.byKind[k];
      b.count++;
      b.totalMs += e.duration;
      b.maxMs = Math.max(b.maxMs, e.duration);
    }
  }).observe({ entryTypes: ['gc'] });
  let started = performance.now();
  let armed = false;
  // PLINTH_PROBE_HEAP=FILE: V8's sampling heap profile of the period, garbage included (what makes the
  // scavenges), written as a .heapprofile for DevTools or a script. PLINTH_PROBE_HEAP_SURVIVORS=1: without the
  // objects the scavenges collected, so only those that outlived the young generation (promoted, or allocated
  // old by V8's pretenuring) or were still live at the end.
  const heapOut = process.env.PLINTH_PROBE_HEAP;
  const session = heapOut ? new Session() : undefined;
  session?.connect();
  process.on('SIGUSR2', () => {
    // The heap profile first: the benchmark waits for the figures' file, then kills the daemon.
    const line = armed ? figures() : undefined;
    // PLINTH_PROBE_SNAPSHOT=FILE: a heap snapshot at the period's end (what the live objects are and what keeps
    // them), written before the figures, which the benchmark waits for (the snapshot stops the daemon a while).
    if (armed && process.env.PLINTH_PROBE_SNAPSHOT) writeHeapSnapshot(process.env.PLINTH_PROBE_SNAPSHOT);
    if (session && armed)
      session.post('HeapProfiler.stopSampling', (err, r) => {
        if (!err) writeFileSync(heapOut, JSON.stringify(r.profile));
        writeFileSync(out, line);
      });
    else if (line) writeFileSync(out, line);
    if (gcLog && armed) writeFileSync(gcLog, `${gcEvents.join('\n')}\n`);
    gcEvents = [];
    if (session && !armed)
      session.post('HeapProfiler.startSampling', {
        samplingInterval: 4096,
        includeObjectsCollectedByMinorGC: process.env.PLINTH_PROBE_HEAP_SURVIVORS !== '1',
        includeObjectsCollectedByMajorGC: true,
      });
    armed = true;
    eld.reset();
    gc = fresh();
    for (const k of ['waits', 'commits', 'sizes', 'tx']) batchStats[k].length = 0;
    started = performance.now();
  });
  /** The period's figures as one JSON line. */
  function figures() {
    const ms = (ns) => Math.round(ns / 1e4) / 100;
    const r = (x) => Math.round(x * 100) / 100;
    const line = {
      periodMs: Math.round(performance.now() - started),
      loopDelayMs: {
        p50: ms(eld.percentile(50)),
        p99: ms(eld.percentile(99)),
        p999: ms(eld.percentile(99.9)),
        max: ms(eld.max),
      },
      gc: {
        ...gc,
        totalMs: r(gc.totalMs),
        maxMs: r(gc.maxMs),
        byKind: Object.fromEntries(
          Object.entries(gc.byKind).map(([k, v]) => [k, { count: v.count, totalMs: r(v.totalMs), maxMs: r(v.maxMs) }]),
        ),
      },
    };
    const pc = (a, q) => {
      const b = [...a].sort((x, y) => x - y);
      return b.length ? r(b[Math.min(b.length - 1, Math.floor(b.length * q))]) : null;
    };
    const dist = (a) => ({ p50: pc(a, 0.5), p99: pc(a, 0.99), max: pc(a, 1) });
    // Group commit (the writer thread): batch sizes, send->confirmed, the transaction itself, put()->durable.
    line.batch = {
      n: batchStats.sizes.length,
      size: dist(batchStats.sizes),
      commitMs: dist(batchStats.commits),
      txMs: dist(batchStats.tx),
      waitMs: dist(batchStats.waits),
    };
    return `${JSON.stringify(line)}\n`;
  }
}
