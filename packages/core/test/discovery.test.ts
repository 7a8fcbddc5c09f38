import { startTestIssuer, type TestIssuer, type TestIssuerOptions } from '@callsign/testing'
import { afterEach, describe, expect, it } from 'vitest'
import { discoverJwksUri, metadataUrls } from '../src/discovery.js'
import { AuthError } from '../src/errors.js'
import { FetchFailure } from '../src/internal/fetch-json.js'
import { IssuerKeys } from '../src/jwks.js'
import { resolveConfig } from '../src/options.js'

const LIMITS = { timeoutSeconds: 5, maxBytes: 256 * 1024 }
const OAUTH = '/.well-known/oauth-authorization-server'
const OPENID = '/.well-known/openid-configuration'

describe('metadataUrls', () => {
  it.each([
    [
      'https://auth.example.com',
      'https://auth.example.com/.well-known/oauth-authorization-server',
      'https://auth.example.com/.well-known/openid-configuration',
    ],
    [
      'https://auth.example.com/',
      'https://auth.example.com/.well-known/oauth-authorization-server',
      'https://auth.example.com/.well-known/openid-configuration',
    ],
    [
      'https://auth.example.com/tenant-a',
      'https://auth.example.com/.well-known/oauth-authorization-server/tenant-a',
      'https://auth.example.com/tenant-a/.well-known/openid-configuration',
    ],
    [
      'https://auth.example.com/tenant-a/',
      'https://auth.example.com/.well-known/oauth-authorization-server/tenant-a',
      'https://auth.example.com/tenant-a/.well-known/openid-configuration',
    ],
    [
      'https://auth.example.com/realms/a/b',
      'https://auth.example.com/.well-known/oauth-authorization-server/realms/a/b',
      'https://auth.example.com/realms/a/b/.well-known/openid-configuration',
    ],
    ['http://127.0.0.1:8080/x', 'http://127.0.0.1:8080/.well-known/oauth-authorization-server/x', 'http://127.0.0.1:8080/x/.well-known/openid-configuration'],
  ])('derives RFC 8414 then OpenID locations for %s', (issuer, oauth, openid) => {
    expect(metadataUrls(issuer).map((url) => url.href)).toEqual([oauth, openid])
  })
})

