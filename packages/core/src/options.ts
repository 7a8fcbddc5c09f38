import { createPrivateKey, createPublicKey, KeyObject, type webcrypto } from 'node:crypto'
import { algorithmsOf, DEFAULT_ALGORITHMS, signingAlgorithmOf, type Algorithm } from './algorithms.js'
import type { DecisionHook } from './decision-events.js'
import { DpopNonces } from './dpop-nonce.js'
import { buildResourceMetadata, type ResolvedResourceMetadata, type ResourceMetadataOptions } from './resource-metadata.js'
import { compileCidrs, parseAnchors, type ResolvedForwarded } from './forwarded-certificate.js'
import type { AccessTokenClaims } from './access-token.js'
import { MemoryReplayStore, type ReplayStore, type RevocationStore } from './replay-store.js'
import { compileCallerPattern, isWorkloadSpiffeId, parseSpiffeId, type CallerPattern } from './spiffe.js'
import { ClientTls, type ClientTlsOptions } from './internal/client-tls.js'
import { TrustBundles, type TrustBundleSource, type TrustBundleSpec } from './trust-bundles.js'
import { checkKeys, fail, isFileOption, isPlainObject, oneOf, parseSecureUrl, positive, readFileOption, scopeList, stringList } from './internal/validate.js'

export { SUPPORTED_ALGORITHMS, DEFAULT_ALGORITHMS, type Algorithm } from './algorithms.js'
export { parseSecureUrl, scopeList } from './internal/validate.js'

/**
 * Which JWT `typ` header an issuer's access tokens carry.
 * - `'at+jwt'` (default): RFC 9068 §2.1, `typ` must be `at+jwt` (or `application/at+jwt`).
 *   This also stops an ID token or any other JWT from the same issuer being used as an access token.
 * - `'jwt'`: for issuers that do not follow RFC 9068 (Auth0 without the RFC 9068 profile, Okta,
 *   Keycloak, Microsoft Entra ID, Amazon Cognito, Google): `at+jwt`, `JWT` or no `typ` at all.
 *   Any other explicit type (`dpop+jwt`, `logout+jwt`, `secevent+jwt` ...) is still refused; the
 *   `aud` check is then what keeps ID tokens (whose `aud` is a client id) out.
 */
export type TokenTypeMode = 'at+jwt' | 'jwt'

/** Where scopes are read from. `scope`: space-delimited string (RFC 8693 §4.2, RFC 9068 §2.2.3). `scp`: string or array (Okta, Entra). `permissions`: array (Auth0 RBAC). */
export type ScopeClaim = 'scope' | 'scp' | 'permissions'

/** A trusted token issuer. */
export interface IssuerOptions {
  /** The exact `iss` value, e.g. `https://auth.example.com/` (compared byte for byte). With local `jwks`, any identifier (e.g. the signing service's SPIFFE ID). */
  issuer: string
  /** This service's identifier; the token's `aud` must contain one of these. */
  audience: string | string[]
  /**
   * JWKS location. Without it, it is discovered from the issuer metadata: RFC 8414
   * `/.well-known/oauth-authorization-server`, then OpenID `/.well-known/openid-configuration`;
   * the metadata's `issuer` must equal `issuer`.
   */
  jwksUri?: string
  /** Overrides the guard-wide `typ`. */
  typ?: TokenTypeMode
  /** Overrides the guard-wide `scopeClaim`. */
  scopeClaim?: ScopeClaim
  /** Narrows the guard-wide `algorithms` for this issuer. */
  algorithms?: Algorithm[]
  /**
   * Local keys instead of `jwksUri`/discovery, for services that sign their own tokens or a SPIFFE
   * JWT bundle: a JWK Set object, a string holding a JWK Set (JSON) or PEM public keys /
   * certificates, or `{ path }` of such a file, re-read when it changes (polled every
   * `pollSeconds`, default 5; a bad new file keeps the old keys and is logged).
   */
  jwks?: { keys: unknown[] } | string | { path: string; pollSeconds?: number }
  /** Refuse tokens whose lifetime (`exp - iat`) exceeds this many seconds (and require `iat`), e.g. 300 for self-issued service tokens. */
  maxTokenLifetime?: number
  /**
   * For a single-signer issuer (local `jwks`, and the signing workload's SPIFFE ID as `issuer`):
   * the subjects, besides the signer itself, its tokens may name as `sub` (caller patterns: exact
   * IDs or SPIFFE prefixes ending in `/*`). Such a token is the signer acting for that subject: it
   * must name the signer as `client_id` or `act.sub`. Default: none, `sub` must be the signer.
   * Whatever this says, the caller such a token names is always its signer.
   */
  subjects?: string[]
  /**
   * SPIFFE JWT-SVIDs of this trust domain (`'example.org'`): tokens whose `sub` is a workload
   * SPIFFE ID of the trust domain are verified with this issuer's keys (usually `jwks`, the trust
   * bundle; keys marked `use: "jwt-svid"` are accepted), also when they carry no `iss` (which the
   * JWT-SVID spec makes optional). `sub` must then be a valid SPIFFE ID of the trust domain, and
   * it is the caller.
   */
  trustDomain?: string
  /**
   * RFC 7662 token introspection for this issuer's opaque tokens. Tokens that are not JWS-shaped
   * go to the first issuer that has `introspection`; with `tokens: 'all'`, this issuer's JWTs too.
   */
  introspection?: IntrospectionOptions
}

/** RFC 7662 introspection of opaque access tokens. Durations in seconds. */
export interface IntrospectionOptions {
  /**
   * The introspection endpoint: https (http only on loopback). When absent, `introspection_endpoint`
   * is discovered from the issuer's metadata (RFC 8414 §2) at first use, then cached.
   */
  endpoint?: string
  /** This resource server's client id at the authorization server (RFC 7662 §2.1 requires it to authenticate). */
  clientId: string
  /**
   * How the resource server authenticates: `'client_secret_basic'` (default; RFC 6749 §2.3.1, with
   * `clientSecret`), `'private_key_jwt'` (RFC 7523 §2.2, a JWT assertion signed with `privateKey`),
   * or `'tls_client_auth'` / `'self_signed_tls_client_auth'` (RFC 8705 §2, the client certificate
   * in `tls`; `client_id` in the form, no secret).
   */
  auth?: 'client_secret_basic' | 'private_key_jwt' | 'tls_client_auth' | 'self_signed_tls_client_auth'
  /** Its client secret, sent with HTTP Basic (`client_secret_basic`). */
  clientSecret?: string
  /** Its private key for `private_key_jwt`: a `KeyObject`, a `CryptoKey` or a PEM string (EC P-256/384/521, Ed25519 or RSA). */
  privateKey?: KeyObject | webcrypto.CryptoKey | string
  /**
   * Its client certificate for `tls_client_auth` / `self_signed_tls_client_auth`: `cert` and `key`
   * (PEM, or `{ path }` re-read when the file changes, e.g. a rotated SVID), and `ca`, the CA(s)
   * the endpoint's server certificate must chain to (default: Node's root CAs). The endpoint is
   * then reached over `node:https` with this certificate (not through the `fetch` option); when
   * discovered, `mtls_endpoint_aliases.introspection_endpoint` (RFC 8705 §5) is preferred.
   */
  tls?: ClientTlsOptions
  /**
   * `'json'` (default): RFC 7662 JSON answers. `'jwt'`: ask for RFC 9701 signed answers
   * (`Accept: application/token-introspection+jwt`); a JWT answer is verified with the issuer's keys.
   */
  response?: 'json' | 'jwt'
  /** Timeout of one introspection request, body included. Default 5, at most 60. */
  timeoutSeconds?: number
  /** How long an active answer is reused (never beyond the token's `exp`). Default 60; 0 disables. */
  cacheSeconds?: number
  /** How long an inactive (or unacceptable) answer is reused. Default 10; 0 disables. */
  negativeCacheSeconds?: number
  /**
   * After a failed introspection (outage, timeout, bad answer), new tokens get 503 at once for
   * this long, without calling the endpoint; cached answers are still used. Also the `Retry-After`
   * of those 503s. Default 2; 0: every new token tries the endpoint.
   */
  failureBackoffSeconds?: number
  /** Most answers cached (keyed by SHA-256 of the token). Default 10000; 0 disables the cache. */
  maxEntries?: number
  /** `'opaque'` (default): only tokens that are not JWS-shaped. `'all'`: also this issuer's JWTs (by their unverified `iss`). */
  tokens?: 'opaque' | 'all'
}

