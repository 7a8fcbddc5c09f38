import { createHash } from 'node:crypto'
import type { AccessTokenClaims, VerifiedToken } from './access-token.js'
import { AuthError, invalidToken } from './errors.js'
import { withTimeout } from './internal/with-timeout.js'
import type { ResolvedConfig } from './options.js'

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
export async function checkRevocation(token: VerifiedToken, config: ResolvedConfig): Promise<void> {
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
    throw new AuthError('revocation_unavailable', 'the revocation check is temporarily unavailable', { retryAfterSeconds: 1, cause: error })
  }
  if (revoked) throw invalidToken('token has been revoked')
}

/** Add a token to the denylist until its `exp` (plus the clock tolerance). */
export async function revokeToken(token: RevocableToken, config: ResolvedConfig): Promise<void> {
  const revocation = config.revocation
  if (!revocation) throw new TypeError('Callsign: revoke() needs the "revocation" option')
  if (typeof token.iss !== 'string' || typeof token.jti !== 'string' || typeof token.exp !== 'number') {
    throw new TypeError('Callsign: revoke() needs the token\'s iss, jti and exp')
  }
  const ttlSeconds = token.exp - config.now() / 1000 + config.clockToleranceSeconds
  if (ttlSeconds <= 0) return
  await revocation.store.revoke(revocationKey(token.iss, token.jti), ttlSeconds)
}
