/**
 * Builds the driver for a machine's BMC settings. (Placeholder until the IPMI and Redfish drivers land: only the
 * manual driver exists, and it refuses everything with a clear reason.)
 */
import { type BmcSettings, type DriverFactory, type PowerDriver, PowerError } from './driver.js';

export * from './driver.js';

function manual(bmc: BmcSettings): PowerDriver {
  const no = async (): Promise<never> => {
    throw new PowerError('unsupported', `machine's BMC driver is '${bmc.driver}': power it by hand`);
  };
  return { status: async () => 'unknown', power: no, setBootDevice: no };
}

export const createDriver: DriverFactory = (bmc) => manual(bmc);
