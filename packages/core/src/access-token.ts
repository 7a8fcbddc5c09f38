import { constants, verify, type KeyObject } from 'node:crypto'
import type { JWTPayload, ProtectedHeaderParameters } from 'jose'
import { LRUCache } from 'lru-cache'
import { algorithmSpec } from './algorithms.js'
import type { EnvironmentConfig } from './environment.js'
import { invalidToken } from './errors.js'
import type { IssuerConfig, ResolvedIssuer } from './issuers.js'
import type { IssuerKeys } from './jwks.js'
import { parseSpiffeId } from './spiffe.js'
import { COMPACT_JWS, decodeJsonObject, jwsSegments } from './internal/jws.js'
import { isPlainObject } from './internal/validate.js'

export { COMPACT_JWS } from './internal/jws.js'

/** Nested actor claim of RFC 8693 §4.1. */
export interface ActorClaim {
  sub: string
  iss?: string
  act?: ActorClaim
  [claim: string]: unknown
}

/**
 * Claims of a verified access token (RFC 9068 §2.2). Extend it by declaration merging to type
 * your own claims:
 * ```ts
 * declare module '@callsign/core' { interface AccessTokenClaims { tenant?: string } }
 * ```
 */
export interface AccessTokenClaims extends JWTPayload {
  iss: string
  exp: number
  client_id?: string
  azp?: string
  scope?: string
  scp?: string | string[]
  permissions?: string[]
  act?: ActorClaim
  /** RFC 8693 §4.4: who may act for the subject. */
  may_act?: { sub: string; [claim: string]: unknown }
  cnf?: { jkt?: string; 'x5t#S256'?: string; [member: string]: unknown }
}

/** A verified access token with the values derived from it. */
export interface VerifiedToken {
  claims: AccessTokenClaims
  issuer: ResolvedIssuer
  scopes: string[]
  /** Delegation chain from nested `act`, nearest actor first. */
  actors: string[]
}

/** What token verification reads: the issuers and their rules, the clock and its tolerance. */
export type TokenCheckConfig = IssuerConfig & Pick<EnvironmentConfig, 'now' | 'clockToleranceSeconds'>

/** Deepest `act` nesting accepted (RFC 8693 chains are short in practice). */
export const MAX_ACTOR_DEPTH = 8
/** Most scopes read from one token. */
export const MAX_SCOPES = 256
const SCOPE_TOKEN = /^[\x21\x23-\x5b\x5d-\x7e]+$/

