/**
 * The one error family of Callsign. Every refusal is an {@link AuthError} with a stable
 * `code`; {@link toHttpResponse} (in `http-mapping.ts`) turns it into status, challenge and
 * an RFC 9457 problem body. Messages are fixed strings: they never contain tokens, claims
 * or certificate contents. Detail for logs goes in `cause`.
 */

/** Stable machine-readable codes. Switch on these, never on messages. */
export type AuthErrorCode =
  /** No usable credentials: 401 with a bare `Bearer` challenge. */
  | 'credentials_missing'
  /** Malformed request (several Authorization headers, token in the query, bad syntax): 400. */
  | 'invalid_request'
  /** Bad signature, expired, wrong issuer/audience/type, unbound: 401 `invalid_token`. */
  | 'invalid_token'
  /** `mtls: 'required'` and the connection carries no client certificate: 401. */
  | 'mtls_required'
  /** A client certificate was presented but the TLS socket did not authorize it, or it is no valid SVID: 401. */
  | 'peer_unauthorized'
  /** The token lacks a scope the route requires: 403 `insufficient_scope`. */
  | 'insufficient_scope'
  /** The calling service is not allowed on this route or not in the `callers` map: 403. */
  | 'caller_forbidden'
  /** The calling service's allowance (`callers`) does not cover a required scope: 403. */
  | 'caller_scope_exceeded'
  /** The route requires (or forbids) a call on behalf of a user: 403. */
  | 'on_behalf_of_required'
  | 'on_behalf_of_forbidden'
  /** The issuer's keys cannot be fetched and nothing usable is cached: 503 with `Retry-After`. */
  | 'keys_unavailable'
  /** A DPoP proof is missing, malformed, or fails an RFC 9449 §4.3 check: 401 `DPoP error="invalid_dpop_proof"`. */
  | 'invalid_dpop_proof'
  /** The proof lacks a current server nonce (RFC 9449 §8): 401 `DPoP error="use_dpop_nonce"` with a `DPoP-Nonce`. */
  | 'use_dpop_nonce'
  /** The DPoP replay store cannot answer; the proof is not accepted unchecked: 503 with `Retry-After`. */
  | 'replay_store_unavailable'
  /** The revocation check (`revocation.isRevoked` hook or store) failed or timed out: 503 with `Retry-After`. */
  | 'revocation_unavailable'
  /** The RFC 7662 introspection endpoint failed, timed out or gave no valid answer: 503 with `Retry-After`. */
  | 'introspection_unavailable'

/** Which identity a 403 is about: the calling service, or the user it acts for. */
export type AuthSide = 'caller' | 'user'

export interface AuthErrorInit {
  /** Which side of a two-sided decision failed (403 only). */
  side?: AuthSide
  /** Scopes the route requires, echoed in the `insufficient_scope` challenge. */
  scope?: readonly string[]
  /** Seconds before a retry can succeed (503). */
  retryAfterSeconds?: number
  /** Internal detail for logs; never sent to the client. */
  cause?: unknown
}

const STATUS: Record<AuthErrorCode, number> = {
  credentials_missing: 401,
  invalid_request: 400,
  invalid_token: 401,
  mtls_required: 401,
  peer_unauthorized: 401,
  insufficient_scope: 403,
  caller_forbidden: 403,
  caller_scope_exceeded: 403,
  on_behalf_of_required: 403,
  on_behalf_of_forbidden: 403,
  keys_unavailable: 503,
  invalid_dpop_proof: 401,
  use_dpop_nonce: 401,
  replay_store_unavailable: 503,
  revocation_unavailable: 503,
  introspection_unavailable: 503,
}

/**
 * A refused request. `status`, `headers` and `expose` follow the convention the default error
 * handlers of Express, Fastify and Koa honour, so an adapter may forward it unchanged.
 *
 * @example
 * try { await guard.authenticate(req) } catch (err) {
 *   if (err instanceof AuthError && err.code === 'keys_unavailable') metrics.idpDown.inc()
 * }
 */
export class AuthError extends Error {
  override readonly name = 'AuthError'
  readonly code: AuthErrorCode
  readonly status: number
  /** The `WWW-Authenticate` (and `Retry-After`) headers, filled in by the guard that raised it. */
  headers: Record<string, string> = {}
  /** Always true: the message is safe to show to clients. */
  readonly expose = true
  readonly side: AuthSide | undefined
  readonly scope: readonly string[] | undefined
  readonly retryAfterSeconds: number | undefined

  constructor(code: AuthErrorCode, description: string, init: AuthErrorInit = {}) {
    super(description, init.cause === undefined ? undefined : { cause: init.cause })
    this.code = code
    this.status = STATUS[code]
    this.side = init.side
    this.scope = init.scope
    this.retryAfterSeconds = init.retryAfterSeconds
  }

  /** Alias of `status` for frameworks that read `statusCode` (Fastify). */
  get statusCode(): number {
    return this.status
  }
}

/** Shorthands used across core; each message is a fixed, client-safe string. */
export const invalidToken = (description: string, cause?: unknown): AuthError =>
  new AuthError('invalid_token', description, cause === undefined ? {} : { cause })

export const invalidRequest = (description: string): AuthError => new AuthError('invalid_request', description)
