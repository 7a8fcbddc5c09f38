import { algorithmsOf, DEFAULT_ALGORITHMS, type Algorithm } from './algorithms.js'
import { resolveIntrospection, type IntrospectionOptions, type ResolvedIntrospection } from './introspection-options.js'
import { checkKeys, fail, isPlainObject, oneOf, optionKeys, parseSecureUrl, positive, stringList } from './internal/validate.js'
import { resolveLocalKeys, type LocalKeys, type LocalKeysOption } from './local-keys.js'
import { compileCallerPattern, isTrustDomainName, isWorkloadSpiffeId, type CallerPattern } from './spiffe.js'

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
  jwks?: LocalKeysOption
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

export interface ResolvedIssuer {
  issuer: string
  audience: readonly string[]
  jwksUri: URL | undefined
  /** Local keys: the parsed document (inline) or the file to read and watch; `option` names it in startup errors. */
  localKeys: LocalKeys | undefined
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

/** The trusted issuers, and the guard-wide rules of their tokens. */
export interface IssuerConfig {
  issuers: ReadonlyMap<string, ResolvedIssuer>
  /** Issuers of SPIFFE JWT-SVIDs by trust domain, for tokens without `iss`. */
  svidIssuers: ReadonlyMap<string, ResolvedIssuer>
  maxTokenAgeSeconds: number | undefined
}

/** The guard-wide options an issuer inherits (and may narrow or override). */
interface IssuerDefaults {
  algorithms: ReadonlySet<string>
  typ: TokenTypeMode
  scopeClaim: ScopeClaim
}

const ISSUER_KEYS = optionKeys<IssuerOptions>()([
  'issuer',
  'audience',
  'jwksUri',
  'typ',
  'scopeClaim',
  'algorithms',
  'jwks',
  'maxTokenLifetime',
  'subjects',
  'trustDomain',
  'introspection',
])
const TYP_MODES: readonly TokenTypeMode[] = ['at+jwt', 'jwt']
const SCOPE_CLAIMS: readonly ScopeClaim[] = ['scope', 'scp', 'permissions']

/** `issuers` with the guard-wide `algorithms`, `typ`, `scopeClaim` and `maxTokenAge`. */
export function resolveIssuers(options: { issuers?: unknown; algorithms?: unknown; typ?: unknown; scopeClaim?: unknown; maxTokenAge?: unknown }): IssuerConfig {
  const defaults: IssuerDefaults = {
    algorithms: options.algorithms === undefined ? new Set<string>(DEFAULT_ALGORITHMS) : algorithmsOf(options.algorithms, 'algorithms'),
    typ: oneOf(options.typ, 'typ', TYP_MODES, 'at+jwt'),
    scopeClaim: oneOf(options.scopeClaim, 'scopeClaim', SCOPE_CLAIMS, 'scope'),
  }
  const list: unknown[] = Array.isArray(options.issuers) ? options.issuers : options.issuers === undefined ? [] : [options.issuers]
  if (list.length === 0) fail('issuers', 'must name at least one issuer: { issuer, audience, jwksUri? }')
  const issuers = new Map<string, ResolvedIssuer>()
  list.forEach((entry, index) => {
    const issuer = resolveIssuer(entry, Array.isArray(options.issuers) ? `issuers[${index}]` : 'issuers', defaults, issuers)
    issuers.set(issuer.issuer, issuer)
  })
  const svidIssuers = new Map<string, ResolvedIssuer>()
  for (const issuer of issuers.values()) {
    if (issuer.trustDomain === undefined) continue
    if (svidIssuers.has(issuer.trustDomain)) fail('issuers', `name the JWT-SVID trust domain ${JSON.stringify(issuer.trustDomain)} more than once`)
    svidIssuers.set(issuer.trustDomain, issuer)
  }
  const maxTokenAgeSeconds = options.maxTokenAge === undefined ? undefined : positive(options.maxTokenAge, 'maxTokenAge', 0)
  return { issuers, svidIssuers, maxTokenAgeSeconds }
}

/** One entry of `issuers`, named `name`; `known`: the issuers before it, whose `issuer` it must not repeat. */
function resolveIssuer(entry: unknown, name: string, defaults: IssuerDefaults, known: ReadonlyMap<string, ResolvedIssuer>): ResolvedIssuer {
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
  if (known.has(issuer)) fail(`${name}.issuer`, `duplicates another issuer: ${JSON.stringify(issuer)}`)
  const algorithms = entry.algorithms === undefined ? defaults.algorithms : narrowAlgorithms(entry.algorithms, `${name}.algorithms`, defaults.algorithms)
  const trustDomain = entry.trustDomain === undefined ? undefined : resolveTrustDomain(entry.trustDomain, `${name}.trustDomain`)
  const signer = entry.jwks !== undefined && trustDomain === undefined && isWorkloadSpiffeId(issuer) ? issuer : undefined
  return Object.freeze({
    issuer,
    audience: Object.freeze(stringList(entry.audience, `${name}.audience`)),
    jwksUri: entry.jwksUri === undefined ? undefined : parseSecureUrl(entry.jwksUri, `${name}.jwksUri`),
    localKeys: entry.jwks === undefined ? undefined : resolveLocalKeys(entry.jwks, `${name}.jwks`, entry.jwksUri !== undefined),
    maxTokenLifetimeSeconds: entry.maxTokenLifetime === undefined ? undefined : positive(entry.maxTokenLifetime, `${name}.maxTokenLifetime`, 0),
    signer,
    subjects: entry.subjects === undefined ? undefined : resolveSubjects(entry.subjects, `${name}.subjects`, signer),
    trustDomain,
    typ: oneOf(entry.typ, `${name}.typ`, TYP_MODES, defaults.typ),
    scopeClaim: oneOf(entry.scopeClaim, `${name}.scopeClaim`, SCOPE_CLAIMS, defaults.scopeClaim),
    algorithms,
    ...(entry.introspection === undefined ? {} : { introspection: resolveIntrospection(entry.introspection, `${name}.introspection`) }),
  })
}

/** An issuer's own `algorithms`: within the guard-wide ones. */
function narrowAlgorithms(value: unknown, option: string, guardWide: ReadonlySet<string>): Set<string> {
  const algorithms = algorithmsOf(value, option)
  for (const alg of algorithms) {
    if (!guardWide.has(alg)) fail(option, `contains ${alg}, which the guard-wide "algorithms" does not allow`)
  }
  return algorithms
}

function resolveTrustDomain(value: unknown, option: string): string {
  if (!isTrustDomainName(value)) return fail(option, `must be a SPIFFE trust domain name such as "example.org" (got ${JSON.stringify(value)})`)
  return value
}

function resolveSubjects(value: unknown, option: string, signer: string | undefined): readonly CallerPattern[] {
  if (signer === undefined) {
    fail(option, 'applies only to a single-signer issuer: local "jwks" and the signing workload\'s SPIFFE ID as "issuer"')
  }
  return Object.freeze(stringList(value, option).map((pattern, i) => compileCallerPattern(pattern, `${option}[${i}]`)))
}
