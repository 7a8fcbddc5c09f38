import { decodeJwt, decodeProtectedHeader, errors, jwtVerify, type JWTPayload } from 'jose'
import { invalidToken } from './errors.js'
import type { IssuerKeys } from './jwks.js'
import type { ResolvedConfig, ResolvedIssuer } from './options.js'

/** Nested actor claim of RFC 8693 §4.1. */
export interface ActorClaim {
  sub: string
  iss?: string
  act?: ActorClaim
  [claim: string]: unknown
}

/**
 * Claims of a verified access token (RFC 9068 §2.2). Extend it by declaration merging to type
 * your own claims:
 * ```ts
 * declare module '@callsign/core' { interface AccessTokenClaims { tenant?: string } }
 * ```
 */
export interface AccessTokenClaims extends JWTPayload {
  iss: string
  exp: number
  client_id?: string
  azp?: string
  scope?: string
  scp?: string | string[]
  permissions?: string[]
  act?: ActorClaim
  /** RFC 8693 §4.4: who may act for the subject. */
  may_act?: { sub: string; [claim: string]: unknown }
  cnf?: { jkt?: string; 'x5t#S256'?: string; [member: string]: unknown }
}

/** A verified access token with the values derived from it. */
export interface VerifiedToken {
  claims: AccessTokenClaims
  issuer: ResolvedIssuer
  scopes: string[]
  /** Delegation chain from nested `act`, nearest actor first. */
  actors: string[]
}

/** Deepest `act` nesting accepted (RFC 8693 chains are short in practice). */
export const MAX_ACTOR_DEPTH = 8
/** Most scopes read from one token. */
export const MAX_SCOPES = 256
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/

