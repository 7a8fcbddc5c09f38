import { createHash } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import { BASE64URL, readActors, readScopes, type AccessTokenClaims, type VerifiedToken } from './access-token.js'
import { AuthError, invalidToken } from './errors.js'
import { fetchJson } from './internal/fetch-json.js'
import type { ResolvedConfig, ResolvedIssuer } from './options.js'

/** Largest introspection answer read. */
const MAX_ANSWER_BYTES = 64 * 1024
/** `Retry-After` of an introspection outage. */
const RETRY_AFTER_SECONDS = 2

type Answer = { ok: true; verified: VerifiedToken } | { ok: false; reason: string }

interface CachedAnswer {
  answer: Answer
  notAfter: number
}

/** A JWS compact serialization: three strict base64url segments. */
export const isJwsShaped = (token: string): boolean => {
  const parts = token.split('.')
  return parts.length === 3 && parts.every((part) => BASE64URL.test(part))
}

/** Unverified `iss` of a JWS-shaped token, only to choose the issuer; never trusted. */
function unverifiedIssuer(token: string): string | undefined {
  try {
    const payload = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { iss?: unknown }
    return typeof payload?.iss === 'string' ? payload.iss : undefined
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
  readonly #config: ResolvedConfig
  readonly #opaqueIssuer: ResolvedIssuer | undefined
  readonly #caches = new Map<string, LRUCache<string, CachedAnswer>>()
  readonly #inflight = new Map<string, Promise<Answer>>()
  /** Introspection requests sent (for tests and metrics). */
  requests = 0

  constructor(config: ResolvedConfig) {
    this.#config = config
    for (const issuer of config.issuers.values()) {
      if (!issuer.introspection) continue
      this.#opaqueIssuer ??= issuer
      if (issuer.introspection.maxEntries > 0) this.#caches.set(issuer.issuer, new LRUCache({ max: issuer.introspection.maxEntries }))
    }
  }

  /** Whether any issuer introspects. */
  static wanted(config: ResolvedConfig): boolean {
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
      flight = this.#fetch(token, issuer, key).finally(() => this.#inflight.delete(key))
      this.#inflight.set(key, flight)
    }
    return unwrap(await flight)
  }

  async #fetch(token: string, issuer: ResolvedIssuer, key: string): Promise<Answer> {
    const options = issuer.introspection!
    // RFC 6749 §2.3.1: id and secret are form-encoded before Basic.
    const basic = Buffer.from(`${encodeURIComponent(options.clientId)}:${encodeURIComponent(options.clientSecret)}`).toString('base64')
    this.requests++
    let document: unknown
    try {
      document = await fetchJson(this.#config.fetch, options.endpoint, {
        timeoutSeconds: options.timeoutSeconds,
        maxBytes: MAX_ANSWER_BYTES,
        post: {
          headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ token, token_type_hint: 'access_token' }).toString(),
        },
      })
      if (typeof document !== 'object' || document === null || Array.isArray(document) || typeof (document as { active?: unknown }).active !== 'boolean') {
        throw new Error(`${options.endpoint.href}: not an RFC 7662 introspection response`)
      }
    } catch (error) {
      this.#config.logger.warn('callsign: token introspection failed', { issuer: issuer.issuer, reason: (error as Error).message })
      throw new AuthError('introspection_unavailable', 'token introspection is temporarily unavailable', { retryAfterSeconds: RETRY_AFTER_SECONDS, cause: error })
    }
    const now = this.#config.now()
    let answer: Answer
    let notAfter: number
    try {
      const { verified, expiresAt } = mapAnswer(document as Record<string, unknown>, issuer, this.#config, now)
      answer = { ok: true, verified }
      notAfter = Math.min(now + options.cacheSeconds * 1000, expiresAt)
    } catch (error) {
      if (!(error instanceof AuthError)) throw error
      answer = { ok: false, reason: error.message }
      notAfter = now + options.negativeCacheSeconds * 1000
    }
    if (notAfter > now) this.#caches.get(issuer.issuer)?.set(key, { answer, notAfter })
    return answer
  }
}

const unwrap = (answer: Answer): VerifiedToken => {
  if (answer.ok) return answer.verified
  throw invalidToken(answer.reason)
}

/**
 * An RFC 7662 §2.2 answer as a `VerifiedToken`, with the instant (ms) after which it must not be
 * reused. Throws `invalid_token` for an inactive token or one that is not for this service.
 */
export function mapAnswer(answer: Record<string, unknown>, issuer: ResolvedIssuer, config: ResolvedConfig, now: number): { verified: VerifiedToken; expiresAt: number } {
  if (answer.active !== true) throw invalidToken('token is not active')
  const tolerance = config.clockToleranceSeconds
  const nowSeconds = now / 1000
  if (answer.iss !== undefined && answer.iss !== issuer.issuer) throw invalidToken('untrusted issuer')
  const aud = answer.aud
  if (aud !== undefined) {
    const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : undefined
    if (!audiences || !audiences.some((value) => typeof value === 'string' && issuer.audience.includes(value))) throw invalidToken('token audience does not match')
  }
  for (const claim of ['exp', 'nbf', 'iat'] as const) {
    const value = answer[claim]
    if (value !== undefined && (typeof value !== 'number' || !Number.isFinite(value))) throw invalidToken(`malformed ${claim} claim`)
  }
  const exp = answer.exp as number | undefined
  if (exp !== undefined && exp <= nowSeconds - tolerance) throw invalidToken('token expired')
  if (answer.nbf !== undefined && (answer.nbf as number) > nowSeconds + tolerance) throw invalidToken('token not yet valid')
  for (const claim of ['sub', 'client_id', 'jti', 'username', 'token_type'] as const) {
    const value = answer[claim]
    if (value !== undefined && (typeof value !== 'string' || value.length === 0)) throw invalidToken(`malformed ${claim} claim`)
  }
  if (answer.scope !== undefined && typeof answer.scope !== 'string') throw invalidToken('malformed scope claim')
  const cnf = answer.cnf
  if (cnf !== undefined && (typeof cnf !== 'object' || cnf === null || Array.isArray(cnf))) throw invalidToken('malformed cnf claim')
  const { active: _active, ...rest } = answer
  const claims = { ...rest, iss: issuer.issuer } as AccessTokenClaims
  const verified: VerifiedToken = {
    claims,
    issuer,
    // RFC 7662 §2.2: `scope` is a space-separated string, whatever the issuer's JWT scope claim.
    scopes: readScopes(claims, { ...issuer, scopeClaim: 'scope' }),
    actors: readActors(claims.act),
  }
  return { verified, expiresAt: exp === undefined ? Infinity : (exp + tolerance) * 1000 }
}
