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

/**
 * The check a refusal failed, named as `callsign explain` and decision events name it. Set where
 * the error is thrown, so a tool that explains a refusal never reads the message text.
 */
export type AuthCheck =
  'client certificate' | 'credentials' | 'header' | 'issuer' | 'audience' | 'time' | 'signature' | 'claims' | 'binding' | 'caller' | 'delegation' | 'rule'

/** Which identity a 403 is about: the calling service, or the user it acts for. */
export type AuthSide = 'caller' | 'user'

export interface AuthErrorInit {
  /** The check that failed; core always sets it. Default: the usual check of `code` (`claims` for `invalid_token`). */
  check?: AuthCheck
  /** Which side of a two-sided decision failed (403 only). */
  side?: AuthSide
  /** Scopes the route requires, echoed in the `insufficient_scope` challenge. */
  scope?: readonly string[]
  /** Seconds before a retry can succeed (503). */
  retryAfterSeconds?: number
  /** Internal detail for logs; never sent to the client. */
  cause?: unknown
}

/** The RFC 6750 §3.1 / RFC 9449 §7.1 `error` a challenge can carry. */
export type ChallengeError = 'invalid_request' | 'invalid_token' | 'insufficient_scope' | 'invalid_dpop_proof' | 'use_dpop_nonce'

/** How a code answers over HTTP: one row per code, every column filled. */
export interface CodeHttp {
  readonly status: 400 | 401 | 403 | 503
  /** The RFC 9457 problem `title`. */
  readonly title: string
  /** The `error` of the `WWW-Authenticate` challenge; `undefined`: a challenge without one (a 503 has none). */
  readonly challenge: ChallengeError | undefined
}

/**
 * The one table that decides HTTP: status, problem title and challenge error of every code.
 * Typed so that a new code does not compile until its row fills every column. It sits beside the
 * codes because `AuthError` takes its status from it; `http-mapping.ts` reads the other columns.
 */
export const HTTP_TABLE: { readonly [C in AuthErrorCode]: CodeHttp } = {
  credentials_missing: { status: 401, title: 'Authentication required', challenge: undefined },
  invalid_request: { status: 400, title: 'Malformed authentication request', challenge: 'invalid_request' },
  invalid_token: { status: 401, title: 'Invalid access token', challenge: 'invalid_token' },
  mtls_required: { status: 401, title: 'Client certificate required', challenge: undefined },
  peer_unauthorized: { status: 401, title: 'Client certificate not accepted', challenge: undefined },
  insufficient_scope: { status: 403, title: 'Insufficient scope', challenge: 'insufficient_scope' },
  caller_forbidden: { status: 403, title: 'Calling service not allowed', challenge: 'insufficient_scope' },
  caller_scope_exceeded: { status: 403, title: "Beyond the calling service's allowance", challenge: 'insufficient_scope' },
  on_behalf_of_required: { status: 403, title: 'A user is required', challenge: 'insufficient_scope' },
  on_behalf_of_forbidden: { status: 403, title: 'Calls on behalf of a user are not allowed', challenge: 'insufficient_scope' },
  keys_unavailable: { status: 503, title: 'Issuer keys unavailable', challenge: undefined },
  invalid_dpop_proof: { status: 401, title: 'Invalid DPoP proof', challenge: 'invalid_dpop_proof' },
  use_dpop_nonce: { status: 401, title: 'DPoP nonce required', challenge: 'use_dpop_nonce' },
  replay_store_unavailable: { status: 503, title: 'Replay protection unavailable', challenge: undefined },
  revocation_unavailable: { status: 503, title: 'Revocation check unavailable', challenge: undefined },
  introspection_unavailable: { status: 503, title: 'Token introspection unavailable', challenge: undefined },
}

/** The check of an error constructed without one (outside core): the step its code belongs to. */
const DEFAULT_CHECK: { readonly [C in AuthErrorCode]: AuthCheck } = {
  credentials_missing: 'credentials',
  invalid_request: 'credentials',
  invalid_token: 'claims',
  mtls_required: 'client certificate',
  peer_unauthorized: 'client certificate',
  insufficient_scope: 'rule',
  caller_forbidden: 'rule',
  caller_scope_exceeded: 'rule',
  on_behalf_of_required: 'rule',
  on_behalf_of_forbidden: 'rule',
  keys_unavailable: 'signature',
  invalid_dpop_proof: 'binding',
  use_dpop_nonce: 'binding',
  replay_store_unavailable: 'binding',
  revocation_unavailable: 'signature',
  introspection_unavailable: 'signature',
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
  /** The check that failed (`time`, `audience`, `binding`, `rule` ...), as `callsign explain` names it. */
  readonly check: AuthCheck

  constructor(code: AuthErrorCode, description: string, init: AuthErrorInit = {}) {
    super(description, init.cause === undefined ? undefined : { cause: init.cause })
    this.code = code
    this.status = HTTP_TABLE[code].status
    this.side = init.side
    this.scope = init.scope
    this.retryAfterSeconds = init.retryAfterSeconds
    this.check = init.check ?? DEFAULT_CHECK[code]
  }

  /** Alias of `status` for frameworks that read `statusCode` (Fastify). */
  get statusCode(): number {
    return this.status
  }
}

/** Shorthands used across core; each message is a fixed, client-safe string. */
export const invalidToken = (description: string, check: AuthCheck, cause?: unknown): AuthError =>
  new AuthError('invalid_token', description, cause === undefined ? { check } : { check, cause })

export const invalidRequest = (description: string, check: AuthCheck): AuthError => new AuthError('invalid_request', description, { check })
