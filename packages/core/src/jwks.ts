import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import { discoverJwksUri } from './discovery.js'
import { AuthError, invalidToken } from './errors.js'
import { fetchJson, FetchFailure } from './internal/fetch-json.js'
import { canonicalOctets } from './internal/jws.js'
import { readFilesSync, textOf, WatchedFiles } from './internal/watched-file.js'
import { algorithmSpec } from './algorithms.js'
import type { ResolvedIssuer } from './issuers.js'
import type { KeySourceConfig } from './jwks-options.js'
import { parseLocalKeys } from './local-keys.js'

/** The JOSE header members used to pick a key. Never `jku`, `x5u`, `jwk` or `x5c`. */
export interface KeySelector {
  alg: string
  kid?: string | undefined
}

/**
 * One fetched JWKS of one issuer, holding only its usable keys, imported when the set was read.
 * Keys are scoped by (issuer, kid) because a set belongs to one issuer only.
 */
interface KeySet {
  fetchedAt: number
  all: IssuerKey[]
  byKid: Map<string, IssuerKey[]>
  /** Every key object of this set, to tell whether a cached verification's key is still published. */
  live: WeakSet<KeyObject>
}

/** A JWKS key usable with at least one of the issuer's algorithms, with its imported key object. */
interface IssuerKey {
  kty: string
  crv: string | undefined
  kid: string | undefined
  alg: string | undefined
  key: KeyObject
}

interface PublicJwk {
  kty: string
  kid?: string
  alg?: string
  crv?: string
  x?: string
  y?: string
  n?: string
  e?: string
}

interface IssuerState {
  inflight: Promise<KeySet> | undefined
  lastAttemptAt: number
  lastFailureAt: number | undefined
  jwksUri: URL | undefined
  jwksUriAt: number
}

/** Octets of each coordinate of an EC key (RFC 7518 §6.2.1.2, §6.2.1.3), by curve. */
const EC_OCTETS = new Map([
  ['P-256', 32],
  ['P-384', 48],
  ['P-521', 66],
])
/** Octets of an OKP public key `x` (RFC 8037 §2), by curve: Ed25519 only. */
const OKP_OCTETS = new Map([['Ed25519', 32]])
/** Largest RSA public exponent, in octets (64 bits, OpenSSL's own bound for large moduli; 65537 takes 3). */
const MAX_EXPONENT_OCTETS = 8
/** Largest RSA modulus of an issuer key, in bits (documented). DPoP proof keys have a smaller bound of their own. */
export const MAX_ISSUER_RSA_BITS = 8192

/** True when a JWK's type and curve fit a JWS algorithm (RFC 7518 §3.4: ES256 is P-256 only, ...). */
export function keyFitsAlgorithm(jwk: { kty?: unknown; crv?: unknown }, alg: string): boolean {
  const fit = algorithmSpec(alg)
  return fit !== undefined && jwk.kty === fit.kty && (fit.crv === undefined || jwk.crv === fit.crv)
}

/** Same JWS algorithm, counting `EdDSA` and `Ed25519` as one. */
export const sameAlg = (a: string, b: string): boolean => a === b || ((a === 'EdDSA' || a === 'Ed25519') && (b === 'EdDSA' || b === 'Ed25519'))

/**
 * Per-issuer key sets, fetched from the configured or discovered `jwks_uri`:
 * - one fetch at a time per issuer (concurrent first requests share it);
 * - refreshed in the background after `cacheMaxAgeSeconds`, while the cached keys keep serving;
 * - served for at most `maxStaleSeconds` more when the issuer is unreachable;
 * - an unknown `kid` waits for a fetch in flight, else triggers at most one refetch per `cooldownSeconds`;
 * - after a failure, no attempt for `failureBackoffSeconds` (503 + `Retry-After` meanwhile);
 * - documents bounded in bytes and keys; symmetric, private and unusable keys in a JWKS are ignored,
 *   and a set without any usable key is a failed fetch (it never replaces the cached set).
 * Nothing in a token steers a fetch: URLs come from configuration and issuer metadata only.
 */
