// Opaque access tokens by RFC 7662 introspection, in every framework, against a real loopback
// authorization server (test/support/introspection-server.ts): identities and scopes from the
// answer, inactive/unknown tokens, DPoP- and certificate-bound opaque tokens, caching, outages.
import { createDpopKey, type DpopKey } from '@callsign/testing'
import { generateKeyPair } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RunningApp } from '../support/adapters.js'
import { adapters } from '../support/adapters.js'
import { dpopRequest } from '../support/dpop.js'
import { expectAccepted, expectRefusal } from '../support/expectations.js'
import { AUDIENCE, createFixture, ID, issuerOption, quiet, sign, type Fixture } from '../support/fixtures.js'
import { startIntrospectionServer, type IntrospectionServer } from '../support/introspection-server.js'
import { respell } from '../support/attacks.js'

describe.each(adapters)('$name: opaque tokens by introspection (RFC 7662)', (adapter) => {
  let fx: Fixture
  let as: IntrospectionServer
  let app: RunningApp
  let key: DpopKey

  beforeAll(async () => {
    fx = await createFixture()
    ;[as, key] = await Promise.all([startIntrospectionServer({ issuer: fx.main.issuer, audience: AUDIENCE }), createDpopKey()])
    app = await fx.start(adapter, {
      logger: quiet,
      issuers: issuerOption(fx.main, {
        introspection: { endpoint: as.endpoint, clientId: as.clientId, clientSecret: as.clientSecret, timeoutSeconds: 0.5, failureBackoffSeconds: 0.3 },
      }),
    })
  })
  afterAll(async () => {
    await fx?.close()
    await as?.close()
  })

  it('accepts an opaque token: caller from client_id, user from sub, scopes from scope', async () => {
    const token = as.issue({ client_id: ID.frontend, sub: 'alice', scope: 'orders:read profile' })
    expectAccepted(await fx.call(app, { path: '/orders', token }), {
      caller: { id: ID.frontend, source: 'token' },
      user: 'alice',
      scopes: ['orders:read', 'profile'],
      issuer: fx.main.issuer,
    })
    // Route rules apply as to a JWT.
    expectRefusal(await fx.call(app, { path: '/any', token }), { status: 403, code: 'insufficient_scope', side: 'user', scope: 'a b' })
    // JWTs of the same issuer are still verified locally.
    expect((await fx.call(app, { path: '/orders', token: await sign(fx.main, { sub: ID.worker, client_id: ID.worker, scope: 'orders:read' }) })).status).toBe(
      200,
    )
  })

  it('refuses an inactive (revoked) token and an unknown token with 401 invalid_token', async () => {
    const revoked = as.issue({ client_id: ID.frontend, scope: 'orders:read' })
    as.revoke(revoked)
    const res = await fx.call(app, { path: '/orders', token: revoked })
    expectRefusal(res, { status: 401, code: 'invalid_token' })
    expect(res.body.detail).toBe('token is not active')
    const unknown = await fx.call(app, { path: '/orders', token: 'c29tZS1yYW5kb20tb3BhcXVlLXRva2VuLXRoYXQtbm9ib2R5LWlzc3VlZA' })
    expectRefusal(unknown, { status: 401, code: 'invalid_token' })
    expect(unknown.body.detail).toBe('token is not active')
    expectRefusal(await fx.call(app, { path: '/orders', token: as.issue({ client_id: ID.frontend, scope: 'orders:read' }, -5) }), {
      status: 401,
      code: 'invalid_token',
    })
  })

  it('accepts a DPoP-bound opaque token (cnf.jkt) with a proof, and refuses it as a bearer token', async () => {
    const token = as.issue({ client_id: ID.frontend, sub: ID.frontend, scope: 'orders:read', cnf: { jkt: key.jkt }, token_type: 'DPoP' })
    expectAccepted(await fx.call(app, await dpopRequest(app, key, token, { path: '/orders' })), {
      caller: { id: ID.frontend, source: 'token' },
      scopes: ['orders:read'],
      binding: 'dpop',
    })
    const bearer = await fx.call(app, { path: '/orders', token })
    expectRefusal(bearer, { status: 401, code: 'invalid_token' })
    expect(bearer.body.detail).toBe('DPoP-bound token presented as a bearer token')
    // A proof by another key is refused.
    const other = await createDpopKey()
    expectRefusal(await fx.call(app, await dpopRequest(app, key, token, { path: '/orders', proofKey: other })), {
      status: 401,
      code: 'invalid_token',
      errorScheme: 'DPoP',
    })
  })

  it('accepts a certificate-bound opaque token only over its certificate', async () => {
    const token = as.issue({ client_id: ID.frontend, sub: ID.frontend, scope: 'orders:read', cnf: { 'x5t#S256': fx.certs.frontend.x5tS256 } })
    expectAccepted(await fx.call(app, { path: '/orders', token, cert: fx.certs.frontend }), {
      caller: { id: ID.frontend, source: 'mtls' },
      scopes: ['orders:read'],
      binding: 'mtls',
      peer: { ...fx.certs.frontend, spiffeId: ID.frontend },
    })
    const wrong = await fx.call(app, { path: '/orders', token, cert: fx.certs.frontendOtherKey })
    expectRefusal(wrong, { status: 401, code: 'invalid_token' })
    expect(wrong.body.detail).toBe('token is bound to another client certificate')
    expectRefusal(await fx.call(app, { path: '/orders', token }), { status: 401, code: 'invalid_token' })
  })

  it('refuses an introspected token bound by a confirmation method Callsign does not enforce, alone or beside an enforced one', async () => {
    const jwk = { kty: 'EC', crv: 'P-256', x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU', y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0' }
    for (const [cnf, cert] of [
      [{ jwk }, undefined],
      [{ kid: 'k' }, undefined],
      [{ 'x5t#S256': fx.certs.frontend.x5tS256, jwk }, fx.certs.frontend],
    ] as const) {
      const res = await fx.call(app, { path: '/orders', token: as.issue({ client_id: ID.frontend, sub: ID.frontend, scope: 'orders:read', cnf }), cert })
      expectRefusal(res, { status: 401, code: 'invalid_token' })
      expect(res.body.detail).toBe('token is bound by a confirmation method that is not supported')
    }
  })

  it('applies maxTokenLifetime and maxTokenAge to introspected tokens, as to JWTs', async () => {
    const introspection = { endpoint: as.endpoint, clientId: as.clientId, clientSecret: as.clientSecret }
    const bounded = await fx.start(adapter, { logger: quiet, issuers: issuerOption(fx.main, { introspection, maxTokenLifetime: 600 }) })
    const long = await fx.call(bounded, { path: '/orders', token: as.issue({ client_id: ID.frontend, scope: 'orders:read' }, 3600) })
    expectRefusal(long, { status: 401, code: 'invalid_token' })
    expect(long.body.detail).toBe('token lifetime too long')
    expect((await fx.call(bounded, { path: '/orders', token: as.issue({ client_id: ID.frontend, scope: 'orders:read' }, 600) })).status).toBe(200)
    // Seen from a clock 700 s later, a token issued now is older than maxTokenAge: 600.
    const later = await fx.start(adapter, {
      logger: quiet,
      maxTokenAge: 600,
      now: () => Date.now() + 700_000,
      issuers: issuerOption(fx.main, { introspection }),
    })
    const old = await fx.call(later, { path: '/orders', token: as.issue({ client_id: ID.frontend, scope: 'orders:read' }, 3600) })
    expectRefusal(old, { status: 401, code: 'invalid_token' })
    expect(old.body.detail).toBe('token too old')
  })

  it('introspects a token once while its answer is cached', async () => {
    const token = as.issue({ client_id: ID.worker, sub: ID.worker, scope: 'orders:read' })
    const before = as.requests
    expect((await fx.call(app, { path: '/orders', token })).status).toBe(200)
    expect((await fx.call(app, { path: '/orders', token })).status).toBe(200)
    expect(as.requests - before).toBe(1)
  })

  it('fails closed with 503 introspection_unavailable and Retry-After when the endpoint is down or slow, then leaves it alone for the backoff', async () => {
    const newToken = () => as.issue({ client_id: ID.worker, sub: ID.worker, scope: 'orders:read' })
    for (const fault of ['error', 'hang', 'garbage'] as const) {
      as.fault = fault
      const before = as.requests
      const res = await fx.call(app, { path: '/orders', token: newToken() })
      expectRefusal(res, { status: 503, code: 'introspection_unavailable' })
      expect(res.headers['retry-after']).toBe('1')
      expect(as.requests - before).toBe(1)
      // During the backoff a new token is refused at once: the failing endpoint is not asked again.
      expectRefusal(await fx.call(app, { path: '/orders', token: newToken() }), { status: 503, code: 'introspection_unavailable' })
      expect(as.requests - before).toBe(1)
      await new Promise((resolve) => setTimeout(resolve, 350))
    }
    as.fault = 'none'
    expect((await fx.call(app, { path: '/orders', token: newToken() })).status).toBe(200)
  })
})

