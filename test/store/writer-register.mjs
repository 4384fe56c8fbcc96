// Runs writer-child.ts the way bin/plinth.js runs Plinth: tsx's loader registered by its API, no --import flag,
// so a worker thread gets no TypeScript loader.
import { register } from 'tsx/esm/api';

register();
await import('./writer-child.ts');