export type ResolvedIntrospectionAuth =
  | { method: 'client_secret_basic'; clientSecret: string }
  | { method: 'private_key_jwt'; privateKey: KeyObject; algorithm: string }
  | { method: 'tls_client_auth' | 'self_signed_tls_client_auth'; tls: ClientTls }

export interface ResolvedIntrospection {
  /** `undefined`: discovered from the issuer's metadata. */
  endpoint: URL | undefined
  clientId: string
  auth: ResolvedIntrospectionAuth
  response: 'json' | 'jwt'
  timeoutSeconds: number
  cacheSeconds: number
  negativeCacheSeconds: number
  failureBackoffSeconds: number
  maxEntries: number
  tokens: 'opaque' | 'all'
}

/** `'required'`: every request must come over TLS with a client certificate the socket authorized. `'optional'` (default): used when present. */
export type MtlsMode = 'required' | 'optional'

export interface MtlsOptions {
  mode?: MtlsMode
  /**
   * SPIFFE trust domains accepted from peer certificates; a peer outside them is refused. Also
   * requires peers to carry a SPIFFE ID.
   * - `['example.org', ...]`: the domains, whichever trusted CA issued the certificate.
   * - `{ 'example.org': bundle, 'partner.org': bundle }` (SPIFFE federation): each domain with its
   *   CA bundle ({@link TrustBundleSource}: PEM, PEM[], Buffer, or `{ path, pollSeconds? }`
   *   re-read when it changes, default every 5 s). A SPIFFE ID of domain D is then accepted only
   *   if the certificate chains to D's bundle ("client certificate does not chain to its trust
   *   domain's bundle" otherwise), on the TLS socket (with the chain the client sent) and for
   *   forwarded certificates. `mtls.forwarded.ca` defaults to all the bundles, and
   *   `mtls.forwarded.trustedProxies.spiffeIds` must name domains of the map. Pass the same object
   *   as `createServerTlsOptions({ trustDomains })` so the TLS stack trusts exactly these CAs.
   *   Not checked: proxy assertions without a certificate (`trustProxyAssertions`).
   * @example
   * mtls: { mode: 'required', trustDomains: { 'example.org': { path: 'ours.pem' }, 'partner.org': { path: 'partner.pem' } } }
   */
  trustDomains?: string[] | Readonly<Record<string, TrustBundleSource>>
  /** Client certificates forwarded by a TLS-terminating proxy (Envoy/Istio sidecar, ingress, nginx). */
  forwarded?: ForwardedOptions
}

/**
 * Accept the client certificate from a header, only when the immediate peer is a trusted proxy.
 * From anyone else the header is ignored: it can never raise privileges.
 *
 * @example
 * // Istio/Envoy sidecar on the same host, forward_client_cert_details: SANITIZE_SET, set_current_client_cert_details: { cert: true, chain: true }
 * mtls: { mode: 'required', forwarded: { trustedProxies: { cidrs: ['127.0.0.1/32', '::1/128'] }, ca: trustBundlePem } }
 */
export interface ForwardedOptions {
  /** `'xfcc'` (default): Envoy's `x-forwarded-client-cert`. `'nginx'`: a URL-encoded PEM, as `$ssl_client_escaped_cert`. */
  format?: 'xfcc' | 'nginx'
  /** Header name. Default `x-forwarded-client-cert` for `'xfcc'`, `x-ssl-client-cert` for `'nginx'`. */
  header?: string
  /** Who may set the header: an immediate peer whose authorized TLS certificate matches `spiffeIds`, or whose address is in `cidrs`. At least one is required. */
  trustedProxies: { spiffeIds?: string[]; cidrs?: string[] }
  /**
   * PEM CA bundle a forwarded certificate must chain to (Callsign verifies it itself). Required
   * unless `trustProxyAssertions`, or `mtls.trustDomains` maps domains to bundles (then all of them by default).
   */
  ca?: string | string[]
  /** Accept XFCC elements with only `Hash`/`URI`/`DNS` (no `Cert`), trusting the proxy's word. Default false. */
  trustProxyAssertions?: boolean
  /** Largest header accepted (400 above). Default 12288. */
  maxHeaderBytes?: number
  /**
   * XFCC elements: `'last'` (default) takes the element the trusted proxy appended (Envoy
   * `APPEND_FORWARD` chains); `'single'` requires exactly one (Envoy `SANITIZE_SET`, the usual
   * sidecar setting) and refuses more with 400, which also defeats element injection through
   * unquoted `URI=` values when the proxy is configured to forward `uri`.
   */
  elements?: 'last' | 'single'
}

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

/**
 * DPoP (RFC 9449) acceptance.
 * - `'allowed'` (default): `Authorization: DPoP` with a proof is accepted next to Bearer.
 * - `'required'`: only DPoP-bound tokens with a valid proof are accepted.
 * - `'off'`: the `DPoP` scheme is not accepted (and not advertised).
 */
export type DpopMode = 'off' | 'allowed' | 'required'

export interface DpopOptions {
  mode?: DpopMode
  /** Algorithms accepted for proofs (advertised in `algs`). Default: all asymmetric ones. */
  algorithms?: Algorithm[]
  /** A proof's `iat` may be at most this old (plus `clockTolerance`); its `jti` is remembered this long. Default 60, at most 600. */
  maxProofAgeSeconds?: number
  /**
   * Public origin(s) of this service (`https://orders.example.com`), for the `htu` check behind
   * a proxy or when several host names reach the service. Default: the request's own scheme
   * (TLS or not) and `Host` header; `X-Forwarded-*` are never used.
   */
  origin?: string | string[]
  /**
   * Server nonces (RFC 9449 §8): proofs must carry a nonce the server issued (via `DPoP-Nonce`).
   * Stateless: a time-sliced HMAC under `secret` (at least 32 bytes; the same on every replica).
   * A nonce stays valid for its window and the next.
   */
  nonce?: { secret: string | Uint8Array; windowSeconds?: number }
  /** Where used proof `jti`s are remembered. Default: a process-local `MemoryReplayStore`; use `@callsign/redis` for replicas. */
  replayStore?: ReplayStore
  /** The replay store must answer within this time, or the request fails closed with 503. Default 500. */
  replayStoreTimeoutMs?: number
}

