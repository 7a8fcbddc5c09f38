// RFC 9728 protected-resource metadata and challenges, consumed by a real client library that
// Callsign did not write (oauth4webapi), in every framework: a client that knows only the
// service URL learns from the first 401 where to get a token, then calls with DPoP.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import * as oauth from 'oauth4webapi'
import { Agent, fetch as undiciFetch } from 'undici'
import type { CallsignOptions } from '@callsign/core'
import { adapters, type RunningApp } from '../support/adapters.js'
import { createFixture, ID, issuerOption, quiet, sign, type Fixture } from '../support/fixtures.js'

const RESOURCE = 'https://orders.example.org'
const METADATA_URL = `${RESOURCE}/.well-known/oauth-protected-resource`

describe.each(adapters)('$name: RFC 9728 protected resource metadata', (adapter) => {
  let fx: Fixture
  let app: RunningApp
  let dispatcher: Agent
  /** A fetch for oauth4webapi that reaches the test app under its public name, over mTLS. */

  let viaApp: (url: string, init?: any) => Promise<Response>

  const options = (): CallsignOptions => ({
    issuers: issuerOption(fx.main),
    logger: quiet,
    callers: { [ID.frontend]: ['orders:read', 'orders:write'] },
    resourceMetadata: { resource: RESOURCE, resourceName: 'Orders' },
    dpop: { origin: RESOURCE },
  })

  beforeAll(async () => {
    fx = await createFixture()
    app = await fx.start(adapter, options())
    dispatcher = new Agent({ connect: { ca: fx.ca.certPem, cert: fx.certs.frontend.certPem, key: fx.certs.frontend.keyPem } })
    viaApp = (input: string, init?: object) => {
      const url = new URL(input)
      const target = url.origin === RESOURCE ? new URL(url.pathname + url.search, app.url) : url
      return undiciFetch(target, { ...(init as object), dispatcher }) as unknown as Promise<Response>
    }
  })
  afterAll(async () => {
    await dispatcher?.close()
    await fx?.close()
  })

  it('serves the metadata document derived from the guard options', async () => {
    const res = await fx.call(app, { path: '/.well-known/oauth-protected-resource' })
    expect(res.status).toBe(200)
    expect(res.headers['content-type']).toMatch(/^application\/json/)
    expect(res.body).toEqual({
      resource: RESOURCE,
      authorization_servers: [fx.main.issuer],
      scopes_supported: ['orders:read', 'orders:write'],
      bearer_methods_supported: ['header'],
      dpop_signing_alg_values_supported: ['ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'],
      dpop_bound_access_tokens_required: false,
      tls_client_certificate_bound_access_tokens: true,
      resource_name: 'Orders',
    })
  })

  it('is read and validated by oauth4webapi resource discovery', async () => {
    const response = await oauth.resourceDiscoveryRequest(new URL(RESOURCE), { [oauth.customFetch]: viaApp })
    const metadata = await oauth.processResourceDiscoveryResponse(new URL(RESOURCE), response)
    expect(metadata.resource).toBe(RESOURCE)
    expect(metadata.authorization_servers).toEqual([fx.main.issuer])
  })

  it('a client learns the authorization server from the first 401 and then gets in with a DPoP-bound token', async () => {
    // 1. No token: the challenge names the metadata document (RFC 9728 §5.1).
    const first = await viaApp(`${RESOURCE}/orders`)
    expect(first.status).toBe(401)
    expect(first.headers.get('www-authenticate')).toContain(`resource_metadata="${METADATA_URL}"`)
    // The same through oauth4webapi's challenge parser, with a token it does not know is stale.
    let challenges: oauth.WWWAuthenticateChallenge[] = []
    try {
      await oauth.protectedResourceRequest('stale-token', 'GET', new URL(`${RESOURCE}/orders`), undefined, undefined, { [oauth.customFetch]: viaApp })
    } catch (error) {
      if (!(error instanceof oauth.WWWAuthenticateChallengeError)) throw error
      challenges = error.cause
    }
    expect(challenges.map((c) => c.scheme)).toEqual(['bearer', 'dpop'])
    for (const challenge of challenges) expect(challenge.parameters.resource_metadata).toBe(METADATA_URL)
    expect(challenges[0]!.parameters.error).toBe('invalid_token')
    // 2. Resource metadata -> authorization server -> its metadata (RFC 8414), as the client would.
    const rs = await oauth.processResourceDiscoveryResponse(
      new URL(RESOURCE),
      await oauth.resourceDiscoveryRequest(new URL(RESOURCE), { [oauth.customFetch]: viaApp }),
    )
    const issuerUrl = new URL(rs.authorization_servers![0]!)
    const as = await oauth.processDiscoveryResponse(
      issuerUrl,
      await oauth.discoveryRequest(issuerUrl, { algorithm: 'oauth2', [oauth.allowInsecureRequests]: true }),
    )
    expect(as.issuer).toBe(fx.main.issuer)
    // 3. A DPoP-bound token (the loopback issuer stands in for the token endpoint) used with oauth4webapi's own DPoP proofs.
    const keyPair = await oauth.generateKeyPair('ES256')
    const jkt = await thumbprint(keyPair.publicKey)
    const token = await sign(fx.main, { sub: 'alice', act: { sub: ID.frontend }, scope: 'orders:read' }, { dpopJkt: jkt })
    const response = await oauth.protectedResourceRequest(token, 'GET', new URL(`${RESOURCE}/orders`), undefined, undefined, {
      [oauth.customFetch]: viaApp,
      DPoP: oauth.DPoP({}, keyPair),
    })
    expect(response.status).toBe(200)
    const auth = (await response.json()) as { binding: string; caller: { id: string }; user: { sub: string } }
    expect(auth).toMatchObject({ binding: 'dpop', caller: { id: ID.frontend }, user: { sub: 'alice' } })
  })

  it('answers the well-known path without authentication, and nothing else', async () => {
    expect((await fx.call(app, { path: '/.well-known/oauth-protected-resource/other' })).status).toBe(401)
    expect(
      (await fx.call(app, { path: '/orders', token: await sign(fx.main, { sub: ID.frontend, client_id: ID.frontend, scope: 'orders:read' }) })).status,
    ).toBe(200)
  })
})

async function thumbprint(key: Parameters<typeof import('jose').exportJWK>[0]): Promise<string> {
  const { calculateJwkThumbprint, exportJWK } = await import('jose')
  return calculateJwkThumbprint(await exportJWK(key))
}
