import { readFileSync } from 'node:fs'

/**
 * Option validation, shared by every feature's resolver: each helper throws the `TypeError` that
 * names the option and the fix (`Callsign: "dpop.maxProofAgeSeconds" must be ...`).
 */

/** Throw the startup error for `option`. */
export const fail = (option: string, message: string): never => {
  throw new TypeError(`Callsign: "${option}" ${message}`)
}

/** An object that is neither `null` nor an array (options, JSON objects, claims). */
export const isPlainObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)

/** Refuse a member of `value` that `allowed` does not name (a typo would otherwise be ignored silently). */
export function checkKeys(value: Record<string, unknown>, allowed: readonly string[], option: string): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) fail(`${option}.${key}`, `is not a known option (known: ${allowed.join(', ')})`)
  }
}

/** Every key of `T` that `Keys` does not list; `never` when it lists them all. */
type Unlisted<T, Keys extends readonly unknown[]> = Exclude<keyof T, Keys[number]>

/**
 * The option names of `T` for {@link checkKeys}, checked by the compiler both ways: each name is
 * a key of `T`, and each key of `T` is listed (a forgotten one is a type error that names it).
 * @example const DELEGATION_KEYS = optionKeys<DelegationOptions>()(['maxDepth', 'actors', 'hops'])
 */
export const optionKeys =
  <T>() =>
  <const Keys extends readonly (keyof T & string)[]>(keys: Keys & ([Unlisted<T, Keys>] extends [never] ? unknown : { unlisted: Unlisted<T, Keys> })): Keys =>
    keys

/** `value` when it is one of `allowed`, `fallback` when absent. */
export function oneOf<T extends string>(value: unknown, option: string, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback
  if (!allowed.includes(value as T)) fail(option, `must be one of ${allowed.map((v) => `'${v}'`).join(', ')} (got ${JSON.stringify(value)})`)
  return value as T
}

/** A finite number > 0 (or >= 0 with `allowZero`), at most `max`, whole with `integer`; `fallback` when absent. */
export function positive(value: unknown, option: string, fallback: number, { integer = false, max = Infinity, allowZero = false } = {}): number {
  if (value === undefined) return fallback
  if (
    typeof value !== 'number' ||
    !Number.isFinite(value) ||
    value < 0 ||
    (!allowZero && value === 0) ||
    value > max ||
    (integer && !Number.isInteger(value))
  ) {
    fail(
      option,
      `must be a ${integer ? 'whole' : ''}${integer ? ' ' : ''}number ${allowZero ? '>= 0' : '> 0'}${max === Infinity ? '' : ` and <= ${max}`} (got ${JSON.stringify(value)})`,
    )
  }
  return value as number
}

/** `undefined`, or a boolean; `hint` follows the message (`(false: dry run)`). */
export function optionalBoolean(value: unknown, option: string, hint = ''): boolean | undefined {
  if (value !== undefined && typeof value !== 'boolean') fail(option, `must be a boolean${hint}`)
  return value as boolean | undefined
}

/** A non-empty string or a non-empty array of non-empty strings, as an array. */
export function stringList(value: unknown, option: string): string[] {
  const list = typeof value === 'string' ? [value] : value
  if (!Array.isArray(list) || list.length === 0 || list.some((v) => typeof v !== 'string' || v.length === 0)) {
    return fail(option, 'must be a non-empty string or a non-empty array of non-empty strings')
  }
  return list as string[]
}

/** Validate scope names: no whitespace (RFC 6749 §3.3 scope-token). */
export function scopeList(value: unknown, option: string): string[] {
  if (!Array.isArray(value)) return fail(option, 'must be an array of scope strings')
  for (const scope of value) {
    if (typeof scope !== 'string' || !/^[\x21\x23-\x5b\x5d-\x7e]+$/.test(scope)) {
      fail(option, `contains an invalid scope ${JSON.stringify(scope)} (RFC 6749 scope-token: printable ASCII, no space, quote or backslash)`)
    }
  }
  return value as string[]
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]'])

/** `https:` URLs, or `http:` on loopback for development and benchmarks. */
export function parseSecureUrl(value: unknown, option: string): URL {
  if (typeof value !== 'string' || value.length === 0) return fail(option, 'must be a URL string')
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return fail(option, `is not a valid URL: ${JSON.stringify(value)}`)
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && LOOPBACK_HOSTS.has(url.hostname))) {
    fail(option, `must use https (http is allowed only on 127.0.0.1, localhost and [::1]): ${JSON.stringify(value)}`)
  }
  if (url.username || url.password) fail(option, 'must not contain credentials')
  if (url.hash) fail(option, 'must not contain a fragment')
  return url
}

/** A file an option names and Callsign watches: read at startup, then polled every `pollSeconds` (default 5). */
export interface FileOption {
  path: string
  pollSeconds?: number
}

const FILE_OPTION_KEYS = optionKeys<FileOption>()(['path', 'pollSeconds'])

/** True when `value` has the shape of a {@link FileOption} (a `path` string); its members are checked by {@link readFileOption}. */
export const isFileOption = (value: unknown): value is Record<string, unknown> & { path: string } => isPlainObject(value) && typeof value.path === 'string'

/**
 * A {@link FileOption} read now (UTF-8), its poll period checked (at most an hour). Throws naming
 * `option.path` when the file cannot be read.
 */
export function readFileOption(value: Record<string, unknown> & { path: string }, option: string): { text: string; path: string; pollSeconds: number } {
  checkKeys(value, FILE_OPTION_KEYS, option)
  let text: string
  try {
    text = readFileSync(value.path, 'utf8')
  } catch (error) {
    return fail(`${option}.path`, `cannot be read: ${(error as Error).message}`)
  }
  return { text, path: value.path, pollSeconds: positive(value.pollSeconds, `${option}.pollSeconds`, 5, { max: 3600 }) }
}