/** Bounds on RFC 8693 delegation chains (`act`). */
export interface DelegationOptions {
  /** Longest `act` chain accepted. Default 4 (at most 8). */
  maxDepth?: number
  /** Caller patterns every actor of the chain must match. Default: any. */
  actors?: string[]
  /** Per-hop caller patterns, nearest actor first: `hops[0]` for `act.sub`, `hops[1]` for `act.act.sub` ... */
  hops?: string[][]
}

/** Minimal logger; `console` fits. Only operational problems (issuer unreachable) are logged. */
export interface Logger {
  warn(message: string, details?: Record<string, unknown>): void
}

/** Options shared by every adapter. Validated when the middleware is created. */
export interface CallsignOptions {
  /** One or more trusted issuers. */
  issuers: IssuerOptions | IssuerOptions[]
  /** Accepted JWS algorithms. Default: all asymmetric ones. `none` and `HS*` throw at startup. */
  algorithms?: Algorithm[]
  /** Leeway for `exp`, `nbf` and `iat`, in seconds. Default 30, at most 300. */
  clockTolerance?: number
  /** If set, tokens whose `iat` is older than this many seconds are refused (and `iat` is required). */
  maxTokenAge?: number
  /** Token type acceptance for all issuers (default `'at+jwt'`). */
  typ?: TokenTypeMode
  /** Scope claim for all issuers (default `'scope'`). */
  scopeClaim?: ScopeClaim
  /** Client-certificate policy. A string is shorthand for `{ mode }`. */
  mtls?: MtlsMode | MtlsOptions
  /**
   * Service allowances: caller pattern -> the scopes that service may ever exercise, whatever its
   * token says. A caller matching no pattern is refused by every `requireAuth`. When a caller
   * matches several patterns, the most specific one (exact, then longest prefix) applies.
   */
  callers?: Record<string, string[]>
  /**
   * mTLS-only calls: SPIFFE ID pattern -> the scopes a calling service holds on its client
   * certificate alone. A request with no token whose authorized client certificate (or the one a
   * trusted proxy forwarded) has a SPIFFE ID matching a pattern is authenticated as that service,
   * with those scopes, no user and `credential: 'certificate'`; every rule (and the `callers`
   * ceiling) applies as usual. Any other request without a token is treated as today. Default: none.
   * @example certificateGrants: { 'spiffe://example.org/ns/monitoring/*': ['metrics:read'] }
   */
  certificateGrants?: Record<string, string[]>
  /**
   * `'required'`: every token must be sender-constrained (DPoP-bound or certificate-bound); plain
   * bearer tokens are refused. `'optional'` (default): bearer tokens are accepted. Overridable per rule.
   */
  senderConstraint?: 'required' | 'optional'
  dpop?: DpopOptions
  /**
   * When the token names the calling service (`act.sub`, or `client_id` mapped through
   * `clientIds`, or a `client_id` that is itself a SPIFFE ID) and an authorized peer certificate
   * names another one, refuse (401): the token is presented by a workload it was not issued to.
   * Default `'enforce'`.
   */
  callerConsistency?: 'enforce' | 'off'
  /** OAuth client ids mapped to the SPIFFE ID of the workload they belong to, for caller consistency. */
  clientIds?: Record<string, string>
  delegation?: DelegationOptions
  /**
   * Revocation before expiry, consulted on every request after the token is verified (also for
   * cached verifications): a `jti` denylist (`store`, default a process-local one; `@callsign/redis`
   * shares it between replicas; entries expire with the token) filled with `guard.revoke(...)`,
   * and/or an `isRevoked(claims)` hook. A check that fails or exceeds `timeoutMs` (default 500)
   * answers 503 `revocation_unavailable`: never acceptance. Omit to skip revocation (no cost).
   */
  revocation?: { store?: RevocationStore; isRevoked?: (claims: AccessTokenClaims, context: { issuer: string }) => boolean | Promise<boolean>; timeoutMs?: number }
  /**
   * Publish OAuth 2.0 Protected Resource Metadata (RFC 9728) at
   * `/.well-known/oauth-protected-resource[/<resource path>]` and add `resource_metadata="..."` to
   * every challenge (§5.1), so a client that knows only this service's URL can learn from its first
   * 401 where to get a token. Derived from the guard's options (issuers, DPoP, binding).
   */
  resourceMetadata?: ResourceMetadataOptions
  /**
   * Called once per request with a structured {@link DecisionEvent} (outcome, code, caller, user,
   * issuer, binding, latency; never the token or proof). Exceptions it throws are logged and ignored.
   */
  onDecision?: DecisionHook
  /**
   * `false`: dry run. Every decision is computed and reported to `onDecision` (with
   * `enforced: false`), and the request passes (with `auth` when authentication succeeded).
   * For rolling Callsign out on live traffic. Default true. Rules can also set it.
   */
  enforce?: boolean
  /**
   * Decision events flag `peerExpiringSoon` (and Callsign logs once per certificate) when a peer
   * certificate expires within this many days. Default: when less than a tenth of its lifetime is
   * left (6 minutes of a 1-hour SVID, 9 days of a 90-day certificate), so short-lived SPIFFE
   * certificates are not flagged all the time, and a missed rotation is.
   */
  peerExpiryWarningDays?: number
  /**
   * OpenTelemetry: when `@opentelemetry/api` is installed, span attributes on the active span and
   * counters (`callsign.decisions`, `callsign.jwks.fetches`, `callsign.dpop.replays`,
   * `callsign.dpop.nonce_challenges`). Default true; `false` to leave OpenTelemetry alone.
   */
  telemetry?: boolean
  /**
   * Most verified tokens remembered (by the whole token string), so a token reused for minutes is
   * verified once. Entries never outlive the token's `exp` or its issuer key; binding, caller and
   * authorization checks still run on every request. `0` disables. Default 10000.
   */
  tokenCacheMaxEntries?: number
  /** `'required'` (default): a request without credentials is refused at once. `'optional'`: it passes with no `auth`, and `requireAuth` refuses it. */
  credentials?: 'required' | 'optional'
  /** `realm` of every challenge. Default `'api'`. */
  realm?: string
  jwks?: JwksOptions
  /** Fetch keys of every issuer at creation, for readiness probes (see `ready()`). Default false: no network I/O until a request needs keys. */
  prefetch?: boolean
  /** `fetch` used for metadata and JWKS (e.g. with an undici dispatcher for a proxy or private CA). Default: global `fetch`. */
  fetch?: typeof globalThis.fetch
  /** Clock in epoch milliseconds, for tests. Default `Date.now`. */
  now?: () => number
  /** Default `console`. Pass `{ warn() {} }` to silence. */
  logger?: Logger
}

export interface ResolvedIssuer {
  issuer: string
  audience: readonly string[]
  jwksUri: URL | undefined
  /** Local keys: the parsed document (inline) or the file to read and watch; `option` names it in startup errors. */
  localKeys: { document: unknown; path: string | undefined; pollSeconds: number; option: string } | undefined
  maxTokenLifetimeSeconds: number | undefined
  /** The signing workload of a single-signer issuer (local keys, a workload SPIFFE ID as `issuer`): the only caller its tokens may name. */
  signer: string | undefined
  /** Subjects other than the signer that its tokens may name (`subjects`). */
  subjects: readonly CallerPattern[] | undefined
  /** JWT-SVID trust domain, when this issuer verifies SPIFFE JWT-SVIDs. */
  trustDomain: string | undefined
  typ: TokenTypeMode
  scopeClaim: ScopeClaim
  algorithms: ReadonlySet<string>
  introspection?: ResolvedIntrospection | undefined
}

