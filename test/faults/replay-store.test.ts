/**
 * Fault injection against the DPoP replay store, through each adapter over real HTTPS, with a
 * real redis-server (RedisReplayStore over a fail-fast ioredis client): Redis down, Redis slow
 * (DEBUG SLEEP), Redis killed and restarted in the middle of traffic, a persistent Redis
 * restarted, and ReplayStore implementations that misbehave in ways the conformance suite does
 * not cover (late answers, non-Error rejections, bare thenables, crowds, recovery).
 *
 * What a restart costs, measured honestly below: a Redis without persistence comes back EMPTY,
 * so a proof accepted before the restart can be replayed once after it, within its window. Proofs
 * accepted after the recovery cannot be replayed, and nothing is accepted while Redis is away.
 * A Redis with AOF and `appendfsync always` (or a replicated Redis that keeps its data on
 * failover) closes the gap: see the last describe.
 */
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { CallsignOptions, ReplayStore } from '@callsign/core'
import { RedisReplayStore } from '@callsign/redis'
import { createDpopKey, createDpopProof, type DpopKey } from '@callsign/testing'
import { describeWithRedis, rawCommand, startRedisServer, type RedisServer } from '../../packages/redis/test/redis-server.js'
import { adapters, type RunningApp } from '../support/adapters.js'
import type { CallResult } from '../support/client.js'
import { expectAccepted, expectRefusal } from '../support/expectations.js'
import { sleep, timed, waitUntil } from '../support/faults.js'
import { createFixture, quiet, sign, type Fixture } from '../support/fixtures.js'
import { failFastRedis, startPersistentRedisServer } from '../support/redis-faults.js'

const PUBLIC_ORIGIN = 'https://orders.example.org'
const service = { sub: 'svc-a', client_id: 'svc-a' }
const acceptedDpop = { caller: { id: 'svc-a', source: 'token' as const }, binding: 'dpop' as const }
const storeDown = { status: 503, code: 'replay_store_unavailable' } as const
const replayed = { status: 401, code: 'invalid_dpop_proof', errorScheme: 'DPoP' } as const

let fx: Fixture
let key: DpopKey
let token: string
let bearer: string
beforeAll(async () => {
  fx = await createFixture()
  key = await createDpopKey('ES256')
  ;[token, bearer] = await Promise.all([sign(fx.main, service, { dpopJkt: key.jkt }), sign(fx.main, service)])
})
afterAll(() => fx?.close())

const options = (replayStore: ReplayStore, replayStoreTimeoutMs = 300): CallsignOptions => ({
  issuers: fx.issuerOptions.main,
  logger: quiet,
  dpop: { origin: PUBLIC_ORIGIN, replayStore, replayStoreTimeoutMs },
})
/** A fresh proof (new `jti`, current `iat`) for `GET /whoami`. */
const proof = (): Promise<string> => createDpopProof(key, { method: 'GET', url: `${PUBLIC_ORIGIN}/whoami`, accessToken: token })
const callDpop = (app: RunningApp, dpopProof: string): Promise<CallResult> => fx.call(app, { authorization: `DPoP ${token}`, headers: { dpop: dpopProof } })
const expectReplayRefused = (res: CallResult): void => {
  expectRefusal(res, replayed)
  expect(res.body.detail).toBe('DPoP proof has already been used')
}

