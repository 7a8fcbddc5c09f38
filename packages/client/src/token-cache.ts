/**
 * The token cache: one entry per key (resource, scopes, binding, subject-token hash, certificate
 * thumbprint), bounded by an LRU. It serves a token until its `expiresAt`, starts one background
 * refresh once `refreshAt` is reached, lets one request per key be in flight however many calls
 * wait, and after a failure answers the last error at once until the key's backoff ends (a token
 * still valid is served meanwhile).
 */
import { createHash } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import { recordFailure, type BackoffPolicy, type FailureState } from './backoff.js'
import type { ClientBinding, IssuedToken, SubjectToken, TokenRequest } from './contracts.js'

/** A token as cached: when to refresh it in the background. */
export interface CachedToken {
  readonly token: IssuedToken
  /** From this time (ms since the epoch) on, a `get` starts a background refresh. */
  readonly refreshAt: number
}

/** How a cache miss (or a refresh) obtains a token; `background` says which of the two it is. */
export type TokenFetcher = (background: boolean) => Promise<CachedToken>

interface Entry {
  cached: CachedToken | undefined
  inflight: Promise<CachedToken> | undefined
  failure: FailureState | undefined
}

// A subject token's hash, kept per subject object when that object is frozen (core hands out one
// frozen object per verified token), so the calls made for requests that reuse a token hash it once.
const subjectHashes = new WeakMap<SubjectToken, string>()
function subjectHash(subject: SubjectToken): string {
  const known = subjectHashes.get(subject)
  if (known !== undefined) return known
  const hash = createHash('sha256').update(subject.value).digest('base64url')
  if (Object.isFrozen(subject)) subjectHashes.set(subject, hash)
  return hash
}

/**
 * The cache key of `request`: never the subject token itself (its SHA-256), and the certificate's
 * thumbprint for certificate-bound tokens, so a rotated certificate never gets a token bound to
 * the previous one.
 */
export function tokenCacheKey(request: TokenRequest, binding: ClientBinding, thumbprint: string | undefined): string {
  const subject = request.subject ? subjectHash(request.subject) : ''
  const scopes = request.scopes.length < 2 ? (request.scopes[0] ?? '') : [...new Set(request.scopes)].sort().join(' ')
  return JSON.stringify([request.resource, scopes, request.audience ?? [], binding, subject, binding === 'mtls' ? (thumbprint ?? '') : ''])
}

/** The cache of one token source. */
export class TokenCache {
  readonly #entries: LRUCache<string, Entry>
  readonly #backoff: BackoffPolicy
  readonly #now: () => number
  /** Which key each issued token was cached under (for `invalidate`). */
  readonly #keys = new WeakMap<IssuedToken, string>()

  constructor(settings: { max: number; backoff: BackoffPolicy; now: () => number }) {
    this.#entries = new LRUCache({ max: settings.max })
    this.#backoff = settings.backoff
    this.#now = settings.now
  }

  /**
   * A token for `key`: the cached one while `now < expiresAt` (starting a background refresh from
   * `refreshAt` on), else the result of the request in flight, else the key's last error while its
   * backoff lasts, else a new request through `fetch`.
   */
  async get(key: string, fetch: TokenFetcher): Promise<IssuedToken> {
    const now = this.#now()
    let entry = this.#entries.get(key)
    if (!entry) {
      entry = { cached: undefined, inflight: undefined, failure: undefined }
      this.#entries.set(key, entry)
    }
    const { cached } = entry
    if (cached && now < cached.token.expiresAt) {
      if (now >= cached.refreshAt && !entry.inflight && !this.#backingOff(entry, now)) {
        // The caller keeps the cached token; a failure is recorded in the entry (and reported as an event).
        this.#start(key, entry, fetch, true).catch(() => {})
      }
      return cached.token
    }
    if (entry.inflight) return (await entry.inflight).token
    if (this.#backingOff(entry, now)) throw entry.failure!.error
    return (await this.#start(key, entry, fetch, false)).token
  }

  /** Forget `token` if `key`'s entry still holds it (a newer token stays). */
  invalidate(token: IssuedToken): void {
    const key = this.#keys.get(token)
    const entry = key === undefined ? undefined : this.#entries.peek(key)
    if (entry?.cached?.token === token) entry.cached = undefined
  }

  /** Entries held now (for tests and metrics). */
  get size(): number {
    return this.#entries.size
  }

  clear(): void {
    this.#entries.clear()
  }

  #backingOff(entry: Entry, now: number): boolean {
    return entry.failure !== undefined && now < entry.failure.until
  }

  #start(key: string, entry: Entry, fetch: TokenFetcher, background: boolean): Promise<CachedToken> {
    const flight = (async (): Promise<CachedToken> => {
      // Yield once: `entry.inflight` is set before this settles, and no other flight of this
      // entry starts until it does, so the `finally` clears this one.
      await null
      try {
        const result = await fetch(background)
        entry.cached = result
        entry.failure = undefined
        this.#keys.set(result.token, key)
        return result
      } catch (error) {
        entry.failure = recordFailure(this.#backoff, entry.failure, error, this.#now())
        throw error
      } finally {
        entry.inflight = undefined
      }
    })()
    entry.inflight = flight
    return flight
  }
}