export class IssuerKeys {
  readonly #config: KeySourceConfig
  readonly #sets: LRUCache<string, KeySet>
  readonly #states = new Map<string, IssuerState>()
  readonly #watches: WatchedFiles[] = []
  /** Set by the guard when OpenTelemetry is present: key fetch outcomes and cache events. */
  onKeyEvent: ((outcome: 'ok' | 'failed' | 'stale_served' | 'cooldown', issuer: string) => void) | undefined

  constructor(config: KeySourceConfig) {
    this.#config = config
    this.#sets = new LRUCache({ max: Math.max(1, config.issuers.size) })
    for (const issuer of config.issuers.values()) if (issuer.localKeys) this.#loadLocal(issuer)
  }

  /**
   * Local keys (inline or a watched file): parsed now; a file is re-read when its content changes.
   * Throws `TypeError` naming the option when the keys cannot serve (no usable key, too many).
   */
  #loadLocal(issuer: ResolvedIssuer): void {
    const local = issuer.localKeys!
    try {
      this.#sets.set(issuer.issuer, this.#parse(local.document, new URL(`file://${local.path ?? 'inline'}`), issuer, Infinity))
    } catch {
      const algorithms = [...issuer.algorithms].join(', ')
      throw new TypeError(
        `Callsign: "${local.option}" must hold at least one public key usable with the issuer's algorithms (${algorithms}), and at most jwks.maxKeys keys`,
      )
    }
    if (local.path) this.#watchLocal(issuer, local.path, local.pollSeconds)
  }

  /**
   * Follow a local key file every `pollSeconds` by the rules of {@link WatchedFiles}: new keys
   * once two reads in a row agree; a file that does not parse or holds no usable key keeps the
   * previous keys and is logged once.
   */
  #watchLocal(issuer: ResolvedIssuer, path: string, pollSeconds: number): void {
    const url = new URL(`file://${path}`)
    const watch = new WatchedFiles({
      paths: [path],
      // The file as it is now: the options read it a moment ago.
      initial: readFilesSync([path]),
      apply: (snapshot) => this.#sets.set(issuer.issuer, this.#parse(parseLocalKeys(textOf(snapshot, path), path), url, issuer, Infinity)),
      onRefused: (error) =>
        this.#config.logger.warn('callsign: could not reload local issuer keys; keeping the previous ones', {
          issuer: issuer.issuer,
          reason: (error as Error).message,
        }),
    })
    watch.start(pollSeconds * 1000)
    this.#watches.push(watch)
  }

  /** Stop following local key files; the keys read so far stay in use. Idempotent. */
  close(): void {
    for (const watch of this.#watches) watch.close()
  }

  /**
   * The key for a token header when it is cached and its set is fresh (within `cacheMaxAgeSeconds`):
   * the synchronous path of {@link getKey}. `undefined` means "ask getKey", which fetches, refreshes
   * a stale set in the background, applies the cooldown, or refuses.
   */
  keyNow(issuer: ResolvedIssuer, selector: KeySelector): KeyObject | undefined {
    const set = this.#sets.get(issuer.issuer)
    if (!set) return undefined
    if (!issuer.localKeys && this.#config.now() - set.fetchedAt > this.#config.jwks.cacheMaxAgeSeconds * 1000) return undefined
    return this.#select(set, selector)
  }

  /** Resolve the verification key for a token header of `issuer`. Throws `AuthError`. */
  async getKey(issuer: ResolvedIssuer, selector: KeySelector): Promise<KeyObject> {
    const { cacheMaxAgeSeconds, maxStaleSeconds, cooldownSeconds } = this.#config.jwks
    const now = this.#config.now()
    let set = this.#sets.get(issuer.issuer)
    if (issuer.localKeys) {
      const key = set && this.#select(set, selector)
      if (key) return key
      throw invalidToken('no key of the issuer matches the token', 'signature')
    }
    if (set && now - set.fetchedAt > (cacheMaxAgeSeconds + maxStaleSeconds) * 1000) set = undefined
    if (!set) {
      set = await this.refresh(issuer)
    } else if (now - set.fetchedAt > cacheMaxAgeSeconds * 1000) {
      this.onKeyEvent?.('stale_served', issuer.issuer)
      this.refresh(issuer).catch(() => {}) // stale-while-revalidate; failures are logged by refresh
    }
    const key = this.#select(set, selector)
    if (key) return key
    if (selector.kid === undefined) throw invalidToken('no key of the issuer matches the token', 'signature')
    // A fetch in flight (the background refresh above, or another request's) may hold the rotated
    // key: wait for it (bounded by the fetch timeout). Otherwise refetch at most once per cooldown.
    const state = this.#state(issuer.issuer)
    let pending = state.inflight
    if (!pending && now - state.lastAttemptAt >= cooldownSeconds * 1000) pending = this.refresh(issuer)
    if (!pending) {
      this.onKeyEvent?.('cooldown', issuer.issuer)
      throw invalidToken('no key of the issuer matches the token', 'signature')
    }
    const rotated = this.#select(await pending, selector)
    if (rotated) return rotated
    throw invalidToken('no key of the issuer matches the token', 'signature')
  }

  /** Fetch (or join the fetch of) an issuer's keys now. Throws `AuthError('keys_unavailable')`. */
  refresh(issuer: ResolvedIssuer): Promise<KeySet> {
    const state = this.#state(issuer.issuer)
    if (state.inflight) return state.inflight
    const { failureBackoffSeconds } = this.#config.jwks
    const now = this.#config.now()
    if (state.lastFailureAt !== undefined && now - state.lastFailureAt < failureBackoffSeconds * 1000) {
      const retryAfterSeconds = (failureBackoffSeconds * 1000 - (now - state.lastFailureAt)) / 1000
      return Promise.reject(new AuthError('keys_unavailable', 'the issuer keys are temporarily unavailable', { retryAfterSeconds, check: 'signature' }))
    }
    state.lastAttemptAt = now
    const inflight = this.#fetch(issuer, state).then(
      (set) => {
        state.lastFailureAt = undefined
        state.inflight = undefined
        this.#sets.set(issuer.issuer, set)
        this.onKeyEvent?.('ok', issuer.issuer)
        return set
      },
      (error: unknown) => {
        state.lastFailureAt = this.#config.now()
        state.inflight = undefined
        this.onKeyEvent?.('failed', issuer.issuer)
        this.#config.logger.warn('callsign: could not fetch issuer keys', { issuer: issuer.issuer, reason: (error as Error).message })
        throw new AuthError('keys_unavailable', 'the issuer keys are temporarily unavailable', {
          retryAfterSeconds: Math.max(1, failureBackoffSeconds),
          cause: error,
          check: 'signature',
        })
      },
    )
    state.inflight = inflight
    return inflight
  }

  /**
   * True while `key` belongs to the issuer's current key set and that set is still usable (not
   * older than `cacheMaxAgeSeconds + maxStaleSeconds`): a verified-token cache entry stays usable.
   */
  isCurrent(issuer: string, key: KeyObject): boolean {
    const set = this.#sets.peek(issuer)
    const { cacheMaxAgeSeconds, maxStaleSeconds } = this.#config.jwks
    return set !== undefined && set.live.has(key) && this.#config.now() - set.fetchedAt <= (cacheMaxAgeSeconds + maxStaleSeconds) * 1000
  }

  /** True when usable (not too stale) keys of the issuer are cached. */
  hasKeys(issuer: string): boolean {
    if (this.#config.issuers.get(issuer)?.localKeys) return true
    const set = this.#sets.get(issuer)
    const { cacheMaxAgeSeconds, maxStaleSeconds } = this.#config.jwks
    return set !== undefined && this.#config.now() - set.fetchedAt <= (cacheMaxAgeSeconds + maxStaleSeconds) * 1000
  }

  #state(issuer: string): IssuerState {
    let state = this.#states.get(issuer)
    if (!state) {
      state = { inflight: undefined, lastAttemptAt: -Infinity, lastFailureAt: undefined, jwksUri: undefined, jwksUriAt: 0 }
      this.#states.set(issuer, state)
    }
    return state
  }

  async #fetch(issuer: ResolvedIssuer, state: IssuerState): Promise<KeySet> {
    const { timeoutSeconds, maxBytes, cacheMaxAgeSeconds } = this.#config.jwks
    const limits = { timeoutSeconds, maxBytes }
    let jwksUri = issuer.jwksUri
    if (!jwksUri) {
      if (!state.jwksUri || this.#config.now() - state.jwksUriAt > cacheMaxAgeSeconds * 1000) {
        state.jwksUri = await discoverJwksUri(issuer.issuer, this.#config.fetch, limits)
        state.jwksUriAt = this.#config.now()
      }
      jwksUri = state.jwksUri
    }
    const document = await fetchJson(this.#config.fetch, jwksUri, limits)
    return this.#parse(document, jwksUri, issuer)
  }

  /**
   * A key set of `issuer` from a JWKS document: its usable keys (see {@link toIssuerKey}), each
   * imported now, so a set that cannot verify anything is refused here rather than replacing a
   * cached one. Throws `FetchFailure`.
   */
  #parse(document: unknown, url: URL, issuer: ResolvedIssuer, fetchedAt = this.#config.now()): KeySet {
    const keys = (document as { keys?: unknown } | null)?.keys
    if (typeof document !== 'object' || document === null || !Array.isArray(keys)) {
      throw new FetchFailure(`${url.href}: not a JWK Set`)
    }
    if (keys.length > this.#config.jwks.maxKeys) {
      throw new FetchFailure(`${url.href}: more than ${this.#config.jwks.maxKeys} keys`)
    }
    const set: KeySet = { fetchedAt, all: [], byKid: new Map(), live: new WeakSet() }
    for (const entry of keys) {
      const usable = toIssuerKey(entry, issuer.algorithms)
      if (!usable) continue
      set.all.push(usable)
      set.live.add(usable.key)
      if (usable.kid !== undefined) {
        const list = set.byKid.get(usable.kid)
        if (list) list.push(usable)
        else set.byKid.set(usable.kid, [usable])
      }
    }
    if (set.all.length === 0) throw new FetchFailure(`${url.href}: no usable signing key`)
    return set
  }

  /** The key for `alg` and `kid`: the first of that kid, else the only fitting one. No allocation (the hot path). */
  #select(set: KeySet, { alg, kid }: KeySelector): KeyObject | undefined {
    const named = kid === undefined ? undefined : set.byKid.get(kid)
    // Without a kid, or with one the set does not know (it may still match a key published
    // without one, as PEM keys are), the key must be unambiguous.
    const unnamed = named === undefined
    let found: KeyObject | undefined
    for (const entry of named ?? set.all) {
      if (unnamed && kid !== undefined && entry.kid !== undefined) continue
      if (!keyFitsAlgorithm(entry, alg) || (entry.alg !== undefined && !sameAlg(entry.alg, alg))) continue
      if (!unnamed) return entry.key
      if (found) return undefined
      found = entry.key
    }
    return found
  }
}