const normalizeTyp = (typ: string): string => typ.toLowerCase().replace(/^application\//, '')

/**
 * Verify an RFC 9068 JWT access token. Order matters: everything that needs no key (structure,
 * issuer, algorithm, `typ`) is checked before any key is fetched, so a forged header can never
 * cause network I/O; the issuer is chosen only among configured ones, by exact `iss`.
 *
 * Checked: JWS compact form with strict base64url (JWE refused), no `crit`/`b64`, `alg` in the
 * allowlist (never `none`/`HS*`), `typ`, signature with the issuer's key for `kid`, `iss`, `aud`,
 * `exp` (required), `nbf`, `iat` (not in the future; `maxTokenAge` when set), claim types of
 * `sub`, `client_id`, `azp`, scopes, `act`, `cnf`.
 * Not checked here: sender constraint (binding), caller identity, authorization.
 */
export async function verifyAccessToken(token: string, config: TokenCheckConfig, keys: IssuerKeys, cache?: VerifiedTokenCache): Promise<VerifiedToken> {
  return checkAccessToken(token, config, keys, cache)
}

/**
 * {@link verifyAccessToken} without a promise when none is needed (the guard's hot path): from
 * `cache` when it holds `token`, else verified (and offered to the cache). A malformed or forged
 * token throws; a promise only when the issuer's keys must be fetched.
 */
export function checkAccessToken(
  token: string,
  config: TokenCheckConfig,
  keys: IssuerKeys,
  cache?: VerifiedTokenCache,
  compact = false,
): VerifiedToken | Promise<VerifiedToken> {
  return cache?.get(token, config.now(), keys) ?? verifyUncachedAccessToken({ token, config, keys, cache, compact })
}

/** An access token to verify, with what verifying it reads: {@link checkAccessToken}'s arguments on a cache miss. */
interface TokenToVerify {
  token: string
  config: TokenCheckConfig
  keys: IssuerKeys
  cache: VerifiedTokenCache | undefined
  /** `token` is known to match {@link COMPACT_JWS} (`readCredentials` checked it): one pass over it is enough. */
  compact: boolean
}

/** {@link checkAccessToken} once `cache` (when given) has no entry for `token`: verified, then offered to the cache. */
function verifyUncachedAccessToken({ token, config, keys, cache, compact }: TokenToVerify): VerifiedToken | Promise<VerifiedToken> {
  const now = config.now()
  // Strict, canonical base64url (no padding, no "+/", no stray low bits): one token has exactly one spelling.
  if (!compact && !COMPACT_JWS.test(token)) {
    throw invalidToken(token.split('.').length === 5 ? 'encrypted tokens are not accepted' : 'malformed token', 'header')
  }
  const parts = jwsSegments(token, true)
  if (!parts) throw invalidToken('malformed token', 'header')

  let header: ProtectedHeaderParameters
  let unverified: JWTPayload
  try {
    header = decodeHeader(parts[0]!)
    unverified = decodeJsonObject(parts[1]!) as JWTPayload
  } catch (error) {
    throw invalidToken('malformed token', 'header', error)
  }
  const issuer = issuerOf(unverified, config)
  const alg = checkHeader(header, issuer)

  const selector = { alg, kid: header.kid }
  const pending: PendingToken = { token, parts, alg, claims: unverified as AccessTokenClaims, issuer, config, now, cache }
  // Keys already cached: no promise. Otherwise fetched (or refused) by getKey, with its rules.
  const key = keys.keyNow(issuer, selector)
  return key ? checkVerified(pending, key) : keys.getKey(issuer, selector).then((fetched) => checkVerified(pending, fetched))
}

/** The configured issuer the unverified claims name, by exact `iss` (or a JWT-SVID's trust domain); refuses any other. */
function issuerOf(unverified: JWTPayload, config: TokenCheckConfig): ResolvedIssuer {
  let issuer = typeof unverified.iss === 'string' ? config.issuers.get(unverified.iss) : undefined
  // A SPIFFE JWT-SVID may carry no `iss`: its trust domain (from `sub`) names the issuer.
  if (!issuer && unverified.iss === undefined && typeof unverified.sub === 'string') {
    const svid = parseSpiffeId(unverified.sub)
    if (svid) issuer = config.svidIssuers.get(svid.trustDomain)
  }
  if (!issuer) throw invalidToken('untrusted issuer', 'issuer')
  return issuer
}

/** The header's checks before any key is looked up: `alg` allowed for `issuer` (returned), `kid`, no `crit`/`b64`, `typ`. */
function checkHeader(header: ProtectedHeaderParameters, issuer: ResolvedIssuer): string {
  const alg = header.alg
  if (typeof alg !== 'string' || !issuer.algorithms.has(alg)) throw invalidToken('algorithm not allowed', 'header')
  if (header.kid !== undefined && (typeof header.kid !== 'string' || header.kid.length === 0 || header.kid.length > 256)) {
    throw invalidToken('malformed key id', 'header')
  }
  // RFC 7515 §4.1.11: no extension is understood, so any `crit` makes the token unusable; `b64` (RFC 7797) likewise.
  if (header.crit !== undefined || header.b64 !== undefined) throw invalidToken('malformed token', 'header')
  const typ = header.typ === undefined ? undefined : typeof header.typ === 'string' ? normalizeTyp(header.typ) : null
  const typOk = typ === 'at+jwt' || (issuer.typ === 'jwt' && (typ === undefined || typ === 'jwt'))
  if (!typOk) throw invalidToken('token type is not an access token', 'header')
  return alg
}

/** A token whose structure, issuer, algorithm and type passed: what {@link checkVerified} needs besides the key. */
interface PendingToken {
  token: string
  parts: string[]
  alg: string
  /** Decoded, not yet verified. */
  claims: AccessTokenClaims
  issuer: ResolvedIssuer
  config: TokenCheckConfig
  now: number
  cache: VerifiedTokenCache | undefined
}

/** The checks that need the key: signature, then every claim; the verified token is offered to `cache`. */
function checkVerified({ token, parts, alg, claims, issuer, config, now, cache }: PendingToken, key: KeyObject): VerifiedToken {
  // The signing input as a slice of the token (no concatenated copy to flatten).
  if (!verifySignature(alg, key, token.slice(0, token.length - parts[2]!.length - 1), parts[2]!))
    throw invalidToken('signature verification failed', 'signature')
  const notAfter = checkTimeClaims(claims, issuer, config, now, true)
  if (claims.iss !== issuer.issuer && !(issuer.trustDomain !== undefined && claims.iss === undefined)) throw invalidToken('untrusted issuer', 'issuer')
  if (issuer.trustDomain !== undefined) {
    // JWT-SVID: the subject is the workload, a SPIFFE ID of the issuer's trust domain.
    const svid = typeof claims.sub === 'string' ? parseSpiffeId(claims.sub) : undefined
    if (!svid || svid.segments.length === 0 || svid.trustDomain !== issuer.trustDomain) throw invalidToken('malformed sub claim', 'claims')
  }
  checkAudience(claims.aud, issuer)
  checkClaimShapes(claims)
  const verified = sealVerified({ claims, issuer, scopes: readScopes(claims, issuer), actors: readActors(claims.act) })
  checkSigner(verified)
  cache?.set(token, verified, notAfter, key)
  return verified
}

/**
 * `aud` (RFC 7519 §4.1.3) names one of the issuer's audiences for this service. `required: false`
 * (an introspection answer, RFC 7662 §2.2): an absent `aud` is accepted.
 */
export function checkAudience(aud: unknown, issuer: ResolvedIssuer, required = true): void {
  if (aud === undefined && !required) return
  const audiences = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : undefined
  if (!audiences || !audiences.some((value) => typeof value === 'string' && issuer.audience.includes(value))) {
    throw invalidToken('token audience does not match', 'audience')
  }
}

/** Confirmation methods Callsign enforces (RFC 9449 §6, RFC 8705 §3.1). */
const ENFORCED_CNF = new Set(['jkt', 'x5t#S256'])

/**
 * The claims every token must have in their right shape, JWT or introspected: the identity claims
 * non-empty strings, and `cnf` (RFC 7800 §3) an object whose every confirmation method is one
 * Callsign enforces, each a non-empty string. A token says how it must be presented: one bound by
 * a method Callsign cannot check (`jwk`, `kid`, `jku`, `x5t`, ...), alone or beside an enforced
 * one, is refused rather than read as a bearer token or half-checked.
 */
export function checkClaimShapes(claims: Record<string, unknown>): void {
  for (const claim of ['sub', 'client_id', 'azp', 'jti'] as const) {
    const value = claims[claim]
    if (value !== undefined && (typeof value !== 'string' || value.length === 0)) throw invalidToken(`malformed ${claim} claim`, 'claims')
  }
  const cnf = claims.cnf
  if (cnf === undefined) return
  if (!isPlainObject(cnf)) throw invalidToken('malformed cnf claim', 'claims')
  let methods = 0
  for (const method in cnf) {
    if (!ENFORCED_CNF.has(method)) throw invalidToken('token is bound by a confirmation method that is not supported', 'binding')
    const value = (cnf as Record<string, unknown>)[method]
    if (typeof value !== 'string' || value.length === 0) throw invalidToken('malformed cnf claim', 'claims')
    methods++
  }
  if (methods === 0) throw invalidToken('malformed cnf claim', 'claims')
}

/**
 * A token of a single-signer issuer (local keys, and the signing workload's SPIFFE ID as `issuer`)
 * speaks for its signer only: the caller it names (nearest actor, `client_id`, `azp`, then `sub`)
 * must be the signer, and `sub` the signer or a subject it may assert (`subjects`). Otherwise one
 * stolen signing key would impersonate every service.
 */
export function checkSigner({ claims, issuer, actors }: VerifiedToken): void {
  const signer = issuer.signer
  if (signer === undefined) return
  const sub = claims.sub
  if (sub !== undefined && sub !== signer && !issuer.subjects?.some((pattern) => pattern.matches(sub))) {
    throw invalidToken('token names a subject its signer may not assert', 'claims')
  }
  if ((actors[0] ?? claims.client_id ?? claims.azp ?? sub) !== signer) throw invalidToken('token names a caller other than its signer', 'claims')
}

/**
 * Make a verified token read-only, claims deeply: a cached token's claims, scopes and actors are
 * the same objects on every request that presents it, so a handler that changed `req.auth.scopes`
 * or `req.auth.claims` would change what the next request is authorized for. Frozen, such a change
 * throws instead (in strict mode; ignored otherwise) and reaches no other request.
 */
export function sealVerified(verified: VerifiedToken): VerifiedToken {
  deepFreeze(verified.claims, 0)
  Object.freeze(verified.scopes)
  Object.freeze(verified.actors)
  return Object.freeze(verified)
}

/** Freeze `value` and everything it holds: recursively (a third of the time), with a stack past depth 32, so no JSON nesting can overflow the call stack. */
function deepFreeze(value: object, depth: number): void {
  Object.freeze(value)
  for (const key in value) {
    const member = (value as Record<string, unknown>)[key]
    if (typeof member !== 'object' || member === null || Object.isFrozen(member)) continue
    if (depth < 32) {
      deepFreeze(member, depth + 1)
      continue
    }
    const pending: object[] = [member]
    for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
      Object.freeze(next)
      for (const inner in next) {
        const held = (next as Record<string, unknown>)[inner]
        if (typeof held === 'object' && held !== null && !Object.isFrozen(held)) pending.push(held)
      }
    }
  }
}

