/**
 * What `bench:dhcp` (SQLite, bench/dhcp.ts) and `bench:dhcp -- --store postgres` (bench/dhcp-pg.ts) share: reading
 * perfdhcp's output into a step's figures, and the rate ladder (rates climbing, runs interleaved between servers,
 * the median run per step, one bisection step) with its summary table.
 */
import { p99, section } from './dhcp-servers.js';

export type Result = {
  rate: number;
  achieved: number;
  sent: number;
  acks: number;
  drop: number;
  p99do: number;
  p99ra: number;
  /** The server's CPU time (every thread) per ACK over the measured period, in µs: robust on a loaded host. */
  cpuPerAck: number;
  /** The same for the main thread alone (the event loop that reads packets and sends replies). */
  cpuMainPerAck: number;
  /** PostgreSQL's CPU time (every process of the cluster) per ACK, in µs (--store postgres). */
  pgCpuPerAck?: number;
  note: string;
  /** Plinth: the event loop's delay and GC pauses over the measured period (bench/dhcp-probe.mjs). */
  probe?: string;
};

/** One step's exchanges, from one or several perfdhcp outputs (several relays, one total). */
export type Exchanges = {
  sent: number;
  acks: number;
  p99do: number;
  p99ra: number;
  /** perfdhcp's non-unique count (an address ACKed twice, even to the same client). */
  nonUnique: number;
  /** Addresses ACKed to two different clients (across every output): the real fault. */
  twice: number;
  /** address -> client id, as perfdhcp saw each ACK (the first client when `twice`). */
  owners: Map<string, string>;
};

export function parsePerfdhcp(outs: string[]): Exchanges {
  const num = (s: string, re: RegExp) => Number(re.exec(s)?.[1] ?? Number.NaN);
  let sent = 0;
  let acks = 0;
  let nonUnique = 0;
  let twice = 0;
  const doLines: string[] = [];
  const raLines: string[] = [];
  const owners = new Map<string, string>();
  for (const out of outs) {
    const doS = section(out, 'Statistics for: DISCOVER-OFFER');
    const raS = section(out, 'Statistics for: REQUEST-ACK');
    sent += num(doS, /sent packets: (\d+)/);
    acks += num(raS, /received packets: (\d+)/);
    nonUnique += num(raS, /non unique addresses: (\d+)/) + num(doS, /non unique addresses: (\d+)/);
    const lines = (t: string) =>
      section(out, t)
        .split('\n')
        .filter((l) => l.startsWith('sent / received'));
    doLines.push(...lines('Timestamps for packets: DISCOVER-OFFER'));
    raLines.push(...lines('Timestamps for packets: REQUEST-ACK'));
    // perfdhcp counts an address ACKed twice as non-unique even to the same client (-R repeats clients, and a
    // client that starts over gets its lease again): an address ACKed to two client ids is the real fault.
    for (const line of section(out, 'Leases for REQUEST-ACK').split('\n')) {
      const [client, address] = line.split(',');
      if (!client || !address || !/^\d+\.\d+\.\d+\.\d+$/.test(address)) continue;
      const o = owners.get(address);
      if (o === undefined) owners.set(address, client);
      else if (o !== client) twice++;
    }
  }
  return { sent, acks, p99do: p99(doLines), p99ra: p99(raLines), nonUnique, twice, owners };
}

export type LadderServer = { name: string };
export type Table = Map<number, Map<string, Result>>;

const failing = /NON-UNIQUE|TWICE|LOST|ERROR/;
const ok = (r: Result) => r.drop < 0.01 && r.achieved >= r.rate * 0.95 && !failing.test(r.note);

export function report(name: string, r: Result): void {
  const pg = r.pgCpuPerAck !== undefined ? ` pg ${r.pgCpuPerAck.toFixed(0)} µs/DORA` : '';
  console.log(
    `${name.padEnd(13)} rate ${String(r.rate).padStart(6)}/s achieved ${r.achieved.toFixed(0).padStart(6)}/s  DORAs ${String(r.acks).padStart(6)}/${String(r.sent).padEnd(6)} drops ${(r.drop * 100).toFixed(2).padStart(6)}%  p99 DO ${r.p99do.toFixed(1).padStart(7)} ms RA ${r.p99ra.toFixed(1).padStart(7)} ms  cpu ${r.cpuPerAck.toFixed(0).padStart(4)} µs/DORA (main ${r.cpuMainPerAck.toFixed(0)})${pg} ${r.note}`,
  );
  if (r.probe) console.log(`    ${name} loop/gc: ${r.probe}`);
}

/** The median of `xs` (the lower middle one of an even count). */
const middle = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)]!;

/**
 * Every server runs each rate `runs` times, the runs interleaved so that machine noise hits all alike; the step is
 * the median run by loss, with the median of the runs' p99s, and a lost lease or a duplicate address in any run fails it. Rates
 * climb until a server fails two in a row (it then leaves the ladder); then one bisection step per server between
 * its best passing and its first failing rate.
 */
