/**
 * Option checks for the test kit, like core's: a misspelled option (`jkt` for `dpopJkt`) throws a
 * `TypeError` naming it and the known ones, instead of being ignored and silently giving a test
 * something other than what it asked for (an unbound token).
 */

/**
 * The option names of `T`, checked by the compiler: only keys of `T`, and every one of them (a
 * new option that is not listed fails to compile).
 *
 * @example
 * ```ts
 * const SIGN_OPTIONS = optionNames<SignOptions>()(['alg', 'kid']); // compile error: missing keys
 * ```
 */
export function optionNames<T>() {
  return <const K extends readonly (keyof T & string)[]>(
    names: K,
    ...complete: [Exclude<keyof T, K[number]>] extends [never] ? [] : [missing: Exclude<keyof T, K[number]>]
  ): K => {
    void complete
    return names
  }
}

/**
 * Throws a `TypeError` when `options` is not an object (or `undefined`) or has a key that is not
 * one of `names`: `signAccessToken: unknown option "jkt" (did you mean "dpopJkt"?; known: ...)`.
 */
export function checkOptions(where: string, options: unknown, names: readonly string[]): void {
  if (options === undefined) return
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(`${where}: options must be an object`)
  }
  for (const key of Object.keys(options)) {
    if (names.includes(key)) continue
    const guess = closest(key, names)
    throw new TypeError(
      `${where}: unknown option ${JSON.stringify(key)}${guess ? ` (did you mean ${JSON.stringify(guess)}?)` : ''}; known: ${names.join(', ')}`,
    )
  }
}

/** The known name `key` was most likely meant to be: one containing it (or contained in it), else one within two edits. */
function closest(key: string, names: readonly string[]): string | undefined {
  const lower = key.toLowerCase()
  const containing = names.find((name) => name.toLowerCase().includes(lower) || lower.includes(name.toLowerCase()))
  if (containing) return containing
  let best: string | undefined
  let bestDistance = 3
  for (const name of names) {
    const distance = editDistance(lower, name.toLowerCase())
    if (distance < bestDistance) [best, bestDistance] = [name, distance]
  }
  return best
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j)
  for (let i = 1; i <= a.length; i++) {
    const current = [i]
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
    previous = current
  }
  return previous[b.length]!
}
