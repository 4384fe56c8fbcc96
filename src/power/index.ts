/**
 * Builds the driver for a machine's BMC settings: IPMI (ipmitool lanplus), Redfish (HTTP(S), no SDK), or manual,
 * which refuses every action with a clear reason (a machine somebody powers by hand).
 */
import { type BmcSettings, type DriverFactory, type PowerDriver, PowerError } from './driver.js';
import { IpmiDriver } from './ipmi.js';
import { RedfishDriver } from './redfish.js';

export * from './driver.js';

function manual(bmc: BmcSettings): PowerDriver {
  const no = async (): Promise<never> => {
    throw new PowerError('unsupported', `machine's BMC driver is '${bmc.driver}': power it by hand`);
  };
  return { status: async () => 'unknown', power: no, setBootDevice: no };
}

export const createDriver: DriverFactory = (bmc) => {
  if (bmc.driver === 'ipmi') return new IpmiDriver(bmc);
  if (bmc.driver === 'redfish') return new RedfishDriver(bmc);
  return manual(bmc);
};