export async function runLadder<S extends LadderServer>(
  all: S[],
  rates: number[],
  runs: number,
  step: (s: S, rate: number, n: number) => Promise<Result>,
): Promise<{ best: Map<string, Result | undefined>; table: Table }> {
  const best = new Map<string, Result | undefined>();
  const failedAt = new Map<string, number>(); // first rate of the current run of failures
  const misses = new Map<string, number>();
  const table: Table = new Map(); // rate -> server -> median run
  let n = 0;
  const ladderStep = async (rate: number, servers: S[]) => {
    const byServer = new Map<string, Result[]>(servers.map((s) => [s.name, []]));
    for (let i = 0; i < runs; i++)
      for (const s of servers) {
        const r = await step(s, rate, n++);
        report(s.name, r);
        byServer.get(s.name)!.push(r);
      }
    const out = new Map<string, { median: Result; pass: boolean }>();
    for (const s of servers) {
      const rs = byServer.get(s.name)!;
      // Pass or fail on the median run by loss; the p99s are each the median of the runs' (with every run at 0%
      // loss a sort by loss keeps the runs' order, and its middle run's p99 is not the median p99).
      const byLoss = [...rs].sort((a, b) => a.drop - b.drop)[Math.floor((rs.length - 1) / 2)]!;
      const median = { ...byLoss, p99do: middle(rs.map((r) => r.p99do)), p99ra: middle(rs.map((r) => r.p99ra)) };
      const bad = rs.find((r) => failing.test(r.note));
      const m = bad ? { ...median, note: bad.note } : median;
      out.set(s.name, { median: m, pass: ok(m) });
      if (!table.has(rate)) table.set(rate, new Map());
      table.get(rate)!.set(s.name, m);
    }
    return out;
  };
  const done = (s: S) => (misses.get(s.name) ?? 0) >= 2;
  for (const rate of rates) {
    const res = await ladderStep(
      rate,
      all.filter((s) => !done(s)),
    );
    for (const [name, { median, pass }] of res) {
      if (pass) {
        best.set(name, median);
        misses.set(name, 0);
        failedAt.delete(name);
      } else {
        misses.set(name, (misses.get(name) ?? 0) + 1);
        if (!failedAt.has(name)) failedAt.set(name, rate);
      }
    }
    if (all.every(done)) break;
  }
  for (const s of all) {
    const lo = best.get(s.name)?.rate ?? 0;
    const hi = failedAt.get(s.name);
    if (!hi || hi - lo < 500) continue;
    const mid = Math.round((lo + hi) / 2 / 100) * 100;
    const r = (await ladderStep(mid, [s])).get(s.name)!;
    if (r.pass) best.set(s.name, r.median);
  }
  return { best, table };
}

/**
 * The per-rate table (REQUEST->ACK p99 / loss) and each server's highest rate under 1% loss; with `reference`,
 * each server's rate and p99s as ratios to that server's in the same run. `reference` may name the reference per
 * server (the PostgreSQL bench: three daemons behind three relays against three Kea daemons behind the same).
 */
export function printSummary(
  all: LadderServer[],
  best: Map<string, Result | undefined>,
  table: Table,
  heading: string,
  title: string,
  reference?: string | ((name: string) => string | undefined),
): void {
  const refOf = (name: string) => (typeof reference === 'function' ? reference(name) : reference);
  console.log(`\n${heading}: REQUEST->ACK p99 (ms) / loss per rate`);
  console.log(`  ${'rate'.padStart(6)}  ${all.map((s) => s.name.padStart(16)).join('')}`);
  for (const [rate, row] of [...table].sort((a, b) => a[0] - b[0]))
    console.log(
      `  ${String(rate).padStart(6)}  ${all
        .map((s) => {
          const r = row.get(s.name);
          return (r ? `${r.p99ra.toFixed(1)} / ${(r.drop * 100).toFixed(1)}%` : '-').padStart(16);
        })
        .join('')}`,
    );
  console.log(`\nhighest rate with < 1% drops (${title}):`);
  for (const s of all) {
    const r = best.get(s.name);
    const refName = refOf(s.name);
    const ref = refName ? best.get(refName) : undefined;
    const ratio =
      r && ref && s.name !== refName
        ? `   vs ${refName}: rate ${(r.rate / ref.rate).toFixed(2)}x, p99 DO ${(r.p99do / ref.p99do).toFixed(2)}x, RA ${(r.p99ra / ref.p99ra).toFixed(2)}x`
        : '';
    console.log(
      r
        ? `  ${s.name.padEnd(13)} ${String(r.rate).padStart(6)} DORA/s   p99 DISCOVER->OFFER ${r.p99do.toFixed(1)} ms, REQUEST->ACK ${r.p99ra.toFixed(1)} ms ${r.note}${ratio}`
        : `  ${s.name.padEnd(13)} none of the rates tried`,
    );
  }
  // At each rate both passed: the p99s side by side (a ratio at one rate, the fair comparison of latency).
  for (const [rate, row] of [...table].sort((a, b) => a[0] - b[0])) {
    const byRef = new Map<string, string[]>();
    for (const s of all) {
      const refName = refOf(s.name);
      if (!refName || refName === s.name || !row.has(s.name)) continue;
      byRef.set(refName, [...(byRef.get(refName) ?? []), s.name]);
    }
    for (const [refName, others] of byRef) {
      const k = row.get(refName);
      if (!k || !ok(k)) continue;
      const cells = others.map((name) => {
        const r = row.get(name);
        return r && ok(r)
          ? `${name} RA p99 ${(r.p99ra / k.p99ra).toFixed(2)}x DO ${(r.p99do / k.p99do).toFixed(2)}x`
          : `${name} -`;
      });
      console.log(`  at ${rate}/s vs ${refName}: ${cells.join(', ')}`);
    }
  }
}
