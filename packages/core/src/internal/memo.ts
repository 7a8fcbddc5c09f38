/**
 * `fn` memoized per string argument, for the few values every request repeats (the callers'
 * SPIFFE IDs). At most `maxEntries` kept (forgotten all at once when full); arguments longer than
 * `maxKeyLength` are computed each time and never kept.
 */
export function memoizeByString<T>(fn: (key: string) => T, { maxEntries = 1000, maxKeyLength = 2048 } = {}): (key: string) => T {
  const values = new Map<string, T>()
  return (key) => {
    if (key.length > maxKeyLength) return fn(key)
    if (values.has(key)) return values.get(key)!
    const value = fn(key)
    if (values.size >= maxEntries) values.clear()
    values.set(key, value)
    return value
  }
}
