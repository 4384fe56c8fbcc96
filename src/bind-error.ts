/** The flags that fix a port that cannot be bound, and what the operator should look at. */
export type BindFixes = {
  /** The flag that picks another port. */
  port: string;
  /** The flag that switches the service off. */
  off?: string;
  /** Who usually holds the port already (EADDRINUSE), e.g. the other DHCP servers by name. */
  holders?: string;
  /** What to check for any other error (default: nothing more than switching off). */
  check?: string;
};

/**
 * `cannot bind <target>: <why>. Fix: <every fix>.` for DHCP, TFTP and HTTP alike; `service` names what `off`
 * switches off.
 */
export function bindFailure(
  service: string,
  target: string,
  port: number,
  err: NodeJS.ErrnoException,
  fixes: BindFixes,
): string {
  const off = fixes.off ? `, or switch ${service} off with ${fixes.off}` : '';
  if (err.code === 'EACCES' || err.code === 'EPERM') {
    return (
      `cannot bind ${target}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE). ` +
      `Fix: run as root (sudo npm start), or grant the capability (sudo setcap cap_net_bind_service=+ep "$(readlink -f "$(which node)")"), ` +
      `or use another port with ${fixes.port}${off}.`
    );
  }
  if (err.code === 'EADDRINUSE') {
    return (
      `cannot bind ${target}: ${fixes.holders ?? 'another program'} already uses it (find it with: sudo ss -lunp 'sport = :${port}' or ss -ltnp). ` +
      `Fix: stop that program, or use another port with ${fixes.port}${off}.`
    );
  }
  if (err.code === 'EADDRNOTAVAIL') {
    return `cannot bind ${target}: the listen address is not on this machine. Fix: check the address setting${off}.`;
  }
  const fix = [fixes.check, off.slice(5)].filter(Boolean).join(', or ');
  return `cannot bind ${target}: ${err.message}${fix ? `. Fix: ${fix}` : ''}.`;
}

/**
 * One line that says which port could not be bound, why, and every fix, for DHCP, TFTP and HTTP alike.
 */
export function bindErrorLine(
  service: string,
  proto: 'udp' | 'tcp',
  port: number,
  err: NodeJS.ErrnoException,
  flags: BindFixes,
): string {
  return `${service}: ${bindFailure(service, `${proto} port ${port}`, port, err, flags)}`;
}
