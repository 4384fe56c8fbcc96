import type { z } from 'zod';
import type { BootEnvTemplate } from '../model/bootenv.js';
import { validateIgnition } from './config-ignition.js';
import { validateCloudConfig, validateMetaData, validateNetworkConfig } from './config-nocloud.js';
import { validateTalos } from './config-talos.js';

/**
 * What a bootenv template renders, when it is a machine's first-boot configuration: its rendered text is checked
 * against that format before it is served (src/provision/boot-render.ts), so a broken template is a render error in
 * the boot timeline and not a machine that boots unconfigured. `raw` (the default) is served as rendered.
 */
export type TemplateKind = NonNullable<z.infer<typeof BootEnvTemplate>['kind']>;

const VALIDATORS: Record<TemplateKind, ((text: string) => string[]) | undefined> = {
  raw: undefined,
  ignition: validateIgnition,
  'cloud-config': validateCloudConfig,
  'meta-data': validateMetaData,
  'network-config': validateNetworkConfig,
  talos: validateTalos,
};

/** Problems with `text` as a `kind` config (at most 10, each naming where); empty when it is valid or raw. */
export function validateConfig(kind: TemplateKind | undefined, text: string): string[] {
  const check = VALIDATORS[kind ?? 'raw'];
  return check ? check(text).slice(0, 10) : [];
}
