/**
 * The seams between the client's two halves: the token side (`tokens.ts` and its files: the
 * authorization server, the cache, the exchange) and the call side (`service.ts` and its files:
 * connections with the workload certificate, the server's identity, DPoP proofs for services,
 * the three transports). `createClient` (index.ts) builds one of each and joins them here.
 */
import type { webcrypto } from 'node:crypto'

/** How a token is bound to its holder: RFC 9449 DPoP, RFC 8705 certificate, or none. */
export type ClientBinding = 'dpop' | 'mtls' | 'bearer'

/** The user a call is made for: the token a Callsign-verified request presented (RFC 8693 subject token). */
export interface SubjectToken {
  /** The access token as presented. Never logged, never put in an event or an error. */
  readonly value: string
  /** Its `exp` (seconds since the epoch), when known: an exchanged token never outlives it. */
  readonly expiresAt: number | undefined
}

/** What a call needs a token for. */
export interface TokenRequest {
  /** The service's name in `services` (for events and errors). */
  readonly service: string
  /** RFC 8707 resource indicator. */
  readonly resource: string
  /** Scopes asked for (sorted, unique). */
  readonly scopes: readonly string[]
  /** RFC 8693 `audience` values sent beside `resource` (absent or empty: none). */
  readonly audience?: readonly string[]
  /** Present: an RFC 8693 token exchange for this user; absent: client credentials. */
  readonly subject?: SubjectToken
}

/** A token ready to be sent. */
export interface IssuedToken {
  /** The access token. */
  readonly value: string
  /** `DPoP` or `Bearer`: the authorization scheme to send it with. */
  readonly scheme: 'DPoP' | 'Bearer'
  /** When it must no longer be sent (ms since the epoch). */
  readonly expiresAt: number
}

/** The token side, as the call side sees it. */
export interface TokenSource {
  /** A token for `request`: cached, refreshed ahead of expiry, one request in flight per key. */
  get(request: TokenRequest): Promise<IssuedToken>
  /** The service refused `token` (401 invalid_token): forget it so the next `get` asks again. */
  invalidate(request: TokenRequest, token: IssuedToken): void
  /** Stop background refreshes and close connections. */
  close(): Promise<void>
}

/** The DPoP key the client holds: the same key binds its tokens and signs every proof. */
export interface DpopKey {
  readonly keyPair: webcrypto.CryptoKeyPair
  /** JWS algorithm of the key (e.g. `ES256`). */
  readonly alg: string
  /** The public JWK put in every proof's header. */
  readonly publicJwk: Record<string, string>
  /** RFC 7638 thumbprint (the tokens' `cnf.jkt`). */
  readonly thumbprint: string
}
