import type { ReplayStore, RevocationStore } from '@callsign/core'

/** Prefix put before every key when `keyPrefix` is not given: `'callsign:dpop:jti:'`. */
export const DEFAULT_KEY_PREFIX = 'callsign:dpop:jti:'

/** How long `markUsed` waits for Redis when `timeoutMs` is not given: 250 ms. */
export const DEFAULT_TIMEOUT_MS = 250

/** Largest accepted `timeoutMs` (a minute): longer would hold requests far past core's own limit. */
const MAX_TIMEOUT_MS = 60_000

/**
 * The part of an ioredis client (`Redis` or `Cluster`, v5 and later) that the store uses: the raw
 * command call `client.call('SET', key, '1', 'PX', ms, 'NX')`.
 *
 * Structural, so this package has no type dependency on ioredis.
 */
export interface IoRedisLikeClient {
  call(command: string, ...args: string[]): Promise<unknown>
}

/**
 * The part of a node-redis client (`createClient()` from `redis`, v4 and later) that the store
 * uses: the raw command call `client.sendCommand(['SET', key, '1', 'PX', ms, 'NX'])`.
 *
 * Not a node-redis cluster or sentinel client: their `sendCommand` takes routing arguments first.
 * Structural, so this package has no type dependency on node-redis.
 */
export interface NodeRedisLikeClient {
  sendCommand(args: string[]): Promise<unknown>
}

/**
 * A connected Redis client: ioredis (detected by its `call` method) or node-redis (detected by
 * `sendCommand` when there is no `call`). The store never connects, disconnects or configures it.
 */
export type RedisReplayStoreClient = IoRedisLikeClient | NodeRedisLikeClient

/** Options of {@link RedisReplayStore}. */
export interface RedisReplayStoreOptions {
  /**
   * The Redis client, owned by the caller (connect it before serving, quit it on shutdown).
   * Configure it to fail fast while Redis is down (see the README): with an offline queue a
   * command waits for the reconnect and the store answers with its timeout instead.
   */
  client: RedisReplayStoreClient
  /**
   * Put before each key. Default {@link DEFAULT_KEY_PREFIX} (`'callsign:dpop:jti:'`). Any string,
   * the empty one included; a `keyPrefix` configured on an ioredis client is applied on top.
   */
  keyPrefix?: string
  /**
   * `markUsed` rejects when Redis has not answered within this many milliseconds. Default
   * {@link DEFAULT_TIMEOUT_MS} (250); a whole number from 1 to 60 000. Keep it below core's
   * `dpop.replayStoreTimeoutMs` (default 500) so the 503's cause names the store's own error.
   */
  timeoutMs?: number
  /** Prefix of the `jti` denylist keys (`revoke`/`isRevoked`). Default `'callsign:revoked:'`. */
  revokedPrefix?: string
}

/**
 * The error `markUsed` rejects with when Redis did not answer within `timeoutMs`. The command
 * may still run on the server later; the proof was not accepted either way.
 */
export class RedisReplayStoreTimeoutError extends Error {
  override readonly name = 'RedisReplayStoreTimeoutError'
  /** The limit that was exceeded, in milliseconds. */
  readonly timeoutMs: number

  constructor(timeoutMs: number) {
    super(`Callsign: Redis did not answer the replay check within ${timeoutMs} ms`)
    this.timeoutMs = timeoutMs
  }
}

type Send = (key: string, ttlMs: number) => Promise<unknown>