const normalizeTyp = (typ: string): string => typ.toLowerCase().replace(/^application\//, '')

/**
 * Verify an RFC 9068 JWT access token. Order matters: everything that needs no key (structure,
 * issuer, algorithm, `typ`) is checked before any key is fetched, so a forged header can never
 * cause network I/O; the issuer is chosen only among configured ones, by exact `iss`.
 *
 * Checked: JWS compact form (JWE refused), `crit` (jose refuses unknown ones), `alg` in the
 * allowlist (never `none`/`HS*`), `typ`, signature with the issuer's key for `kid`, `iss`, `aud`,
 * `exp` (required), `nbf`, `iat` (not in the future; `maxTokenAge` when set), claim types of
 * `sub`, `client_id`, `azp`, scopes, `act`, `cnf`.
 * Not checked here: sender constraint (binding), caller identity, authorization.
 */
export async function verifyAccessToken(token: string, config: ResolvedConfig, keys: IssuerKeys): Promise<VerifiedToken> {
  const parts = token.split('.')
  if (parts.length === 5) throw invalidToken('encrypted tokens are not accepted')
  if (parts.length !== 3 || parts.some((part) => part.length === 0)) throw invalidToken('malformed token')

  let header: ReturnType<typeof decodeProtectedHeader>
  let unverified: JWTPayload
  try {
    header = decodeProtectedHeader(token)
    unverified = decodeJwt(token)
  } catch (error) {
    throw invalidToken('malformed token', error)
  }
  const issuer = typeof unverified.iss === 'string' ? config.issuers.get(unverified.iss) : undefined
  if (!issuer) throw invalidToken('untrusted issuer')
  if (typeof header.alg !== 'string' || !issuer.algorithms.has(header.alg)) throw invalidToken('algorithm not allowed')
  if (header.kid !== undefined && (typeof header.kid !== 'string' || header.kid.length === 0 || header.kid.length > 256)) {
    throw invalidToken('malformed key id')
  }
  const typ = header.typ === undefined ? undefined : typeof header.typ === 'string' ? normalizeTyp(header.typ) : null
  const typOk = typ === 'at+jwt' || (issuer.typ === 'jwt' && (typ === undefined || typ === 'jwt'))
  if (!typOk) throw invalidToken('token type is not an access token')

  const key = await keys.getKey(issuer, { alg: header.alg, kid: header.kid })
  const now = config.now()
  let claims: AccessTokenClaims
  try {
    const result = await jwtVerify<AccessTokenClaims>(token, key, {
      issuer: issuer.issuer,
      audience: issuer.audience as string[],
      algorithms: [header.alg],
      clockTolerance: config.clockToleranceSeconds,
      currentDate: new Date(now),
      requiredClaims: ['exp'],
      ...(config.maxTokenAgeSeconds === undefined ? {} : { maxTokenAge: config.maxTokenAgeSeconds }),
    })
    claims = result.payload
  } catch (error) {
    throw invalidToken(describeJoseError(error), error)
  }
  const nowSeconds = now / 1000
  if (claims.iat !== undefined && claims.iat > nowSeconds + config.clockToleranceSeconds) {
    throw invalidToken('token issued in the future')
  }
  for (const claim of ['sub', 'client_id', 'azp'] as const) {
    const value = claims[claim]
    if (value !== undefined && (typeof value !== 'string' || value.length === 0)) throw invalidToken(`malformed ${claim} claim`)
  }
  if (claims.cnf !== undefined && (typeof claims.cnf !== 'object' || claims.cnf === null || Array.isArray(claims.cnf))) {
    throw invalidToken('malformed cnf claim')
  }
  return { claims, issuer, scopes: readScopes(claims, issuer), actors: readActors(claims.act) }
}

function describeJoseError(error: unknown): string {
  // jose reports an `iat` older than `maxTokenAge` as JWTExpired with claim 'iat'.
  if (error instanceof errors.JWTExpired) return error.claim === 'iat' ? 'token too old' : 'token expired'
  if (error instanceof errors.JWSSignatureVerificationFailed) return 'signature verification failed'
  if (error instanceof errors.JWTClaimValidationFailed) {
    switch (error.claim) {
      case 'aud':
        return 'token audience does not match'
      case 'iss':
        return 'untrusted issuer'
      case 'nbf':
        return 'token not yet valid'
      case 'iat':
        // With `maxTokenAge`, jose refuses an `iat` in the future as JWTClaimValidationFailed('iat', 'check_failed').
        return error.reason === 'check_failed' ? 'token issued in the future' : 'malformed iat claim'
      case 'exp':
        return 'token has no valid expiry'
      default:
        return `malformed ${error.claim.replace(/[^a-z_]/gi, '')} claim`
    }
  }
  return 'malformed token'
}

function readScopes(claims: AccessTokenClaims, issuer: ResolvedIssuer): string[] {
  const raw = claims[issuer.scopeClaim]
  if (raw === undefined) return []
  let scopes: unknown[]
  if (typeof raw === 'string') {
    if (raw.length > MAX_SCOPES * 128) throw invalidToken('scope claim too large')
    scopes = raw.split(' ').filter((s) => s.length > 0)
  } else if (Array.isArray(raw) && issuer.scopeClaim !== 'scope') {
    scopes = raw
  } else {
    throw invalidToken(`malformed ${issuer.scopeClaim} claim`)
  }
  if (scopes.length > MAX_SCOPES) throw invalidToken('too many scopes')
  for (const scope of scopes) {
    if (typeof scope !== 'string' || scope.length > 256 || !SCOPE_TOKEN.test(scope)) throw invalidToken(`malformed ${issuer.scopeClaim} claim`)
  }
  return [...new Set(scopes as string[])]
}

/** RFC 8693 §4.1: `act.sub` is the current actor; a nested `act` is an earlier one. */
function readActors(act: unknown): string[] {
  const actors: string[] = []
  let current = act
  while (current !== undefined) {
    if (typeof current !== 'object' || current === null || Array.isArray(current)) throw invalidToken('malformed act claim')
    const { sub, act: next } = current as { sub?: unknown; act?: unknown }
    if (typeof sub !== 'string' || sub.length === 0) throw invalidToken('malformed act claim')
    actors.push(sub)
    if (actors.length > MAX_ACTOR_DEPTH) throw invalidToken('delegation chain too deep')
    current = next
  }
  return actors
}
