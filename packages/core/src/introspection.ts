import { createHash, randomBytes } from 'node:crypto'
import { SignJWT } from 'jose'
import { LRUCache } from 'lru-cache'
import {
  checkAudience,
  checkClaimShapes,
  checkSigner,
  checkTimeClaims,
  COMPACT_JWS,
  readActors,
  readScopes,
  sealVerified,
  verifySignature,
  type AccessTokenClaims,
  type TokenCheckConfig,
  type VerifiedToken,
} from './access-token.js'
import { fetchIssuerMetadata } from './discovery.js'
import { AuthError, invalidToken, type AuthCheck } from './errors.js'
import { fetchBody, FetchFailure, parseJson } from './internal/fetch-json.js'
import { IssuerKeys } from './jwks.js'
import { decodeJsonObject, jwsSegments } from './internal/jws.js'
import type { ResolvedIntrospection } from './introspection-options.js'
import type { ResolvedIssuer } from './issuers.js'
import type { KeySourceConfig } from './jwks-options.js'
import { isPlainObject, parseSecureUrl } from './internal/validate.js'

/** Largest introspection answer read. */
const MAX_ANSWER_BYTES = 64 * 1024
/** Lifetime of a `private_key_jwt` client assertion. */
const ASSERTION_SECONDS = 60
/** RFC 9701 §4: the media type of a signed introspection answer. */
const JWT_MEDIA_TYPE = 'application/token-introspection+jwt'
/** RFC 7521 §4.2 / RFC 7523 §2.2. */
const JWT_BEARER_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'

type Answer = { ok: true; verified: VerifiedToken } | { ok: false; reason: string; check: AuthCheck }

/** What introspection reads: the issuers (with their `introspection`), the token rules, and what issuer keys need. */
export type IntrospectorConfig = TokenCheckConfig & KeySourceConfig

interface CachedAnswer {
  answer: Answer
  notAfter: number
}

/** A JWS compact serialization: three strict base64url segments. */
export const isJwsShaped = (token: string): boolean => COMPACT_JWS.test(token)

/** Unverified `iss` of a JWS-shaped token, only to choose the issuer; never trusted. */
function unverifiedIssuer(token: string): string | undefined {
  try {
    const { iss } = decodeJsonObject(token.split('.')[1]!)
    return typeof iss === 'string' ? iss : undefined
  } catch {
    return undefined
  }
}

/**
 * RFC 7662 token introspection for the issuers that configure `introspection`.
 *
 * - Which tokens: a token that is not JWS-shaped goes to the first configured issuer with
 *   `introspection`; a JWT whose (unverified) `iss` names an issuer with `tokens: 'all'` goes to
 *   that issuer. Everything else is verified locally as a JWT.
 * - The answer (RFC 7662 §2.2) must be `active: true`; `iss`, when present, must be the issuer;
 *   `aud`, when present, must contain one of the audiences; `exp`/`nbf`, when present, are checked
 *   with the clock tolerance. It becomes the same `VerifiedToken` a JWT gives (scopes from `scope`,
 *   actors from `act`, `cnf` for DPoP and certificate binding).
 * - Cached by SHA-256 of the token (never the token), bounded: active answers for `cacheSeconds`
 *   but never past `exp`, inactive ones for `negativeCacheSeconds`. Identical concurrent
 *   introspections share one request.
 * - An endpoint that fails, times out, answers non-2xx or not an RFC 7662 document: 503
 *   `introspection_unavailable` (never acceptance, never cached).
 */
export class Introspector {
  readonly #config: IntrospectorConfig
  readonly #opaqueIssuer: ResolvedIssuer | undefined
  readonly #caches = new Map<string, LRUCache<string, CachedAnswer>>()
  readonly #inflight = new Map<string, Promise<Answer>>()
  /** Discovered endpoints by issuer (a failed discovery is dropped, so the next request retries). */
  readonly #endpoints = new Map<string, Promise<URL>>()
  /** Per issuer: until when (ms) new introspections are not attempted after a failure. */
  readonly #backoffUntil = new Map<string, number>()
  #keys: IssuerKeys | undefined
  /** Introspection requests sent (for tests and metrics). */
  requests = 0

  /** `keys`: the guard's issuer keys, to verify RFC 9701 JWT answers (a private set otherwise). */
  constructor(config: IntrospectorConfig, keys?: IssuerKeys) {
    this.#config = config
    this.#keys = keys
    for (const issuer of config.issuers.values()) {
      if (!issuer.introspection) continue
      this.#opaqueIssuer ??= issuer
      const { auth } = issuer.introspection
      if (auth.method === 'tls_client_auth' || auth.method === 'self_signed_tls_client_auth') {
        auth.tls.onReloadFailure = (reason) =>
          config.logger.warn('callsign: the introspection client certificate was not reloaded; the previous one stays in use', {
            issuer: issuer.issuer,
            reason,
          })
      }
      if (issuer.introspection.maxEntries > 0) this.#caches.set(issuer.issuer, new LRUCache({ max: issuer.introspection.maxEntries }))
    }
  }