describe.each(adapters)('$name: discovered endpoint, private_key_jwt and signed answers (RFC 8414, 7523, 9701)', (adapter) => {
  let fx: Fixture
  let as: IntrospectionServer
  let app: RunningApp

  beforeAll(async () => {
    fx = await createFixture()
    const client = await generateKeyPair('ES256')
    as = await startIntrospectionServer({ audience: AUDIENCE, clientPublicKey: client.publicKey, signAnswers: true })
    app = await fx.start(adapter, {
      logger: quiet,
      issuers: [
        issuerOption(fx.main),
        {
          issuer: as.issuer,
          audience: AUDIENCE,
          jwksUri: as.jwksUri,
          algorithms: ['ES256'],
          introspection: {
            clientId: as.clientId,
            auth: 'private_key_jwt',
            privateKey: client.privateKey,
            response: 'jwt',
            cacheSeconds: 0,
            timeoutSeconds: 0.5,
          },
        },
      ],
    })
  })
  afterAll(async () => {
    await fx?.close()
    await as?.close()
  })

  it('discovers the endpoint, authenticates with a client assertion and accepts the verified signed answer', async () => {
    const [metadata, signed] = [as.metadataRequests, as.jwtAnswers]
    const token = as.issue({ client_id: ID.frontend, sub: 'alice', scope: 'orders:read' })
    expectAccepted(await fx.call(app, { path: '/orders', token }), {
      caller: { id: ID.frontend, source: 'token' },
      user: 'alice',
      scopes: ['orders:read'],
      issuer: as.issuer,
    })
    expect((await fx.call(app, { path: '/orders', token })).status).toBe(200)
    expect(as.metadataRequests - metadata).toBe(1)
    expect(as.jwtAnswers - signed).toBe(2)
    expect(as.unauthenticated).toBe(0)
  })

  it('fails closed with 503 on a signed answer whose signature or header is spelled a second way (same bytes, valid signature)', async () => {
    const client = await generateKeyPair('ES256')
    const strict = await startIntrospectionServer({ audience: AUDIENCE, clientPublicKey: client.publicKey, signAnswers: true })
    try {
      const introspection = {
        clientId: strict.clientId,
        auth: 'private_key_jwt' as const,
        privateKey: client.privateKey,
        response: 'jwt' as const,
        cacheSeconds: 0,
        failureBackoffSeconds: 0,
      }
      const strictApp = await fx.start(adapter, {
        logger: quiet,
        issuers: { issuer: strict.issuer, audience: AUDIENCE, jwksUri: strict.jwksUri, algorithms: ['ES256'], introspection },
      })
      const respelled: number[] = []
      // The signature (64 bytes: 86 characters) always has unused bits; the header has them for some paddings.
      for (const [index, pad] of [
        [2, ''],
        [0, ''],
        [0, 'y'],
        [0, 'yy'],
        [0, 'yyy'],
      ] as const) {
        strict.jwtHeader = (pad ? { pad } : {}) as typeof strict.jwtHeader
        strict.jwtTransform = (jwt) => (jwt.split('.')[index]!.length % 4 === 0 ? jwt : (respelled.push(index), respell(jwt, index)))
        const before = respelled.length
        const res = await fx.call(strictApp, { path: '/orders', token: strict.issue({ client_id: ID.frontend, scope: 'orders:read' }) })
        if (respelled.length > before) expectRefusal(res, { status: 503, code: 'introspection_unavailable' })
        else expect(res.status).toBe(200)
      }
      expect(respelled).toContain(2)
      expect(respelled).toContain(0)
    } finally {
      await strict.close()
    }
  })

  it('fails closed with 503 introspection_unavailable on a signed answer by an unpublished key', async () => {
    as.jwtForeignKey = true
    try {
      expectRefusal(await fx.call(app, { path: '/orders', token: as.issue({ client_id: ID.frontend, scope: 'orders:read' }) }), {
        status: 503,
        code: 'introspection_unavailable',
      })
    } finally {
      as.jwtForeignKey = false
    }
  })
})
