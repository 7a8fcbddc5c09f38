import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { LRUCache } from 'lru-cache'
import { discoverJwksUri } from './discovery.js'
import { AuthError, invalidToken } from './errors.js'
import { fetchJson, FetchFailure } from './internal/fetch-json.js'
import { parseLocalKeys, type ResolvedConfig, type ResolvedIssuer } from './options.js'

/** The JOSE header members used to pick a key. Never `jku`, `x5u`, `jwk` or `x5c`. */
export interface KeySelector {
  alg: string
  kid?: string | undefined
}

/** One fetched JWKS of one issuer. Keys are scoped by (issuer, kid) because a set belongs to one issuer only. */
interface KeySet {
  fetchedAt: number
  all: PublicJwk[]
  byKid: Map<string, PublicJwk[]>
  imported: Map<PublicJwk, KeyObject | null>
  /** Every key object imported from this set, to tell whether a cached verification's key is still published. */
  live: WeakSet<KeyObject>
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

const CURVE: Record<string, [kty: string, crv: string | undefined]> = {
  ES256: ['EC', 'P-256'],
  ES384: ['EC', 'P-384'],
  ES512: ['EC', 'P-521'],
  EdDSA: ['OKP', 'Ed25519'],
  Ed25519: ['OKP', 'Ed25519'],
  RS256: ['RSA', undefined],
  RS384: ['RSA', undefined],
  RS512: ['RSA', undefined],
  PS256: ['RSA', undefined],
  PS384: ['RSA', undefined],
  PS512: ['RSA', undefined],
}

/** True when a JWK's type and curve fit a JWS algorithm (RFC 7518 §3.4: ES256 is P-256 only, ...). */
export function keyFitsAlgorithm(jwk: { kty?: unknown; crv?: unknown }, alg: string): boolean {
  const fit = CURVE[alg]
  return fit !== undefined && jwk.kty === fit[0] && (fit[1] === undefined || jwk.crv === fit[1])
}

/** Same JWS algorithm, counting `EdDSA` and `Ed25519` as one. */
export const sameAlg = (a: string, b: string): boolean =>
  a === b || ((a === 'EdDSA' || a === 'Ed25519') && (b === 'EdDSA' || b === 'Ed25519'))

/**
 * Per-issuer key sets, fetched from the configured or discovered `jwks_uri`:
 * - one fetch at a time per issuer (concurrent first requests share it);
 * - refreshed in the background after `cacheMaxAgeSeconds`, while the cached keys keep serving;
 * - served for at most `maxStaleSeconds` more when the issuer is unreachable;
 * - an unknown `kid` triggers at most one refetch per `cooldownSeconds`;
 * - after a failure, no attempt for `failureBackoffSeconds` (503 + `Retry-After` meanwhile);
 * - documents bounded in bytes and keys; symmetric and private keys in a JWKS are ignored.
 * Nothing in a token steers a fetch: URLs come from configuration and issuer metadata only.
 */
export class IssuerKeys {
  readonly #config: ResolvedConfig
  readonly #sets: LRUCache<string, KeySet>
  readonly #states = new Map<string, IssuerState>()
  /** Set by the guard when OpenTelemetry is present: key fetch outcomes and cache events. */
  onKeyEvent: ((outcome: 'ok' | 'failed' | 'stale_served' | 'cooldown', issuer: string) => void) | undefined

  constructor(config: ResolvedConfig) {
    this.#config = config
    this.#sets = new LRUCache({ max: Math.max(1, config.issuers.size) })
    for (const issuer of config.issuers.values()) if (issuer.localKeys) this.#loadLocal(issuer)
  }

  /** Local keys (inline or a watched file): parsed now; a file is re-read when its content changes. */
  #loadLocal(issuer: ResolvedIssuer): void {
    const local = issuer.localKeys!
    this.#sets.set(issuer.issuer, this.#parse(local.document, new URL(`file://${local.path ?? 'inline'}`), Infinity))
    if (!local.path) return
    const path = local.path
    let last = ''
    const poll = async (): Promise<void> => {
      try {
        const text = await readFile(path, 'utf8')
        if (text === last) return
        const set = this.#parse(parseLocalKeys(text, path), new URL(`file://${path}`), Infinity)
        last = text
        this.#sets.set(issuer.issuer, set)
      } catch (error) {
        this.#config.logger.warn('callsign: could not reload local issuer keys; keeping the previous ones', { issuer: issuer.issuer, reason: (error as Error).message })
      }
    }
    readFile(path, 'utf8').then((text) => (last = text), () => {})
    setInterval(() => void poll(), local.pollSeconds * 1000).unref()
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
      throw invalidToken('no key of the issuer matches the token')
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
    const state = this.#state(issuer.issuer)
    if (selector.kid !== undefined && now - state.lastAttemptAt >= cooldownSeconds * 1000) {
      const fresh = await this.refresh(issuer)
      const rotated = this.#select(fresh, selector)
      if (rotated) return rotated
    } else if (selector.kid !== undefined) {
      this.onKeyEvent?.('cooldown', issuer.issuer)
    }
    throw invalidToken('no key of the issuer matches the token')
  }

