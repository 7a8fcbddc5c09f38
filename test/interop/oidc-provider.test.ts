// Interop with a REAL third-party authorization server: oidc-provider (panva) on loopback http,
// tokens obtained by a real client (oauth4webapi: discovery, client_credentials, DPoP, RFC 7009
// revocation). Callsign discovers the issuer's metadata (OpenID discovery: oidc-provider serves no
// RFC 8414 document), introspects opaque tokens (RFC 7662) with client_secret_basic or
// private_key_jwt (RFC 7523), asks for signed answers (RFC 9701), verifies RFC 9068 JWT access
// tokens with the issuer's JWKS, and enforces DPoP binding (RFC 9449) for both formats.
import { randomBytes } from 'node:crypto'
import { generateKeyPair as generateDpopKeyPair, generateProof } from 'dpop'
import { calculateJwkThumbprint, decodeJwt, decodeProtectedHeader, exportJWK } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { IntrospectionOptions } from '@callsign/core'
import type { RunningApp } from '../support/adapters.js'
import { adapters } from '../support/adapters.js'
import type { CallOptions } from '../support/client.js'
import { htuFor } from '../support/dpop.js'
import { expectAccepted, expectRefusal } from '../support/expectations.js'
import { AUDIENCE, createFixture, ID, quiet, type Fixture } from '../support/fixtures.js'
import { es256, OTHER_RESOURCE, secretFor, startOidcProvider, type ClientMetadata, type RunningOidcProvider } from '../support/oidc-provider.js'

/** The resource server's registrations at oidc-provider, one per way it authenticates to the introspection endpoint. */
const RS = { basic: 'orders-api', privateKeyJwt: 'orders-api-pkjwt', hmacAnswers: 'orders-api-hs' } as const

const frontend = { clientId: ID.frontend, secret: secretFor(ID.frontend) }
const worker = { clientId: ID.worker, secret: secretFor(ID.worker) }

const NOT_ACTIVE = 'token is not active'

