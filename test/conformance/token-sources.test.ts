// Local keys (self-issued service JWTs, key files that rotate), token lifetime bounds and
// revocation (jti denylist, hook, shared through Redis), in every framework.
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type CryptoKey } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { RedisReplayStore } from '@callsign/redis'
import { describeWithRedis, startRedisServer, type RedisServer } from '../../packages/redis/test/redis-server.js'
import { adapters } from '../support/adapters.js'
import { expectAccepted, expectRefusal } from '../support/expectations.js'
import { createFixture, ID, issuerOption, quiet, sign, type Fixture } from '../support/fixtures.js'

const AUD = 'https://orders.example.org'

/** A service signing its own short-lived token: iss = sub = its SPIFFE ID. */
async function selfIssued(key: CryptoKey, alg: string, claims: Record<string, unknown> = {}, lifetime = 120, kid?: string): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  return new SignJWT({ sub: ID.worker, client_id: ID.worker, aud: AUD, scope: 'orders:read', ...claims })
    .setProtectedHeader({ alg, typ: 'JWT', ...(kid ? { kid } : {}) })
    .setIssuer(ID.worker)
    .setIssuedAt(now)
    .setExpirationTime(now + lifetime)
    .setJti(crypto.randomUUID())
    .sign(key)
}

describe.each(adapters)('$name: token sources and revocation', (adapter) => {
  let fx: Fixture
  let dir: string
  let es256: Awaited<ReturnType<typeof generateKeyPair>>
  let ed25519: Awaited<ReturnType<typeof generateKeyPair>>

  beforeAll(async () => {
    fx = await createFixture()
    dir = await mkdtemp(join(tmpdir(), 'callsign-keys-'))
    ;[es256, ed25519] = await Promise.all([generateKeyPair('ES256', { extractable: true }), generateKeyPair('EdDSA', { extractable: true })])
  })
  afterAll(async () => {
    await fx?.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('accepts self-issued ES256 and EdDSA service JWTs verified with inline keys (JWKS and PEM)', async () => {
    const jwk = { ...(await exportJWK(es256.publicKey)), kid: 'worker-1' }
    const app = await fx.start(adapter, {
      logger: quiet,
      issuers: [
        { issuer: ID.worker, audience: AUD, typ: 'jwt', jwks: { keys: [jwk] }, maxTokenLifetime: 300 },
        { issuer: 'spiffe://example.org/ns/batch/sa/reporter', audience: AUD, typ: 'jwt', jwks: await exportSPKI(ed25519.publicKey) },
      ],
    })
    const token = await selfIssued(es256.privateKey, 'ES256', {}, 120, 'worker-1')
    expectAccepted(await fx.call(app, { path: '/orders', token }), { caller: { id: ID.worker, source: 'token' }, scopes: ['orders:read'], issuer: ID.worker })
    const reporter = await new SignJWT({ sub: 'spiffe://example.org/ns/batch/sa/reporter', aud: AUD, scope: 'orders:read' })
      .setProtectedHeader({ alg: 'EdDSA' })
      .setIssuer('spiffe://example.org/ns/batch/sa/reporter')
      .setIssuedAt()
      .setExpirationTime('2m')
      .sign(ed25519.privateKey)
    expect((await fx.call(app, { path: '/orders', token: reporter })).status).toBe(200)
    // maxTokenLifetime: a long-lived self-issued token is refused.
    const longLived = await selfIssued(es256.privateKey, 'ES256', {}, 3600, 'worker-1')
    const refused = await fx.call(app, { path: '/orders', token: longLived })
    expectRefusal(refused, { status: 401, code: 'invalid_token' })
    expect(refused.body.detail).toBe('token lifetime too long')
    // Signed by a key the service does not publish.
    const other = await generateKeyPair('ES256')
    expectRefusal(await fx.call(app, { path: '/orders', token: await selfIssued(other.privateKey, 'ES256', {}, 120, 'worker-1') }), {
      status: 401,
      code: 'invalid_token',
    })
  })

  it('a single signer speaks only for itself: its key naming another service (sub, client_id, act) is refused, with or without a certificate; subjects lets it act for listed users', async () => {
    const report = 'spiffe://example.org/ns/batch/sa/report'
    const reportKey = await generateKeyPair('ES256')
    const issuers = async (subjects?: string[]) => [
      { issuer: ID.worker, audience: AUD, typ: 'jwt' as const, jwks: { keys: [await exportJWK(es256.publicKey)] }, ...(subjects ? { subjects } : {}) },
      { issuer: report, audience: AUD, typ: 'jwt' as const, jwks: { keys: [await exportJWK(reportKey.publicKey)] } },
    ]
    const app = await fx.start(adapter, { logger: quiet, issuers: await issuers() })
    const refused = async (claims: Record<string, unknown>, detail: string, cert?: typeof fx.certs.worker): Promise<void> => {
      const res = await fx.call(app, { path: '/orders', token: await selfIssued(es256.privateKey, 'ES256', claims), cert })
      expectRefusal(res, { status: 401, code: 'invalid_token' })
      expect(res.body.detail).toBe(detail)
    }
    // The worker's key (iss = worker) naming the report service: one stolen key would impersonate every service.
    await refused({ sub: report, client_id: undefined }, 'token names a subject its signer may not assert')
    await refused({ sub: report, client_id: report }, 'token names a subject its signer may not assert')
    await refused({ client_id: report }, 'token names a caller other than its signer')
    await refused({ act: { sub: report } }, 'token names a caller other than its signer')
    await refused({ sub: 'alice', client_id: ID.worker }, 'token names a subject its signer may not assert')
    await refused({ sub: report, client_id: undefined }, 'token names a subject its signer may not assert', fx.certs.worker)
    // The worker naming itself, and the report service with its own key, are served.
    expectAccepted(await fx.call(app, { path: '/orders', token: await selfIssued(es256.privateKey, 'ES256') }), {
      caller: { id: ID.worker, source: 'token' },
      scopes: ['orders:read'],
      issuer: ID.worker,
    })
    const now = Math.floor(Date.now() / 1000)
    const own = await new SignJWT({ sub: report, aud: AUD, scope: 'orders:read' })
      .setProtectedHeader({ alg: 'ES256', typ: 'JWT' })
      .setIssuer(report)
      .setIssuedAt(now)
      .setExpirationTime(now + 60)
      .sign(reportKey.privateKey)
    expectAccepted(await fx.call(app, { path: '/orders', token: own }), { caller: { id: report, source: 'token' }, scopes: ['orders:read'], issuer: report })
    // `subjects`: the worker may act for listed users, as itself (client_id = the signer).
    const delegating = await fx.start(adapter, { logger: quiet, issuers: await issuers(['user:alice']) })
    expectAccepted(await fx.call(delegating, { path: '/orders', token: await selfIssued(es256.privateKey, 'ES256', { sub: 'user:alice' }) }), {
      caller: { id: ID.worker, source: 'token' },
      user: 'user:alice',
      scopes: ['orders:read'],
      issuer: ID.worker,
    })
    const res = await fx.call(delegating, { path: '/orders', token: await selfIssued(es256.privateKey, 'ES256', { sub: report, client_id: undefined }) })
    expect(res.body.detail).toBe('token names a subject its signer may not assert')
  })

  it('verifies SPIFFE JWT-SVIDs against a trust bundle, with or without iss; sub is the caller', async () => {
    const bundle = { keys: [{ ...(await exportJWK(es256.publicKey)), kid: 'svid-1', use: 'jwt-svid' }], spiffe_sequence: 7 }
    const app = await fx.start(adapter, {
      logger: quiet,
      issuers: { issuer: 'spiffe://example.org', trustDomain: 'example.org', audience: AUD, typ: 'jwt', jwks: bundle, maxTokenLifetime: 3600 },
    })
    const svid = (sub: string, extra: Record<string, unknown> = {}, aud: string | null = AUD) => {
      const now = Math.floor(Date.now() / 1000)
      return new SignJWT({ sub, ...(aud ? { aud } : {}), ...extra })
        .setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: 'svid-1' })
        .setIssuedAt(now)
        .setExpirationTime(now + 300)
        .sign(es256.privateKey)
    }
    expectAccepted(await fx.call(app, { path: '/whoami', token: await svid(ID.worker) }), {
      caller: { id: ID.worker, source: 'token' },
      issuer: 'spiffe://example.org',
    })
    expect((await fx.call(app, { path: '/whoami', token: await svid(ID.worker, { iss: 'spiffe://example.org' }) })).status).toBe(200)
    // Presented by another workload's mTLS connection: caller consistency.
    expectRefusal(await fx.call(app, { path: '/whoami', token: await svid(ID.worker), cert: fx.certs.frontend }), { status: 401, code: 'invalid_token' })
    // Another trust domain, no audience, a subject that is not a workload SPIFFE ID.
    expectRefusal(await fx.call(app, { path: '/whoami', token: await svid('spiffe://other.org/ns/x/sa/y') }), { status: 401, code: 'invalid_token' })
    expectRefusal(await fx.call(app, { path: '/whoami', token: await svid(ID.worker, {}, null) }), { status: 401, code: 'invalid_token' })
    expectRefusal(await fx.call(app, { path: '/whoami', token: await svid(ID.worker, { iss: 'spiffe://example.org', sub: 'alice' }) }), {
      status: 401,
      code: 'invalid_token',
    })
  })

  it('follows a key file as it is rotated, without a restart', async () => {
    const file = join(dir, `${adapter.name}-keys.json`)
    const next = await generateKeyPair('ES256', { extractable: true })
    await writeFile(file, JSON.stringify({ keys: [{ ...(await exportJWK(es256.publicKey)), kid: 'k1' }] }))
    const app = await fx.start(adapter, { logger: quiet, issuers: { issuer: ID.worker, audience: AUD, typ: 'jwt', jwks: { path: file, pollSeconds: 0.05 } } })
    expect((await fx.call(app, { path: '/orders', token: await selfIssued(es256.privateKey, 'ES256', {}, 120, 'k1') })).status).toBe(200)
    expect((await fx.call(app, { path: '/orders', token: await selfIssued(next.privateKey, 'ES256', {}, 120, 'k2') })).status).toBe(401)
    // Atomic replace, as a secret mount or a rotation agent does.
    await writeFile(`${file}.tmp`, JSON.stringify({ keys: [{ ...(await exportJWK(next.publicKey)), kid: 'k2' }] }))
    await rename(`${file}.tmp`, file)
    let status = 0
    for (let i = 0; i < 40 && status !== 200; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50))
      status = (await fx.call(app, { path: '/orders', token: await selfIssued(next.privateKey, 'ES256', {}, 120, 'k2') })).status
    }
    expect(status).toBe(200)
    expect((await fx.call(app, { path: '/orders', token: await selfIssued(es256.privateKey, 'ES256', {}, 120, 'k1') })).status).toBe(401)
    // A broken file keeps the current keys.
    await writeFile(file, '{ not json')
    await new Promise((resolve) => setTimeout(resolve, 150))
    expect((await fx.call(app, { path: '/orders', token: await selfIssued(next.privateKey, 'ES256', {}, 120, 'k2') })).status).toBe(200)
  })

  it('revokes a token before it expires: denylist by jti, also for a cached verification', async () => {
    const app = await fx.start(adapter, { logger: quiet, issuers: issuerOption(fx.main), revocation: {} })
    const token = await sign(fx.main, { sub: ID.worker, client_id: ID.worker, scope: 'orders:read' })
    const first = await fx.call(app, { path: '/orders', token })
    expect(first.status).toBe(200)
    expect((await fx.call(app, { path: '/orders', token })).status).toBe(200) // now in the verified-token cache
    await app.guard.revoke(first.body.claims)
    const after = await fx.call(app, { path: '/orders', token })
    expectRefusal(after, { status: 401, code: 'invalid_token' })
    expect(after.body.detail).toBe('token has been revoked')
    // Other tokens are unaffected.
    expect((await fx.call(app, { path: '/orders', token: await sign(fx.main, { sub: ID.worker, client_id: ID.worker, scope: 'orders:read' }) })).status).toBe(
      200,
    )
  })

  it('revokes through a hook, and fails closed when the hook fails or hangs', async () => {
    const mode = { value: 'ok' as 'ok' | 'throw' | 'hang' }
    const app = await fx.start(adapter, {
      logger: quiet,
      issuers: issuerOption(fx.main),
      revocation: {
        timeoutMs: 100,
        isRevoked: (claims) => {
          if (mode.value === 'throw') throw new Error('denylist down')
          if (mode.value === 'hang') return new Promise<boolean>(() => {})
          return claims.sub === 'mallory'
        },
      },
    })
    const alice = await sign(fx.main, { sub: 'alice', act: { sub: ID.frontend }, scope: 'orders:read' })
    const mallory = await sign(fx.main, { sub: 'mallory', act: { sub: ID.frontend }, scope: 'orders:read' })
    expect((await fx.call(app, { path: '/orders', token: alice })).status).toBe(200)
    expectRefusal(await fx.call(app, { path: '/orders', token: mallory }), { status: 401, code: 'invalid_token' })
    mode.value = 'throw'
    expectRefusal(await fx.call(app, { path: '/orders', token: alice }), { status: 503, code: 'revocation_unavailable' })
    mode.value = 'hang'
    expectRefusal(await fx.call(app, { path: '/orders', token: alice }), { status: 503, code: 'revocation_unavailable' })
  })
})

