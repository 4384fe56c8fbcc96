import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/**
 * The reference HTTP server of the benchmarks: nginx with sendfile, one worker, no access log, everything it
 * writes under `dir`. Writes the config and returns the argv that runs it in the foreground.
 */
export function nginxCommand(dir: string, listen: string, root: string, workerConnections = 1024): string[] {
  mkdirSync(dir, { recursive: true });
  const conf = path.join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `worker_processes 1; daemon off; pid ${dir}/nginx.pid; error_log ${dir}/error.log;
events { worker_connections ${workerConnections}; }
http { access_log off; sendfile on; tcp_nopush on; client_body_temp_path ${dir}; proxy_temp_path ${dir};
  fastcgi_temp_path ${dir}; uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  server { listen ${listen}; root ${root}; } }\n`,
  );
  return ['nginx', '-c', conf, '-p', dir];
}
