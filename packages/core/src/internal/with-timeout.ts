/**
 * Settle with `promise`, or reject with `Error(message)` after `ms` milliseconds, whichever comes
 * first; the timer never outlives the race. A synchronous throw inside `start` becomes a rejection.
 */
export function withTimeout<T>(start: () => T | Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms)
  })
  return Promise.race([new Promise<T>((resolve) => resolve(start())), timeout]).finally(() => clearTimeout(timer))
}
