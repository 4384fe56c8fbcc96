// Container health check: GET /api/v1/info answers 200. With TLS on (the default) the API is on HTTPS (a
// self-signed certificate by default, so it is not verified here: this only asks whether the daemon answers);
// with --tls off, on plain HTTP. Ports from the same variables the daemon reads.
import http from 'node:http';
import https from 'node:https';

const tlsOff = process.env.PLINTH_TLS === 'off';
const mod = tlsOff ? http : https;
const port = Number(tlsOff ? (process.env.PLINTH_HTTP_PORT ?? 8091) : (process.env.PLINTH_HTTPS_PORT ?? 8443));
const req = mod.get(
  { host: '127.0.0.1', port, path: '/api/v1/info', rejectUnauthorized: false, timeout: 4000 },
  (res) => {
    res.resume();
    process.exit(res.statusCode === 200 ? 0 : 1);
  },
);
req.on('timeout', () => req.destroy(new Error('timeout')));
req.on('error', () => process.exit(1));