export interface ResolvedAllowance {
  pattern: CallerPattern
  /** 0 for exact, else prefix length: the most specific match wins. */
  specificity: number
  scopes: ReadonlySet<string>
}

export interface ResolvedDpop {
  mode: DpopMode
  algorithms: ReadonlySet<string>
  /** `algs` challenge parameter value. */
  algs: string
  maxProofAgeSeconds: number
  origins: readonly string[] | undefined
  nonces: DpopNonces | undefined
  replayStore: ReplayStore
  replayStoreTimeoutMs: number
}

export interface ResolvedConfig {
  issuers: ReadonlyMap<string, ResolvedIssuer>
  /** Issuers of SPIFFE JWT-SVIDs by trust domain, for tokens without `iss`. */
  svidIssuers: ReadonlyMap<string, ResolvedIssuer>
  clockToleranceSeconds: number
  maxTokenAgeSeconds: number | undefined
  mtls: {
    mode: MtlsMode
    trustDomains: ReadonlySet<string> | undefined
    /** Each trust domain's CA bundle, when `trustDomains` was given as a map. */
    trustBundles: TrustBundles | undefined
    forwarded: ResolvedForwarded | undefined
  }
  callers: readonly ResolvedAllowance[] | undefined
  /** Scopes held on the client certificate alone, most specific pattern first. */
  certificateGrants: readonly ResolvedAllowance[] | undefined
  credentials: 'required' | 'optional'
  senderConstraint: 'required' | 'optional'
  dpop: ResolvedDpop
  callerConsistency: boolean
  clientIds: ReadonlyMap<string, string>
  delegation: { maxDepth: number; actors: readonly CallerPattern[] | undefined; hops: readonly (readonly CallerPattern[])[] | undefined }
  realm: string
  telemetry: boolean
  revocation: { store: RevocationStore; isRevoked: ((claims: AccessTokenClaims, context: { issuer: string }) => boolean | Promise<boolean>) | undefined; timeoutMs: number } | undefined
  resourceMetadata: ResolvedResourceMetadata | undefined
  onDecision: DecisionHook | undefined
  enforce: boolean
  peerExpiryWarningDays: number | undefined
  tokenCacheMaxEntries: number
  jwks: Required<JwksOptions>
  prefetch: boolean
  fetch: typeof globalThis.fetch
  now: () => number
  logger: Logger
}

const OPTION_KEYS = [
  'issuers', 'algorithms', 'clockTolerance', 'maxTokenAge', 'typ', 'scopeClaim', 'mtls', 'callers', 'certificateGrants', 'credentials',
  'realm', 'jwks', 'prefetch', 'fetch', 'now', 'logger', 'senderConstraint', 'dpop', 'callerConsistency', 'clientIds',
  'delegation', 'tokenCacheMaxEntries', 'onDecision', 'enforce', 'peerExpiryWarningDays',
  'resourceMetadata', 'revocation', 'telemetry',
] as const
const DPOP_KEYS = ['mode', 'algorithms', 'maxProofAgeSeconds', 'origin', 'nonce', 'replayStore', 'replayStoreTimeoutMs'] as const
const DELEGATION_KEYS = ['maxDepth', 'actors', 'hops'] as const
const ISSUER_KEYS = ['issuer', 'audience', 'jwksUri', 'typ', 'scopeClaim', 'algorithms', 'jwks', 'maxTokenLifetime', 'subjects', 'trustDomain', 'introspection'] as const
const INTROSPECTION_KEYS = ['endpoint', 'clientId', 'auth', 'clientSecret', 'privateKey', 'tls', 'response', 'timeoutSeconds', 'cacheSeconds', 'negativeCacheSeconds', 'failureBackoffSeconds', 'maxEntries', 'tokens'] as const

/** The JWS algorithm of a client assertion signed with `key`. */
function assertionAlgorithm(key: KeyObject, option: string): string {
  return signingAlgorithmOf(key) ?? fail(option, `must be an EC (P-256, P-384, P-521), Ed25519 or RSA private key (got ${key.asymmetricKeyType ?? 'unknown'})`)
}

function resolveAssertionKey(value: unknown, option: string): KeyObject {
  let key: KeyObject
  if (typeof value === 'string') {
    try {
      key = createPrivateKey(value)
    } catch (error) {
      return fail(option, `is not a PEM private key: ${(error as Error).message}`)
    }
  } else if (value instanceof KeyObject) {
    key = value
  } else if (Object.prototype.toString.call(value) === '[object CryptoKey]') {
    key = KeyObject.from(value as webcrypto.CryptoKey)
  } else {
    return fail(option, 'must be a private KeyObject, CryptoKey or PEM string (required by auth: \'private_key_jwt\')')
  }
  if (key.type !== 'private') fail(option, 'must be a private key')
  return key
}

function resolveIntrospection(value: unknown, option: string): ResolvedIntrospection {
  if (!isPlainObject(value)) return fail(option, 'must be an object { endpoint?, clientId, clientSecret | privateKey | tls }')
  checkKeys(value, INTROSPECTION_KEYS, option)
  const endpoint = value.endpoint === undefined ? undefined : parseSecureUrl(value.endpoint, `${option}.endpoint`)
  if (typeof value.clientId !== 'string' || value.clientId.length === 0) fail(`${option}.clientId`, 'must be a non-empty string (RFC 7662 §2.1: the resource server authenticates)')
  const method = oneOf(value.auth, `${option}.auth`, ['client_secret_basic', 'private_key_jwt', 'tls_client_auth', 'self_signed_tls_client_auth'] as const, 'client_secret_basic')
  const unused = (field: 'clientSecret' | 'privateKey' | 'tls'): void => {
    if (value[field] !== undefined) fail(`${option}.${field}`, `is not used with auth: '${method}' (remove it)`)
  }
  let auth: ResolvedIntrospectionAuth
  if (method === 'client_secret_basic') {
    if (typeof value.clientSecret !== 'string' || value.clientSecret.length === 0) fail(`${option}.clientSecret`, 'must be a non-empty string (RFC 7662 §2.1: the resource server authenticates)')
    unused('privateKey')
    unused('tls')
    auth = Object.freeze({ method, clientSecret: value.clientSecret as string })
  } else if (method === 'private_key_jwt') {
    unused('clientSecret')
    unused('tls')
    const privateKey = resolveAssertionKey(value.privateKey, `${option}.privateKey`)
    auth = Object.freeze({ method, privateKey, algorithm: assertionAlgorithm(privateKey, `${option}.privateKey`) })
  } else {
    unused('clientSecret')
    unused('privateKey')
    if (value.tls === undefined) fail(`${option}.tls`, `is required with auth: '${method}': { cert, key, ca? } (RFC 8705 §2: the client certificate)`)
    // RFC 8705: the certificate is presented in the TLS handshake, so never over plain http.
    if (endpoint && endpoint.protocol !== 'https:') fail(`${option}.endpoint`, `must use https with auth: '${method}' (got ${JSON.stringify(endpoint.href)})`)
    auth = Object.freeze({ method, tls: new ClientTls(value.tls, `${option}.tls`) })
  }
  return Object.freeze({
    endpoint,
    clientId: value.clientId as string,
    auth,
    response: oneOf(value.response, `${option}.response`, ['json', 'jwt'] as const, 'json'),
    timeoutSeconds: positive(value.timeoutSeconds, `${option}.timeoutSeconds`, 5, { max: 60 }),
    cacheSeconds: positive(value.cacheSeconds, `${option}.cacheSeconds`, 60, { allowZero: true, max: 86_400 }),
    negativeCacheSeconds: positive(value.negativeCacheSeconds, `${option}.negativeCacheSeconds`, 10, { allowZero: true, max: 3600 }),
    failureBackoffSeconds: positive(value.failureBackoffSeconds, `${option}.failureBackoffSeconds`, 2, { allowZero: true, max: 300 }),
    maxEntries: positive(value.maxEntries, `${option}.maxEntries`, 10_000, { integer: true, allowZero: true, max: 1_000_000 }),
    tokens: oneOf(value.tokens, `${option}.tokens`, ['opaque', 'all'] as const, 'opaque'),
  })
}
/** Caller pattern -> scopes, most specific pattern first (exact, then longest prefix). */
function resolveAllowances(value: unknown, option: string, { spiffeOnly = false } = {}): ResolvedAllowance[] {
  if (!isPlainObject(value)) fail(option, 'must be an object mapping caller patterns to scope arrays')
  const allowances = Object.entries(value as Record<string, unknown>).map(([pattern, scopes]) => {
    const name = `${option}[${JSON.stringify(pattern)}]`
    // A certificate names a service by its SPIFFE ID only: a client id pattern would never match.
    if (spiffeOnly && !pattern.startsWith('spiffe://')) fail(name, 'must be a SPIFFE ID or a SPIFFE prefix ending in "/*" (certificates are matched by their SPIFFE ID)')
    return {
      pattern: compileCallerPattern(pattern, name),
      specificity: pattern.endsWith('/*') ? pattern.length : Number.MAX_SAFE_INTEGER,
      scopes: new Set(scopeList(scopes, name)),
    }
  })
  return allowances.sort((a, b) => b.specificity - a.specificity)
}

