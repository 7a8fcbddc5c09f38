import { createHash } from 'node:crypto'
import type { AccessTokenClaims, VerifiedToken } from './access-token.js'
import type { EnvironmentConfig } from './environment.js'
import { AuthError, invalidToken } from './errors.js'
import { withTimeout } from './internal/with-timeout.js'
import { checkKeys, fail, isPlainObject, optionKeys, positive } from './internal/validate.js'
import { MemoryReplayStore, type RevocationStore } from './replay-store.js'

/** An application's own revocation check: true when the token is revoked. */
export type RevocationHook = (claims: AccessTokenClaims, context: { issuer: string }) => boolean | Promise<boolean>

/**
 * Revocation before expiry: a `jti` denylist (`store`, default a process-local one) filled with
 * `guard.revoke(...)`, and/or an `isRevoked(claims)` hook, answering within `timeoutMs` (default 500).
 */
export interface RevocationOptions {
  store?: RevocationStore
  isRevoked?: RevocationHook
  timeoutMs?: number
}

export interface ResolvedRevocation {
  store: RevocationStore
  isRevoked: RevocationHook | undefined
  timeoutMs: number
}

/** What the revocation check and `revoke()` read: the option, the clock and its tolerance. */
export type RevocationConfig = { revocation: ResolvedRevocation | undefined } & Pick<EnvironmentConfig, 'now' | 'clockToleranceSeconds'>

const REVOCATION_KEYS = optionKeys<RevocationOptions>()(['store', 'isRevoked', 'timeoutMs'])

/** The `revocation` option; `undefined` when absent (no check, no cost). */
export function resolveRevocation(value: unknown, storeClock?: () => number): ResolvedRevocation | undefined {
  if (value === undefined) return undefined
  if (!isPlainObject(value)) return fail('revocation', 'must be an object { store?, isRevoked?, timeoutMs? }')
  checkKeys(value, REVOCATION_KEYS, 'revocation')
  const store = value.store as RevocationStore | undefined
  if (store !== undefined && (typeof store !== 'object' || store === null || typeof store.revoke !== 'function' || typeof store.isRevoked !== 'function')) {
    fail('revocation.store', 'must implement revoke(key, ttlSeconds) and isRevoked(key)')
  }
  if (value.isRevoked !== undefined && typeof value.isRevoked !== 'function')
    fail('revocation.isRevoked', 'must be a function (claims, context) => boolean | Promise<boolean>')
  return Object.freeze({
    store: store ?? new MemoryReplayStore(storeClock ? { now: storeClock } : {}),
    isRevoked: value.isRevoked as RevocationHook | undefined,
    timeoutMs: positive(value.timeoutMs, 'revocation.timeoutMs', 500, { max: 30_000 }),
  })
}

/** Denylist key of a token: its issuer and `jti`, hashed (bounded size, nothing readable stored). */
export const revocationKey = (issuer: string, jti: string): string =>
  createHash('sha256').update('callsign-revoked\0').update(issuer).update('\0').update(jti).digest('base64url')

/** What `guard.revoke()` needs: the token's issuer, `jti` and `exp` (an auth context's `claims` fit). */
export type RevocableToken = Pick<AccessTokenClaims, 'iss' | 'exp'> & { jti?: string }

/**
 * Refuse a revoked token: its `jti` in the denylist, or the `isRevoked` hook says so (401
 * `invalid_token`). A store or hook that fails or is too slow answers 503, never acceptance.
 * Tokens without `jti` can only be revoked by the hook.
 */
export async function checkRevocation(token: VerifiedToken, config: Pick<RevocationConfig, 'revocation'>): Promise<void> {
  const revocation = config.revocation
  if (!revocation) return
  let revoked: boolean
  try {
    const checks: Array<Promise<boolean>> = []
    const jti = token.claims.jti
    if (typeof jti === 'string') checks.push(Promise.resolve(revocation.store.isRevoked(revocationKey(token.issuer.issuer, jti))))
    if (revocation.isRevoked) checks.push(Promise.resolve(revocation.isRevoked(token.claims, { issuer: token.issuer.issuer })))
    if (checks.length === 0) return
    const ms = revocation.timeoutMs
    revoked = (await withTimeout(() => Promise.all(checks), ms, `revocation check did not answer within ${ms} ms`)).some(Boolean)
  } catch (error) {
    throw new AuthError('revocation_unavailable', 'the revocation check is temporarily unavailable', { retryAfterSeconds: 1, cause: error, check: 'signature' })
  }
  if (revoked) throw invalidToken('token has been revoked', 'claims')
}

/** Add a token to the denylist until its `exp` (plus the clock tolerance). */
export async function revokeToken(token: RevocableToken, config: RevocationConfig): Promise<void> {
  const revocation = config.revocation
  if (!revocation) throw new TypeError('Callsign: revoke() needs the "revocation" option')
  if (typeof token.iss !== 'string' || typeof token.jti !== 'string' || typeof token.exp !== 'number') {
    throw new TypeError("Callsign: revoke() needs the token's iss, jti and exp")
  }
  const ttlSeconds = token.exp - config.now() / 1000 + config.clockToleranceSeconds
  if (ttlSeconds <= 0) return
  await revocation.store.revoke(revocationKey(token.iss, token.jti), ttlSeconds)
}