// Decoded JOSE headers by their exact base64url text: an issuer signs with a few keys, so its tokens
// share a few headers (decoding one costs as much as the token's whole claim check). Pure text ->
// value, frozen, so shared by every guard; bounded, so distinct forged headers only cycle it.
const decodedHeaders = new LRUCache<string, ProtectedHeaderParameters>({ max: 256 })
function decodeHeader(part: string): ProtectedHeaderParameters {
  let header = decodedHeaders.get(part)
  if (header === undefined) {
    header = Object.freeze(decodeJsonObject(part)) as ProtectedHeaderParameters
    if (part.length <= 1024) decodedHeaders.set(part, header)
  }
  return header
}

/**
 * RFC 7519 §4.1.4-4.1.6 with `clockTolerance`, for JWTs and introspected tokens alike: `exp` in the
 * future (required for a JWT; an introspection answer may omit it, RFC 7662 §2.2), `nbf` reached,
 * `iat` not in the future; with `maxTokenAge`, `iat` required and not older than it; with the
 * issuer's `maxTokenLifetime`, `iat` and `exp` required and `exp - iat` within it. Returns the
 * instant (ms) after which the token stops being acceptable, for caches (`Infinity`: no bound).
 */
export function checkTimeClaims(claims: Record<string, unknown>, issuer: ResolvedIssuer, config: TokenCheckConfig, now: number, expRequired: boolean): number {
  const tolerance = config.clockToleranceSeconds
  const nowSeconds = now / 1000
  const { exp, nbf, iat } = claims as { exp?: unknown; nbf?: unknown; iat?: unknown }
  if (exp === undefined ? expRequired : typeof exp !== 'number' || !Number.isFinite(exp)) {
    throw invalidToken(expRequired ? 'token has no valid expiry' : 'malformed exp claim', 'time')
  }
  if (nbf !== undefined && (typeof nbf !== 'number' || !Number.isFinite(nbf))) throw invalidToken('malformed nbf claim', 'time')
  if (iat !== undefined && (typeof iat !== 'number' || !Number.isFinite(iat))) throw invalidToken('malformed iat claim', 'time')
  if (exp !== undefined && (exp as number) <= nowSeconds - tolerance) throw invalidToken('token expired', 'time')
  if (nbf !== undefined && nbf > nowSeconds + tolerance) throw invalidToken('token not yet valid', 'time')
  if (iat !== undefined && iat > nowSeconds + tolerance) throw invalidToken('token issued in the future', 'time')
  let notAfter = exp === undefined ? Infinity : ((exp as number) + tolerance) * 1000
  const maxAge = config.maxTokenAgeSeconds
  if (maxAge !== undefined) {
    if (iat === undefined) throw invalidToken('malformed iat claim', 'time')
    if (nowSeconds - iat - tolerance > maxAge) throw invalidToken('token too old', 'time')
    notAfter = Math.min(notAfter, (iat + maxAge + tolerance) * 1000)
  }
  const maxLifetime = issuer.maxTokenLifetimeSeconds
  if (maxLifetime !== undefined) {
    if (iat === undefined) throw invalidToken('malformed iat claim', 'time')
    if (exp === undefined) throw invalidToken('token has no valid expiry', 'time')
    if ((exp as number) - iat > maxLifetime) throw invalidToken('token lifetime too long', 'time')
  }
  return notAfter
}