/**
 * DPoP replay store on Redis, shared by every replica behind a load balancer, so a proof
 * replayed to another replica is refused there too (RFC 9449 §11.1).
 *
 * Each `markUsed(key, ttlSeconds)` is one atomic `SET <keyPrefix><key> 1 NX PX <ttl ms>`:
 * it resolves `true` when Redis answers `OK` (the key was new), `false` when Redis answers nil
 * (the key exists: a replay), and rejects on any error, an unexpected reply, or no answer within
 * `timeoutMs`. It never resolves `true` without Redis having said `OK`; core turns a rejection
 * into 503 with `Retry-After` and does not accept the proof unchecked.
 *
 * Works with ioredis (`client.call`) and node-redis (`client.sendCommand`), found by feature
 * detection. One key per accepted proof lives for the proof window (the `ttlSeconds` core passes:
 * `maxProofAgeSeconds` plus twice the clock tolerance).
 *
 * What it does not do: connect, reconnect or close the client (the client does that), retry a
 * failed command, hash keys (core passes a short base64url hash already), or cancel a command
 * that timed out: if Redis applies it later, that proof counts as used, which is the safe side.
 *
 * @example
 * ```ts
 * import { Redis } from 'ioredis'
 * import { callsign } from '@callsign/express'
 * import { RedisReplayStore } from '@callsign/redis'
 *
 * const client = new Redis(process.env.REDIS_URL!, { maxRetriesPerRequest: 1, enableOfflineQueue: false })
 * app.use(callsign({ ...options, dpop: { replayStore: new RedisReplayStore({ client }) } }))
 * ```
 */
export class RedisReplayStore implements ReplayStore, RevocationStore {
  /** The prefix in use. */
  readonly keyPrefix: string
  /** The timeout in use, in milliseconds. */
  readonly timeoutMs: number
  readonly #send: Send
  readonly #raw: (args: string[]) => Promise<unknown>
  /** Prefix of revoked-token keys (`jti` denylist). Default `'callsign:revoked:'`. */
  readonly revokedPrefix: string

  /**
   * @param options - `client` (required), `keyPrefix` (default `'callsign:dpop:jti:'`),
   *   `timeoutMs` (default 250).
   * @throws TypeError naming the option when an option is missing, of the wrong type or unknown.
   */
  constructor(options: RedisReplayStoreOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new TypeError('Callsign: RedisReplayStore options must be an object { client, keyPrefix?, timeoutMs? }')
    }
    for (const name of Object.keys(options)) {
      if (name !== 'client' && name !== 'keyPrefix' && name !== 'timeoutMs' && name !== 'revokedPrefix') {
        throw new TypeError(`Callsign: RedisReplayStore: unknown option "${name}" (expected client, keyPrefix, timeoutMs, revokedPrefix)`)
      }
    }
    const { client, keyPrefix = DEFAULT_KEY_PREFIX, timeoutMs = DEFAULT_TIMEOUT_MS, revokedPrefix = 'callsign:revoked:' } = options
    this.#send = commandFor(client)
    this.#raw = rawFor(client)
    if (typeof revokedPrefix !== 'string') throw new TypeError('Callsign: RedisReplayStore: "revokedPrefix" must be a string')
    this.revokedPrefix = revokedPrefix
    if (typeof keyPrefix !== 'string') throw new TypeError('Callsign: RedisReplayStore: "keyPrefix" must be a string')
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_TIMEOUT_MS) {
      throw new TypeError(`Callsign: RedisReplayStore: "timeoutMs" must be a whole number of milliseconds from 1 to ${MAX_TIMEOUT_MS}`)
    }
    this.keyPrefix = keyPrefix
    this.timeoutMs = timeoutMs
  }

  /**
   * Record `key` for `ttlSeconds` (rounded up to whole milliseconds) with one
   * `SET <keyPrefix><key> 1 NX PX <ms>`.
   *
   * @returns `true` if Redis stored the key (first use), `false` if it already existed (replay).
   * @throws (rejects) TypeError for an empty key or a non-positive ttl; the client's error
   *   (wrapped, as `cause`) when the command fails; {@link RedisReplayStoreTimeoutError} when
   *   Redis has not answered within `timeoutMs`; an Error on a reply other than `OK` or nil.
   */
  markUsed(key: string, ttlSeconds: number): Promise<boolean> {
    if (typeof key !== 'string' || key.length === 0) {
      return Promise.reject(new TypeError('Callsign: RedisReplayStore.markUsed: key must be a non-empty string'))
    }
    if (typeof ttlSeconds !== 'number' || !Number.isFinite(ttlSeconds) || ttlSeconds <= 0) {
      return Promise.reject(new TypeError('Callsign: RedisReplayStore.markUsed: ttlSeconds must be a positive number'))
    }
    const ttlMs = Math.max(1, Math.ceil(ttlSeconds * 1000))
    const timeoutMs = this.timeoutMs
    return new Promise<boolean>((resolve, reject) => {
      const timer = setTimeout(() => reject(new RedisReplayStoreTimeoutError(timeoutMs)), timeoutMs)
      const settle = (outcome: () => void): void => {
        clearTimeout(timer)
        outcome()
      }
      let reply: Promise<unknown>
      try {
        reply = Promise.resolve(this.#send(this.keyPrefix + key, ttlMs))
      } catch (error) {
        settle(() => reject(failed(error)))
        return
      }
      reply.then(
        (value) =>
          settle(() => {
            if (isOk(value)) resolve(true)
            else if (value === null) resolve(false)
            else reject(new Error(`Callsign: unexpected Redis reply to SET NX: ${describe(value)}`))
          }),
        (error: unknown) => settle(() => reject(failed(error))),
      )
    })
  }

  /** `jti` denylist: `SET <revokedPrefix><key> 1 PX <ttl ms>`, shared by every replica. Rejects on error or timeout. */
  async revoke(key: string, ttlSeconds: number): Promise<void> {
    const ttlMs = String(Math.max(1, Math.ceil(ttlSeconds * 1000)))
    await this.#timed(this.#raw(['SET', this.revokedPrefix + key, '1', 'PX', ttlMs]))
  }

  /** `EXISTS <revokedPrefix><key>`. Rejects on error or timeout, so the request fails closed. */
  async isRevoked(key: string): Promise<boolean> {
    const reply = await this.#timed(this.#raw(['EXISTS', this.revokedPrefix + key]))
    return Number(reply) > 0
  }

  #timed<T>(promise: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new RedisReplayStoreTimeoutError(this.timeoutMs)), this.timeoutMs)
    })
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
  }
}

