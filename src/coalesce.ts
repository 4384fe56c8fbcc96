/**
 * Runs `task` again after a burst of triggers, never two at once and never losing the last trigger: a call while
 * a run is in flight schedules exactly one more run after it. For reloads driven by bus events (an API script
 * that writes 100 subnets causes one or two reloads, not 100). `settled` waits for the run in flight, if any.
 */
export function coalesced(
  task: () => Promise<void>,
  onError: (err: unknown) => void,
): { trigger: () => void; settled: () => Promise<void> } {
  let pending: Promise<void> | undefined;
  let again = false;
  const schedule = (): void => {
    if (pending) {
      again = true;
      return;
    }
    pending = task()
      .catch(onError)
      .finally(() => {
        pending = undefined;
        if (again) {
          again = false;
          schedule();
        }
      });
  };
  return { trigger: schedule, settled: async () => void (await pending) };
}