/**
 * JWS signature check (RFC 7518 §3) with node:crypto and a prepared `KeyObject`: about three times
 * the throughput of the WebCrypto path for ES256 and RS256 (see bench/README.md). ECDSA signatures
 * are the fixed-size R||S form; PSS uses a salt as long as the hash. Any error is a failed check.
 */
export function verifySignature(alg: string, key: KeyObject, signingInput: string, signature: string): boolean {
  const hash = algorithmSpec(alg)?.hash
  if (hash === undefined) return false
  const data = Buffer.from(signingInput, 'latin1')
  const sig = Buffer.from(signature, 'base64url')
  try {
    if (alg.startsWith('ES')) return verify(hash, data, { key, dsaEncoding: 'ieee-p1363' }, sig)
    if (alg.startsWith('PS')) return verify(hash, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }, sig)
    return verify(hash, data, key, sig)
  } catch {
    return false
  }
}

interface CachedToken {
  token: string
  verified: VerifiedToken
  notAfter: number
  key: KeyObject
}

/** The cache key of a token: its last 32 characters, which lie in its signature (86 or more characters for every accepted algorithm). */
const cacheKey = (token: string): string => token.slice(-32)

/**
 * Verified tokens of one guard, bounded in entries, never used past the token's `exp` (or
 * `maxTokenAge`) and only while the key that verified it is still in the issuer's key set.
 * An entry is found by the token's last 32 characters (hashing those costs a tenth of hashing a
 * whole token, on every request) and used only for exactly the same whole token string, so another
 * spelling of the same signature, or a forgery that copies its end, is verified afresh; only a
 * verified token is ever stored, so a forgery cannot evict an entry.
 * Only the signature and claim checks are skipped on a hit: binding (DPoP proof, certificate),
 * caller consistency and authorization run on every request.
 */
