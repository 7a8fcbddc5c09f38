// The behaviour every supported client must show against a real redis-server. Run once per
// client library by ioredis.test.ts and node-redis.test.ts.
import { randomUUID } from 'node:crypto'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { DEFAULT_KEY_PREFIX, RedisReplayStore, RedisReplayStoreTimeoutError, type RedisReplayStoreClient } from '../src/index.js'
import { describeWithRedis, rawCommand, startRedisServer, type RedisServer } from './redis-server.js'

/** One connection of a client library, with a raw-command escape hatch for assertions. */
export interface Connection {
  client: RedisReplayStoreClient
  /** Run a raw command on this connection. */
  raw(args: string[]): Promise<unknown>
  close(): Promise<void>
}

export interface ClientKit {
  name: string
  /** A connected client with the README's fail-fast settings. */
  connect(port: number): Promise<Connection>
  /** A connected client with the library's defaults (offline queue on, patient retries). */
  connectWithDefaults(port: number): Promise<Connection>
}

const key = (): string => randomUUID()
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function eventually<T>(attempt: () => Promise<T>, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    try {
      return await attempt()
    } catch (error) {
      if (Date.now() > deadline) throw error
      await sleep(50)
    }
  }
}

export function replayStoreContract(kit: ClientKit): void {
  describeWithRedis(`RedisReplayStore with ${kit.name}`, () => {
    let server: RedisServer
    let a: Connection
    let b: Connection

    beforeAll(async () => {
      server = await startRedisServer()
      a = await kit.connect(server.port)
      b = await kit.connect(server.port)
    })
    afterAll(async () => {
      await a?.close()
      await b?.close()
      await server?.stop()
    })

    it('resolves true on first use and false on the second', async () => {
      const store = new RedisReplayStore({ client: a.client })
      const k = key()
      await expect(store.markUsed(k, 60)).resolves.toBe(true)
      await expect(store.markUsed(k, 60)).resolves.toBe(false)
      await expect(store.markUsed(key(), 60)).resolves.toBe(true)
    })

    it('applies the default key prefix, stores "1" and sets the ttl in milliseconds', async () => {
      const store = new RedisReplayStore({ client: a.client })
      const k = key()
      await store.markUsed(k, 60)
      expect(await a.raw(['GET', `${DEFAULT_KEY_PREFIX}${k}`])).toBe('1')
      expect(await a.raw(['GET', k])).toBeNull()
      const pttl = Number(await a.raw(['PTTL', `${DEFAULT_KEY_PREFIX}${k}`]))
      expect(pttl).toBeGreaterThan(55_000)
      expect(pttl).toBeLessThanOrEqual(60_000)
    })

    it('applies a custom key prefix and rounds a fractional ttl up to whole milliseconds', async () => {
      const store = new RedisReplayStore({ client: a.client, keyPrefix: 'test:custom:' })
      const k = key()
      await store.markUsed(k, 30.0004)
      expect(await a.raw(['GET', `test:custom:${k}`])).toBe('1')
      expect(await a.raw(['GET', `${DEFAULT_KEY_PREFIX}${k}`])).toBeNull()
      const pttl = Number(await a.raw(['PTTL', `test:custom:${k}`]))
      expect(pttl).toBeGreaterThan(25_000)
      expect(pttl).toBeLessThanOrEqual(30_001)
      // The same key under another prefix is another key.
      await expect(new RedisReplayStore({ client: a.client, keyPrefix: 'test:other:' }).markUsed(k, 30)).resolves.toBe(true)
    })

    it('forgets a key once its ttl has passed (real 1.2 s wait)', async () => {
      const store = new RedisReplayStore({ client: a.client })
      const k = key()
      await expect(store.markUsed(k, 1)).resolves.toBe(true)
      await expect(store.markUsed(k, 1)).resolves.toBe(false)
      await sleep(1_200)
      await expect(store.markUsed(k, 1)).resolves.toBe(true)
    })

    it('is atomic: of 50 concurrent uses of one key exactly one is accepted', async () => {
      const store = new RedisReplayStore({ client: a.client })
      const k = key()
      const results = await Promise.all(Array.from({ length: 50 }, () => store.markUsed(k, 60)))
      expect(results.filter(Boolean)).toHaveLength(1)
    })

    it('is shared: two replicas (separate connections) refuse a key the other has used', async () => {
      const replica1 = new RedisReplayStore({ client: a.client })
      const replica2 = new RedisReplayStore({ client: b.client })
      const k1 = key()
      await expect(replica1.markUsed(k1, 60)).resolves.toBe(true)
      await expect(replica2.markUsed(k1, 60)).resolves.toBe(false)
      const k2 = key()
      await expect(replica2.markUsed(k2, 60)).resolves.toBe(true)
      await expect(replica1.markUsed(k2, 60)).resolves.toBe(false)
      // A race between the replicas: one winner over both connections.
      const k3 = key()
      const results = await Promise.all(Array.from({ length: 50 }, (_, i) => (i % 2 ? replica1 : replica2).markUsed(k3, 60)))
      expect(results.filter(Boolean)).toHaveLength(1)
    })

    it('rejects with a timeout error while Redis is busy (DEBUG SLEEP 1), and the late SET still counts', async () => {
      const store = new RedisReplayStore({ client: a.client, timeoutMs: 200 })
      const k = key()
      const sleeping = rawCommand(server.port, 'DEBUG SLEEP 1')
      await sleep(100) // let the server start sleeping before the SET arrives
      const started = Date.now()
      const error: unknown = await store.markUsed(k, 60).then(
        () => 'resolved',
        (e: unknown) => e,
      )
      expect(error).toBeInstanceOf(RedisReplayStoreTimeoutError)
      expect((error as RedisReplayStoreTimeoutError).timeoutMs).toBe(200)
      expect(Date.now() - started).toBeLessThan(200 + 600)
      expect(await sleeping).toBe('+OK')
      // Redis ran the SET after waking up: the proof that timed out is used, never accepted later.
      await expect(store.markUsed(k, 60)).resolves.toBe(false)
      await expect(store.markUsed(key(), 60)).resolves.toBe(true)
    })
  })

  describeWithRedis(`RedisReplayStore with ${kit.name} when Redis goes down`, () => {
    let server: RedisServer
    const open: Connection[] = []
    const connect = async (defaults = false): Promise<Connection> => {
      const connection = defaults ? await kit.connectWithDefaults(server.port) : await kit.connect(server.port)
      open.push(connection)
      return connection
    }

    beforeAll(async () => {
      server = await startRedisServer()
    })
    afterAll(async () => {
      for (const connection of open) await connection.close()
      await server?.stop()
    })

    it('rejects an in-flight command when the server dies, rejects while it is down, and recovers after a restart', async () => {
      const { client } = await connect()
      const store = new RedisReplayStore({ client, timeoutMs: 500 })
      await expect(store.markUsed(key(), 60)).resolves.toBe(true)

      // In flight when the server dies: rejected (by the dropped connection or the timeout), not left hanging.
      void rawCommand(server.port, 'DEBUG SLEEP 1').catch(() => {})
      await sleep(100)
      const inFlight = store.markUsed(key(), 60).then(
        () => 'resolved',
        (e: unknown) => e,
      )
      await sleep(50)
      await server.kill()
      expect(await inFlight).toBeInstanceOf(Error)

      // Down: every call rejects, promptly.
      for (let i = 0; i < 3; i++) {
        const started = Date.now()
        await expect(store.markUsed(key(), 60)).rejects.toThrow()
        expect(Date.now() - started).toBeLessThan(500 + 500)
      }

      // Back on the same port (empty, no persistence): the same store works again once the client has reconnected.
      await server.start()
      const k = key()
      await expect(eventually(() => store.markUsed(k, 60), 10_000)).resolves.toBe(true)
      await expect(store.markUsed(k, 60)).resolves.toBe(false)
    })

    it('still rejects within timeoutMs with the library defaults (offline queue on) while Redis is down', async () => {
      const { client } = await connect(true)
      const store = new RedisReplayStore({ client, timeoutMs: 150 })
      await expect(store.markUsed(key(), 60)).resolves.toBe(true)
      await server.kill()
      try {
        const started = Date.now()
        await expect(store.markUsed(key(), 60)).rejects.toBeInstanceOf(RedisReplayStoreTimeoutError)
        expect(Date.now() - started).toBeLessThan(150 + 500)
      } finally {
        await server.start()
      }
      // A fresh key per attempt: with an offline queue, an attempt that timed out may still be
      // sent after the reconnect and mark its key used (the safe side).
      await expect(eventually(() => store.markUsed(key(), 60), 10_000)).resolves.toBe(true)
    })
  })
}
