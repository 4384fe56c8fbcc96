/**
 * The power-driver seam: what Plinth asks of a BMC, whatever speaks to it (ipmitool, Redfish, a human).
 * Drivers are transport only; which machine, when, and in what order (boot device before power) is decided by
 * the power service that calls them. Every call takes an AbortSignal: a BMC that hangs costs its timeout, never a
 * stuck daemon.
 */

export type PowerState = 'on' | 'off' | 'unknown';

/** `cycle`: off then on (on when it was off); `reset`: a warm reset without removing power. */
export type PowerAction = 'on' | 'off' | 'cycle' | 'reset';

export type BootDevice = 'pxe' | 'disk' | 'none';

/** The next boot device: once (the usual reprovision) or persistent; `uefi` picks the EFI flavour (IPMI efiboot). */
export interface BootOverride {
  device: BootDevice;
  persistent: boolean;
  uefi: boolean;
}

/** A machine's BMC as stored on it. `password` is only ever read by a driver; the API never returns it. */
export interface BmcSettings {
  driver: 'ipmi' | 'redfish' | 'manual';
  address: string;
  port?: number;
  username?: string;
  password?: string;
  /** IPMI lanplus cipher suite (default 3; OpenIPMI's simulator refuses 17). */
  cipherSuite?: number;
  /** Redfish: accept a self-signed certificate from this BMC. */
  insecureTLS?: boolean;
  /** Redfish: which ComputerSystem (its Id or @odata.id) when the BMC lists several (a chassis BMC, the emulator). */
  systemId?: string;
}

export type PowerErrorCode =
  | 'auth' // bad credentials
  | 'unreachable' // no answer at the address
  | 'refused' // the BMC said no (privilege, unsupported value, busy)
  | 'timeout' // no answer within the call's time
  | 'unsupported' // the driver cannot do this (manual driver; a reset type the system does not list)
  | 'override-ignored' // the BMC accepted a boot override and did not keep it
  | 'failed'; // anything else, with the BMC's own words in the message

export class PowerError extends Error {
  constructor(
    readonly code: PowerErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'PowerError';
  }
}

export interface PowerDriver {
  status(signal: AbortSignal): Promise<PowerState>;
  /** Performs the action and verifies the state it leads to where the BMC lets it (on/off). */
  power(action: PowerAction, signal: AbortSignal): Promise<void>;
  /** Sets the next boot device and reads it back; throws PowerError('override-ignored') when it did not stick. */
  setBootDevice(override: BootOverride, signal: AbortSignal): Promise<void>;
  /** Releases what the driver holds between calls (a Redfish session, kept-alive connections). Call it when done. */
  close?(): Promise<void>;
}

export type DriverFactory = (bmc: BmcSettings) => PowerDriver;
