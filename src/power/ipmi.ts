/**
 * The IPMI driver: Debian's `ipmitool` over RMCP+ (lanplus), one child process per call. The password reaches the
 * child only through its environment (IPMI_PASSWORD with -E): a command line is readable by every user in
 * /proc/PID/cmdline. The cipher suite is a setting (default 3, HMAC-SHA1 + AES-CBC-128: the suite every IPMI 2.0
 * BMC speaks; without -C ipmitool first tries 17, which OpenIPMI's simulator refuses, and each call then waits ~10 s
 * for the fallback). Privilege OPERATOR: power and boot flags need no more, and an ADMIN password for Plinth is a
 * bigger prize than it needs to be.
 */
import { spawn } from 'node:child_process';
import {
  type BmcSettings,
  type BootOverride,
  type PowerAction,
  type PowerDriver,
  PowerError,
  type PowerState,
} from './driver.js';

export interface IpmiOptions {
  /** The ipmitool binary (tests point it elsewhere). */
  ipmitool?: string;
  /** One ipmitool call's limit; the child is killed by PID when it passes. */
  callTimeoutMs?: number;
  /** How long a power change may take to show in `power status` before it counts as not done. */
  verifyTimeoutMs?: number;
  pollMs?: number;
}

/** Maps ipmitool's stderr (it is run with -v, which names the RAKP failure) to a PowerError. Exported for tests. */
export function ipmiError(stderr: string, what: string): PowerError {
  const said = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^Loading IANA|HPM\.x Capabilities|^Running Get/.test(l))
    .slice(-3)
    .join('; ');
  const m = (re: RegExp) => re.test(stderr);
  // RAKP 2 carries the BMC's verdict on the user name and the HMAC keyed with the password (IPMI 2.0 §13.31).
  if (m(/RAKP 2 HMAC is invalid|unauthorized name|invalid role|Invalid user name|RAKP 4 .*invalid|password/i))
    return new PowerError('auth', `${what}: the BMC refused the credentials (${said})`);
  if (m(/invalid authentication algorithm|invalid integrity algorithm|invalid confidentiality|cipher suite/i))
    return new PowerError('refused', `${what}: the BMC refused the cipher suite (${said})`);
  if (m(/Insufficient privilege|Invalid command|not supported|Invalid data field|Command not/i))
    return new PowerError('refused', `${what}: the BMC said no (${said})`);
  if (m(/Get Auth Capabilities error|No response|Unable to establish|Address lookup|Name or service|unreachable/i))
    return new PowerError('unreachable', `${what}: no answer from the BMC (${said})`);
  return new PowerError('failed', `${what}: ${said || 'ipmitool failed without a message'}`);
}

/** Parses `chassis bootparam get 5` (Boot Flags, IPMI 2.0 §28.13 parameter 5): the device selector only. */
export function parseBootFlags(out: string): BootOverride['device'] | 'other' {
  const sel = /Boot Device Selector\s*:\s*(.+)/.exec(out)?.[1]?.trim() ?? '';
  if (/No override/i.test(sel)) return 'none';
  if (/PXE/i.test(sel)) return 'pxe';
  if (/Hard-Drive/i.test(sel)) return 'disk';
  return 'other';
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal.aborted) return reject(new PowerError('timeout', 'aborted'));
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new PowerError('timeout', 'the power operation was aborted (its time ran out)'));
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });

export class IpmiDriver implements PowerDriver {
  private readonly bin: string;
  private readonly callTimeoutMs: number;
  private readonly verifyTimeoutMs: number;
  private readonly pollMs: number;

  constructor(
    private readonly bmc: BmcSettings,
    o: IpmiOptions = {},
  ) {
    this.bin = o.ipmitool ?? 'ipmitool';
    this.callTimeoutMs = o.callTimeoutMs ?? 15_000;
    this.verifyTimeoutMs = o.verifyTimeoutMs ?? 30_000;
    this.pollMs = o.pollMs ?? 500;
  }

  /** The arguments before the command; never the password. */
  args(): string[] {
    const b = this.bmc;
    const a = ['-v', '-I', 'lanplus', '-C', String(b.cipherSuite ?? 3), '-H', b.address, '-p', String(b.port ?? 623)];
    if (b.username) a.push('-U', b.username);
    // -E: the password from IPMI_PASSWORD; -N/-R bound ipmitool's own retries below the call's timeout.
    a.push('-E', '-L', 'OPERATOR', '-N', '2', '-R', '2');
    return a;
  }