  /** Whether any issuer introspects. */
  static wanted(config: Pick<IntrospectorConfig, 'issuers'>): boolean {
    return [...config.issuers.values()].some((issuer) => issuer.introspection !== undefined)
  }

  /** The issuer that introspects `token`, or `undefined` when it is verified as a JWT. */
  issuerFor(token: string): ResolvedIssuer | undefined {
    if (!isJwsShaped(token)) return this.#opaqueIssuer
    const iss = unverifiedIssuer(token)
    const issuer = iss === undefined ? undefined : this.#config.issuers.get(iss)
    return issuer?.introspection?.tokens === 'all' ? issuer : undefined
  }

  /** Introspect `token` at `issuer` (cached, single flight); resolves to the verified token or throws an `AuthError`. */
  async introspect(token: string, issuer: ResolvedIssuer): Promise<VerifiedToken> {
    const key = `${issuer.issuer}\n${createHash('sha256').update(token).digest('base64url')}`
    const cache = this.#caches.get(issuer.issuer)
    const cached = cache?.get(key)
    if (cached) {
      if (this.#config.now() < cached.notAfter) return unwrap(cached.answer)
      cache!.delete(key)
    }
    let flight = this.#inflight.get(key)
    if (!flight) {
      // After a failure, the endpoint is left alone for `failureBackoffSeconds` (no retry storm).
      const until = this.#backoffUntil.get(issuer.issuer)
      if (until !== undefined) {
        if (this.#config.now() < until) throw unavailable(issuer.introspection!)
        this.#backoffUntil.delete(issuer.issuer)
      }
      flight = this.#fetch(token, issuer, key).finally(() => this.#inflight.delete(key))
      this.#inflight.set(key, flight)
    }
    return unwrap(await flight)
  }

  /** The configured endpoint, or `introspection_endpoint` from the issuer's metadata (discovered once). */
  #endpoint(issuer: ResolvedIssuer): Promise<URL> {
    const configured = issuer.introspection!.endpoint
    if (configured) return Promise.resolve(configured)
    let endpoint = this.#endpoints.get(issuer.issuer)
    if (!endpoint) {
      const mtls = issuer.introspection!.auth.method.endsWith('tls_client_auth')
      endpoint = discoverIntrospectionEndpoint(issuer.issuer, this.#config.fetch, issuer.introspection!.timeoutSeconds, { mtls })
      this.#endpoints.set(issuer.issuer, endpoint)
      endpoint.catch(() => this.#endpoints.delete(issuer.issuer))
    }
    return endpoint
  }

  async #fetch(token: string, issuer: ResolvedIssuer, key: string): Promise<Answer> {
    const options = issuer.introspection!
    let document: Record<string, unknown>
    try {
      document = await this.#request(token, issuer)
    } catch (error) {
      this.#config.logger.warn('callsign: token introspection failed', { issuer: issuer.issuer, reason: (error as Error).message })
      if (options.failureBackoffSeconds > 0) this.#backoffUntil.set(issuer.issuer, this.#config.now() + options.failureBackoffSeconds * 1000)
      throw unavailable(options, error)
    }
    const now = this.#config.now()
    let answer: Answer
    let notAfter: number
    try {
      const { verified, expiresAt } = mapAnswer(document, issuer, this.#config, now)
      answer = { ok: true, verified }
      notAfter = Math.min(now + options.cacheSeconds * 1000, expiresAt)
    } catch (error) {
      if (!(error instanceof AuthError)) throw error
      answer = { ok: false, reason: error.message, check: error.check }
      notAfter = now + options.negativeCacheSeconds * 1000
    }
    if (notAfter > now) this.#caches.get(issuer.issuer)?.set(key, { answer, notAfter })
    return answer
  }

  /** Ask the endpoint about `token`, authenticated as configured: the RFC 7662 document it answered. Throws on any failure. */
  async #request(token: string, issuer: ResolvedIssuer): Promise<Record<string, unknown>> {
    const options = issuer.introspection!
    const endpoint = await this.#endpoint(issuer)
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' }
    const form = new URLSearchParams({ token, token_type_hint: 'access_token' })
    const send = await this.#authenticate(options, endpoint, headers, form)
    if (options.response === 'jwt') headers.accept = JWT_MEDIA_TYPE
    this.requests++
    const reply = await fetchBody(send, endpoint, {
      timeoutSeconds: options.timeoutSeconds,
      maxBytes: MAX_ANSWER_BYTES,
      post: { headers, body: form.toString() },
    })
    let document: unknown
    if (options.response !== 'jwt') document = parseJson(reply.text, endpoint)
    // Asked for a signed answer (RFC 9701): an unsigned one is not accepted in its place.
    else if (!isJwtMediaType(reply.contentType)) throw new Error(`${endpoint.href}: answered without a signed (RFC 9701) response`)
    else document = await this.#verifyJwtAnswer(reply.text, issuer, endpoint)
    if (!isPlainObject(document) || typeof document.active !== 'boolean') {
      throw new Error(`${endpoint.href}: not an RFC 7662 introspection response`)
    }
    return document
  }

  /**
   * The client authentication of the request, added to `headers` or `form`; resolves to the
   * transport: the guard's fetch, or HTTPS presenting the client certificate (RFC 8705).
   */
  async #authenticate(options: ResolvedIntrospection, endpoint: URL, headers: Record<string, string>, form: URLSearchParams): Promise<typeof globalThis.fetch> {
    const { auth } = options
    if (auth.method === 'client_secret_basic') {
      // RFC 6749 §2.3.1: id and secret are form-encoded before Basic.
      headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(options.clientId)}:${encodeURIComponent(auth.clientSecret)}`).toString('base64')}`
    } else if (auth.method === 'private_key_jwt') {
      form.set('client_assertion_type', JWT_BEARER_ASSERTION)
      form.set('client_assertion', await this.#assertion(options, endpoint))
    } else {
      // RFC 8705 §2: the certificate authenticates; `client_id` names the client.
      form.set('client_id', options.clientId)
      return auth.tls.fetch
    }
    return this.#config.fetch
  }

  /** RFC 7523 §2.2 client assertion: iss = sub = client id, aud = the endpoint, short-lived, unique `jti`. */
  async #assertion(options: ResolvedIntrospection, endpoint: URL): Promise<string> {
    const auth = options.auth as Extract<ResolvedIntrospection['auth'], { method: 'private_key_jwt' }>
    const now = Math.floor(this.#config.now() / 1000)
    return new SignJWT({})
      .setProtectedHeader({ alg: auth.algorithm, typ: 'JWT' })
      .setIssuer(options.clientId)
      .setSubject(options.clientId)
      .setAudience(endpoint.href)
      .setJti(randomBytes(16).toString('base64url'))
      .setIssuedAt(now)
      .setExpirationTime(now + ASSERTION_SECONDS)
      .sign(auth.privateKey)
  }

  /**
   * RFC 9701 §5: a signed answer. Checked: JWS (no `crit`), `alg` allowed for the issuer, `typ`
   * `token-introspection+jwt`, signature with the issuer's key, `iss` = issuer, `aud` = client id,
   * `iat` a number, and `token_introspection` an object (the RFC 7662 answer). Throws on any failure.
   */
  async #verifyJwtAnswer(jwt: string, issuer: ResolvedIssuer, endpoint: URL): Promise<unknown> {
    const compact = jwt.trim()
    const parts = jwsSegments(compact)
    if (!parts) throw new Error(`${endpoint.href}: malformed introspection JWT`)
    let header: Record<string, unknown>
    let payload: Record<string, unknown>
    try {
      header = decodeJsonObject(parts[0])
      payload = decodeJsonObject(parts[1])
    } catch {
      throw new Error(`${endpoint.href}: malformed introspection JWT`)
    }
    if (typeof header.alg !== 'string' || !issuer.algorithms.has(header.alg)) throw new Error(`${endpoint.href}: introspection JWT algorithm not allowed`)
    if (header.crit !== undefined || header.b64 !== undefined) throw new Error(`${endpoint.href}: introspection JWT has unsupported header parameters`)
    const typ = typeof header.typ === 'string' ? header.typ.toLowerCase().replace(/^application\//, '') : undefined
    if (typ !== 'token-introspection+jwt') throw new Error(`${endpoint.href}: introspection JWT typ is not token-introspection+jwt`)
    if (header.kid !== undefined && (typeof header.kid !== 'string' || header.kid.length === 0 || header.kid.length > 256))
      throw new Error(`${endpoint.href}: malformed introspection JWT kid`)
    this.#keys ??= new IssuerKeys(this.#config)
    const key = await this.#keys.getKey(issuer, { alg: header.alg, kid: header.kid })
    if (!verifySignature(header.alg, key, `${parts[0]}.${parts[1]}`, parts[2]))
      throw new Error(`${endpoint.href}: introspection JWT signature verification failed`)
    if (payload.iss !== issuer.issuer) throw new Error(`${endpoint.href}: introspection JWT iss is not the issuer`)
    const aud = typeof payload.aud === 'string' ? [payload.aud] : payload.aud
    if (!Array.isArray(aud) || !aud.includes(issuer.introspection!.clientId)) throw new Error(`${endpoint.href}: introspection JWT aud is not the client id`)
    if (typeof payload.iat !== 'number' || !Number.isFinite(payload.iat)) throw new Error(`${endpoint.href}: introspection JWT without iat`)
    const inner = payload.token_introspection
    if (!isPlainObject(inner)) throw new Error(`${endpoint.href}: introspection JWT without a token_introspection object`)
    return inner
  }
}

const isJwtMediaType = (contentType: string | null): boolean => contentType !== null && contentType.split(';')[0]!.trim().toLowerCase() === JWT_MEDIA_TYPE

/**
 * Discover an issuer's `introspection_endpoint` (RFC 8414 §2) from its metadata
 * ({@link fetchIssuerMetadata}, as for `jwks_uri`); it must be https (or loopback http).
 * With `mtls` (the client authenticates with its certificate), the RFC 8705 §5 alias
 * `mtls_endpoint_aliases.introspection_endpoint` is preferred, and the endpoint must be https.
 */
export async function discoverIntrospectionEndpoint(
  issuer: string,
  fetchFn: typeof globalThis.fetch,
  timeoutSeconds: number,
  { mtls = false } = {},
): Promise<URL> {
  const { url, metadata } = await fetchIssuerMetadata(issuer, fetchFn, { timeoutSeconds, maxBytes: MAX_ANSWER_BYTES })
  try {
    const aliases = metadata.mtls_endpoint_aliases
    const alias = mtls && typeof aliases === 'object' && aliases !== null ? (aliases as Record<string, unknown>).introspection_endpoint : undefined
    const endpoint =
      alias === undefined
        ? parseSecureUrl(metadata.introspection_endpoint, `${url.href} introspection_endpoint`)
        : parseSecureUrl(alias, `${url.href} mtls_endpoint_aliases.introspection_endpoint`)
    if (mtls && endpoint.protocol !== 'https:') throw new Error(`${endpoint.href}: a client certificate is only presented over https`)
    return endpoint
  } catch (error) {
    throw new FetchFailure((error as Error).message)
  }
}

/** 503 with `Retry-After`: the backoff, at least one second. */
const unavailable = (options: ResolvedIntrospection, cause?: unknown): AuthError =>
  new AuthError('introspection_unavailable', 'token introspection is temporarily unavailable', {
    retryAfterSeconds: Math.max(1, Math.ceil(options.failureBackoffSeconds)),
    ...(cause === undefined ? {} : { cause }),
    check: 'signature',
  })

const unwrap = (answer: Answer): VerifiedToken => {
  if (answer.ok) return answer.verified
  throw invalidToken(answer.reason, answer.check)
}

/**
 * An RFC 7662 §2.2 answer as a `VerifiedToken`, with the instant (ms) after which it must not be
 * reused. Throws `invalid_token` for an inactive token or one that is not for this service.
 */
export function mapAnswer(
  answer: Record<string, unknown>,
  issuer: ResolvedIssuer,
  config: TokenCheckConfig,
  now: number,
): { verified: VerifiedToken; expiresAt: number } {
  if (answer.active !== true) throw invalidToken('token is not active', 'claims')
  if (answer.iss !== undefined && answer.iss !== issuer.issuer) throw invalidToken('untrusted issuer', 'issuer')
  checkAudience(answer.aud, issuer, false)
  // The claim rules of a JWT (time, age, lifetime, shapes, `cnf`), with `exp` optional (RFC 7662 §2.2).
  const expiresAt = checkTimeClaims(answer, issuer, config, now, false)
  checkClaimShapes(answer)
  for (const claim of ['username', 'token_type'] as const) {
    const value = answer[claim]
    if (value !== undefined && (typeof value !== 'string' || value.length === 0)) throw invalidToken(`malformed ${claim} claim`, 'claims')
  }
  if (answer.scope !== undefined && typeof answer.scope !== 'string') throw invalidToken('malformed scope claim', 'claims')
  const { active: _active, ...rest } = answer
  const claims = { ...rest, iss: issuer.issuer } as AccessTokenClaims
  const verified = sealVerified({
    claims,
    issuer,
    // RFC 7662 §2.2: `scope` is a space-separated string, whatever the issuer's JWT scope claim.
    scopes: readScopes(claims, { ...issuer, scopeClaim: 'scope' }),
    actors: readActors(claims.act),
  })
  checkSigner(verified)
  return { verified, expiresAt }
}
