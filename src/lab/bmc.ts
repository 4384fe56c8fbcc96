/**
 * BMCs for the lab VMs, so Plinth power-controls them as it would real servers: OpenIPMI's `ipmi_sim` (one per
 * VM, RMCP+ on the lab bridge, a chassis_control script that starts and stops the VM's QEMU) or Plinth's own
 * Redfish emulator (one process, one System per VM, its qemu backend). Both run inside the lab namespace, so the
 * QEMU they start can open the VM's tap, and listen on the bridge address that the host reaches over the veth.
 */

export type IpmiSimOptions = {
  address: string;
  port: number;
  username: string;
  password: string;
  /** The chassis_control program: ipmi_sim runs `PROGRAM 0x20 get|set|check parm [value]...`. */
  chassisControl: string;
};

/**
 * ipmi_sim's lan.conf and command file. One LAN channel, one BMC (IPMB 0x20), one user with OPERATOR as its
 * limit (all Plinth asks for) besides the anonymous user, which is disabled. ipmi_sim reads users from here only
 * while its persisted user store (-s DIR) is empty: the lab runs it with -n -s on a fresh directory.
 */
export function ipmiSimConfig(o: IpmiSimOptions): { lanConf: string; emu: string } {
  const q = (s: string) => {
    // lan.conf strings are double-quoted with no escapes: refuse what would end them early.
    if (/["\n\\]/.test(s)) throw new Error(`ipmi_sim setting ${JSON.stringify(s)}: no quotes, backslashes or newlines`);
    return `"${s}"`;
  };
  const auths = 'none md2 md5 straight';
  const lanConf = `# written by plinth (src/lab/bmc.ts)
name "plinth"
set_working_mc 0x20
  startlan 1
    addr ${o.address} ${o.port}
    priv_limit admin
    allowed_auths_callback ${auths}
    allowed_auths_user ${auths}
    allowed_auths_operator ${auths}
    allowed_auths_admin ${auths}
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control ${q(`${o.chassisControl} 0x20`)}
  user 1 false "" "" user 1 none
  user 2 true ${q(o.username)} ${q(o.password)} operator 10 md5 straight
`;
  const emu = `mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
mc_enable 0x20
`;
  return { lanConf, emu };
}