describeWithRedis('replay store faults with a real Redis', () => {
  let redis: RedisServer
  const clients: Redis[] = []
  const redisStore = async (timeoutMs?: number): Promise<RedisReplayStore> => {
    const client = await failFastRedis(redis.port)
    clients.push(client)
    return new RedisReplayStore(timeoutMs === undefined ? { client } : { client, timeoutMs })
  }
  /** Fresh proofs until one is accepted (the client reconnects on its own): the app was never restarted. */
  const recovered = async (app: RunningApp): Promise<void> => {
    let status = 0
    const deadline = Date.now() + 5000
    while (status !== 200 && Date.now() < deadline) {
      status = (await callDpop(app, await proof())).status
      if (status !== 200) await sleep(50)
    }
    expect(status, 'a fresh proof is accepted again once Redis is back').toBe(200)
  }

  beforeAll(async () => {
    redis = await startRedisServer()
  })
  afterAll(async () => {
    for (const client of clients) client.disconnect()
    await redis?.stop()
  })

  // One DEBUG SLEEP blocks the whole server, so every adapter is checked during the same sleep.
  it('Redis slow (DEBUG SLEEP 1 from another connection), replayStoreTimeoutMs 200, every adapter: 503 before Redis wakes up; those proofs are never accepted', async () => {
    const apps = await Promise.all(adapters.map(async (adapter) => ({ name: adapter.name, app: await fx.start(adapter, options(await redisStore(), 200)) })))
    for (const { app } of apps) expectAccepted(await callDpop(app, await proof()), acceptedDpop) // connected and warm
    const requests = await Promise.all(apps.flatMap(({ name, app }) => Array.from({ length: 3 }, async () => ({ name, app, proof: await proof() }))))
    let wokeAt = Infinity
    const sleeping = rawCommand(redis.port, 'DEBUG SLEEP 1').then((reply) => {
      wokeAt = performance.now()
      return reply
    })
    await sleep(50) // Redis is now blocked for about a second
    const answers = await Promise.all(requests.map((r) => timed(() => callDpop(r.app, r.proof)).then((t) => ({ ...r, ...t, at: performance.now() }))))
    expect(await sleeping).toBe('+OK')
    for (const { name, value, ms, at } of answers) {
      expect(value.status, name).toBe(503)
      expectRefusal(value, storeDown)
      expect(ms, name).toBeLessThan(200 + 2000)
      expect(at, `${name} answered before Redis woke up: the request did not wait for the store`).toBeLessThan(wokeAt)
    }
    // The SETs queued while Redis slept ran when it woke: a proof refused for a slow store counts
    // as used (the safe side). Either way, none of them is ever accepted.
    for (const { app, proof: p } of answers) expectReplayRefused(await callDpop(app, p))
    for (const { app } of apps) expectAccepted(await callDpop(app, await proof()), acceptedDpop)
  })

  describe.each(adapters)('$name', (adapter) => {
    it('Redis down: every DPoP request fails closed (503 replay_store_unavailable, Retry-After), even a replay; Bearer requests are unaffected', async () => {
      const app = await fx.start(adapter, options(await redisStore()))
      const used = await proof()
      expectAccepted(await callDpop(app, used), acceptedDpop)
      await redis.kill()
      try {
        for (let i = 0; i < 5; i++) {
          const res = await callDpop(app, await proof())
          expectRefusal(res, storeDown)
          expect(res.headers['retry-after']).toBe('1')
        }
        expectRefusal(await callDpop(app, used), storeDown) // cannot be checked: refused, not accepted
        expectAccepted(await fx.call(app, { token: bearer }), { caller: { id: 'svc-a', source: 'token' }, binding: 'bearer' })
      } finally {
        await redis.start()
      }
      await recovered(app)
    })

    it('Redis killed and restarted mid-traffic: 503 (never 200) during the outage, recovery without restarting the app, no replay of proofs accepted after it; proofs accepted BEFORE the restart are replayable once (known gap)', async () => {
      const app = await fx.start(adapter, options(await redisStore()))
      interface Outcome {
        proof: string
        status: number
        code: unknown
        startedAt: number
        endedAt: number
      }
      const outcomes: Outcome[] = []
      let stop = false
      const traffic = async (): Promise<void> => {
        while (!stop) {
          const p = await proof()
          const startedAt = performance.now()
          const res = await callDpop(app, p)
          outcomes.push({ proof: p, status: res.status, code: res.body?.code, startedAt, endedAt: performance.now() })
        }
      }
      const loops = [traffic(), traffic()]
      let killStarted = 0
      let killDone = 0
      let startBegan = 0
      let startDone = 0
      try {
        await waitUntil(() => outcomes.filter((o) => o.status === 200).length >= 5, 5000, 'traffic before the restart')
        killStarted = performance.now()
        await redis.kill()
        killDone = performance.now()
        await waitUntil(() => outcomes.filter((o) => o.startedAt >= killDone).length >= 5, 5000, 'traffic during the outage')
        startBegan = performance.now()
        await redis.start()
        startDone = performance.now()
        await waitUntil(() => outcomes.filter((o) => o.startedAt >= startDone && o.status === 200).length >= 5, 5000, 'accepted traffic after the restart')
      } finally {
        stop = true
        await Promise.all(loops)
        if (startBegan === 0) await redis.start().catch(() => {})
      }

      // Every answer is an acceptance or a fail-closed 503; a fresh proof is never refused as a replay.
      for (const o of outcomes)
        expect([o.status, o.code], `answer to a fresh proof`).toEqual(o.status === 200 ? [200, undefined] : [503, 'replay_store_unavailable'])
      const during = outcomes.filter((o) => o.startedAt >= killDone && o.endedAt <= startBegan)
      expect(during.length).toBeGreaterThan(0)
      expect(
        during.filter((o) => o.status === 200),
        'accepted while Redis was down',
      ).toEqual([])
      const after = outcomes.filter((o) => o.startedAt >= startDone && o.status === 200)
      expect(after.length).toBeGreaterThanOrEqual(5) // recovered, same app process

      // No accepted replay: every proof accepted after the recovery is refused when replayed.
      for (const o of after) expectReplayRefused(await callDpop(app, o.proof))
      // Proofs refused during the outage were never accepted; replayed now, at most one acceptance each.
      for (const o of during) {
        const first = await callDpop(app, o.proof)
        expect(first.status).toBe(200) // Redis never recorded them (it was down): this is their first acceptance
        expectReplayRefused(await callDpop(app, o.proof))
      }
      // KNOWN GAP (documented, not a safety claim): the restarted Redis has no persistence and lost
      // every jti it held, so a proof accepted before the restart is accepted ONCE more when replayed
      // within its window (maxProofAgeSeconds + 2 x clock tolerance). Then it is remembered again.
      const before = outcomes.filter((o) => o.endedAt <= killStarted && o.status === 200)
      expect(before.length).toBeGreaterThanOrEqual(5)
      for (const o of before) {
        expectAccepted(await callDpop(app, o.proof), acceptedDpop)
        expectReplayRefused(await callDpop(app, o.proof))
      }
    })
  })
})

