// Interop with a REAL third-party authorization server: oidc-provider (panva) on loopback http,
// tokens obtained by a real client (oauth4webapi: discovery, client_credentials, DPoP proofs at the
// token endpoint, RFC 7009 revocation) and app proofs made by the `dpop` package. Callsign
// discovers the issuer's metadata (OpenID discovery: oidc-provider serves no RFC 8414 document),
// introspects opaque tokens (RFC 7662) with client_secret_basic or private_key_jwt (RFC 7523),
// asks for signed answers (RFC 9701), verifies RFC 9068 JWT access tokens with the issuer's JWKS,
// and enforces DPoP binding (RFC 9449) for both formats.
import { randomBytes } from 'node:crypto'
import { generateKeyPair as generateDpopKeyPair, generateProof, type KeyPair } from 'dpop'
import { calculateJwkThumbprint, decodeJwt, decodeProtectedHeader, exportJWK } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { IntrospectionOptions, IssuerOptions, Logger } from '@callsign/core'
import type { RunningApp } from '../support/adapters.js'
import { adapters } from '../support/adapters.js'
import type { CallOptions, CallResult } from '../support/client.js'
import { htuFor } from '../support/dpop.js'
import { expectAccepted, expectRefusal, type RefusalExpectation } from '../support/expectations.js'
import { AUDIENCE, createFixture, ID, quiet, type Fixture } from '../support/fixtures.js'
import { es256, RESOURCE, secretFor, startOidcProvider, type ClientMetadata, type RunningOidcProvider } from '../support/oidc-provider.js'

/** The refusal contract (status, challenge, problem `code`) and the problem's `detail`. */
function refused(res: CallResult, expected: RefusalExpectation, detail: string): void {
  expectRefusal(res, expected)
  expect(res.body.detail).toBe(detail)
}

/** The resource server's registrations at oidc-provider, one per way it authenticates to the introspection endpoint. */
const RS = { basic: 'orders-api', privateKeyJwt: 'orders-api-pkjwt', hmacAnswers: 'orders-api-hs' } as const

/** A calling service registered at oidc-provider (client_credentials, client_secret_basic); its client id is its SPIFFE ID. */
interface Caller {
  clientId: string
  secret: string
  /** The scopes it may ask for. */
  scope: string
}
const frontend: Caller = { clientId: ID.frontend, secret: secretFor(ID.frontend), scope: 'orders:read orders:write' }
const worker: Caller = { clientId: ID.worker, secret: secretFor(ID.worker), scope: 'orders:read' }

const NOT_ACTIVE = 'token is not active'
const UNAVAILABLE = 'token introspection is temporarily unavailable'

/** A logger that keeps what Callsign reports (the reason behind a 503). */
function capturingLogger(): Logger & { lines: string[] } {
  const lines: string[] = []
  return { lines, warn: (message, details) => lines.push(`${message} ${JSON.stringify(details ?? {})}`) }
}