const JWKS_KEYS = ['cacheMaxAgeSeconds', 'cooldownSeconds', 'failureBackoffSeconds', 'maxStaleSeconds', 'timeoutSeconds', 'maxBytes', 'maxKeys'] as const
const TYP_MODES = ['at+jwt', 'jwt'] as const
const SCOPE_CLAIMS = ['scope', 'scp', 'permissions'] as const

/**
 * Resolve public options into a frozen config; throws `TypeError` naming the option and the fix.
 * Called once, when the middleware is created — never at the first request.
 */
export function resolveConfig(options: CallsignOptions): ResolvedConfig {
  if (!isPlainObject(options)) return fail('options', 'must be an object')
  checkKeys(options, OPTION_KEYS, 'options')

  const algorithms = options.algorithms === undefined ? new Set<string>(DEFAULT_ALGORITHMS) : algorithmsOf(options.algorithms, 'algorithms')
  const typ = oneOf(options.typ, 'typ', TYP_MODES, 'at+jwt')
  const scopeClaim = oneOf(options.scopeClaim, 'scopeClaim', SCOPE_CLAIMS, 'scope')

  const issuerList = Array.isArray(options.issuers) ? options.issuers : options.issuers === undefined ? [] : [options.issuers]
  if (issuerList.length === 0) fail('issuers', 'must name at least one issuer: { issuer, audience, jwksUri? }')
  const issuers = new Map<string, ResolvedIssuer>()
  issuerList.forEach((entry: unknown, index) => {
    const name = Array.isArray(options.issuers) ? `issuers[${index}]` : 'issuers'
    if (!isPlainObject(entry)) return fail(name, 'must be an object { issuer, audience, jwksUri? }')
    checkKeys(entry, ISSUER_KEYS, name)
    if (entry.jwks === undefined) {
      const issuerUrl = parseSecureUrl(entry.issuer, `${name}.issuer`)
      if (issuerUrl.search) fail(`${name}.issuer`, 'must not contain a query')
    } else if (typeof entry.issuer !== 'string' || entry.issuer.length === 0) {
      // With local keys nothing is fetched: the issuer may be any identifier (a SPIFFE ID for self-issued tokens).
      fail(`${name}.issuer`, 'must be a non-empty string')
    }
    const issuer = entry.issuer as string
    if (issuers.has(issuer)) fail(`${name}.issuer`, `duplicates another issuer: ${JSON.stringify(issuer)}`)
    let issuerAlgorithms = algorithms
    if (entry.algorithms !== undefined) {
      issuerAlgorithms = algorithmsOf(entry.algorithms, `${name}.algorithms`)
      for (const alg of issuerAlgorithms) {
        if (!algorithms.has(alg)) fail(`${name}.algorithms`, `contains ${alg}, which the guard-wide "algorithms" does not allow`)
      }
    }
    const trustDomain = entry.trustDomain === undefined ? undefined : resolveTrustDomain(entry.trustDomain, `${name}.trustDomain`)
    const signer = entry.jwks !== undefined && trustDomain === undefined && isWorkloadSpiffeId(issuer) ? issuer : undefined
    issuers.set(issuer, Object.freeze({
      issuer,
      audience: Object.freeze(stringList(entry.audience, `${name}.audience`)),
      jwksUri: entry.jwksUri === undefined ? undefined : parseSecureUrl(entry.jwksUri, `${name}.jwksUri`),
      localKeys: entry.jwks === undefined ? undefined : resolveLocalKeys(entry.jwks, `${name}.jwks`, entry.jwksUri !== undefined),
      maxTokenLifetimeSeconds: entry.maxTokenLifetime === undefined ? undefined : positive(entry.maxTokenLifetime, `${name}.maxTokenLifetime`, 0),
      signer,
      subjects: entry.subjects === undefined ? undefined : resolveSubjects(entry.subjects, `${name}.subjects`, signer),
      trustDomain,
      typ: oneOf(entry.typ, `${name}.typ`, TYP_MODES, typ),
      scopeClaim: oneOf(entry.scopeClaim, `${name}.scopeClaim`, SCOPE_CLAIMS, scopeClaim),
      algorithms: issuerAlgorithms,
      ...(entry.introspection === undefined ? {} : { introspection: resolveIntrospection(entry.introspection, `${name}.introspection`) }),
    }))
  })

  let mtlsMode: MtlsMode = 'optional'
  let trustDomains: Set<string> | undefined
  let trustBundles: TrustBundles | undefined
  let forwarded: ResolvedForwarded | undefined
  if (typeof options.mtls === 'string' || options.mtls === undefined) {
    mtlsMode = oneOf(options.mtls, 'mtls', ['required', 'optional'] as const, 'optional')
  } else if (isPlainObject(options.mtls)) {
    checkKeys(options.mtls, ['mode', 'trustDomains', 'forwarded'], 'mtls')
    const domains: unknown = options.mtls.trustDomains
    if (isPlainObject(domains) && !Buffer.isBuffer(domains)) {
      const logger = options.logger ?? console
      trustBundles = new TrustBundles(resolveTrustBundles(domains), (message, details) => logger.warn(message, details))
    }
    if (options.mtls.forwarded !== undefined) forwarded = resolveForwarded(options.mtls.forwarded, trustBundles)
    mtlsMode = oneOf(options.mtls.mode, 'mtls.mode', ['required', 'optional'] as const, 'optional')
    if (trustBundles) {
      trustDomains = new Set(trustBundles.domains())
    } else if (domains !== undefined) {
      trustDomains = new Set(stringList(domains, 'mtls.trustDomains'))
      for (const domain of trustDomains) {
        const parsed = parseSpiffeId(`spiffe://${domain}`)
        if (!parsed || parsed.trustDomain !== domain) fail('mtls.trustDomains', `contains an invalid trust domain ${JSON.stringify(domain)} (lower-case letters, digits, ".", "-", "_")`)
      }
    }
  } else {
    fail('mtls', "must be 'required', 'optional' or { mode, trustDomains }")
  }

  const callers = options.callers === undefined ? undefined : resolveAllowances(options.callers, 'callers')
  const certificateGrants = options.certificateGrants === undefined ? undefined : resolveAllowances(options.certificateGrants, 'certificateGrants', { spiffeOnly: true })

  const jwksOptions: Record<string, unknown> = (options.jwks ?? {}) as Record<string, unknown>
  if (!isPlainObject(jwksOptions)) fail('jwks', 'must be an object')
  checkKeys(jwksOptions, JWKS_KEYS, 'jwks')
  const jwks: Required<JwksOptions> = {
    cacheMaxAgeSeconds: positive(jwksOptions.cacheMaxAgeSeconds, 'jwks.cacheMaxAgeSeconds', 600),
    cooldownSeconds: positive(jwksOptions.cooldownSeconds, 'jwks.cooldownSeconds', 30, { allowZero: true }),
    failureBackoffSeconds: positive(jwksOptions.failureBackoffSeconds, 'jwks.failureBackoffSeconds', 5, { allowZero: true }),
    maxStaleSeconds: positive(jwksOptions.maxStaleSeconds, 'jwks.maxStaleSeconds', 86_400, { allowZero: true }),
    timeoutSeconds: positive(jwksOptions.timeoutSeconds, 'jwks.timeoutSeconds', 5, { max: 60 }),
    maxBytes: positive(jwksOptions.maxBytes, 'jwks.maxBytes', 256 * 1024, { integer: true, max: 16 * 1024 * 1024 }),
    maxKeys: positive(jwksOptions.maxKeys, 'jwks.maxKeys', 50, { integer: true, max: 1000 }),
  }

  if (options.fetch !== undefined && typeof options.fetch !== 'function') fail('fetch', 'must be a fetch-compatible function')
  if (options.now !== undefined && typeof options.now !== 'function') fail('now', 'must be a function returning epoch milliseconds')
  if (options.logger !== undefined && (typeof options.logger !== 'object' || options.logger === null || typeof options.logger.warn !== 'function')) {
    fail('logger', 'must have a warn(message, details) method')
  }
  if (options.prefetch !== undefined && typeof options.prefetch !== 'boolean') fail('prefetch', 'must be a boolean')
  if (options.telemetry !== undefined && typeof options.telemetry !== 'boolean') fail('telemetry', 'must be a boolean')
  if (options.enforce !== undefined && typeof options.enforce !== 'boolean') fail('enforce', 'must be a boolean (false: dry run)')
  if (options.onDecision !== undefined && typeof options.onDecision !== 'function') fail('onDecision', 'must be a function (event) => void')
  const realm = options.realm ?? 'api'
  if (typeof realm !== 'string' || !/^[\x20\x21\x23-\x5b\x5d-\x7e]{1,100}$/.test(realm)) {
    fail('realm', 'must be 1-100 printable ASCII characters without quotes or backslashes')
  }
  const globalFetch = globalThis.fetch
  const now = options.now ?? Date.now
  const dpop = resolveDpop(options.dpop, now)
  const resourceMetadata = options.resourceMetadata === undefined
    ? undefined
    : resolveResourceMetadata(options.resourceMetadata, {
        issuers: [...issuers.keys()],
        scopes: callers ? [...new Set(callers.flatMap((allowance) => [...allowance.scopes]))] : undefined,
        dpopAlgs: dpop.mode === 'off' ? undefined : [...dpop.algorithms],
        dpopRequired: dpop.mode === 'required',
      })
  const svidIssuers = new Map<string, ResolvedIssuer>()
  for (const issuer of issuers.values()) {
    if (issuer.trustDomain === undefined) continue
    if (svidIssuers.has(issuer.trustDomain)) fail('issuers', `name the JWT-SVID trust domain ${JSON.stringify(issuer.trustDomain)} more than once`)
    svidIssuers.set(issuer.trustDomain, issuer)
  }
  return Object.freeze({
    issuers,
    svidIssuers,
    clockToleranceSeconds: positive(options.clockTolerance, 'clockTolerance', 30, { allowZero: true, max: 300 }),
    maxTokenAgeSeconds: options.maxTokenAge === undefined ? undefined : positive(options.maxTokenAge, 'maxTokenAge', 0),
    mtls: Object.freeze({ mode: mtlsMode, trustDomains, trustBundles, forwarded }),
    callers: callers && Object.freeze(callers),
    certificateGrants: certificateGrants && Object.freeze(certificateGrants),
    credentials: oneOf(options.credentials, 'credentials', ['required', 'optional'] as const, 'required'),
    senderConstraint: oneOf(options.senderConstraint, 'senderConstraint', ['required', 'optional'] as const, 'optional'),
    dpop,
    resourceMetadata,
    revocation: resolveRevocation(options.revocation),
    telemetry: options.telemetry ?? true,
    callerConsistency: oneOf(options.callerConsistency, 'callerConsistency', ['enforce', 'off'] as const, 'enforce') === 'enforce',
    clientIds: resolveClientIds(options.clientIds),
    delegation: resolveDelegation(options.delegation),
    realm,
    onDecision: options.onDecision,
    enforce: options.enforce ?? true,
    peerExpiryWarningDays: options.peerExpiryWarningDays === undefined ? undefined : positive(options.peerExpiryWarningDays, 'peerExpiryWarningDays', 0, { allowZero: true, max: 3650 }),
    tokenCacheMaxEntries: positive(options.tokenCacheMaxEntries, 'tokenCacheMaxEntries', 10_000, { integer: true, allowZero: true, max: 1_000_000 }),
    jwks: Object.freeze(jwks),
    prefetch: options.prefetch ?? false,
    fetch: options.fetch ?? ((input: Parameters<typeof fetch>[0], init?: RequestInit) => globalFetch(input, init)),
    now,
    logger: options.logger ?? console,
  })
}