/**
 * A JWKS entry as a key of an issuer with `algorithms`, or undefined when it is not usable: not a
 * public signature key ({@link toPublicJwk}); a type or curve that fits none of the algorithms; its
 * own `alg` not allowed or not fitting its type and curve (RFC 7517 §4.4); or not importable
 * ({@link importPublicKey}: encoding, curve point, RSA size).
 */
function toIssuerKey(entry: unknown, algorithms: ReadonlySet<string>): IssuerKey | undefined {
  const jwk = toPublicJwk(entry)
  if (!jwk || !usableWith(jwk, algorithms)) return undefined
  const key = importPublicKey(jwk, { maxRsaBits: MAX_ISSUER_RSA_BITS })
  return key ? { kty: jwk.kty, crv: jwk.crv, kid: jwk.kid, alg: jwk.alg, key } : undefined
}

function usableWith(jwk: PublicJwk, algorithms: ReadonlySet<string>): boolean {
  const own = jwk.alg
  if (own !== undefined) return keyFitsAlgorithm(jwk, own) && [...algorithms].some((alg) => sameAlg(alg, own))
  for (const alg of algorithms) if (keyFitsAlgorithm(jwk, alg)) return true
  return false
}

/** The public members of a JWK that {@link importPublicKey} reads. */
export interface PublicKeyMembers {
  kty?: unknown
  crv?: unknown
  x?: unknown
  y?: unknown
  n?: unknown
  e?: unknown
}

