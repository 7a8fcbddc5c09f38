// Interop with a REAL third-party authorization server over mutual TLS (RFC 8705): oidc-provider
// (panva) served over https with a server certificate of the test CA, and an mTLS endpoint alias
// (RFC 8705 §5: a second listener that requests client certificates, advertised as
// `mtls_endpoint_aliases`). Callers authenticate with `tls_client_auth` (their SPIFFE ID as SAN URI)
// through oauth4webapi and get certificate-bound tokens (`cnf["x5t#S256"]`), opaque or RFC 9068
// JWTs; Callsign (which reaches the issuer through a `fetch` trusting the test CA) accepts them only
// over the same certificate. Last, Callsign itself introspects with `tls_client_auth`.
import { decodeJwt } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { IntrospectionOptions, Logger } from '@callsign/core'
import type { IssuedCertificate } from '@callsign/testing'
import type { RunningApp } from '../support/adapters.js'
import { adapters } from '../support/adapters.js'
import type { CallResult } from '../support/client.js'
import { expectAccepted, expectRefusal, type RefusalExpectation } from '../support/expectations.js'
import { AUDIENCE, createFixture, ID, quiet, type Fixture } from '../support/fixtures.js'
import { RESOURCE, secretFor, startOidcProvider, type ClientMetadata, type RunningOidcProvider } from '../support/oidc-provider.js'

/** The refusal contract (status, challenge, problem `code`) and the problem's `detail`. */
function refused(res: CallResult, expected: RefusalExpectation, detail: string): void {
  expectRefusal(res, expected)
  expect(res.body.detail).toBe(detail)
}

/** The resource server's identity: its SPIFFE ID (in its client certificate) and its client ids at oidc-provider. */
const RS = { spiffeId: 'spiffe://example.org/ns/orders/sa/orders-api', basic: 'orders-api', mtls: 'orders-api-mtls' } as const

const BOUND_ELSEWHERE = 'token is bound to another client certificate'

/** A caller registered for `tls_client_auth` with its SPIFFE ID as client id and SAN URI, getting certificate-bound tokens. */
const mtlsCaller = (spiffeId: string, scope: string): ClientMetadata => ({
  client_id: spiffeId,
  token_endpoint_auth_method: 'tls_client_auth',
  tls_client_auth_san_uri: spiffeId,
  tls_client_certificate_bound_access_tokens: true,
  scope,
})

