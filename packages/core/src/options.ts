/**
 * The index of the public options: {@link CallsignOptions} with its defaults, the resolved config,
 * and {@link resolveConfig}, which calls each feature's own resolver. Each feature keeps its option
 * type, resolved slice, defaults and resolver beside the code that uses them.
 */
import type { Algorithm } from './algorithms.js'
import type { DecisionHook } from './decision-events.js'
import { resolveDelegationConfig, type DelegationConfig, type DelegationOptions, type CallerConsistencyMode } from './delegation.js'
import { resolveDpop, type DpopOptions, type ResolvedDpop } from './dpop.js'
import { resolveEnvironment, type EnvironmentConfig, type Logger } from './environment.js'
import { resolveGuardOptions, type CredentialsMode, type GuardConfig } from './guard-options.js'
import { checkKeys, fail, isPlainObject, optionKeys } from './internal/validate.js'
import { resolveIssuers, type IssuerConfig, type IssuerOptions, type ScopeClaim, type TokenTypeMode } from './issuers.js'
import { resolveJwksOptions, type JwksOptions, type ResolvedJwksOptions } from './jwks-options.js'
import { resolveMtls, type MtlsMode, type MtlsOptions, type ResolvedMtls } from './mtls.js'
import { resolveAllowanceConfig, type AllowanceConfig, type SenderConstraintMode } from './policy.js'
import { resolveResourceMetadata, type ResolvedResourceMetadata, type ResourceMetadataOptions } from './resource-metadata.js'
import { resolveRevocation, type ResolvedRevocation, type RevocationOptions } from './revocation.js'

export { SUPPORTED_ALGORITHMS, DEFAULT_ALGORITHMS, type Algorithm } from './algorithms.js'
export type { DelegationOptions, DpopOptions, IssuerOptions, JwksOptions, Logger, MtlsMode, MtlsOptions, ScopeClaim, TokenTypeMode }
export type { DpopMode } from './dpop.js'
export type { ForwardedOptions } from './mtls.js'
export type { IntrospectionOptions } from './introspection-options.js'

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
  senderConstraint?: SenderConstraintMode
  dpop?: DpopOptions
  /**
   * When the token names the calling service (`act.sub`, or `client_id` mapped through
   * `clientIds`, or a `client_id` that is itself a SPIFFE ID) and an authorized peer certificate
   * names another one, refuse (401): the token is presented by a workload it was not issued to.
   * Default `'enforce'`.
   */
  callerConsistency?: CallerConsistencyMode
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
  revocation?: RevocationOptions
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
  credentials?: CredentialsMode
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

/** The frozen, validated configuration: every feature's slice (each feature function takes only its own). */
export type ResolvedConfig = IssuerConfig &
  EnvironmentConfig &
  GuardConfig &
  AllowanceConfig &
  DelegationConfig & {
    mtls: ResolvedMtls
    dpop: ResolvedDpop
    jwks: ResolvedJwksOptions
    revocation: ResolvedRevocation | undefined
    resourceMetadata: ResolvedResourceMetadata | undefined
  }

// In the order of the "known:" list of the unknown-option error.
const OPTION_KEYS = optionKeys<CallsignOptions>()([
  'issuers',
  'algorithms',
  'clockTolerance',
  'maxTokenAge',
  'typ',
  'scopeClaim',
  'mtls',
  'callers',
  'certificateGrants',
  'credentials',
  'realm',
  'jwks',
  'prefetch',
  'fetch',
  'now',
  'logger',
  'senderConstraint',
  'dpop',
  'callerConsistency',
  'clientIds',
  'delegation',
  'tokenCacheMaxEntries',
  'onDecision',
  'enforce',
  'peerExpiryWarningDays',
  'resourceMetadata',
  'revocation',
  'telemetry',
])

/**
 * Resolve public options into a frozen config; throws `TypeError` naming the option and the fix.
 * Called once, when the middleware is created — never at the first request.
 */
export function resolveConfig(options: CallsignOptions): ResolvedConfig {
  if (!isPlainObject(options)) return fail('options', 'must be an object')
  checkKeys(options, OPTION_KEYS, 'options')
  const environment = resolveEnvironment(options)
  const tokens = resolveIssuers(options)
  const mtls = resolveMtls(options.mtls, environment.logger)
  const allowances = resolveAllowanceConfig(options)
  const jwks = resolveJwksOptions(options.jwks)
  const guard = resolveGuardOptions(options)
  // The default in-memory stores run on the guard's clock when one is given (`now`), so a proof's
  // `jti` or a revoked token expires on the clock that judges the proof and the token.
  const storeClock = typeof options.now === 'function' ? options.now : undefined
  const dpop = resolveDpop(options.dpop, environment.now, storeClock)
  const resourceMetadata =
    options.resourceMetadata === undefined
      ? undefined
      : resolveResourceMetadata(options.resourceMetadata, {
          issuers: [...tokens.issuers.keys()],
          scopes: allowances.callers ? [...new Set(allowances.callers.flatMap((allowance) => [...allowance.scopes]))] : undefined,
          dpopAlgs: dpop.mode === 'off' ? undefined : [...dpop.algorithms],
          dpopRequired: dpop.mode === 'required',
        })
  return Object.freeze({
    ...tokens,
    ...environment,
    ...guard,
    ...allowances,
    mtls,
    dpop,
    jwks,
    revocation: resolveRevocation(options.revocation, storeClock),
    ...resolveDelegationConfig(options),
    resourceMetadata,
  })
}
