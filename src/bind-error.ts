/**
 * One line that says which port could not be bound, why, and every fix, for DHCP, TFTP and HTTP alike.
 */
export function bindErrorLine(
  service: string,
  proto: 'udp' | 'tcp',
  port: number,
  err: NodeJS.ErrnoException,
  flags: { port: string; off?: string },
): string {
  const off = flags.off ? `, or switch ${service} off with ${flags.off}` : '';
  if (err.code === 'EACCES' || err.code === 'EPERM') {
    return (
      `${service}: cannot bind ${proto} port ${port}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE). ` +
      `Fix: run as root (sudo npm start), or grant the capability (sudo setcap cap_net_bind_service=+ep "$(readlink -f "$(which node)")"), ` +
      `or use another port with ${flags.port}${off}.`
    );
  }
  if (err.code === 'EADDRINUSE') {
    return (
      `${service}: cannot bind ${proto} port ${port}: another program already uses it (find it with: sudo ss -lunp 'sport = :${port}' or ss -ltnp). ` +
      `Fix: stop that program, or use another port with ${flags.port}${off}.`
    );
  }
  if (err.code === 'EADDRNOTAVAIL') {
    return `${service}: cannot bind ${proto} port ${port}: the listen address is not on this machine. Fix: check the address setting${off}.`;
  }
  return `${service}: cannot bind ${proto} port ${port}: ${err.message}${off ? `. Fix: ${off.slice(5)}` : ''}.`;
}