describe.each(adapters)('$name: interop with oidc-provider over mTLS (RFC 8705)', (adapter) => {
  let fx: Fixture
  let op: RunningOidcProvider
  let rsCert: IssuedCertificate
  /** Introspects with client_secret_basic over https (no client certificate). */
  let app: RunningApp

  const start = (introspection: IntrospectionOptions, logger: Logger = quiet): Promise<RunningApp> =>
    fx.start(adapter, { logger, fetch: op.fetch, issuers: { issuer: op.issuer, audience: AUDIENCE, introspection } })

  beforeAll(async () => {
    fx = await createFixture()
    rsCert = await fx.ca.issueCertificate({ spiffeId: RS.spiffeId })
    op = await startOidcProvider({
      tls: fx.tls,
      mtlsAlias: true,
      clients: [
        mtlsCaller(ID.frontend, 'orders:read orders:write'),
        mtlsCaller(ID.worker, 'orders:read'),
        { client_id: RS.basic, client_secret: secretFor(RS.basic), grant_types: [] },
        { client_id: RS.mtls, token_endpoint_auth_method: 'tls_client_auth', tls_client_auth_san_uri: RS.spiffeId, grant_types: [] },
      ],
    })
    app = await start({ clientId: RS.basic, clientSecret: secretFor(RS.basic), cacheSeconds: 0 })
  })
  afterAll(async () => {
    await fx?.close()
    await op?.close()
  })

  /** A certificate-bound token for `cert`'s client, obtained over the mTLS alias with `tls_client_auth`. */
  const boundToken = async (cert: IssuedCertificate, format: 'opaque' | 'jwt'): Promise<string> => {
    const { access_token: token, token_type: type } = await op.clientCredentials(
      { clientId: cert.spiffeId!, cert },
      { scope: 'orders:read', ...(format === 'jwt' ? { resource: RESOURCE.orders } : {}) },
    )
    expect(type.toLowerCase()).toBe('bearer')
    if (format === 'jwt') expect(decodeJwt(token).cnf).toEqual({ 'x5t#S256': cert.x5tS256 })
    else expect(token.split('.')).toHaveLength(1)
    return token
  }

  it('advertises certificate-bound tokens and the mTLS endpoint aliases', async () => {
    const metadata = await op.metadata()
    expect(metadata.issuer).toBe(op.issuer)
    expect(metadata.issuer.startsWith('https://127.0.0.1:')).toBe(true)
    expect(metadata.tls_client_certificate_bound_access_tokens).toBe(true)
    expect(metadata.token_endpoint_auth_methods_supported).toContain('tls_client_auth')
    expect(metadata.mtls_endpoint_aliases).toEqual({
      token_endpoint: `${op.mtlsOrigin}/token`,
      introspection_endpoint: `${op.mtlsOrigin}/token/introspection`,
      revocation_endpoint: `${op.mtlsOrigin}/token/revocation`,
    })
  })

  for (const format of ['opaque', 'jwt'] as const) {
    it(`${format}: a certificate-bound token is accepted over the same certificate only`, async () => {
      const token = await boundToken(fx.certs.frontend, format)
      expectAccepted(await fx.call(app, { path: '/orders', token, cert: fx.certs.frontend }), {
        caller: { id: ID.frontend, source: 'mtls' },
        scopes: ['orders:read'],
        binding: 'mtls',
        peer: { ...fx.certs.frontend, spiffeId: ID.frontend, verification: 'tls' },
        issuer: op.issuer,
      })

      // Same SPIFFE ID, another key: another x5t#S256.
      const otherKey = await fx.call(app, { path: '/orders', token, cert: fx.certs.frontendOtherKey })
      refused(otherKey, { status: 401, code: 'invalid_token' }, BOUND_ELSEWHERE)

      // Another client's certificate.
      const stolen = await fx.call(app, { path: '/orders', token, cert: fx.certs.worker })
      refused(stolen, { status: 401, code: 'invalid_token' }, BOUND_ELSEWHERE)

      // No certificate at all.
      refused(
        await fx.call(app, { path: '/orders', token }),
        { status: 401, code: 'invalid_token' },
        'certificate-bound token presented without a client certificate',
      )
    })
  }

  it("the other client's own certificate-bound token works over its own certificate", async () => {
    const token = await boundToken(fx.certs.worker, 'opaque')
    expectAccepted(await fx.call(app, { path: '/batch', token, cert: fx.certs.worker }), {
      caller: { id: ID.worker, source: 'mtls' },
      scopes: ['orders:read'],
      binding: 'mtls',
      peer: { ...fx.certs.worker, spiffeId: ID.worker },
      issuer: op.issuer,
    })
    refused(await fx.call(app, { path: '/batch', token, cert: fx.certs.frontend }), { status: 401, code: 'invalid_token' }, BOUND_ELSEWHERE)
  })

  describe('Callsign introspects with tls_client_auth (RFC 8705 §2) at the mTLS alias', () => {
    let tlsApp: RunningApp
    beforeAll(async () => {
      tlsApp = await start({
        clientId: RS.mtls,
        auth: 'tls_client_auth',
        tls: { cert: rsCert.certPem, key: rsCert.keyPem, ca: fx.ca.certPem },
        cacheSeconds: 0,
      })
    })

    it('is accepted by oidc-provider: a certificate-bound opaque token is introspected, its revocation is seen', async () => {
      const bound = await boundToken(fx.certs.frontend, 'opaque')
      const requests = op.requests.length
      expectAccepted(await fx.call(tlsApp, { path: '/orders', token: bound, cert: fx.certs.frontend }), {
        caller: { id: ID.frontend, source: 'mtls' },
        scopes: ['orders:read'],
        binding: 'mtls',
        peer: { ...fx.certs.frontend, spiffeId: ID.frontend },
        issuer: op.issuer,
      })
      refused(
        await fx.call(tlsApp, { path: '/orders', token: bound, cert: fx.certs.frontendOtherKey }),
        { status: 401, code: 'invalid_token' },
        BOUND_ELSEWHERE,
      )
      // Both introspections went to the alias, with the resource server's certificate (oidc-provider checked its SAN URI).
      expect(op.requests.slice(requests).filter((line) => line.startsWith('POST'))).toEqual(
        Array(2).fill(`POST ${op.mtlsOrigin}/token/introspection (client certificate)`),
      )

      await op.revoke({ clientId: ID.frontend, cert: fx.certs.frontend }, bound)
      const revoked = await fx.call(tlsApp, { path: '/orders', token: bound, cert: fx.certs.frontend })
      refused(revoked, { status: 401, code: 'invalid_token' }, 'token is not active')
    })

    it('fails closed (503) when its certificate is not the registered one', async () => {
      const warnings: string[] = []
      const wrong = await start(
        {
          clientId: RS.mtls,
          auth: 'tls_client_auth',
          tls: { cert: fx.certs.stranger.certPem, key: fx.certs.stranger.keyPem, ca: fx.ca.certPem },
          cacheSeconds: 0,
        },
        { warn: (message, details) => warnings.push(`${message} ${JSON.stringify(details)}`) },
      )
      const token = await boundToken(fx.certs.frontend, 'opaque')
      const refusals = op.refusals.length
      refused(
        await fx.call(wrong, { path: '/orders', token, cert: fx.certs.frontend }),
        { status: 503, code: 'introspection_unavailable' },
        'token introspection is temporarily unavailable',
      )
      // oidc-provider got the certificate (at the alias) and refused its SAN URI.
      expect(op.refusals.slice(refusals)).toEqual(['introspection.error: invalid_client (certificate subject value does not match the registered one)'])
      expect(warnings.join('\n')).toContain(`${op.mtlsOrigin}/token/introspection: HTTP 401`)
    })
  })

  it('oidc-provider reported no internal error', () => {
    expect(op.serverErrors).toEqual([])
  })
})
