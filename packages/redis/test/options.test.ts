// Constructor validation, client detection and the store's defensive paths. No Redis behaviour is
// simulated here: the behaviour against a real redis-server is in ioredis/node-redis.test.ts.
import { describe, expect, it } from 'vitest'
import { DEFAULT_KEY_PREFIX, DEFAULT_TIMEOUT_MS, RedisReplayStore, RedisReplayStoreTimeoutError, type RedisReplayStoreOptions } from '../src/index.js'
import { assertRedisServerInstalled } from './redis-server.js'

const calls: unknown[][] = []
const ioredisLike = { call: async (...args: string[]) => (calls.push(args), 'OK') }
const build = (options: unknown) => new RedisReplayStore(options as RedisReplayStoreOptions)

describe('RedisReplayStore options', () => {
  it('has the documented defaults', () => {
    const store = new RedisReplayStore({ client: ioredisLike })
    expect(store.keyPrefix).toBe('callsign:dpop:jti:')
    expect(DEFAULT_KEY_PREFIX).toBe('callsign:dpop:jti:')
    expect(store.timeoutMs).toBe(250)
    expect(DEFAULT_TIMEOUT_MS).toBe(250)
  })

  it.each([
    [undefined, /options must be an object/],
    [null, /options must be an object/],
    [{}, /"client"/],
    [{ client: null }, /"client"/],
    [{ client: {} }, /"client" must be an ioredis client \(with call\) or a node-redis client \(with sendCommand\)/],
    [{ client: { call: 'SET' } }, /"client"/],
    [{ client: ioredisLike, keyPrefix: 5 }, /"keyPrefix" must be a string/],
    [{ client: ioredisLike, timeoutMs: 0 }, /"timeoutMs"/],
    [{ client: ioredisLike, timeoutMs: 2.5 }, /"timeoutMs"/],
    [{ client: ioredisLike, timeoutMs: '250' }, /"timeoutMs"/],
    [{ client: ioredisLike, timeoutMs: 60_001 }, /"timeoutMs"/],
    [{ client: ioredisLike, prefix: 'x:' }, /unknown option "prefix"/],
  ])('refuses %j with a TypeError naming the option', (options, message) => {
    expect(() => build(options)).toThrow(TypeError)
    expect(() => build(options)).toThrow(message)
  })

  it('accepts an empty keyPrefix (e.g. when the client prefixes keys itself)', () => {
    expect(new RedisReplayStore({ client: ioredisLike, keyPrefix: '' }).keyPrefix).toBe('')
  })
})

describe('RedisReplayStore client detection and defensive paths', () => {
  it('prefers call (ioredis also has a sendCommand that takes a Command object)', async () => {
    const client = {
      call: async (...args: string[]) => (args.length ? 'OK' : null),
      sendCommand: async () => {
        throw new Error('sendCommand used')
      },
    }
    await expect(new RedisReplayStore({ client }).markUsed('k', 1)).resolves.toBe(true)
  })

  it('sends SET key 1 PX ms NX with the ttl rounded up to whole milliseconds', async () => {
    const sent: string[][] = []
    const client = { sendCommand: async (args: string[]) => (sent.push(args), null) }
    await expect(new RedisReplayStore({ client, keyPrefix: 'p:' }).markUsed('abc', 0.0004)).resolves.toBe(false)
    expect(sent).toEqual([['SET', 'p:abc', '1', 'PX', '1', 'NX']])
  })

  it('treats an OK reply in bytes as OK', async () => {
    const client = { sendCommand: async () => Buffer.from('OK') }
    await expect(new RedisReplayStore({ client }).markUsed('k', 1)).resolves.toBe(true)
  })

  it.each([['QUEUED'], [1], [undefined], [{}]])('rejects an unexpected reply %j instead of accepting', async (reply) => {
    const client = { sendCommand: async () => reply }
    await expect(new RedisReplayStore({ client }).markUsed('k', 1)).rejects.toThrow(/unexpected Redis reply/)
  })

  it('rejects (not throws) when the client throws synchronously, keeping the cause', async () => {
    const cause = new Error('Connection is closed.')
    const client = {
      call: (): Promise<unknown> => {
        throw cause
      },
    }
    const promise = new RedisReplayStore({ client }).markUsed('k', 1)
    await expect(promise).rejects.toThrow(/Connection is closed/)
    await expect(promise).rejects.toHaveProperty('cause', cause)
  })

  it('rejects with RedisReplayStoreTimeoutError when the client never answers', async () => {
    const client = { call: () => new Promise<unknown>(() => {}) }
    const error = await new RedisReplayStore({ client, timeoutMs: 20 }).markUsed('k', 1).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(RedisReplayStoreTimeoutError)
    expect(error).toHaveProperty('name', 'RedisReplayStoreTimeoutError')
  })

  it.each([
    ['', 1],
    ['k', 0],
    ['k', -1],
    ['k', Number.NaN],
    ['k', Number.POSITIVE_INFINITY],
  ])('rejects markUsed(%j, %s) with a TypeError without calling Redis', async (key, ttl) => {
    calls.length = 0
    await expect(new RedisReplayStore({ client: ioredisLike }).markUsed(key, ttl)).rejects.toThrow(TypeError)
    expect(calls).toEqual([])
  })
})

describe('test helper', () => {
  it('fails with an instruction (never skips) when redis-server is not on PATH', () => {
    expect(() => assertRedisServerInstalled({ ...process.env, PATH: '/nonexistent' })).toThrow(/redis-server.*not on PATH.*apt-get install -y redis-server/s)
  })
})