export class VerifiedTokenCache {
  readonly #entries: LRUCache<string, CachedToken>
  /**
   * Admission (a doorkeeper, as in TinyLFU): fingerprints of tokens verified once. A token enters
   * the cache the second time it is verified, so a token used once (a fresh token per request, a
   * flood of distinct tokens) never does. Measured: keeping every cold token alive in the LRU cost
   * more CPU in garbage collection than a cache hit saves. A fingerprint collision only admits a
   * token one verification early; entries are still matched on the whole token.
   */
  readonly #seen = new Set<number>()
  readonly #maxSeen: number

  constructor(maxEntries: number) {
    this.#entries = new LRUCache({ max: maxEntries })
    this.#maxSeen = maxEntries
  }

  get(token: string, now: number, keys: IssuerKeys): VerifiedToken | undefined {
    const key = cacheKey(token)
    const entry = this.#entries.get(key)
    if (!entry || entry.token !== token) return undefined
    if (now >= entry.notAfter || !keys.isCurrent(entry.verified.issuer.issuer, entry.key)) {
      this.#entries.delete(key)
      return undefined
    }
    return entry.verified
  }

  /** True when `token` (exactly) is cached, whatever its age: it passed every syntax check once. */
  has(token: string): boolean {
    return this.#entries.peek(cacheKey(token))?.token === token
  }

