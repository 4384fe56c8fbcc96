#!/usr/bin/env node
// The `plinth` command: registers tsx's loader so the TypeScript sources run as they are, then starts main.
import { register } from 'tsx/esm/api';

register();
await import('../src/main.ts');