function rawFor(client: unknown): (args: string[]) => Promise<unknown> {
  const candidate = client as Partial<IoRedisLikeClient & NodeRedisLikeClient>
  if (typeof candidate.call === 'function') {
    const ioredis = client as IoRedisLikeClient
    return (args) => Promise.resolve(ioredis.call(args[0]!, ...args.slice(1)))
  }
  const nodeRedis = client as NodeRedisLikeClient
  return (args) => Promise.resolve(nodeRedis.sendCommand(args))
}

function commandFor(client: unknown): Send {
  if (typeof client !== 'object' || client === null) {
    throw new TypeError('Callsign: RedisReplayStore: "client" must be an ioredis or node-redis client')
  }
  const candidate = client as Partial<IoRedisLikeClient & NodeRedisLikeClient>
  // ioredis first: it also has a `sendCommand`, which takes a Command object instead of an array.
  if (typeof candidate.call === 'function') {
    const ioredis = client as IoRedisLikeClient
    return (key, ttlMs) => ioredis.call('SET', key, '1', 'PX', String(ttlMs), 'NX')
  }
  if (typeof candidate.sendCommand === 'function') {
    const nodeRedis = client as NodeRedisLikeClient
    return (key, ttlMs) => nodeRedis.sendCommand(['SET', key, '1', 'PX', String(ttlMs), 'NX'])
  }
  throw new TypeError('Callsign: RedisReplayStore: "client" must be an ioredis client (with call) or a node-redis client (with sendCommand)')
}

function isOk(value: unknown): boolean {
  if (value === 'OK') return true
  return value instanceof Uint8Array && value.length === 2 && value[0] === 0x4f && value[1] === 0x4b
}

function failed(error: unknown): Error {
  const message = error instanceof Error ? error.message : String(error)
  return new Error(`Callsign: Redis could not record the DPoP proof: ${message}`, { cause: error })
}

function describe(value: unknown): string {
  try {
    return JSON.stringify(value)?.slice(0, 100) ?? String(value)
  } catch {
    return String(value)
  }
}
