import { z } from 'zod';
import { Name } from './common.js';

export const Template = z.strictObject({
  id: Name,
  contents: z.string().max(1_000_000),
  description: z.string().max(4096).default(''),
});
export type Template = z.infer<typeof Template>;
