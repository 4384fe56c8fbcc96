/**
 * The node flags the daemon is started with (`npm start`, contrib/plinth.service, the Dockerfile; a test keeps the
 * three in step with DAEMON_NODE_FLAGS), and the start-up check that says so when they are missing.
 *
 * `--max-semi-space-size=2`: V8's young generation of at most 2 MB semi-spaces instead of Node 20's 16 MB. The DHCP
 * packet path allocates about 25 KB per DORA and each new lease survives; with 16 MB semi-spaces a scavenge came
 * every ~0.6 s at 1,000 DORA/s and stopped the event loop for 4-6 ms (it copies ~1 MB of survivors), which was the
 * largest part of the DISCOVER->OFFER and REQUEST->ACK p99. With 2 MB, scavenges come about 8 times as often and
 * last 0.7-1 ms; GC time rises from about 7 to 12 ms a second at 1,000 DORA/s (README, "DHCP latency", session 10).
 *
 * `--heap-growing-percent=400`: after each full collection V8 lets the old generation grow to 5 times what
 * survived before the next one, instead of its own factor (about 1.5 times here). What a DORA allocates and
 * outlives two of those frequent scavenges (the journal's records wait up to 50 ms to be applied, about 4 KB of a
 * DORA's 25 KB is promoted) fills the old generation at about 12 MB/s at 3,000 DORA/s: with V8's factor a
 * mark-compact came every 1.5-2.5 s, and each made a 20-40 ms cluster of slow replies (its concurrent marking
 * shares the loop's core on a small host, then its pause). With 5 times, one in a 5 s step instead of two or three;
 * the heap's peak in that step 60 instead of 48 MB (25 MB live), and V8's memory reducer shrinks it when the daemon
 * is idle (README, "DHCP latency", session 12).
 *
 * V8 sizes the young generation once, when the isolate is made: `v8.setFlagsFromString` at run time has no effect,
 * so these have to be flags of the node command (or NODE_OPTIONS).
 */
export const DAEMON_NODE_FLAGS = ['--max-semi-space-size=2', '--heap-growing-percent=400'] as const;

/**
 * The daemon's flags missing from this process (its node options and NODE_OPTIONS), each by name: a flag given
 * with another value counts as given (the operator chose it).
 */
export function missingNodeFlags(execArgv: readonly string[], nodeOptions = ''): string[] {
  const given = [...execArgv, ...nodeOptions.split(/\s+/)].map((a) => a.split('=')[0]!.replace(/_/g, '-'));
  return DAEMON_NODE_FLAGS.filter((f) => !given.includes(f.split('=')[0]!));
}