describeWithRedis('revocation shared by replicas through Redis', () => {
  let fx: Fixture
  let redis: RedisServer
  const clients: Redis[] = []
  beforeAll(async () => {
    ;[fx, redis] = await Promise.all([createFixture(), startRedisServer()])
  })
  afterAll(async () => {
    for (const client of clients) client.disconnect()
    await fx?.close()
    await redis?.stop()
  })
  const store = () => {
    const client = new Redis({ port: redis.port, host: '127.0.0.1', enableOfflineQueue: false, maxRetriesPerRequest: 0 })
    client.on('error', () => {})
    clients.push(client)
    return new RedisReplayStore({ client })
  }

  it('a token revoked through one replica is refused by the other', async () => {
    const [a, b] = await Promise.all([
      fx.start(adapters[0]!, { logger: quiet, issuers: issuerOption(fx.main), revocation: { store: store() } }),
      fx.start(adapters[1]!, { logger: quiet, issuers: issuerOption(fx.main), revocation: { store: store() } }),
    ])
    const token = await sign(fx.main, { sub: ID.worker, client_id: ID.worker, scope: 'orders:read' })
    const first = await fx.call(a, { path: '/orders', token })
    expect(first.status).toBe(200)
    expect((await fx.call(b, { path: '/orders', token })).status).toBe(200)
    await a.guard.revoke(first.body.claims)
    expectRefusal(await fx.call(b, { path: '/orders', token }), { status: 401, code: 'invalid_token' })
    expectRefusal(await fx.call(a, { path: '/orders', token }), { status: 401, code: 'invalid_token' })
  })
})
