/**
 * The emulator's `qemu` backend: the machine is a QEMU process the emulator starts and stops. Power on starts it
 * (`-boot order=c,once=n` when the boot is PXE: the firmware tries the network first this time and the disk
 * afterwards, as a one-time BMC override does), ForceOff is QMP `quit`, GracefulShutdown QMP `system_powerdown`
 * (ACPI), a restart QMP `system_reset`, or a new process when the restart must PXE-boot (`-boot once` applies only
 * at start). QMP goes over a unix socket per machine; the process is killed by its PID when QMP does not answer.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import type { Backend, BootMode, BootTarget, RedfishPower } from './system.js';

export type QemuMachine = {
  /** The QEMU command line without -boot and -qmp (the emulator adds them): argv[0] is the binary. */
  command: string[];
  /** The QMP unix socket path. */
  qmp: string;
  /** Where QEMU's own output goes. */
  log?: string;
  /** Written with QEMU's PID while it runs (`plinth lab status` reads it). */
  pidFile?: string;
};

/** One QMP command over the socket: greeting, qmp_capabilities, the command; resolves with its `return`. */
export function qmp(socket: string, execute: string, timeoutMs = 5000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const c = connect(socket);
    let buf = '';
    let step = 0;
    const t = setTimeout(() => {
      c.destroy();
      reject(new Error(`QMP ${execute}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const done = (e?: Error, v?: unknown) => {
      clearTimeout(t);
      c.destroy();
      if (e) reject(e);
      else resolve(v);
    };
    c.on('error', (e) => done(e));
    c.on('close', () => (step === 2 && execute === 'quit' ? done(undefined, {}) : undefined));
    c.on('data', (d) => {
      buf += d;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (!line) continue;
        let msg: any;
        try {
          msg = JSON.parse(line);
        } catch {
          return done(new Error(`QMP: not JSON: ${line.slice(0, 100)}`));
        }
        if (msg.event) continue;
        if (msg.error) return done(new Error(`QMP ${execute}: ${msg.error.desc}`));
        if (step === 0 && msg.QMP) {
          step = 1;
          c.write('{"execute":"qmp_capabilities"}\n');
        } else if (step === 1 && 'return' in msg) {
          step = 2;
          c.write(`${JSON.stringify({ execute })}\n`);
        } else if (step === 2 && 'return' in msg) {
          return done(undefined, msg.return);
        }
      }
    });
  });
}

export function qemuBackend(m: QemuMachine): Backend & { pid(): number | undefined } {
  let child: ChildProcess | undefined;
  const alive = () => child !== undefined && child.exitCode === null && child.signalCode === null;
  const exited = (ms: number) =>
    new Promise<boolean>((resolve) => {
      if (!alive()) return resolve(true);
      const t = setTimeout(() => resolve(false), ms);
      child!.once('exit', () => {
        clearTimeout(t);
        resolve(true);
      });
    });
  const start = (target: BootTarget, _mode: BootMode) => {
    rmSync(m.qmp, { force: true });
    const boot = target === 'Pxe' ? 'order=c,once=n' : 'order=c';
    const args = [...m.command.slice(1), '-boot', boot, '-qmp', `unix:${m.qmp},server=on,wait=off`];
    const out = m.log ? openSync(m.log, 'a') : 'ignore';
    child = spawn(m.command[0]!, args, { stdio: ['ignore', out, out] });
    if (typeof out === 'number') closeSync(out);
    child.on('error', () => {}); // a missing binary shows as power Off
    if (m.pidFile && child.pid) writeFileSync(m.pidFile, `${child.pid}\n`);
    child.once('exit', () => {
      if (m.pidFile) rmSync(m.pidFile, { force: true });
    });
  };
  const stop = async (graceful: boolean) => {
    if (!alive()) return;
    try {
      if (existsSync(m.qmp)) await qmp(m.qmp, graceful ? 'system_powerdown' : 'quit');
    } catch {
      // QMP gone or stuck: the PID below
    }
    if (await exited(graceful ? 60_000 : 5000)) return;
    child?.kill('SIGKILL');
    await exited(5000);
  };
  return {
    pid: () => (alive() ? child!.pid : undefined),
    power: async (): Promise<RedfishPower> => (alive() ? 'On' : 'Off'),
    on: async (target, mode) => {
      if (!alive()) start(target, mode);
    },
    off: stop,
    restart: async (target, mode) => {
      if (alive() && target !== 'Pxe') {
        try {
          await qmp(m.qmp, 'system_reset');
          return;
        } catch {
          // fall through to a fresh start
        }
      }
      await stop(false);
      start(target, mode);
    },
    close: () => stop(false),
  };
}
