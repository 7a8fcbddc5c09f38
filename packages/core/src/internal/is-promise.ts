/** True for a promise (or any thenable) rather than a value: the test of every sync-or-async path. */
export function isPromise<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | undefined)?.then === 'function'
}