function resolveDpop(value: unknown, now: () => number): ResolvedDpop {
  const input = (value ?? {}) as Record<string, unknown>
  if (!isPlainObject(input)) return fail('dpop', 'must be an object')
  checkKeys(input, DPOP_KEYS, 'dpop')
  const algorithms = input.algorithms === undefined ? new Set<string>(DEFAULT_ALGORITHMS) : algorithmsOf(input.algorithms, 'dpop.algorithms')
  let origins: string[] | undefined
  if (input.origin !== undefined) {
    origins = stringList(input.origin, 'dpop.origin').map((origin) => {
      const url = parseSecureUrl(origin, 'dpop.origin')
      if (url.pathname !== '/' || url.search) fail('dpop.origin', `must be an origin (scheme://host[:port]) without a path: ${JSON.stringify(origin)}`)
      return url.origin
    })
  }
  let nonces: DpopNonces | undefined
  if (input.nonce !== undefined) {
    const nonce = input.nonce as Record<string, unknown>
    if (!isPlainObject(nonce)) return fail('dpop.nonce', 'must be { secret, windowSeconds? }')
    checkKeys(nonce, ['secret', 'windowSeconds'], 'dpop.nonce')
    const secret = typeof nonce.secret === 'string' ? Buffer.from(nonce.secret, 'utf8') : nonce.secret instanceof Uint8Array ? Buffer.from(nonce.secret) : undefined
    if (!secret || secret.length < 32) fail('dpop.nonce.secret', 'must be a string or bytes of at least 32 bytes, the same on every replica')
    nonces = new DpopNonces(secret!, positive(nonce.windowSeconds, 'dpop.nonce.windowSeconds', 300, { max: 86_400 }), now)
  }
  const store = input.replayStore as ReplayStore | undefined
  if (store !== undefined && (typeof store !== 'object' || store === null || typeof store.markUsed !== 'function')) {
    fail('dpop.replayStore', 'must implement markUsed(key, ttlSeconds)')
  }
  const mode = oneOf(input.mode, 'dpop.mode', ['off', 'allowed', 'required'] as const, 'allowed')
  return Object.freeze({
    mode,
    algorithms,
    algs: [...algorithms].join(' '),
    maxProofAgeSeconds: positive(input.maxProofAgeSeconds, 'dpop.maxProofAgeSeconds', 60, { max: 600 }),
    origins: origins && Object.freeze(origins),
    nonces,
    replayStore: store ?? new MemoryReplayStore(),
    replayStoreTimeoutMs: positive(input.replayStoreTimeoutMs, 'dpop.replayStoreTimeoutMs', 500, { max: 30_000 }),
  })
}

