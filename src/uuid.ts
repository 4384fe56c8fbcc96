/**
 * The shape of a uuid as Plinth's machine keys have it (z.uuid() on every write): 8-4-4-4-12 hex digits, either
 * case. One definition for the inventory's lookups, the event stream's `?machine=` and the CLI.
 */
const UUID_SHAPE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Whether `v` is uuid-shaped; the length is checked first, so most other strings cost one comparison. */
export const isUuid = (v: string | undefined): v is string => v !== undefined && v.length === 36 && UUID_SHAPE.test(v);