/**
 * Import a public JWK (only its public members) as a node:crypto `KeyObject`, prepared once and
 * reused for every verification: issuer keys and DPoP proof keys alike. Unusable (`null`): an
 * encoding {@link checkJwkEncoding} refuses, RSA keys under 2048 bits (RFC 7518 §3.3) or over
 * `maxRsaBits` (default {@link MAX_ISSUER_RSA_BITS}: the cost of one verification stays bounded),
 * OKP keys other than Ed25519, an EC point off its curve and anything else that does not import.
 */
export function importPublicKey(jwk: PublicKeyMembers, { maxRsaBits = MAX_ISSUER_RSA_BITS }: { maxRsaBits?: number } = {}): KeyObject | null {
  if (!checkJwkEncoding(jwk)) return null
  const material: Record<string, unknown> = { kty: jwk.kty }
  for (const member of PUBLIC_MEMBERS) if (jwk[member] !== undefined) material[member] = jwk[member]
  try {
    const key = createPublicKey({ key: material as JsonWebKey, format: 'jwk' })
    if (key.asymmetricKeyType === 'rsa') {
      const bits = key.asymmetricKeyDetails?.modulusLength ?? 0
      if (bits < 2048 || bits > maxRsaBits) return null
    }
    if (jwk.kty === 'OKP' && key.asymmetricKeyType !== 'ed25519') return null
    return key
  } catch {
    return null
  }
}