describe.each(adapters)('$name: interop with oidc-provider (introspection, JWT access tokens, DPoP)', (adapter) => {
  let fx: Fixture
  let op: RunningOidcProvider
  let rsKey: Awaited<ReturnType<typeof es256>>
  /** client_secret_basic, JSON answers, no cache. */
  let app: RunningApp
  /** private_key_jwt, JSON answers. */
  let pkjwtApp: RunningApp
  /** client_secret_basic, RFC 9701 signed answers. */
  let signedApp: RunningApp

  const start = (introspection: IntrospectionOptions): Promise<RunningApp> =>
    fx.start(adapter, { logger: quiet, fetch: op.fetch, issuers: { issuer: op.issuer, audience: AUDIENCE, introspection } })

  beforeAll(async () => {
    ;[fx, rsKey] = await Promise.all([createFixture(), es256('orders-api-pkjwt-1')])
    const clients: ClientMetadata[] = [
      // Callers: client_credentials with a secret; their client ids are their SPIFFE IDs.
      { client_id: frontend.clientId, client_secret: frontend.secret, scope: 'orders:read orders:write' },
      { client_id: worker.clientId, client_secret: worker.secret, scope: 'orders:read' },
      // The resource server (Callsign), registered three times.
      { client_id: RS.basic, client_secret: secretFor(RS.basic), grant_types: [], introspection_signed_response_alg: 'ES256' },
      {
        client_id: RS.privateKeyJwt,
        grant_types: [],
        token_endpoint_auth_method: 'private_key_jwt',
        token_endpoint_auth_signing_alg: 'ES256',
        jwks: { keys: [rsKey.publicJwk] },
      },
      { client_id: RS.hmacAnswers, client_secret: secretFor(RS.hmacAnswers), grant_types: [], introspection_signed_response_alg: 'HS256' },
    ]
    op = await startOidcProvider({ clients })
    ;[app, pkjwtApp, signedApp] = await Promise.all([
      start({ clientId: RS.basic, clientSecret: secretFor(RS.basic), cacheSeconds: 0, negativeCacheSeconds: 0 }),
      start({ clientId: RS.privateKeyJwt, auth: 'private_key_jwt', privateKey: rsKey.privateKey as never, cacheSeconds: 0 }),
      start({ clientId: RS.basic, clientSecret: secretFor(RS.basic), response: 'jwt', cacheSeconds: 0 }),
    ])
  })
  afterAll(async () => {
    await fx?.close()
    await op?.close()
  })

  /** A client_credentials token of `client` from oidc-provider, checked to be opaque (not JWS-shaped). */
  const opaqueToken = async (client = frontend, scope?: string): Promise<string> => {
    const { access_token: token, token_type: type } = await op.clientCredentials(client, scope === undefined ? {} : { scope })
    expect(type.toLowerCase()).toBe('bearer')
    expect(token.split('.')).toHaveLength(1)
    return token
  }

  it('serves OpenID discovery with introspection, revocation, DPoP and signed-introspection metadata', async () => {
    const metadata = await op.metadata()
    expect(metadata).toMatchObject({
      issuer: op.issuer,
      introspection_endpoint: `${op.issuer}/token/introspection`,
      revocation_endpoint: `${op.issuer}/token/revocation`,
      jwks_uri: `${op.issuer}/jwks`,
    })
    expect(metadata.dpop_signing_alg_values_supported).toContain('ES256')
    expect(metadata.introspection_signing_alg_values_supported).toContain('ES256')
  })

  describe('opaque tokens introspected with client_secret_basic at the discovered endpoint', () => {
    it('accepts a client_credentials token: caller from client_id, scopes from scope, no user', async () => {
      const token = await opaqueToken(frontend, 'orders:read')
      expectAccepted(await fx.call(app, { path: '/orders', token }), {
        caller: { id: ID.frontend, source: 'token' },
        scopes: ['orders:read'],
        issuer: op.issuer,
      })
      // Route rules apply to the introspected scopes.
      expectRefusal(await fx.call(app, { path: '/any', token }), { status: 403, code: 'insufficient_scope', side: 'user', scope: 'a b' })
      // The caller pattern of a route applies to the introspected client_id.
      expectRefusal(await fx.call(app, { path: '/batch', token }), { status: 403, code: 'caller_forbidden', side: 'caller' })
      expectAccepted(await fx.call(app, { path: '/batch', token: await opaqueToken(worker) }), {
        caller: { id: ID.worker, source: 'token' },
        scopes: ['orders:read'],
        issuer: op.issuer,
      })
    })

    it('refuses a token once revoked at oidc-provider (RFC 7009), and an unknown token', async () => {
      const token = await opaqueToken()
      expect((await fx.call(app, { path: '/orders', token })).status).toBe(200)
      await op.revoke(frontend, token)
      const revoked = await fx.call(app, { path: '/orders', token })
      expectRefusal(revoked, { status: 401, code: 'invalid_token' })
      expect(revoked.body.detail).toBe(NOT_ACTIVE)

      const unknown = await fx.call(app, { path: '/orders', token: randomBytes(32).toString('base64url') })
      expectRefusal(unknown, { status: 401, code: 'invalid_token' })
      expect(unknown.body.detail).toBe(NOT_ACTIVE)
    })

    it('refuses an opaque token issued for another resource server (introspected aud)', async () => {
      const { access_token: token } = await op.clientCredentials(frontend, { resource: OTHER_RESOURCE })
      expect(token.split('.')).toHaveLength(1)
      const res = await fx.call(app, { path: '/orders', token })
      expectRefusal(res, { status: 401, code: 'invalid_token' })
    })
  })

  describe('introspection with private_key_jwt (RFC 7523)', () => {
    it('authenticates with a client assertion oidc-provider accepts', async () => {
      const token = await opaqueToken(worker)
      expectAccepted(await fx.call(pkjwtApp, { path: '/orders', token }), {
        caller: { id: ID.worker, source: 'token' },
        scopes: ['orders:read'],
        issuer: op.issuer,
      })
      await op.revoke(worker, token)
      const revoked = await fx.call(pkjwtApp, { path: '/orders', token })
      expectRefusal(revoked, { status: 401, code: 'invalid_token' })
      expect(revoked.body.detail).toBe(NOT_ACTIVE)
    })

    it('fails closed (503) when its assertion is signed by a key oidc-provider does not know', async () => {
      const stranger = await es256('not-registered')
      const wrongKey = await start({ clientId: RS.privateKeyJwt, auth: 'private_key_jwt', privateKey: stranger.privateKey as never, cacheSeconds: 0 })
      expectRefusal(await fx.call(wrongKey, { path: '/orders', token: await opaqueToken() }), { status: 503, code: 'introspection_unavailable' })
    })
  })

  describe('signed introspection answers (RFC 9701)', () => {
    it('accepts oidc-provider\'s token-introspection+jwt answer, signed with the key it publishes', async () => {
      const token = await opaqueToken(frontend, 'orders:read')
      expectAccepted(await fx.call(signedApp, { path: '/orders', token }), {
        caller: { id: ID.frontend, source: 'token' },
        scopes: ['orders:read'],
        issuer: op.issuer,
      })
      await op.revoke(frontend, token)
      const revoked = await fx.call(signedApp, { path: '/orders', token })
      expectRefusal(revoked, { status: 401, code: 'invalid_token' })
      expect(revoked.body.detail).toBe(NOT_ACTIVE)
    })

    it('fails closed (503) on an answer oidc-provider signs with HS256 (the client secret): never acceptance', async () => {
      const hmac = await start({ clientId: RS.hmacAnswers, clientSecret: secretFor(RS.hmacAnswers), response: 'jwt', cacheSeconds: 0 })
      expectRefusal(await fx.call(hmac, { path: '/orders', token: await opaqueToken() }), { status: 503, code: 'introspection_unavailable' })
    })
  })
})