  /** Remember a verified token: on its second verification (see the doorkeeper above). */
  set(token: string, verified: VerifiedToken, notAfter: number, key: KeyObject): void {
    const mark = fingerprint(token)
    if (!this.#seen.delete(mark)) {
      if (this.#seen.size >= this.#maxSeen) this.#seen.clear()
      this.#seen.add(mark)
      return
    }
    this.#entries.set(cacheKey(token), { token, verified, notAfter, key })
  }

  get size(): number {
    return this.#entries.size
  }
}

/** A 30-bit FNV-1a of the token's last 32 characters (its signature): an admission hint, not a key. */
function fingerprint(token: string): number {
  let hash = 0x811c9dc5
  for (let i = Math.max(0, token.length - 32); i < token.length; i++) hash = Math.imul(hash ^ token.charCodeAt(i), 0x01000193)
  return hash & 0x3fffffff
}

/** Scopes of `claims` from the issuer's scope claim, validated and deduplicated. */
export function readScopes(claims: AccessTokenClaims, issuer: ResolvedIssuer): string[] {
  const raw = claims[issuer.scopeClaim]
  if (raw === undefined) return []
  let scopes: unknown[]
  if (typeof raw === 'string') {
    if (raw.length > MAX_SCOPES * 128) throw invalidToken('scope claim too large', 'claims')
    // The common case, one scope, without the split, filter and set below.
    scopes = raw.indexOf(' ') === -1 ? (raw.length === 0 ? [] : [raw]) : raw.split(' ').filter((s) => s.length > 0)
  } else if (Array.isArray(raw) && issuer.scopeClaim !== 'scope') {
    scopes = raw
  } else {
    throw invalidToken(`malformed ${issuer.scopeClaim} claim`, 'claims')
  }
  if (scopes.length > MAX_SCOPES) throw invalidToken('too many scopes', 'claims')
  for (const scope of scopes) {
    if (typeof scope !== 'string' || scope.length > 256 || !SCOPE_TOKEN.test(scope)) throw invalidToken(`malformed ${issuer.scopeClaim} claim`, 'claims')
  }
  // A fresh array either way (never the claim's own), deduplicated.
  return scopes.length === 1 && typeof raw === 'string' ? (scopes as string[]) : [...new Set(scopes as string[])]
}

/** RFC 8693 §4.1: `act.sub` is the current actor; a nested `act` is an earlier one. */
export function readActors(act: unknown): string[] {
  const actors: string[] = []
  let current = act
  while (current !== undefined) {
    if (!isPlainObject(current)) throw invalidToken('malformed act claim', 'delegation')
    const { sub, act: next } = current as { sub?: unknown; act?: unknown }
    if (typeof sub !== 'string' || sub.length === 0) throw invalidToken('malformed act claim', 'delegation')
    actors.push(sub)
    if (actors.length > MAX_ACTOR_DEPTH) throw invalidToken('delegation chain too deep', 'delegation')
    current = next
  }
  return actors
}
