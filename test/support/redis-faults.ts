/**
 * Redis helpers for test/faults: a fail-fast ioredis client (the settings the README recommends)
 * and a `redis-server` WITH persistence (AOF, fsync on every write), to show what closes the gap a
 * restarted in-memory Redis leaves. The plain throwaway server is `startRedisServer()` in
 * packages/redis/test/redis-server.ts.
 */
import { Redis } from 'ioredis'
import { startRedisServer, type RedisServer } from '../../packages/redis/test/redis-server.js'

/**
 * A connected ioredis client that fails fast while Redis is down (no offline queue, no retries
 * per request) and reconnects every 50 ms in the background. Disconnect it when done.
 */
export async function failFastRedis(port: number): Promise<Redis> {
  const client = new Redis({
    host: '127.0.0.1',
    port,
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: 1000,
    retryStrategy: () => 50,
  })
  client.on('error', () => {}) // connection errors surface as rejected commands
  await client.connect()
  return client
}

/**
 * A `redis-server` with `appendonly yes` and `appendfsync always`: every write is on disk before
 * Redis answers it, so a SIGKILL and a restart (same directory, same port) keep every key.
 */
export const startPersistentRedisServer = (): Promise<RedisServer> => startRedisServer({ persistent: true })