  /** One ipmitool call; resolves with stdout, throws a PowerError (timeout when the call's time or `signal` ran out). */
  run(cmd: string[], signal: AbortSignal): Promise<string> {
    const what = `ipmitool ${cmd.join(' ')} (${this.bmc.address})`;
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(new PowerError('timeout', `${what}: aborted before it started`));
      const child = spawn(this.bin, [...this.args(), ...cmd], {
        env: { PATH: process.env.PATH ?? '/usr/bin:/bin', IPMI_PASSWORD: this.bmc.password ?? '' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      let done = false;
      child.stdout.on('data', (d) => {
        if (out.length < 65536) out += d;
      });
      child.stderr.on('data', (d) => {
        if (err.length < 65536) err += d;
      });
      const finish = (e: PowerError | undefined) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        if (e) reject(e);
        else resolve(out);
      };
      const kill = (why: string) => {
        // By PID: this child only.
        if (child.pid !== undefined && child.exitCode === null) child.kill('SIGKILL');
        finish(new PowerError('timeout', `${what}: ${why}`));
      };
      const timer = setTimeout(() => kill(`no answer within ${this.callTimeoutMs} ms`), this.callTimeoutMs);
      const onAbort = () => kill('aborted (the power operation ran out of time)');
      signal.addEventListener('abort', onAbort, { once: true });
      child.on('error', (e) =>
        finish(new PowerError('failed', `${what}: cannot run ipmitool (${e.message}); apt-get install ipmitool`)),
      );
      child.on('close', (code) => finish(code === 0 ? undefined : ipmiError(err, what)));
    });
  }

  async status(signal: AbortSignal): Promise<PowerState> {
    const out = await this.run(['power', 'status'], signal);
    const m = /Chassis Power is (on|off)/i.exec(out);
    return m ? (m[1]!.toLowerCase() as PowerState) : 'unknown';
  }

  private async waitFor(want: PowerState, signal: AbortSignal): Promise<void> {
    const until = Date.now() + this.verifyTimeoutMs;
    for (;;) {
      const now = await this.status(signal);
      if (now === want) return;
      if (Date.now() >= until)
        throw new PowerError(
          'failed',
          `the BMC at ${this.bmc.address} accepted power ${want} but still reports ${now}`,
        );
      await sleep(this.pollMs, signal);
    }
  }

  /**
   * `cycle` is off, verify, on, verify rather than `power cycle`: BMCs refuse a cycle of a machine that is off, and
   * some (OpenIPMI's simulator among them) only switch it off.
   */
  async power(action: PowerAction, signal: AbortSignal): Promise<void> {
    if (action === 'on' || action === 'off') {
      await this.run(['power', action], signal);
      return this.waitFor(action, signal);
    }
    if (action === 'reset') {
      if ((await this.status(signal)) === 'off') {
        await this.run(['power', 'on'], signal);
      } else {
        await this.run(['power', 'reset'], signal);
      }
      return this.waitFor('on', signal);
    }
    if ((await this.status(signal)) !== 'off') {
      await this.run(['power', 'off'], signal);
      await this.waitFor('off', signal);
    }
    await this.run(['power', 'on'], signal);
    return this.waitFor('on', signal);
  }

  async setBootDevice(o: BootOverride, signal: AbortSignal): Promise<void> {
    // Boot flags expire 60 s after they are set unless the BMC's boot-flag-valid timer is switched off (IPMI 2.0
    // §28.12, parameter 3 bit 3): a reprovision that takes longer to power-cycle would boot from disk.
    await this.run(['raw', '0x00', '0x08', '0x03', '0x08'], signal);
    const opts = [o.persistent ? 'persistent' : '', o.uefi && o.device !== 'none' ? 'efiboot' : ''].filter(Boolean);
    const cmd = ['chassis', 'bootdev', o.device];
    if (opts.length) cmd.push(`options=${opts.join(',')}`);
    await this.run(cmd, signal);
    // Read back the device selector. Only the device: OpenIPMI's simulator (and some BMCs) keep neither the EFI
    // nor the persistent bit, and a PXE boot in the wrong mode still reaches Plinth.
    const got = parseBootFlags(await this.run(['chassis', 'bootparam', 'get', '5'], signal));
    if (got !== o.device)
      throw new PowerError(
        'override-ignored',
        `the BMC at ${this.bmc.address} accepted boot device ${o.device} and reports ${got}`,
      );
  }
}