  /** Fetch (or join the fetch of) an issuer's keys now. Throws `AuthError('keys_unavailable')`. */
  refresh(issuer: ResolvedIssuer): Promise<KeySet> {
    const state = this.#state(issuer.issuer)
    if (state.inflight) return state.inflight
    const { failureBackoffSeconds } = this.#config.jwks
    const now = this.#config.now()
    if (state.lastFailureAt !== undefined && now - state.lastFailureAt < failureBackoffSeconds * 1000) {
      const retryAfterSeconds = (failureBackoffSeconds * 1000 - (now - state.lastFailureAt)) / 1000
      return Promise.reject(new AuthError('keys_unavailable', 'the issuer keys are temporarily unavailable', { retryAfterSeconds }))
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
    return this.#parse(document, jwksUri)
  }

  #parse(document: unknown, url: URL, fetchedAt = this.#config.now()): KeySet {
    const keys = (document as { keys?: unknown } | null)?.keys
    if (typeof document !== 'object' || document === null || !Array.isArray(keys)) {
      throw new FetchFailure(`${url.href}: not a JWK Set`)
    }
    if (keys.length > this.#config.jwks.maxKeys) {
      throw new FetchFailure(`${url.href}: more than ${this.#config.jwks.maxKeys} keys`)
    }
    const set: KeySet = { fetchedAt, all: [], byKid: new Map(), imported: new Map(), live: new WeakSet() }
    for (const entry of keys) {
      const jwk = toPublicJwk(entry)
      if (!jwk) continue
      set.all.push(jwk)
      if (jwk.kid !== undefined) {
        const list = set.byKid.get(jwk.kid)
        if (list) list.push(jwk)
        else set.byKid.set(jwk.kid, [jwk])
      }
    }
    if (set.all.length === 0) throw new FetchFailure(`${url.href}: no usable signing key`)
    return set
  }

  #select(set: KeySet, { alg, kid }: KeySelector): KeyObject | undefined {
    // A kid the set does not know may still match a key published without one (PEM keys).
    const pool = kid === undefined ? set.all : (set.byKid.get(kid) ?? set.all.filter((jwk) => jwk.kid === undefined))
    if (pool.length === 0) return undefined
    const unnamed = kid !== undefined && !set.byKid.has(kid)
    const [kty, crv] = CURVE[alg] ?? []
    const candidates = pool.filter((jwk) => jwk.kty === kty && (crv === undefined || jwk.crv === crv) && (jwk.alg === undefined || sameAlg(jwk.alg, alg)))
    // Without a kid, the key must be unambiguous.
    if (candidates.length === 0 || ((kid === undefined || unnamed) && candidates.length > 1)) return undefined
    const jwk = candidates[0]!
    let key = set.imported.get(jwk)
    if (key === undefined) {
      key = importPublicKey(jwk)
      set.imported.set(jwk, key)
      if (key) set.live.add(key)
    }
    return key ?? undefined
  }
}

/**
 * Import a public JWK (only its public members) as a node:crypto `KeyObject`, prepared once and
 * reused for every verification: issuer keys and DPoP proof keys alike. RSA keys under 2048 bits
 * (RFC 7518 §3.3), OKP keys other than Ed25519 and anything that does not import are unusable: `null`.
 */
export function importPublicKey(jwk: { kty?: unknown; crv?: unknown; x?: unknown; y?: unknown; n?: unknown; e?: unknown }): KeyObject | null {
  const material: Record<string, unknown> = { kty: jwk.kty }
  for (const member of PUBLIC_MEMBERS) if (jwk[member] !== undefined) material[member] = jwk[member]
  try {
    const key = createPublicKey({ key: material as JsonWebKey, format: 'jwk' })
    if (key.asymmetricKeyType === 'rsa' && (key.asymmetricKeyDetails?.modulusLength ?? 0) < 2048) return null
    if (jwk.kty === 'OKP' && key.asymmetricKeyType !== 'ed25519') return null
    return key
  } catch {
    return null
  }
}

const PUBLIC_MEMBERS = ['crv', 'x', 'y', 'n', 'e'] as const
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']

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