/** `Authorization: DPoP <token>` with a fresh proof of `key` (the `dpop` package) for `GET path` of `app`. */
async function withProof(app: RunningApp, key: KeyPair, token: string, path = '/orders'): Promise<CallOptions> {
  return { path, authorization: `DPoP ${token}`, headers: { dpop: await generateProof(key, htuFor(app, path), 'GET', undefined, token) } }
}

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
  /** No introspection at all: JWTs only, verified with the discovered JWKS. */
  let jwtApp: RunningApp

  const issuer = (introspection?: IntrospectionOptions): IssuerOptions => ({
    issuer: op.issuer,
    audience: AUDIENCE,
    ...(introspection ? { introspection } : {}),
  })
  const start = (introspection?: IntrospectionOptions, logger: Logger = quiet): Promise<RunningApp> =>
    fx.start(adapter, { logger, fetch: op.fetch, issuers: issuer(introspection) })

  beforeAll(async () => {
    ;[fx, rsKey] = await Promise.all([createFixture(), es256('orders-api-pkjwt-1')])
    const clients: ClientMetadata[] = [
      ...[frontend, worker].map((caller) => ({ client_id: caller.clientId, client_secret: caller.secret, scope: caller.scope })),
      // The resource server (Callsign), registered three times.
      { client_id: RS.basic, client_secret: secretFor(RS.basic), grant_types: [] },
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
    ;[app, pkjwtApp, signedApp, jwtApp] = await Promise.all([
      start({ clientId: RS.basic, clientSecret: secretFor(RS.basic), cacheSeconds: 0, negativeCacheSeconds: 0 }),
      start({ clientId: RS.privateKeyJwt, auth: 'private_key_jwt', privateKey: rsKey.privateKey, cacheSeconds: 0 }),
      start({ clientId: RS.basic, clientSecret: secretFor(RS.basic), response: 'jwt', cacheSeconds: 0 }),
      start(),
    ])
  })
  afterAll(async () => {
    await fx?.close()
    await op?.close()
  })

  /** A client_credentials token from oidc-provider, checked to be opaque (not JWS-shaped). */
  const opaqueToken = async (client = frontend, request: { scope?: string; resource?: string } = {}): Promise<string> => {
    const { access_token: token, token_type: type } = await op.clientCredentials(client, { scope: client.scope, ...request })
    expect(type.toLowerCase()).toBe('bearer')
    expect(token.split('.')).toHaveLength(1)
    return token
  }

  /** An RFC 9068 JWT access token from oidc-provider for `resource`. */
  const jwtToken = async (client = frontend, resource: string = RESOURCE.orders): Promise<string> => {
    const { access_token: token } = await op.clientCredentials(client, { scope: 'orders:read', resource })
    expect(decodeProtectedHeader(token)).toMatchObject({ typ: 'at+jwt', alg: 'ES256' })
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
      const token = await opaqueToken(frontend, { scope: 'orders:read' })
      expectAccepted(await fx.call(app, { path: '/orders', token }), {
        caller: { id: ID.frontend, source: 'token' },
        scopes: ['orders:read'],
        issuer: op.issuer,
      })
      // Route rules apply to the introspected scopes and client_id.
      refused(
        await fx.call(app, { path: '/any', token }),
        { status: 403, code: 'insufficient_scope', side: 'caller', scope: 'a b' },
        'the token has none of the accepted scopes',
      )
      refused(
        await fx.call(app, { path: '/batch', token }),
        { status: 403, code: 'caller_forbidden', side: 'caller' },
        'the calling service is not allowed on this route',
      )
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
      refused(revoked, { status: 401, code: 'invalid_token' }, NOT_ACTIVE)

      const unknown = await fx.call(app, { path: '/orders', token: randomBytes(32).toString('base64url') })
      refused(unknown, { status: 401, code: 'invalid_token' }, NOT_ACTIVE)
    })

    it('checks the introspected aud: accepts an opaque token for this service, refuses one for another', async () => {
      expectAccepted(await fx.call(app, { path: '/orders', token: await opaqueToken(frontend, { resource: RESOURCE.ordersOpaque }) }), {
        caller: { id: ID.frontend, source: 'token' },
        scopes: ['orders:read', 'orders:write'],
        issuer: op.issuer,
      })
      const res = await fx.call(app, { path: '/orders', token: await opaqueToken(frontend, { resource: RESOURCE.billingOpaque }) })
      refused(res, { status: 401, code: 'invalid_token' }, 'token audience does not match')
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
      refused(revoked, { status: 401, code: 'invalid_token' }, NOT_ACTIVE)
    })

    it('fails closed (503) when its assertion is signed by a key oidc-provider does not know', async () => {
      const stranger = await es256('not-registered')
      const logger = capturingLogger()
      const wrongKey = await start({ clientId: RS.privateKeyJwt, auth: 'private_key_jwt', privateKey: stranger.privateKey, cacheSeconds: 0 }, logger)
      refused(await fx.call(wrongKey, { path: '/orders', token: await opaqueToken() }), { status: 503, code: 'introspection_unavailable' }, UNAVAILABLE)
      expect(logger.lines.join('\n')).toMatch(/introspection: HTTP 401/)
    })
  })

  describe('signed introspection answers (RFC 9701)', () => {
    it("accepts oidc-provider's token-introspection+jwt answer, signed with the key it publishes", async () => {
      const token = await opaqueToken(frontend, { scope: 'orders:read' })
      expectAccepted(await fx.call(signedApp, { path: '/orders', token }), {
        caller: { id: ID.frontend, source: 'token' },
        scopes: ['orders:read'],
        issuer: op.issuer,
      })
      await op.revoke(frontend, token)
      const revoked = await fx.call(signedApp, { path: '/orders', token })
      refused(revoked, { status: 401, code: 'invalid_token' }, NOT_ACTIVE)
    })

    it('fails closed (503) on an answer oidc-provider signs with HS256 (keyed with the client secret)', async () => {
      const logger = capturingLogger()
      const hmac = await start({ clientId: RS.hmacAnswers, clientSecret: secretFor(RS.hmacAnswers), response: 'jwt', cacheSeconds: 0 }, logger)
      refused(await fx.call(hmac, { path: '/orders', token: await opaqueToken() }), { status: 503, code: 'introspection_unavailable' }, UNAVAILABLE)
      expect(logger.lines.join('\n')).toMatch(/introspection JWT algorithm not allowed/)
    })
  })

  describe('RFC 9068 JWT access tokens, verified with the discovered JWKS (no introspection)', () => {
    it("accepts oidc-provider's at+jwt for this audience: caller from client_id, no user", async () => {
      const token = await jwtToken()
      expect(decodeJwt(token)).toMatchObject({ iss: op.issuer, aud: AUDIENCE, client_id: ID.frontend, sub: ID.frontend, scope: 'orders:read' })
      for (const guard of [jwtApp, app]) {
        expectAccepted(await fx.call(guard, { path: '/orders', token }), {
          caller: { id: ID.frontend, source: 'token' },
          scopes: ['orders:read'],
          issuer: op.issuer,
        })
      }
      // Route rules apply to the token's scopes.
      refused(
        await fx.call(jwtApp, { path: '/orders', method: 'POST', token }),
        { status: 403, code: 'insufficient_scope', side: 'caller', scope: 'orders:write' },
        'the token lacks a required scope',
      )
    })

    it('refuses an at+jwt issued for another resource server (aud)', async () => {
      const res = await fx.call(jwtApp, { path: '/orders', token: await jwtToken(frontend, RESOURCE.billing) })
      refused(res, { status: 401, code: 'invalid_token' }, 'token audience does not match')
    })

    it("with tokens: 'all' fails closed (503): oidc-provider refuses to introspect structured tokens", async () => {
      const all = await start({ clientId: RS.basic, clientSecret: secretFor(RS.basic), tokens: 'all', cacheSeconds: 0 })
      const refusals = op.refusals.length
      refused(await fx.call(all, { path: '/orders', token: await jwtToken() }), { status: 503, code: 'introspection_unavailable' }, UNAVAILABLE)
      expect(op.refusals.slice(refusals)).toEqual([expect.stringMatching(/^introspection\.error: unsupported_token_type/)])
    })
  })

  describe("DPoP-bound tokens (RFC 9449) obtained with a DPoP proof at oidc-provider's token endpoint", () => {
    let key: KeyPair
    let jkt: string
    beforeAll(async () => {
      key = await generateDpopKeyPair('ES256')
      jkt = await calculateJwkThumbprint(await exportJWK(key.publicKey))
    })

    const dpopToken = async (resource?: string): Promise<string> => {
      const response = await op.clientCredentials(frontend, { scope: 'orders:read', dpop: key, ...(resource ? { resource } : {}) })
      expect(response.token_type.toLowerCase()).toBe('dpop')
      return response.access_token
    }

    for (const format of ['opaque', 'jwt'] as const) {
      it(`${format}: accepted with a fresh proof of the key, refused as a bearer token or with another key's proof`, async () => {
        const token = await dpopToken(format === 'jwt' ? RESOURCE.orders : undefined)
        if (format === 'jwt') expect(decodeJwt(token).cnf).toEqual({ jkt })
        else expect(token.split('.')).toHaveLength(1)
        const guard = format === 'jwt' ? jwtApp : app
        const request = await withProof(guard, key, token)
        expectAccepted(await fx.call(guard, request), {
          caller: { id: ID.frontend, source: 'token' },
          scopes: ['orders:read'],
          binding: 'dpop',
          issuer: op.issuer,
        })
        // A proof is good once; a fresh one works.
        refused(await fx.call(guard, request), { status: 401, code: 'invalid_dpop_proof', errorScheme: 'DPoP' }, 'DPoP proof has already been used')
        expect((await fx.call(guard, await withProof(guard, key, token))).status).toBe(200)

        const bearer = await fx.call(guard, { path: '/orders', token })
        refused(bearer, { status: 401, code: 'invalid_token' }, 'DPoP-bound token presented as a bearer token')

        const other = await generateDpopKeyPair('ES256')
        const stolen = await fx.call(guard, await withProof(guard, other, token))
        refused(stolen, { status: 401, code: 'invalid_token', errorScheme: 'DPoP' }, 'token is bound to another DPoP key')
      })
    }
  })

  it('oidc-provider reported no internal error', () => {
    expect(op.serverErrors).toEqual([])
  })
})
