/** A template could not be rendered: `message` names the template (and line) and says what is wrong. */
export class RenderError extends Error {
  constructor(
    message: string,
    readonly template: string,
    readonly line?: number,
  ) {
    super(message);
  }
}

/** Every render worker is busy and the queue is full: a 503 (try again), not a broken template. */
export class RenderBusyError extends RenderError {}
