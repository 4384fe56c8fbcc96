/**
 * One emulated ComputerSystem of Plinth's Redfish BMC emulator: its power state (kept by a backend), its boot
 * source override and the ETag that guards it, and what a reset does with the override. The semantics follow what
 * real BMCs do: a `Once` override is consumed by the next boot (and reads back Disabled afterwards), a
 * `Continuous` one stays, and with no override the machine boots from its disk.
 */
import { randomUUID } from 'node:crypto';

export type RedfishPower = 'On' | 'Off';
export type BootTarget = 'None' | 'Pxe' | 'Hdd';
export type BootMode = 'UEFI' | 'Legacy';
export type OverrideEnabled = 'Disabled' | 'Once' | 'Continuous';
export type Override = { enabled: OverrideEnabled; target: BootTarget; mode: BootMode };

export const RESET_TYPES = ['On', 'ForceOff', 'GracefulShutdown', 'GracefulRestart', 'ForceRestart', 'PowerCycle'];
export const BOOT_TARGETS: BootTarget[] = ['None', 'Pxe', 'Hdd'];
export const OVERRIDE_ENABLED: OverrideEnabled[] = ['Disabled', 'Once', 'Continuous'];
export const BOOT_MODES: BootMode[] = ['UEFI', 'Legacy'];

/** What powers the machine: in-memory (`fake`) or a QEMU process (`qemu`). `target` is what it boots from. */
export interface Backend {
  power(): Promise<RedfishPower>;
  on(target: BootTarget, mode: BootMode): Promise<void>;
  off(graceful: boolean): Promise<void>;
  restart(target: BootTarget, mode: BootMode): Promise<void>;
  close(): Promise<void>;
}

export type BootRecord = { system: string; target: BootTarget; mode: BootMode; at: number };

/**
 * The fake backend: a power bit. `onBoot` is the hook a test uses to play the machine: it is called at every
 * power-on or restart with what the machine boots from (a PXE boot there can send a DHCP request, call back...).
 */
export function fakeBackend(id: string, onBoot?: (b: BootRecord) => void): Backend & { boots: BootRecord[] } {
  let state: RedfishPower = 'Off';
  const boots: BootRecord[] = [];
  const boot = (target: BootTarget, mode: BootMode) => {
    const b = { system: id, target, mode, at: Date.now() };
    boots.push(b);
    onBoot?.(b);
  };
  return {
    boots,
    power: async () => state,
    on: async (target, mode) => {
      if (state === 'On') return;
      state = 'On';
      boot(target, mode);
    },
    off: async () => {
      state = 'Off';
    },
    restart: async (target, mode) => {
      state = 'On';
      boot(target, mode);
    },
    close: async () => {},
  };
}

export class EmulatedSystem {
  readonly uuid = randomUUID();
  override: Override = { enabled: 'Disabled', target: 'None', mode: 'UEFI' };
  /** What ResetType@Redfish.AllowableValues lists (a test narrows it: BMCs without PowerCycle exist). */
  resetTypes: string[] = [...RESET_TYPES];
  private version = 1;

  constructor(
    readonly id: string,
    readonly name: string,
    readonly backend: Backend,
    /** Answer PATCHes of the override with 200 and keep nothing (the BMC quirk the client must detect). */
    public ignoreOverride = false,
  ) {}

  get etag(): string {
    return `"${this.id}-${this.version}"`;
  }

  /** Applies a Boot PATCH (already validated); ignored when the quirk is on. */
  setOverride(o: Partial<Override>): void {
    if (this.ignoreOverride) return;
    this.override = { ...this.override, ...o };
    this.version++;
  }

  /** What the next boot uses; a Once override is spent by it (and reads back Disabled). */
  private consume(): { target: BootTarget; mode: BootMode } {
    const o = this.override;
    if (o.enabled === 'Disabled' || o.target === 'None') return { target: 'Hdd', mode: o.mode };
    if (o.enabled === 'Once') {
      this.override = { ...o, enabled: 'Disabled' };
      this.version++;
    }
    return { target: o.target, mode: o.mode };
  }

  async reset(type: string): Promise<void> {
    const on = (await this.backend.power()) === 'On';
    switch (type) {
      case 'On':
      case 'ForceOn':
        if (!on) {
          const b = this.consume();
          await this.backend.on(b.target, b.mode);
        }
        return;
      case 'ForceOff':
      case 'GracefulShutdown':
        if (on) await this.backend.off(type === 'GracefulShutdown');
        return;
      case 'ForceRestart':
      case 'GracefulRestart': {
        const b = this.consume();
        return on ? this.backend.restart(b.target, b.mode) : this.backend.on(b.target, b.mode);
      }
      case 'PowerCycle': {
        if (on) await this.backend.off(false);
        const b = this.consume();
        return this.backend.on(b.target, b.mode);
      }
      default:
        throw new Error(`reset type ${type} is not supported`);
    }
  }
}
