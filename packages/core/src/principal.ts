import type { AccessTokenClaims, VerifiedToken } from './access-token.js'
import { invalidToken } from './errors.js'
import type { PeerCertificate } from './peer-certificate.js'

/** The calling service. */
export interface CallerIdentity {
  /** SPIFFE ID from the peer certificate, or the token's `act.sub` / `client_id` / `azp` / `sub`. */
  id: string
  /**
   * `mtls`: proven by the TLS client certificate. `forwarded`: the client certificate (or, with
   * `trustProxyAssertions`, the identity) a trusted proxy forwarded. `token`: asserted by the token's issuer.
   */
  source: 'mtls' | 'forwarded' | 'token'
}

/** How the access token is sender-constrained. `bearer`: it is not. */
export type TokenBinding = 'bearer' | 'dpop' | 'mtls'

/**
 * Who is calling, for whom, with what: `req.auth`, `request.auth`, `ctx.state.auth`.
 */
export interface AuthContext {
  /** The calling service. */
  caller: CallerIdentity
  /** Present only when the call is made on behalf of a user; `sub` is the token's subject. */
  user?: { sub: string }
  /** The token's scopes (for an on-behalf-of token, the user's delegated scopes). */
  scopes: string[]
  /** Delegation chain from nested `act` (RFC 8693 §4.1), nearest caller first. */
  actors: string[]
  binding: TokenBinding
  /** The authorized TLS client certificate, when there is one. */
  peer?: PeerCertificate
  /** The configured issuer that issued the token. */
  issuer: string
  claims: AccessTokenClaims
}

/**
 * Build the two identities of a call. The caller is the SPIFFE ID of an authorized peer
 * certificate when there is one; otherwise the token's nearest actor (`act.sub`), then
 * `client_id` (RFC 9068 §2.2), then `azp`, then `sub`. A user is present when the token names an
 * actor or a `client_id` different from `sub`; the user is then the token's `sub`.
 */
export function toAuthContext(token: VerifiedToken, peer: PeerCertificate | undefined, binding: TokenBinding): AuthContext {
  const { claims } = token
  const tokenCaller = token.actors[0] ?? claims.client_id ?? claims.azp ?? claims.sub
  let caller: CallerIdentity
  if (peer?.spiffeId !== undefined) caller = { id: peer.spiffeId, source: peer.verification === undefined || peer.verification === 'tls' ? 'mtls' : 'forwarded' }
  else if (tokenCaller !== undefined) caller = { id: tokenCaller, source: 'token' }
  else throw invalidToken('token names no calling client')
  // A token without `sub` (some client-credentials tokens) is the client acting for itself.
  const onBehalf = claims.act !== undefined || (claims.client_id !== undefined && claims.sub !== undefined && claims.client_id !== claims.sub)
  if (onBehalf && claims.sub === undefined) throw invalidToken('on-behalf-of token names no subject')
  return {
    caller,
    ...(onBehalf ? { user: { sub: claims.sub! } } : {}),
    scopes: token.scopes,
    actors: token.actors,
    binding,
    ...(peer ? { peer } : {}),
    issuer: token.issuer.issuer,
    claims,
  }
}