function resolveClientIds(value: unknown): ReadonlyMap<string, string> {
  const map = new Map<string, string>()
  if (value === undefined) return map
  if (!isPlainObject(value)) return fail('clientIds', 'must be an object mapping client ids to SPIFFE IDs')
  for (const [clientId, spiffeId] of Object.entries(value)) {
    const parsed = typeof spiffeId === 'string' ? parseSpiffeId(spiffeId) : undefined
    if (!parsed || parsed.segments.length === 0) fail(`clientIds[${JSON.stringify(clientId)}]`, `must be a workload SPIFFE ID (got ${JSON.stringify(spiffeId)})`)
    map.set(clientId, spiffeId as string)
  }
  return map
}

function resolveDelegation(value: unknown): ResolvedConfig['delegation'] {
  const input = (value ?? {}) as Record<string, unknown>
  if (!isPlainObject(input)) return fail('delegation', 'must be an object')
  checkKeys(input, DELEGATION_KEYS, 'delegation')
  const maxDepth = positive(input.maxDepth, 'delegation.maxDepth', 4, { integer: true, max: 8 })
  let actors: CallerPattern[] | undefined
  if (input.actors !== undefined) {
    actors = stringList(input.actors, 'delegation.actors').map((pattern, i) => compileCallerPattern(pattern, `delegation.actors[${i}]`))
  }
  let hops: CallerPattern[][] | undefined
  if (input.hops !== undefined) {
    if (!Array.isArray(input.hops) || input.hops.length === 0) fail('delegation.hops', 'must be a non-empty array of pattern arrays, nearest actor first')
    hops = (input.hops as unknown[]).map((hop, h) =>
      stringList(hop, `delegation.hops[${h}]`).map((pattern, i) => compileCallerPattern(pattern, `delegation.hops[${h}][${i}]`)),
    )
  }
  return Object.freeze({ maxDepth, actors, hops })
}

function resolveForwarded(value: unknown, trustBundles: TrustBundles | undefined): ResolvedForwarded {
  if (!isPlainObject(value)) return fail('mtls.forwarded', 'must be an object { trustedProxies, ca, format?, header? }')
  checkKeys(value, ['format', 'header', 'trustedProxies', 'ca', 'trustProxyAssertions', 'maxHeaderBytes', 'elements'], 'mtls.forwarded')
  const format = oneOf(value.format, 'mtls.forwarded.format', ['xfcc', 'nginx'] as const, 'xfcc')
  const header = (value.header ?? (format === 'xfcc' ? 'x-forwarded-client-cert' : 'x-ssl-client-cert')) as string
  if (typeof header !== 'string' || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(header) || ['authorization', 'dpop', 'host'].includes(header.toLowerCase())) {
    fail('mtls.forwarded.header', `must be a header name other than Authorization, DPoP and Host (got ${JSON.stringify(header)})`)
  }
  const proxies = value.trustedProxies as Record<string, unknown> | undefined
  if (!isPlainObject(proxies)) return fail('mtls.forwarded.trustedProxies', 'must be { spiffeIds?, cidrs? }')
  checkKeys(proxies, ['spiffeIds', 'cidrs'], 'mtls.forwarded.trustedProxies')
  if (proxies.spiffeIds === undefined && proxies.cidrs === undefined) {
    fail('mtls.forwarded.trustedProxies', 'must name the proxies by SPIFFE ID pattern (spiffeIds) and/or source address (cidrs)')
  }
  const proxySpiffeIds = proxies.spiffeIds === undefined
    ? undefined
    : stringList(proxies.spiffeIds, 'mtls.forwarded.trustedProxies.spiffeIds').map((pattern, i) => {
        if (!pattern.startsWith('spiffe://')) fail(`mtls.forwarded.trustedProxies.spiffeIds[${i}]`, 'must be a SPIFFE ID or prefix ending in "/*"')
        return compileCallerPattern(pattern, `mtls.forwarded.trustedProxies.spiffeIds[${i}]`)
      })
  const proxyAddresses = proxies.cidrs === undefined ? undefined : compileCidrs(stringList(proxies.cidrs, 'mtls.forwarded.trustedProxies.cidrs'), 'mtls.forwarded.trustedProxies.cidrs')
  if (value.trustProxyAssertions !== undefined && typeof value.trustProxyAssertions !== 'boolean') fail('mtls.forwarded.trustProxyAssertions', 'must be a boolean')
  const trustProxyAssertions = value.trustProxyAssertions === true
  // With trust-domain bundles, forwarded certificates chain to those by default.
  if (value.ca === undefined && !trustProxyAssertions && !trustBundles) {
    fail('mtls.forwarded.ca', 'is required: the PEM CA bundle forwarded certificates must chain to (or set trustProxyAssertions: true to trust the proxy blindly)')
  }
  if (format === 'nginx' && value.ca === undefined && !trustBundles) fail('mtls.forwarded.ca', 'is required with the nginx format')
  if (trustBundles && proxySpiffeIds) {
    proxySpiffeIds.forEach((pattern, i) => {
      const domain = parseSpiffeId(pattern.source.replace(/\/\*$/, ''))?.trustDomain
      if (domain === undefined || trustBundles.anchorsOf(domain) === undefined) {
        fail(`mtls.forwarded.trustedProxies.spiffeIds[${i}]`, `names the trust domain ${JSON.stringify(domain)}, which has no bundle in "mtls.trustDomains": a proxy's SPIFFE ID is proven by its domain's bundle`)
      }
    })
  }
  const anchors = value.ca === undefined ? [] : parseAnchors(typeof value.ca === 'string' ? value.ca : stringList(value.ca, 'mtls.forwarded.ca'), 'mtls.forwarded.ca')
  return Object.freeze({
    header: header.toLowerCase(),
    format,
    proxySpiffeIds: proxySpiffeIds && Object.freeze(proxySpiffeIds),
    proxyAddresses,
    anchors: Object.freeze(anchors),
    trustProxyAssertions,
    maxHeaderBytes: positive(value.maxHeaderBytes, 'mtls.forwarded.maxHeaderBytes', 12_288, { integer: true, max: 65_536 }),
    elements: oneOf(value.elements, 'mtls.forwarded.elements', ['last', 'single'] as const, 'last'),
  })
}