describeWithRedis('replay store faults with a persistent Redis (AOF, appendfsync always)', () => {
  let redis: RedisServer
  const clients: Redis[] = []
  beforeAll(async () => {
    redis = await startPersistentRedisServer()
  })
  afterAll(async () => {
    for (const client of clients) client.disconnect()
    await redis?.stop()
  })

  it.each(adapters.map((a) => [a.name, a] as const))(
    '%s: a proof accepted before a SIGKILL and restart is still refused as a replay after it',
    async (_name, adapter) => {
      const client = await failFastRedis(redis.port)
      clients.push(client)
      const app = await fx.start(adapter, options(new RedisReplayStore({ client })))
      const used = await proof()
      expectAccepted(await callDpop(app, used), acceptedDpop)
      await redis.kill()
      expectRefusal(await callDpop(app, await proof()), storeDown)
      await redis.start()
      await waitUntil(() => client.status === 'ready', 5000, 'the client to reconnect')
      expectReplayRefused(await callDpop(app, used))
      expectAccepted(await callDpop(app, await proof()), acceptedDpop)
    },
  )
})

/** ReplayStore implementations that misbehave beyond what test/conformance/sender-constraint covers. */
const BROKEN_STORES: Array<{ title: string; store: () => ReplayStore }> = [
  {
    title: 'answers true, but only after replayStoreTimeoutMs',
    store: () => ({ markUsed: () => new Promise<boolean>((resolve) => setTimeout(() => resolve(true), 400)) }),
  },
  { title: 'rejects with a string, not an Error', store: () => ({ markUsed: () => Promise.reject('ECONNREFUSED') }) },
  {
    title: 'throws null synchronously',
    store: () => ({
      markUsed: () => {
        throw null
      },
    }),
  },
  { title: 'returns a bare thenable that never calls back', store: () => ({ markUsed: () => ({ then() {} }) as unknown as Promise<boolean> }) },
]

describe.each(adapters)('$name: misbehaving ReplayStore implementations', (adapter) => {
  it.each(BROKEN_STORES)('a store that $title: 503 replay_store_unavailable within replayStoreTimeoutMs + 2 s, never 200', async ({ store }) => {
    const app = await fx.start(adapter, options(store(), 150))
    const { value, ms } = await timed(async () => callDpop(app, await proof()))
    expectRefusal(value, storeDown)
    expect(ms).toBeLessThan(150 + 2000)
  })

  it('50 concurrent DPoP requests against a store that never answers: all 503 within replayStoreTimeoutMs + 2 s; Bearer still 200', async () => {
    const app = await fx.start(adapter, options({ markUsed: () => new Promise<boolean>(() => {}) }, 150))
    const proofs = await Promise.all(Array.from({ length: 50 }, () => proof()))
    const answers = await Promise.all(proofs.map((p) => timed(() => callDpop(app, p))))
    for (const { value, ms } of answers) {
      expectRefusal(value, storeDown)
      expect(ms).toBeLessThan(150 + 2000)
    }
    expectAccepted(await fx.call(app, { token: bearer }), { caller: { id: 'svc-a', source: 'token' }, binding: 'bearer' })
  })

  it('a store that fails, then works again: 503 while it fails, 200 after, same app; a proof refused while it failed is accepted once, then is a replay', async () => {
    let failing = true
    const seen = new Set<string>()
    const app = await fx.start(
      adapter,
      options({
        markUsed: (id) => {
          if (failing) return Promise.reject(new Error('store offline'))
          if (seen.has(id)) return false
          seen.add(id)
          return true
        },
      }),
    )
    const refused = await proof()
    expectRefusal(await callDpop(app, refused), storeDown)
    failing = false
    expectAccepted(await callDpop(app, refused), acceptedDpop)
    expectReplayRefused(await callDpop(app, refused))
    expectAccepted(await callDpop(app, await proof()), acceptedDpop)
  })
})
