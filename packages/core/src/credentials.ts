import { COMPACT_JWS } from './access-token.js'
import { AuthError, invalidRequest } from './errors.js'
import { headerValues, type AuthRequest } from './request.js'

/**
 * The credentials a request carries. `compact` is true when the token is shaped as a JWS compact
 * serialization (three strict base64url segments, `COMPACT_JWS`), checked here once for the verifier.
 */
export type Credentials =
  | { scheme: 'bearer'; token: string; compact: boolean }
  /** RFC 9449 §7.1: `Authorization: DPoP <token>` with exactly one `DPoP` proof header. */
  | { scheme: 'dpop'; token: string; compact: boolean; proof: string }

// RFC 6750 §2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/
// RFC 9110 §11.1: auth-scheme = token
const SCHEME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
/** Upper bound on an access token; Node refuses headers above 16 KiB anyway. */
export const MAX_TOKEN_LENGTH = 12 * 1024

/**
 * Read the access token from the `Authorization` header (RFC 6750 §2.1), refusing ambiguity:
 * several `Authorization` headers, a token in the query string (RFC 6750 §2.3, which we do not
 * accept: URIs end up in logs) or in a parsed body next to the header, a malformed value.
 *
 * Returns `undefined` when the request has no credentials for a scheme Callsign accepts.
 * Schemes are case-insensitive (RFC 9110 §11.1): `bearer` and `BEARER` are `Bearer`.
 * `known(token)` true skips the token's character check: a token the guard has already verified (a JWS).
 */
export function readCredentials(request: AuthRequest, acceptDpop = true, known?: (token: string) => boolean): Credentials | undefined {
  const values = headerValues(request, 'authorization')
  if (values.length > 1) throw invalidRequest('more than one Authorization header', 'credentials')
  if (hasQueryToken(request.originalUrl ?? request.url)) {
    throw invalidRequest('access tokens are not accepted in the query string', 'credentials')
  }
  if (hasBodyToken(request.body)) throw invalidRequest('access tokens are not accepted in the request body', 'credentials')
  const header = values[0]
  if (header === undefined) return undefined
  const value = header.trim()
  if (value.length === 0) throw invalidRequest('empty Authorization header', 'credentials')
  const space = value.indexOf(' ')
  const scheme = space === -1 ? value : value.slice(0, space)
  if (!SCHEME.test(scheme)) throw invalidRequest('malformed Authorization header', 'credentials')
  const lower = scheme.toLowerCase()
  if (lower !== 'bearer' && !(lower === 'dpop' && acceptDpop)) {
    // Another scheme (Basic, ...) carries no credentials this guard accepts.
    throw new AuthError(
      'credentials_missing',
      `the ${scheme.length <= 16 ? scheme.replace(/[^A-Za-z0-9-]/g, '') : 'given'} authorization scheme is not accepted`,
      { check: 'credentials' },
    )
  }
  const name = lower === 'bearer' ? 'Bearer' : 'DPoP'
  const token = space === -1 ? '' : value.slice(space + 1).replace(/^ +/, '')
  if (token.length === 0) throw invalidRequest(`${name} token missing`, 'credentials')
  if (token.length > MAX_TOKEN_LENGTH) throw invalidRequest(`${name} token too large`, 'credentials')
  // One pass over the token: a JWS (what a cached token is) is also a b64token.
  const compact = (known?.(token) ?? false) || COMPACT_JWS.test(token)
  if (!compact && !B64TOKEN.test(token)) throw invalidRequest(`malformed ${name} token`, 'credentials')
  if (lower === 'bearer') return { scheme: 'bearer', token, compact }
  // RFC 9449 §4.3 check 1: exactly one DPoP header (Node would join duplicates with ", ").
  const proofs = headerValues(request, 'dpop')
  if (proofs.length === 0) throw new AuthError('invalid_dpop_proof', 'DPoP proof missing', { check: 'binding' })
  if (proofs.length > 1) throw new AuthError('invalid_dpop_proof', 'more than one DPoP header', { check: 'binding' })
  return { scheme: 'dpop', token, compact, proof: proofs[0]!.trim() }
}

function hasQueryToken(url: string | undefined): boolean {
  if (!url) return false
  const q = url.indexOf('?')
  if (q === -1) return false
  const hash = url.indexOf('#', q)
  const query = url.slice(q + 1, hash === -1 ? undefined : hash)
  if (!query.includes('access') && !query.includes('%')) return false
  try {
    return new URLSearchParams(query).has('access_token')
  } catch {
    return true
  }
}

function hasBodyToken(body: unknown): boolean {
  return typeof body === 'object' && body !== null && !Buffer.isBuffer(body) && Object.hasOwn(body, 'access_token')
}
