/**
 * The CLI's failures and their exit codes, which scripts rely on: 1 when the API (or the network, or a digest
 * check) said no, 2 when the command line itself is wrong.
 */
export type FieldError = { path: string; message: string };

/** The command line is wrong: exit 2, with a hint at the help that shows the right one. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly help?: string,
  ) {
    super(message);
  }
}

/** The daemon answered with an error (problem+json), or could not be reached, or a check failed: exit 1. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status?: number,
    readonly errors: FieldError[] = [],
  ) {
    super(message);
  }
}

export const EXIT_OK = 0;
export const EXIT_API = 1;
export const EXIT_USAGE = 2;
