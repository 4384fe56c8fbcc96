/** Errors of the inventory layer; the HTTP layer maps them to problem+json (400 / 409). */
export type FieldError = { path: string; message: string };

/** A value is wrong (400); `errors` name each offending field. */
export class InvalidError extends Error {
  constructor(
    message: string,
    readonly errors: FieldError[] = [],
  ) {
    super(message);
  }
}

/** The request is valid but clashes with the inventory's state (409): in use, locked, renamed key. */
export class StateConflictError extends Error {
  constructor(
    message: string,
    readonly errors: FieldError[] = [],
  ) {
    super(message);
  }
}
