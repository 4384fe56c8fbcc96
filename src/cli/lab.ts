// `plinth lab ...`: src/lab parses its own arguments and drives the API with the CLI's client (endpoint, token
// and trust as for every command).
import { LAB_USAGE, runLab } from '../lab/cli.js';
import type { LabApi } from '../lab/lab.js';
import type { Client } from './client.js';
import type { CliContext } from './context.js';

function labApi(client: Client): LabApi {
  return {
    json: async (method, path, body, contentType) => {
      const r = await client.request(method, path.replace(/^\/api\/v1/, ''), {
        body,
        contentType,
        allow: [400, 401, 403, 404, 409, 412, 500, 503],
      });
      return { status: r.status, body: r.body };
    },
  };
}

export async function runLabCommand(args: string[], ctx: CliContext): Promise<number> {
  if (args[0] === '-h' || args[0] === '--help') {
    ctx.io.out(`${LAB_USAGE}\n`);
    return 0;
  }
  return runLab(args, labApi(ctx.client), { write: ctx.io.out }, { write: ctx.io.err });
}
