import type { EnvironmentConfig } from './environment.js'
import type { IssuerConfig } from './issuers.js'
import { checkKeys, fail, isPlainObject, optionKeys, positive } from './internal/validate.js'

/** Tuning of metadata discovery and JWKS fetching. All durations in seconds. */
export interface JwksOptions {
  /** Keys are refreshed (in the background) after this long. Default 600. */
  cacheMaxAgeSeconds?: number
  /** An unknown `kid` triggers at most one refetch per this period, per issuer. Default 30. */
  cooldownSeconds?: number
  /** After a failed fetch, no new attempt for this long (requests get 503 with `Retry-After` meanwhile). Default 5. */
  failureBackoffSeconds?: number
  /** Keep serving cached keys this long past `cacheMaxAgeSeconds` while the issuer is unreachable. Default 86400 (a day). */
  maxStaleSeconds?: number
  /** Timeout for one metadata or JWKS fetch, body included. Default 5. */
  timeoutSeconds?: number
  /** Largest metadata or JWKS document accepted. Default 262144 (256 KiB). */
  maxBytes?: number
  /** Largest number of keys read from one JWKS. Default 50. */
  maxKeys?: number
}

export type ResolvedJwksOptions = Readonly<Required<JwksOptions>>

/** What issuer key sets (`IssuerKeys`) read: the issuers, the tuning, and fetch, clock and logger. */
export type KeySourceConfig = Pick<IssuerConfig, 'issuers'> & Pick<EnvironmentConfig, 'fetch' | 'now' | 'logger'> & { jwks: ResolvedJwksOptions }

const JWKS_KEYS = optionKeys<JwksOptions>()([
  'cacheMaxAgeSeconds',
  'cooldownSeconds',
  'failureBackoffSeconds',
  'maxStaleSeconds',
  'timeoutSeconds',
  'maxBytes',
  'maxKeys',
])

/** The `jwks` option with its defaults. */
export function resolveJwksOptions(value: unknown): ResolvedJwksOptions {
  const input = (value ?? {}) as Record<string, unknown>
  if (!isPlainObject(input)) return fail('jwks', 'must be an object')
  checkKeys(input, JWKS_KEYS, 'jwks')
  return Object.freeze({
    cacheMaxAgeSeconds: positive(input.cacheMaxAgeSeconds, 'jwks.cacheMaxAgeSeconds', 600),
    cooldownSeconds: positive(input.cooldownSeconds, 'jwks.cooldownSeconds', 30, { allowZero: true }),
    failureBackoffSeconds: positive(input.failureBackoffSeconds, 'jwks.failureBackoffSeconds', 5, { allowZero: true }),
    maxStaleSeconds: positive(input.maxStaleSeconds, 'jwks.maxStaleSeconds', 86_400, { allowZero: true }),
    timeoutSeconds: positive(input.timeoutSeconds, 'jwks.timeoutSeconds', 5, { max: 60 }),
    maxBytes: positive(input.maxBytes, 'jwks.maxBytes', 256 * 1024, { integer: true, max: 16 * 1024 * 1024 }),
    maxKeys: positive(input.maxKeys, 'jwks.maxKeys', 50, { integer: true, max: 1000 }),
  })
}