describe('discoverJwksUri', () => {
  let issuer: TestIssuer | undefined
  afterEach(async () => {
    await issuer?.close()
    issuer = undefined
  })
  const start = async (options: TestIssuerOptions): Promise<TestIssuer> => (issuer = await startTestIssuer(options))

  async function failure(promise: Promise<unknown>): Promise<FetchFailure> {
    try {
      await promise
    } catch (error) {
      expect(error).toBeInstanceOf(FetchFailure)
      return error as FetchFailure
    }
    throw new Error('expected discovery to fail')
  }

  it('reads jwks_uri from RFC 8414 metadata first', async () => {
    const server = await start({ discovery: 'both', path: '/tenant-a' })
    const url = await discoverJwksUri(server.issuer, fetch, LIMITS)
    expect(url.href).toBe(server.jwksUri)
    expect(server.requests).toEqual([{ method: 'GET', path: `${OAUTH}/tenant-a` }])
  })

  it('falls back to OpenID metadata on a 404', async () => {
    const server = await start({ discovery: 'openid', path: '/tenant-a' })
    const url = await discoverJwksUri(server.issuer, fetch, LIMITS)
    expect(url.href).toBe(server.jwksUri)
    expect(server.requests).toEqual([
      { method: 'GET', path: `${OAUTH}/tenant-a` },
      { method: 'GET', path: `/tenant-a${OPENID}` },
    ])
  })

  it('works for an issuer without a path', async () => {
    const server = await start({ discovery: 'openid' })
    expect((await discoverJwksUri(server.issuer, fetch, LIMITS)).href).toBe(`${server.origin}/jwks.json`)
    expect(server.requests.map((r) => r.path)).toEqual([OAUTH, OPENID])
  })

  it('reports both locations when neither serves metadata', async () => {
    const server = await start({ discovery: 'none', path: '/t' })
    const error = await failure(discoverJwksUri(server.issuer, fetch, LIMITS))
    expect(error.message).toBe(`metadata discovery failed: ${server.origin}${OAUTH}/t: HTTP 404; ${server.origin}/t${OPENID}: HTTP 404`)
  })

  it('does not fall back on a server error', async () => {
    const server = await start({ discovery: 'both' })
    server.setOutage('down')
    const error = await failure(discoverJwksUri(server.issuer, fetch, LIMITS))
    expect(error.message).toBe(`metadata discovery failed: ${server.origin}${OAUTH}: HTTP 503`)
    expect(server.requestCount()).toBe(1)
  })

  it('refuses metadata whose issuer differs from the configured one', async () => {
    const server = await start({ discovery: 'both', metadataIssuer: 'https://evil.example' })
    const error = await failure(discoverJwksUri(server.issuer, fetch, LIMITS))
    expect(error.message).toBe(`${server.origin}${OAUTH}: metadata "issuer" "https://evil.example" does not equal the configured issuer`)
    expect(server.requestCount()).toBe(1)
  })

  it('refuses metadata whose issuer differs only by a trailing slash', async () => {
    const server = await start({ discovery: 'oauth', path: '/t' })
    const error = await failure(discoverJwksUri(`${server.issuer}/`, fetch, LIMITS))
    expect(error.message).toBe(`${server.origin}${OAUTH}/t: metadata "issuer" ${JSON.stringify(server.issuer)} does not equal the configured issuer`)
  })

  it.each([
    [
      'a non-https jwks_uri',
      'http://auth.example.com/jwks',
      (url: string) => `Callsign: "${url} jwks_uri" must use https (http is allowed only on 127.0.0.1, localhost and [::1]): "http://auth.example.com/jwks"`,
    ],
    ['a missing jwks_uri', undefined, (url: string) => `Callsign: "${url} jwks_uri" must be a URL string`],
    ['a relative jwks_uri', '/jwks.json', (url: string) => `Callsign: "${url} jwks_uri" is not a valid URL: "/jwks.json"`],
    ['a jwks_uri with credentials', 'https://u:p@auth.example.com/jwks', (url: string) => `Callsign: "${url} jwks_uri" must not contain credentials`],
  ])('refuses %s', async (_case, jwksUri, message) => {
    const server = await start({ discovery: 'oauth', metadata: { jwks_uri: jwksUri } })
    const error = await failure(discoverJwksUri(server.issuer, fetch, LIMITS))
    expect(error.message).toBe(message(`${server.origin}${OAUTH}`))
  })

  it('refuses metadata that is not a JSON object', async () => {
    const fetchArray = (async () => new Response('["not", "metadata"]', { headers: { 'content-type': 'application/json' } })) as typeof fetch
    const error = await failure(discoverJwksUri('https://auth.example.com', fetchArray, LIMITS))
    expect(error.message).toBe(`https://auth.example.com${OAUTH}: metadata is not a JSON object`)
  })
})

describe('IssuerKeys with discovery', () => {
  let issuer: TestIssuer | undefined
  afterEach(async () => {
    await issuer?.close()
    issuer = undefined
  })

  function setup(server: TestIssuer, clock: { now: number }) {
    const config = resolveConfig({
      issuers: { issuer: server.issuer, audience: 'orders' },
      jwks: { cacheMaxAgeSeconds: 60, cooldownSeconds: 0 },
      now: () => clock.now,
      logger: { warn() {} },
    })
    const keys = new IssuerKeys(config)
    return { keys, resolved: config.issuers.get(server.issuer)! }
  }

  it('discovers jwks_uri once per cacheMaxAgeSeconds', async () => {
    issuer = await startTestIssuer({ discovery: 'oauth', path: '/t' })
    const clock = { now: 1_900_000_000_000 }
    const { keys, resolved } = setup(issuer, clock)
    await keys.getKey(resolved, { alg: 'ES256', kid: issuer.currentKid })
    await keys.refresh(resolved)
    expect(issuer.requests.map((r) => r.path)).toEqual([`${OAUTH}/t`, '/t/jwks.json', '/t/jwks.json'])
    clock.now += 60_001
    await keys.refresh(resolved)
    expect(issuer.requests.map((r) => r.path)).toEqual([`${OAUTH}/t`, '/t/jwks.json', '/t/jwks.json', `${OAUTH}/t`, '/t/jwks.json'])
  })

  it('answers keys_unavailable when the metadata names another issuer, without fetching any JWKS', async () => {
    issuer = await startTestIssuer({ discovery: 'both', metadataIssuer: 'https://evil.example' })
    const { keys, resolved } = setup(issuer, { now: 1_900_000_000_000 })
    const error = await keys.getKey(resolved, { alg: 'ES256', kid: issuer.currentKid }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(AuthError)
    expect((error as AuthError).code).toBe('keys_unavailable')
    expect(issuer.requestCount('/jwks.json')).toBe(0)
  })
})
