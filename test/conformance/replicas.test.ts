// Two replicas of one service behind a load balancer share a real Redis replay store: a DPoP
// proof accepted by one replica is refused by the other. Every pairing of the three adapters.
import { Redis } from 'ioredis'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { MemoryReplayStore, type CallsignOptions, type ReplayStore } from '@callsign/core'
import { RedisReplayStore } from '@callsign/redis'
import { createDpopKey, createDpopProof, type DpopKey } from '@callsign/testing'
import { describeWithRedis, startRedisServer, type RedisServer } from '../../packages/redis/test/redis-server.js'
import { adapters, type Adapter, type RunningApp } from '../support/adapters.js'
import { expectAccepted, expectRefusal } from '../support/expectations.js'
import { createFixture, ID, issuerOption, quiet, sign, type Fixture } from '../support/fixtures.js'

const PUBLIC_ORIGIN = 'https://orders.example.org'

describeWithRedis('replicas sharing a Redis replay store', () => {
  let fx: Fixture
  let redis: RedisServer
  const clients: Redis[] = []
  let key: DpopKey
  let token: string

  const redisStore = (): RedisReplayStore => {
    const client = new Redis({
      port: redis.port,
      host: '127.0.0.1',
      lazyConnect: false,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => 50,
    })
    client.on('error', () => {})
    clients.push(client)
    return new RedisReplayStore({ client })
  }
  const options = (replayStore: ReplayStore): CallsignOptions => ({
    issuers: issuerOption(fx.main),
    logger: quiet,
    dpop: { origin: PUBLIC_ORIGIN, replayStore, replayStoreTimeoutMs: 300 },
  })
  const proof = () => createDpopProof(key, { method: 'GET', url: `${PUBLIC_ORIGIN}/whoami`, accessToken: token })
  const callWith = (app: RunningApp, dpopProof: string) =>
    fx.call(app, { path: '/whoami', authorization: `DPoP ${token}`, headers: { dpop: dpopProof }, cert: fx.certs.frontend })
  const replicaPairs: Array<[Adapter, Adapter]> = adapters.map((a, i) => [a, adapters[(i + 1) % adapters.length]!])

  beforeAll(async () => {
    ;[fx, redis] = await Promise.all([createFixture(), startRedisServer()])
    key = await createDpopKey('ES256')
    token = await sign(fx.main, { sub: ID.frontend, client_id: ID.frontend }, { dpopJkt: key.jkt })
  })
  afterAll(async () => {
    for (const client of clients) client.disconnect()
    await fx?.close()
    await redis?.stop()
  })

  it.each(replicaPairs.map(([a, b]) => [a.name, b.name, a, b] as const))(
    'a proof accepted by the %s replica is refused by the %s replica',
    async (_a, _b, adapterA, adapterB) => {
      const [replicaA, replicaB] = await Promise.all([fx.start(adapterA, options(redisStore())), fx.start(adapterB, options(redisStore()))])
      const dpopProof = await proof()
      expectAccepted(await callWith(replicaA, dpopProof), {
        caller: { id: ID.frontend, source: 'mtls' },
        binding: 'dpop',
        peer: { ...fx.certs.frontend, spiffeId: ID.frontend },
      })
      const replay = await callWith(replicaB, dpopProof)
      expectRefusal(replay, { status: 401, code: 'invalid_dpop_proof', errorScheme: 'DPoP' })
      expect(replay.body.detail).toBe('DPoP proof has already been used')
      // A fresh proof is fine on either replica.
      expect((await callWith(replicaB, await proof())).status).toBe(200)
    },
  )

  it('with process-local stores, the same replay is accepted by the other replica (why the shared store exists)', async () => {
    const [replicaA, replicaB] = await Promise.all([
      fx.start(adapters[0]!, options(new MemoryReplayStore())),
      fx.start(adapters[1]!, options(new MemoryReplayStore())),
    ])
    const dpopProof = await proof()
    expect((await callWith(replicaA, dpopProof)).status).toBe(200)
    expect((await callWith(replicaB, dpopProof)).status).toBe(200)
    expect((await callWith(replicaB, dpopProof)).status).toBe(401)
  })

  it.each(adapters.map((a) => [a.name, a] as const))(
    '%s: Redis down fails closed with 503, and the replica recovers when Redis is back, without a restart',
    async (_name, adapter) => {
      const app = await fx.start(adapter, options(redisStore()))
      expect((await callWith(app, await proof())).status).toBe(200)
      await redis.kill()
      try {
        const down = await callWith(app, await proof())
        expectRefusal(down, { status: 503, code: 'replay_store_unavailable' })
      } finally {
        await redis.start()
      }
      // Reconnection is the client's job; give it a few tries on fresh proofs.
      let status = 0
      for (let attempt = 0; attempt < 100 && status !== 200; attempt++) {
        status = (await callWith(app, await proof())).status
        if (status !== 200) await new Promise((resolve) => setTimeout(resolve, 100))
      }
      expect(status).toBe(200)
    },
  )
})
