/**
 * The node flags the daemon is started with (`npm start`, contrib/plinth.service, the Dockerfile; a test keeps the
 * three in step with DAEMON_NODE_FLAGS), and the start-up check that says so when they are missing.
 *
 * `--max-semi-space-size=2`: V8's young generation of at most 2 MB semi-spaces instead of Node 20's 16 MB. The DHCP
 * packet path allocates about 25 KB per DORA and each new lease survives; with 16 MB semi-spaces a scavenge came
 * every ~0.6 s at 1,000 DORA/s and stopped the event loop for 4-6 ms (it copies ~1 MB of survivors), which was the
 * largest part of the DISCOVER->OFFER and REQUEST->ACK p99. With 2 MB, scavenges come about 8 times as often and
 * last 0.7-1 ms; GC time rises from about 7 to 12 ms a second at 1,000 DORA/s (README, "DHCP latency", session 10).
 * V8 sizes the young generation once, when the isolate is made: `v8.setFlagsFromString` at run time has no effect,
 * so it has to be a flag of the node command (or NODE_OPTIONS).
 */
export const DAEMON_NODE_FLAGS = ['--max-semi-space-size=2'] as const;

/**
 * The daemon's flags missing from this process (its node options and NODE_OPTIONS), each by name: a flag given
 * with another value counts as given (the operator chose it).
 */
export function missingNodeFlags(execArgv: readonly string[], nodeOptions = ''): string[] {
  const given = [...execArgv, ...nodeOptions.split(/\s+/)].map((a) => a.split('=')[0]!.replace(/_/g, '-'));
  return DAEMON_NODE_FLAGS.filter((f) => !given.includes(f.split('=')[0]!));
}
