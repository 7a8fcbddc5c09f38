import { compileCallerPattern, parseSpiffeId, type CallerPattern } from './spiffe.js'

/** Asymmetric JWS algorithms Callsign can verify (RFC 7518, RFC 8037). */
export const SUPPORTED_ALGORITHMS = [
  'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512',
] as const
export type Algorithm = (typeof SUPPORTED_ALGORITHMS)[number]

/** Default allowlist: every supported asymmetric algorithm. `none` and `HS*` are never accepted. */
export const DEFAULT_ALGORITHMS: readonly Algorithm[] = SUPPORTED_ALGORITHMS

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
  /** The exact `iss` value, e.g. `https://auth.example.com/` (compared byte for byte). */
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
}

/** `'required'`: every request must come over TLS with a client certificate the socket authorized. `'optional'` (default): used when present. */
export type MtlsMode = 'required' | 'optional'

export interface MtlsOptions {
  mode?: MtlsMode
  /** SPIFFE trust domains accepted from peer certificates; a peer outside them is refused. Also requires peers to carry a SPIFFE ID. */
  trustDomains?: string[]
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
  typ: TokenTypeMode
  scopeClaim: ScopeClaim
  algorithms: ReadonlySet<string>
}

export interface ResolvedAllowance {
  pattern: CallerPattern
  /** 0 for exact, else prefix length: the most specific match wins. */
  specificity: number
  scopes: ReadonlySet<string>
}

export interface ResolvedConfig {
  issuers: ReadonlyMap<string, ResolvedIssuer>
  clockToleranceSeconds: number
  maxTokenAgeSeconds: number | undefined
  mtls: { mode: MtlsMode; trustDomains: ReadonlySet<string> | undefined }
  callers: readonly ResolvedAllowance[] | undefined
  credentials: 'required' | 'optional'
  realm: string
  jwks: Required<JwksOptions>
  prefetch: boolean
  fetch: typeof globalThis.fetch
  now: () => number
  logger: Logger
}

const fail = (option: string, message: string): never => {
  throw new TypeError(`Callsign: "${option}" ${message}`)
}

const isPlainObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value)

function checkKeys(value: Record<string, unknown>, allowed: readonly string[], option: string): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) fail(`${option}.${key}`, `is not a known option (known: ${allowed.join(', ')})`)
  }
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]'])

/** `https:` URLs, or `http:` on loopback for development and benchmarks. */
export function parseSecureUrl(value: unknown, option: string): URL {
  if (typeof value !== 'string' || value.length === 0) return fail(option, 'must be a URL string')
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return fail(option, `is not a valid URL: ${JSON.stringify(value)}`)
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && LOOPBACK_HOSTS.has(url.hostname))) {
    fail(option, `must use https (http is allowed only on 127.0.0.1, localhost and [::1]): ${JSON.stringify(value)}`)
  }
  if (url.username || url.password) fail(option, 'must not contain credentials')
  if (url.hash) fail(option, 'must not contain a fragment')
  return url
}

function positive(value: unknown, option: string, fallback: number, { integer = false, max = Infinity, allowZero = false } = {}): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0 || (!allowZero && value === 0) || value > max || (integer && !Number.isInteger(value))) {
    fail(option, `must be a ${integer ? 'whole' : ''}${integer ? ' ' : ''}number ${allowZero ? '>= 0' : '> 0'}${max === Infinity ? '' : ` and <= ${max}`} (got ${JSON.stringify(value)})`)
  }
  return value as number
}

function oneOf<T extends string>(value: unknown, option: string, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback
  if (!allowed.includes(value as T)) fail(option, `must be one of ${allowed.map((v) => `'${v}'`).join(', ')} (got ${JSON.stringify(value)})`)
  return value as T
}

function algorithmsOf(value: unknown, option: string): Set<string> {
  if (!Array.isArray(value) || value.length === 0) return fail(option, 'must be a non-empty array of algorithm names')
  const result = new Set<string>()
  for (const alg of value) {
    if (typeof alg !== 'string') fail(option, 'must contain only strings')
    if (/^none$/i.test(alg) || /^HS/i.test(alg)) {
      fail(option, `contains ${JSON.stringify(alg)}: unsigned and symmetric (HS*) algorithms are refused; access tokens must be signed with an asymmetric key`)
    }
    if (!(SUPPORTED_ALGORITHMS as readonly string[]).includes(alg)) {
      fail(option, `contains unsupported algorithm ${JSON.stringify(alg)} (supported: ${SUPPORTED_ALGORITHMS.join(', ')})`)
    }
    result.add(alg)
  }
  return result
}

function stringList(value: unknown, option: string): string[] {
  const list = typeof value === 'string' ? [value] : value
  if (!Array.isArray(list) || list.length === 0 || list.some((v) => typeof v !== 'string' || v.length === 0)) {
    return fail(option, 'must be a non-empty string or a non-empty array of non-empty strings')
  }
  return list as string[]
}

