import { LRUCache } from 'lru-cache'

/**
 * Where DPoP proof identifiers (`jti`) are remembered for the proof-age window, so a proof can
 * be used once (RFC 9449 §11.1). Implementations must be atomic: of two concurrent calls with the
 * same key, exactly one resolves `true`.
 *
 * `@callsign/redis` provides a store shared by every replica; {@link MemoryReplayStore} is the
 * process-local default.
 */
export interface ReplayStore {
  /**
   * Record `key` for `ttlSeconds`. Resolves `true` if the key was not seen before (the proof is
   * fresh), `false` if it was (a replay). Rejects if the store cannot answer; Callsign then fails
   * closed (503) and never accepts the proof unchecked.
   */
  markUsed(key: string, ttlSeconds: number): Promise<boolean> | boolean
}

/**
 * A `jti` denylist: revoked token identifiers, each kept until the token would have expired anyway.
 * `MemoryReplayStore` (process-local) and `@callsign/redis`'s `RedisReplayStore` (shared) implement it.
 */
export interface RevocationStore {
  /** Add `key` for `ttlSeconds`. */
  revoke(key: string, ttlSeconds: number): Promise<void> | void
  /** True when `key` is revoked. Rejects when the store cannot answer (the request then fails closed, 503). */
  isRevoked(key: string): Promise<boolean> | boolean
}

export interface MemoryReplayStoreOptions {
  /** Most identifiers kept at once. Default 100 000 (a few MB). */
  maxEntries?: number
  /** Called once when a still-valid identifier had to be evicted to stay within `maxEntries`. */
  onEvict?: () => void
  /**
   * Clock in epoch milliseconds, by which entries expire. Default: the wall clock. A guard built
   * with a `now` option gives its default stores that clock.
   */
  now?: () => number
}

/**
 * Process-local replay store on `lru-cache`: bounded in entries, each entry expiring with its
 * proof window. Enough for one replica; behind a load balancer use a shared store, or a proof
 * replayed to another replica is accepted there once.
 *
 * Memory stays bounded under a flood of unique `jti`s: at `maxEntries` the least recently used
 * identifier is dropped. Only requests that already passed every other check (valid token, valid
 * proof signature, matching `ath` and `cnf.jkt`) reach the store, so only a key holder can fill it.
 */
export class MemoryReplayStore implements ReplayStore, RevocationStore {
  readonly #revoked: LRUCache<string, true>
  /** Key -> expiry (epoch ms), so an eviction can tell a live identifier from an expired one. */
  readonly #seen: LRUCache<string, number>
  readonly #now: () => number
  #warned = false

  constructor(options: MemoryReplayStoreOptions = {}) {
    const max = options.maxEntries ?? 100_000
    if (!Number.isInteger(max) || max <= 0) throw new TypeError('Callsign: "maxEntries" must be a positive whole number')
    const { onEvict, now } = options
    if (now !== undefined && typeof now !== 'function') throw new TypeError('Callsign: "now" must be a function returning epoch milliseconds')
    this.#now = now ?? Date.now
    // lru-cache's own clock for the ttls; without caching its reading, as an injected clock may jump.
    const clock = now === undefined ? {} : { perf: { now }, ttlResolution: 0 }
    this.#revoked = new LRUCache<string, true>({ max: 100_000, ...clock })
    this.#seen = new LRUCache<string, number>({
      max,
      ttlAutopurge: false,
      ...clock,
      dispose: (expiresAt, _key, reason) => {
        if (reason === 'evict' && expiresAt > this.#now() && !this.#warned) {
          this.#warned = true
          onEvict?.()
        }
      },
    })
  }

  markUsed(key: string, ttlSeconds: number): boolean {
    if (this.#seen.get(key) !== undefined) return false
    const ttl = Math.max(1, Math.ceil(ttlSeconds * 1000))
    this.#seen.set(key, this.#now() + ttl, { ttl })
    return true
  }

  revoke(key: string, ttlSeconds: number): void {
    this.#revoked.set(key, true, { ttl: Math.max(1, Math.ceil(ttlSeconds * 1000)) })
  }

  isRevoked(key: string): boolean {
    return this.#revoked.get(key) === true
  }

  /** Identifiers currently remembered. */
  get size(): number {
    return this.#seen.size
  }
}