/** `mtls.trustDomains` as a map: each domain's bundle read (files too) but not parsed yet. */
function resolveTrustBundles(value: Record<string, unknown>): TrustBundleSpec[] {
  const entries = Object.entries(value)
  if (entries.length === 0) fail('mtls.trustDomains', 'must name at least one trust domain')
  return entries.map(([domain, source]) => {
    const option = `mtls.trustDomains[${JSON.stringify(domain)}]`
    const parsed = parseSpiffeId(`spiffe://${domain}`)
    if (!parsed || parsed.trustDomain !== domain) fail('mtls.trustDomains', `contains an invalid trust domain ${JSON.stringify(domain)} (lower-case letters, digits, ".", "-", "_")`)
    const inline = (text: string): TrustBundleSpec => ({ domain, option, text, path: undefined, pollSeconds: 0 })
    if (typeof source === 'string') return inline(source)
    if (Buffer.isBuffer(source)) return inline(source.toString('utf8'))
    if (Array.isArray(source)) return inline(stringList(source, option).join('\n'))
    if (isFileOption(source) && source.path !== '') {
      const { text, path, pollSeconds } = readFileOption(source, option)
      return { domain, option: `${option}.path`, text, path, pollSeconds }
    }
    return fail(option, 'must be the PEM CA bundle of the trust domain: a string, an array of strings, a Buffer or { path, pollSeconds? }')
  })
}

function resolveResourceMetadata(value: unknown, enforced: Parameters<typeof buildResourceMetadata>[2]): ResolvedResourceMetadata {
  if (!isPlainObject(value)) return fail('resourceMetadata', 'must be an object { resource, scopesSupported?, authorizationServers? }')
  checkKeys(value, ['resource', 'scopesSupported', 'authorizationServers', 'resourceName', 'resourceDocumentation'], 'resourceMetadata')
  const resource = parseSecureUrl(value.resource, 'resourceMetadata.resource')
  if (resource.search) fail('resourceMetadata.resource', 'must not contain a query (RFC 9728 §2)')
  const options: ResourceMetadataOptions = { resource: value.resource as string }
  if (value.scopesSupported !== undefined) options.scopesSupported = scopeList(value.scopesSupported, 'resourceMetadata.scopesSupported')
  if (value.authorizationServers !== undefined) {
    options.authorizationServers = stringList(value.authorizationServers, 'resourceMetadata.authorizationServers')
    options.authorizationServers.forEach((server, i) => parseSecureUrl(server, `resourceMetadata.authorizationServers[${i}]`))
  }
  if (value.resourceName !== undefined) {
    if (typeof value.resourceName !== 'string') fail('resourceMetadata.resourceName', 'must be a string')
    options.resourceName = value.resourceName as string
  }
  if (value.resourceDocumentation !== undefined) {
    parseSecureUrl(value.resourceDocumentation, 'resourceMetadata.resourceDocumentation')
    options.resourceDocumentation = value.resourceDocumentation as string
  }
  return Object.freeze(buildResourceMetadata(resource, options, enforced))
}

/** Parse a local key document: a JWK Set object, JSON text, or PEM public keys / certificates. Throws TypeError naming the option. */
export function parseLocalKeys(value: unknown, option: string): { keys: unknown[] } {
  if (typeof value === 'object' && value !== null && Array.isArray((value as { keys?: unknown }).keys)) return value as { keys: unknown[] }
  if (typeof value !== 'string') return fail(option, 'must be a JWK Set, JWK Set JSON, PEM public keys or { path }')
  const text = value.trim()
  if (text.startsWith('{')) {
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      return fail(option, 'is not valid JSON')
    }
    return parseLocalKeys(parsed, option)
  }
  const blocks = text.match(/-----BEGIN (?:PUBLIC KEY|CERTIFICATE)-----[\s\S]*?-----END (?:PUBLIC KEY|CERTIFICATE)-----/g)
  if (!blocks) return fail(option, 'contains no JWK Set and no PEM public key or certificate')
  return {
    keys: blocks.map((block, i) => {
      try {
        return createPublicKey(block).export({ format: 'jwk' })
      } catch {
        return fail(option, `PEM block #${i + 1} is not a public key or certificate`)
      }
    }),
  }
}

function resolveLocalKeys(value: unknown, option: string, hasUri: boolean): ResolvedIssuer['localKeys'] {
  if (hasUri) fail(option, 'cannot be combined with jwksUri: choose local keys or a JWKS URL')
  if (isFileOption(value)) {
    const { text, path, pollSeconds } = readFileOption(value, option)
    return { document: parseLocalKeys(text, `${option}.path`), path, pollSeconds, option: `${option}.path` }
  }
  return { document: parseLocalKeys(value, option), path: undefined, pollSeconds: 0, option }
}

function resolveRevocation(value: unknown): ResolvedConfig['revocation'] {
  if (value === undefined) return undefined
  if (!isPlainObject(value)) return fail('revocation', 'must be an object { store?, isRevoked?, timeoutMs? }')
  checkKeys(value, ['store', 'isRevoked', 'timeoutMs'], 'revocation')
  const store = value.store as RevocationStore | undefined
  if (store !== undefined && (typeof store !== 'object' || store === null || typeof store.revoke !== 'function' || typeof store.isRevoked !== 'function')) {
    fail('revocation.store', 'must implement revoke(key, ttlSeconds) and isRevoked(key)')
  }
  if (value.isRevoked !== undefined && typeof value.isRevoked !== 'function') fail('revocation.isRevoked', 'must be a function (claims, context) => boolean | Promise<boolean>')
  return Object.freeze({
    store: store ?? new MemoryReplayStore(),
    isRevoked: value.isRevoked as NonNullable<ResolvedConfig['revocation']>['isRevoked'],
    timeoutMs: positive(value.timeoutMs, 'revocation.timeoutMs', 500, { max: 30_000 }),
  })
}

function resolveTrustDomain(value: unknown, option: string): string {
  const parsed = typeof value === 'string' ? parseSpiffeId(`spiffe://${value}`) : undefined
  if (!parsed || parsed.trustDomain !== value) return fail(option, `must be a SPIFFE trust domain name such as "example.org" (got ${JSON.stringify(value)})`)
  return value as string
}

function resolveSubjects(value: unknown, option: string, signer: string | undefined): readonly CallerPattern[] {
  if (signer === undefined) {
    fail(option, 'applies only to a single-signer issuer: local "jwks" and the signing workload\'s SPIFFE ID as "issuer"')
  }
  return Object.freeze(stringList(value, option).map((pattern, i) => compileCallerPattern(pattern, `${option}[${i}]`)))
}
