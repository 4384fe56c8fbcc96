/**
 * OpenIPMI's `ipmi_sim` on loopback for the IPMI driver's tests: the lab's own lan.conf (src/lab/bmc.ts) on an
 * unprivileged UDP port, with a chassis_control script that records every call (and keeps power and boot device
 * in files) instead of driving QEMU. Started and killed by PID.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ipmiSimConfig } from '../../src/lab/bmc.js';

export async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export type Sim = { port: number; dir: string; calls(): string[]; stop(): void; proc: ChildProcess };

const RECORDER = `#!/bin/sh
# ipmi_sim chassis_control: <mc> get|set|check parm [val]...; records each call, keeps state in files.
D=$(dirname "$0")
echo "$*" >> "$D/calls.log"
mc=$1; op=$2; shift 2
case $op in
get) for p in "$@"; do
  case $p in
  power) echo "power:$(cat "$D/power" 2>/dev/null || echo 0)" ;;
  boot) echo "boot:$(cat "$D/boot" 2>/dev/null || echo default)" ;;
  esac
done ;;
set) while [ $# -gt 1 ]; do
  case $1 in power|boot) echo "$2" > "$D/$1" ;; esac
  shift 2
done ;;
esac
exit 0
`;

export async function startSim(username: string, password: string): Promise<Sim> {
  const dir = mkdtempSync(path.join(tmpdir(), 'plinth-ipmisim-'));
  const port = await freeUdpPort();
  const script = path.join(dir, 'chassis.sh');
  writeFileSync(script, RECORDER);
  chmodSync(script, 0o755);
  const { lanConf, emu } = ipmiSimConfig({ address: '127.0.0.1', port, username, password, chassisControl: script });
  writeFileSync(path.join(dir, 'lan.conf'), lanConf);
  writeFileSync(path.join(dir, 'sim.emu'), emu);
  const proc = spawn('ipmi_sim', ['-c', 'lan.conf', '-f', 'sim.emu', '-n', '-s', dir], {
    cwd: dir,
    stdio: 'ignore',
  });
  // Ready when it answers a session (bounded: 50 tries).
  for (let i = 0; i < 50; i++) {
    try {
      execFileSync(
        'ipmitool',
        ['-I', 'lanplus', '-C', '3', '-H', '127.0.0.1', '-p', String(port), '-U', username, '-E', 'power', 'status'],
        { env: { PATH: process.env.PATH, IPMI_PASSWORD: password }, stdio: 'ignore', timeout: 3000 },
      );
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  writeFileSync(path.join(dir, 'calls.log'), '');
  return {
    port,
    dir,
    proc,
    calls: () =>
      readFileSync(path.join(dir, 'calls.log'), 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => l.replace(/^0x20 /, '')),
    stop: () => {
      if (proc.exitCode === null) proc.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