/**
 * True when a public JWK has the one encoding its key allows, so one key has one RFC 7638
 * thumbprint: members in canonical base64url (no padding, unused low bits of the last character
 * zero); EC `x` and `y` of exactly the curve's length (RFC 7518 §6.2.1.2/§6.2.1.3: 32 octets for
 * P-256, 48 for P-384, 66 for P-521); Ed25519 `x` of 32 octets (RFC 8037 §2); RSA `n` and `e`
 * without leading zero octets (RFC 7518 §6.3.1.1), `e` at most 64 bits. Other types and curves: false.
 */
export function checkJwkEncoding(jwk: PublicKeyMembers): boolean {
  const { kty, crv } = jwk
  if (kty === 'RSA') {
    const n = canonicalOctets(jwk.n)
    const e = canonicalOctets(jwk.e)
    return n !== undefined && e !== undefined && n[0] !== 0 && e[0] !== 0 && e.length <= MAX_EXPONENT_OCTETS
  }
  const octets = typeof crv !== 'string' ? undefined : kty === 'EC' ? EC_OCTETS.get(crv) : kty === 'OKP' ? OKP_OCTETS.get(crv) : undefined
  if (octets === undefined || canonicalOctets(jwk.x)?.length !== octets) return false
  return kty === 'OKP' || canonicalOctets(jwk.y)?.length === octets
}

const PUBLIC_MEMBERS = ['crv', 'x', 'y', 'n', 'e'] as const
/** Members only a private or symmetric JWK has (RFC 7518 §6.2.2, §6.3.2, §6.4; `r`, `t` of `oth` entries): a JWK with one is never used as a public key. */
export const PRIVATE_MEMBERS: readonly string[] = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k', 'r', 't']

/** Keep a JWKS entry only if it is a public signature key of a supported type. */
function toPublicJwk(entry: unknown): PublicJwk | undefined {
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) return undefined
  const jwk = entry as Record<string, unknown>
  if (jwk.kty !== 'EC' && jwk.kty !== 'RSA' && jwk.kty !== 'OKP') return undefined
  if (PRIVATE_MEMBERS.some((member) => member in jwk)) return undefined
  // `jwt-svid`: the key use of SPIFFE trust bundles for JWT-SVID signing keys.
  if (jwk.use !== undefined && jwk.use !== 'sig' && jwk.use !== 'jwt-svid') return undefined
  if (jwk.key_ops !== undefined && !(Array.isArray(jwk.key_ops) && jwk.key_ops.includes('verify'))) return undefined
  const out: PublicJwk = { kty: jwk.kty }
  if (jwk.kid !== undefined) {
    if (typeof jwk.kid !== 'string') return undefined
    out.kid = jwk.kid
  }
  if (jwk.alg !== undefined) {
    if (typeof jwk.alg !== 'string') return undefined
    out.alg = jwk.alg
  }
  for (const member of PUBLIC_MEMBERS) {
    const value = jwk[member]
    if (value === undefined) continue
    if (typeof value !== 'string') return undefined
    out[member] = value
  }
  return out
}