/** Validate scope names: no whitespace (RFC 6749 §3.3 scope-token). */
export function scopeList(value: unknown, option: string): string[] {
  if (!Array.isArray(value)) return fail(option, 'must be an array of scope strings')
  for (const scope of value) {
    if (typeof scope !== 'string' || !/^[\x21\x23-\x5b\x5d-\x7e]+$/.test(scope)) {
      fail(option, `contains an invalid scope ${JSON.stringify(scope)} (RFC 6749 scope-token: printable ASCII, no space, quote or backslash)`)
    }
  }
  return value as string[]
}

const OPTION_KEYS = [
  'issuers', 'algorithms', 'clockTolerance', 'maxTokenAge', 'typ', 'scopeClaim', 'mtls', 'callers', 'credentials',
  'realm', 'jwks', 'prefetch', 'fetch', 'now', 'logger',
] as const
const ISSUER_KEYS = ['issuer', 'audience', 'jwksUri', 'typ', 'scopeClaim', 'algorithms'] as const
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
    const issuerUrl = parseSecureUrl(entry.issuer, `${name}.issuer`)
    if (issuerUrl.search) fail(`${name}.issuer`, 'must not contain a query')
    const issuer = entry.issuer as string
    if (issuers.has(issuer)) fail(`${name}.issuer`, `duplicates another issuer: ${JSON.stringify(issuer)}`)
    let issuerAlgorithms = algorithms
    if (entry.algorithms !== undefined) {
      issuerAlgorithms = algorithmsOf(entry.algorithms, `${name}.algorithms`)
      for (const alg of issuerAlgorithms) {
        if (!algorithms.has(alg)) fail(`${name}.algorithms`, `contains ${alg}, which the guard-wide "algorithms" does not allow`)
      }
    }
    issuers.set(issuer, Object.freeze({
      issuer,
      audience: Object.freeze(stringList(entry.audience, `${name}.audience`)),
      jwksUri: entry.jwksUri === undefined ? undefined : parseSecureUrl(entry.jwksUri, `${name}.jwksUri`),
      typ: oneOf(entry.typ, `${name}.typ`, TYP_MODES, typ),
      scopeClaim: oneOf(entry.scopeClaim, `${name}.scopeClaim`, SCOPE_CLAIMS, scopeClaim),
      algorithms: issuerAlgorithms,
    }))
  })

  let mtlsMode: MtlsMode = 'optional'
  let trustDomains: Set<string> | undefined
  if (typeof options.mtls === 'string' || options.mtls === undefined) {
    mtlsMode = oneOf(options.mtls, 'mtls', ['required', 'optional'] as const, 'optional')
  } else if (isPlainObject(options.mtls)) {
    checkKeys(options.mtls, ['mode', 'trustDomains'], 'mtls')
    mtlsMode = oneOf(options.mtls.mode, 'mtls.mode', ['required', 'optional'] as const, 'optional')
    if (options.mtls.trustDomains !== undefined) {
      trustDomains = new Set(stringList(options.mtls.trustDomains, 'mtls.trustDomains'))
      for (const domain of trustDomains) {
        const parsed = parseSpiffeId(`spiffe://${domain}`)
        if (!parsed || parsed.trustDomain !== domain) fail('mtls.trustDomains', `contains an invalid trust domain ${JSON.stringify(domain)} (lower-case letters, digits, ".", "-", "_")`)
      }
    }
  } else {
    fail('mtls', "must be 'required', 'optional' or { mode, trustDomains }")
  }

  let callers: ResolvedAllowance[] | undefined
  if (options.callers !== undefined) {
    if (!isPlainObject(options.callers)) fail('callers', 'must be an object mapping caller patterns to scope arrays')
    callers = Object.entries(options.callers).map(([pattern, scopes]) => ({
      pattern: compileCallerPattern(pattern, `callers[${JSON.stringify(pattern)}]`),
      specificity: pattern.endsWith('/*') ? pattern.length : Number.MAX_SAFE_INTEGER,
      scopes: new Set(scopeList(scopes, `callers[${JSON.stringify(pattern)}]`)),
    }))
    callers.sort((a, b) => b.specificity - a.specificity)
  }

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
  const realm = options.realm ?? 'api'
  if (typeof realm !== 'string' || !/^[\x20\x21\x23-\x5b\x5d-\x7e]{1,100}$/.test(realm)) {
    fail('realm', 'must be 1-100 printable ASCII characters without quotes or backslashes')
  }
  const globalFetch = globalThis.fetch
  return Object.freeze({
    issuers,
    clockToleranceSeconds: positive(options.clockTolerance, 'clockTolerance', 30, { allowZero: true, max: 300 }),
    maxTokenAgeSeconds: options.maxTokenAge === undefined ? undefined : positive(options.maxTokenAge, 'maxTokenAge', 0),
    mtls: Object.freeze({ mode: mtlsMode, trustDomains }),
    callers: callers && Object.freeze(callers),
    credentials: oneOf(options.credentials, 'credentials', ['required', 'optional'] as const, 'required'),
    realm,
    jwks: Object.freeze(jwks),
    prefetch: options.prefetch ?? false,
    fetch: options.fetch ?? ((input: Parameters<typeof fetch>[0], init?: RequestInit) => globalFetch(input, init)),
    now: options.now ?? Date.now,
    logger: options.logger ?? console,
  })
}
