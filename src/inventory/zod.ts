import type { z } from 'zod';
import type { FieldError } from '../model/errors.js';

/** zod issues as field errors: "macs.1", "os.name"; an unknown field is named, not reported on its parent. */
export function zodIssues(err: z.ZodError, prefix: PropertyKey[] = []): FieldError[] {
  const out: FieldError[] = [];
  for (const issue of err.issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const k of issue.keys)
        out.push({ path: [...prefix, ...issue.path, k].map(String).join('.'), message: `unknown field '${k}'` });
    } else {
      out.push({ path: [...prefix, ...issue.path].map(String).join('.'), message: issue.message });
    }
  }
  return out;
}
