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

/**
 * How the call is sender-constrained. `bearer`: a token that is not. `dpop`: a DPoP-bound token
 * with its proof. `mtls`: a certificate-bound token presented with its certificate, or a call
 * authenticated by its client certificate alone (`credential: 'certificate'`).
 */
export type TokenBinding = 'bearer' | 'dpop' | 'mtls'

/** What every auth context says: who is calling, for whom, with what. */
interface AuthContextBase {
  /** The calling service. */
  caller: CallerIdentity
  /** Present only when the call is made on behalf of a user; `sub` is the token's subject. */
  user?: { sub: string }
  /**
   * The token's scopes (for an on-behalf-of token, the user's delegated scopes); for a call with
   * `credential: 'certificate'`, the scopes `certificateGrants` gives the caller.
   */
  scopes: string[]
  /** Delegation chain from nested `act` (RFC 8693 §4.1), nearest caller first. */
  actors: string[]
  binding: TokenBinding
  /** The authorized TLS client certificate, when there is one. */
  peer?: PeerCertificate
}

/** A call that carried an access token (verified, or introspected). */
export interface TokenAuthContext extends AuthContextBase {
  credential: 'token'
  /** The configured issuer that issued the token. */
  issuer: string
  claims: AccessTokenClaims
}

/** A call without a token, authenticated by its client certificate alone (`certificateGrants`). */
export interface CertificateAuthContext extends AuthContextBase {
  credential: 'certificate'
  binding: 'mtls'
  peer: PeerCertificate
  issuer?: undefined
  claims?: undefined
}

/**
 * Who is calling, for whom, with what: `req.auth`, `request.auth`, `ctx.state.auth`. Narrow on
 * `credential` to read the token: `if (auth.credential === 'token') auth.claims.sub`.
 */
export type AuthContext = TokenAuthContext | CertificateAuthContext

/**
 * A call on behalf of a user: what a rule with `onBehalfOf: 'required'` promises. Only a token
 * names a user, so `claims` can be read without narrowing on `credential`.
 */
export type UserAuthContext = TokenAuthContext & { user: { sub: string } }

/** A service-only call, with no user: what a rule with `onBehalfOf: 'forbidden'` promises. */
export type ServiceAuthContext = AuthContext & { user?: undefined }

/**
 * The auth context a rule promises, read from the rule's type: a {@link UserAuthContext} for
 * `onBehalfOf: 'required'`, a {@link ServiceAuthContext} for `'forbidden'`, otherwise an
 * {@link AuthContext}. Only a literal `onBehalfOf` narrows: a rule typed as `AuthRule` promises
 * an `AuthContext`. The adapters' `requireAuth(rule, handler)` and `getAuth(req, rule)` return it.
 *
 * @example
 * type PlaceOrder = AuthFor<{ scopes: ['orders:write']; onBehalfOf: 'required' }> // auth.user.sub: string
 */
export type AuthFor<R extends object> = R extends { onBehalfOf: 'required' }
  ? UserAuthContext
  : R extends { onBehalfOf: 'forbidden' }
    ? ServiceAuthContext
    : AuthContext

/** A presented access token, as {@link presentedToken} returns it. */
export interface PresentedToken {
  /** The token as the request carried it. */
  readonly value: string
  /** Its `exp` (seconds since the epoch), when it has one. */
  readonly expiresAt: number | undefined
}

// Beside the context, never on it: JSON, `util.inspect`, `structuredClone`, decision events and logs
// of the context cannot hold the token. Keyed by the verified token's claims object (one per
// verification, deeply frozen, shared by the contexts of every request that reuses the cached
// token), so a reused token adds no entry: a WeakMap entry per request costs ephemeron work in
// every scavenge (measured on the reused-token path, see bench/README.md).
const presented = new WeakMap<object, PresentedToken>()

/**
 * The access token a verified request presented, for an RFC 8693 exchange by @callsign/client;
 * undefined for a certificate-only context.
 *
 * Pass the context as the adapter stored it (`req.auth`, `request.auth`, `ctx.state.auth`) or a
 * spread copy of it; a serialized copy (`structuredClone`, JSON) has no token. The token was
 * verified for this service's audience; forward it only through a token exchange, never as is.
 * @example
 * const token = presentedToken(req.auth) // { value, expiresAt } | undefined
 */
export function presentedToken(auth: AuthContext | null | undefined): PresentedToken | undefined {
  const claims = auth?.claims
  return claims ? presented.get(claims) : undefined
}

/** The caller a peer certificate names: its SPIFFE ID, proven by TLS or forwarded by a trusted proxy. */
function peerCaller(peer: PeerCertificate & { spiffeId: string }): CallerIdentity {
  return { id: peer.spiffeId, source: peer.verification === undefined || peer.verification === 'tls' ? 'mtls' : 'forwarded' }
}

/** The calling client a token names: its nearest actor (`act.sub`), else `client_id`, `azp`, then `sub`. */
export function tokenCaller(token: VerifiedToken): string | undefined {
  const { claims } = token
  return token.actors[0] ?? claims.client_id ?? claims.azp ?? claims.sub
}

/**
 * The auth context of a call without a token, authenticated by its client certificate alone
 * (`certificateGrants`): the certificate's SPIFFE ID is the caller, with the granted scopes.
 */
export function certificateAuthContext(peer: PeerCertificate & { spiffeId: string }, scopes: Iterable<string>): CertificateAuthContext {
  return {
    caller: peerCaller(peer),
    scopes: [...scopes],
    actors: [],
    binding: 'mtls',
    peer,
    credential: 'certificate',
  }
}

/**
 * Build the two identities of a call. The caller is the SPIFFE ID of an authorized peer
 * certificate when there is one; otherwise the token's nearest actor (`act.sub`), then
 * `client_id` (RFC 9068 §2.2), then `azp`, then `sub`. A user is present when the token names an
 * actor or a `client_id` different from `sub`; the user is then the token's `sub`. `value`, the
 * token as presented, is kept for {@link presentedToken}.
 */
export function toAuthContext(token: VerifiedToken, peer: PeerCertificate | undefined, binding: TokenBinding, value?: string): TokenAuthContext {
  const { claims } = token
  const named = tokenCaller(token)
  let caller: CallerIdentity
  if (peer?.spiffeId !== undefined) caller = peerCaller(peer as PeerCertificate & { spiffeId: string })
  else if (named !== undefined) caller = { id: named, source: 'token' }
  else throw invalidToken('token names no calling client', 'claims')
  // A token without `sub` (some client-credentials tokens) is the client acting for itself.
  const onBehalf = claims.act !== undefined || (claims.client_id !== undefined && claims.sub !== undefined && claims.client_id !== claims.sub)
  if (onBehalf && claims.sub === undefined) throw invalidToken('on-behalf-of token names no subject', 'claims')
  const auth: TokenAuthContext = {
    caller,
    ...(onBehalf ? { user: { sub: claims.sub! } } : {}),
    scopes: token.scopes,
    actors: token.actors,
    binding,
    ...(peer ? { peer } : {}),
    credential: 'token',
    issuer: token.issuer.issuer,
    claims,
  }
  if (value !== undefined && !presented.has(claims))
    presented.set(claims, Object.freeze({ value, expiresAt: typeof claims.exp === 'number' ? claims.exp : undefined }))
  return auth
}
