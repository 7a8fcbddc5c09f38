import { SignJWT, createLocalJWKSet, createRemoteJWKSet, decodeProtectedHeader, errors, jwtVerify } from 'jose'
import { afterEach, describe, expect, it } from 'vitest'
import { startTestIssuer, type TestIssuer, type TestIssuerOptions } from '../src/index.js'

const opened: TestIssuer[] = []

async function start(options?: TestIssuerOptions): Promise<TestIssuer> {
  const issuer = await startTestIssuer(options)
  opened.push(issuer)
  return issuer
}

afterEach(async () => {
  await Promise.all(opened.splice(0).map((issuer) => issuer.close()))
})

async function getJson(url: string): Promise<{ status: number; body: unknown; headers: Headers }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2000) })
  const text = await res.text()
  return { status: res.status, headers: res.headers, body: text ? (JSON.parse(text) as unknown) : undefined }
}

describe('startTestIssuer: metadata and JWKS', () => {
  it('serves RFC 8414 metadata and the JWKS by default', async () => {
    const issuer = await start()
    expect(issuer.origin).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    expect(issuer.issuer).toBe(issuer.origin)
    expect(issuer.jwksUri).toBe(`${issuer.origin}/jwks.json`)

    const meta = await getJson(`${issuer.origin}/.well-known/oauth-authorization-server`)
    expect(meta.status).toBe(200)
    expect(meta.headers.get('content-type')).toBe('application/json')
    expect(meta.body).toMatchObject({
      issuer: issuer.issuer,
      jwks_uri: issuer.jwksUri,
      token_endpoint: `${issuer.origin}/token`,
    })
    expect((await getJson(`${issuer.origin}/.well-known/openid-configuration`)).status).toBe(404)

    const jwks = await getJson(issuer.jwksUri)
    expect(jwks.status).toBe(200)
    expect(jwks.headers.get('content-type')).toBe('application/json')
    expect(jwks.headers.get('cache-control')).toBe('max-age=300')
    expect(jwks.body).toEqual(issuer.publicJwks())
    const [key] = issuer.publicJwks().keys
    expect(key).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig', kid: issuer.currentKid })
    expect(key).not.toHaveProperty('d')

    expect((await getJson(`${issuer.origin}/nope`)).status).toBe(404)
    const post = await fetch(issuer.jwksUri, { method: 'POST' })
    expect(post.status).toBe(405)
    await post.arrayBuffer()
  })

  it('uses RFC 8414 path insertion and OpenID path appending for a path issuer', async () => {
    const issuer = await start({ path: '/tenant-a', discovery: 'both' })
    expect(issuer.issuer).toBe(`${issuer.origin}/tenant-a`)
    expect(issuer.jwksUri).toBe(`${issuer.origin}/tenant-a/jwks.json`)

    const oauth = await getJson(`${issuer.origin}/.well-known/oauth-authorization-server/tenant-a`)
    expect(oauth.status).toBe(200)
    expect(oauth.body).toMatchObject({ issuer: issuer.issuer, jwks_uri: issuer.jwksUri })
    const openid = await getJson(`${issuer.origin}/tenant-a/.well-known/openid-configuration`)
    expect(openid.status).toBe(200)
    expect(openid.body).toMatchObject({
      issuer: issuer.issuer,
      jwks_uri: issuer.jwksUri,
      id_token_signing_alg_values_supported: ['ES256'],
    })
    expect((await getJson(`${issuer.origin}/.well-known/oauth-authorization-server`)).status).toBe(404)
    expect((await getJson(`${issuer.origin}/tenant-a/.well-known/oauth-authorization-server`)).status).toBe(404)
    expect((await getJson(`${issuer.origin}/jwks.json`)).status).toBe(404)
  })

  it.each([
    ['oauth', true, false],
    ['openid', false, true],
    ['both', true, true],
    ['none', false, false],
  ] as const)('discovery %s serves oauth=%s openid=%s', async (discovery, oauth, openid) => {
    const issuer = await start({ discovery })
    expect((await getJson(`${issuer.origin}/.well-known/oauth-authorization-server`)).status).toBe(oauth ? 200 : 404)
    expect((await getJson(`${issuer.origin}/.well-known/openid-configuration`)).status).toBe(openid ? 200 : 404)
    expect((await getJson(issuer.jwksUri)).status).toBe(200)
  })

  it('supports metadataIssuer, metadata overrides, jwksPath and jwksCacheControl', async () => {
    const issuer = await start({
      metadataIssuer: 'https://evil.example',
      metadata: { token_endpoint: undefined, custom: 1 },
      jwksPath: '/keys',
      jwksCacheControl: 'no-store',
    })
    expect(issuer.jwksUri).toBe(`${issuer.origin}/keys`)
    const meta = await getJson(`${issuer.origin}/.well-known/oauth-authorization-server`)
    expect(meta.body).toMatchObject({ issuer: 'https://evil.example', jwks_uri: issuer.jwksUri, custom: 1 })
    expect(meta.body).not.toHaveProperty('token_endpoint')
    expect((await getJson(issuer.jwksUri)).headers.get('cache-control')).toBe('no-store')
  })

  it('records every request in order', async () => {
    const issuer = await start()
    await getJson(`${issuer.jwksUri}?x=1`)
    await getJson(`${issuer.origin}/.well-known/oauth-authorization-server`)
    await getJson(`${issuer.origin}/missing`)
    expect(issuer.requests).toEqual([
      { method: 'GET', path: '/jwks.json' },
      { method: 'GET', path: '/.well-known/oauth-authorization-server' },
      { method: 'GET', path: '/missing' },
    ])
    expect(issuer.requestCount()).toBe(3)
    expect(issuer.requestCount('/jwks.json')).toBe(1)
    issuer.clearRequests()
    expect(issuer.requestCount()).toBe(0)
  })
})

describe('startTestIssuer: tokens', () => {
  it('signs access tokens that verify against the remote JWKS', async () => {
    const issuer = await start({ path: '/tenant-a' })
    const token = await issuer.signAccessToken({ sub: 'spiffe://example.org/ns/web/sa/frontend', scope: 'orders:read' }, { audience: 'https://orders.example' })
    const { payload, protectedHeader } = await jwtVerify(token, createRemoteJWKSet(new URL(issuer.jwksUri)), {
      issuer: issuer.issuer,
      audience: 'https://orders.example',
      typ: 'at+jwt',
    })
    expect(protectedHeader).toEqual({ alg: 'ES256', kid: issuer.currentKid, typ: 'at+jwt' })
    expect(payload).toMatchObject({ iss: issuer.issuer, sub: 'spiffe://example.org/ns/web/sa/frontend', scope: 'orders:read' })
    expect(payload.exp! - payload.iat!).toBe(300)
    expect(payload.jti).toMatch(/^[0-9a-f-]{36}$/)
    expect(issuer.requestCount('/jwks.json')).toBe(1)
  })

  it('signs with every supported algorithm', async () => {
    const issuer = await start({ algorithms: ['ES256', 'ES384', 'PS256', 'RS256', 'EdDSA'] })
    const jwks = createRemoteJWKSet(new URL(issuer.jwksUri))
    for (const alg of ['ES256', 'ES384', 'PS256', 'RS256', 'EdDSA'] as const) {
      const token = await issuer.signAccessToken({}, { alg })
      const { protectedHeader } = await jwtVerify(token, jwks, { issuer: issuer.issuer })
      expect(protectedHeader.alg).toBe(alg)
    }
    expect(issuer.publicJwks().keys.map((k) => k.alg)).toEqual(['ES256', 'ES384', 'PS256', 'RS256', 'EdDSA'])
    await expect(issuer.signAccessToken({}, { alg: 'ES256', kid: issuer.publicJwks().keys[2]!.kid! })).rejects.toThrow(TypeError)
  })

  it('applies sign options: typ, header, times, omit, issuer and nested act claims', async () => {
    const issuer = await start()
    const local = createLocalJWKSet(issuer.publicJwks())
    const now = Math.floor(Date.now() / 1000)

    const plain = await issuer.signAccessToken({}, { typ: null, header: { jku: 'https://evil.example/jwks' } })
    expect(decodeProtectedHeader(plain)).toEqual({ alg: 'ES256', kid: issuer.currentKid, jku: 'https://evil.example/jwks' })

    const crit = await issuer.signAccessToken({}, { header: { crit: ['urn:x'], 'urn:x': 1 } })
    await expect(jwtVerify(crit, local)).rejects.toBeInstanceOf(errors.JOSENotSupported)

    const expired = await issuer.signAccessToken({}, { expiresInSeconds: -60 })
    await expect(jwtVerify(expired, local)).rejects.toBeInstanceOf(errors.JWTExpired)

    const future = await issuer.signAccessToken({}, { notBefore: now + 3600 })
    await expect(jwtVerify(future, local)).rejects.toBeInstanceOf(errors.JWTClaimValidationFailed)

    const shaped = await issuer.signAccessToken(
      { iat: now - 10, act: { sub: 'spiffe://example.org/ns/web/sa/frontend', act: { sub: 'spiffe://example.org/ns/edge/sa/gateway' } } },
      { omit: ['exp', 'jti'], issuer: 'https://other.example', issuedAt: now - 99 },
    )
    const { payload } = await jwtVerify(shaped, local)
    expect(payload).toEqual({
      iss: 'https://other.example',
      iat: now - 10,
      act: { sub: 'spiffe://example.org/ns/web/sa/frontend', act: { sub: 'spiffe://example.org/ns/edge/sa/gateway' } },
    })
  })

  it('exposes private keys for custom tokens', async () => {
    const issuer = await start()
    const token = await new SignJWT({ sub: 'custom' })
      .setProtectedHeader({ alg: 'ES256', kid: issuer.currentKid, typ: 'JWT' })
      .setIssuer(issuer.issuer)
      .sign(issuer.privateKey())
    const { payload } = await jwtVerify(token, issuer.publicKey(), { issuer: issuer.issuer })
    expect(payload.sub).toBe('custom')
    expect(() => issuer.privateKey('unknown')).toThrow(TypeError)
  })

  it('rotates keys, keeping the previous ones by default', async () => {
    const issuer = await start()
    const first = issuer.currentKid
    const oldToken = await issuer.signAccessToken()

    const second = await issuer.rotateKeys()
    expect(second).not.toBe(first)
    expect(issuer.currentKid).toBe(second)
    expect(issuer.publicJwks().keys.map((k) => k.kid)).toEqual([first, second])
    const newToken = await issuer.signAccessToken()
    expect(decodeProtectedHeader(newToken).kid).toBe(second)
    const jwks = createRemoteJWKSet(new URL(issuer.jwksUri))
    await jwtVerify(oldToken, jwks)
    await jwtVerify(newToken, jwks)

    const third = await issuer.rotateKeys({ keepPrevious: false })
    expect(issuer.publicJwks().keys.map((k) => k.kid)).toEqual([third])
    await expect(jwtVerify(oldToken, createRemoteJWKSet(new URL(issuer.jwksUri)))).rejects.toBeInstanceOf(errors.JWKSNoMatchingKey)
    await expect(issuer.signAccessToken({}, { kid: first })).rejects.toThrow(TypeError)

    const rsa = await issuer.rotateKeys({ alg: 'RS256' })
    expect(issuer.publicJwks().keys.map((k) => k.alg)).toEqual(['ES256', 'RS256'])
    expect(decodeProtectedHeader(await issuer.signAccessToken()).kid).toBe(rsa)
    expect(decodeProtectedHeader(await issuer.signAccessToken({}, { alg: 'ES256' })).kid).toBe(third)
  })
})

describe('startTestIssuer: outages', () => {
  it('down answers 503 to every request', async () => {
    const issuer = await start()
    issuer.setOutage('down')
    expect((await getJson(issuer.jwksUri)).status).toBe(503)
    expect((await getJson(`${issuer.origin}/.well-known/oauth-authorization-server`)).status).toBe(503)
    await expect(jwtVerify(await issuer.signAccessToken(), createRemoteJWKSet(new URL(issuer.jwksUri)))).rejects.toThrow()
    issuer.setOutage('none')
    expect((await getJson(issuer.jwksUri)).status).toBe(200)
  })

  it('reset destroys the connection', async () => {
    const issuer = await start()
    issuer.setOutage('reset')
    await expect(fetch(issuer.jwksUri, { signal: AbortSignal.timeout(2000) })).rejects.toThrow(TypeError)
    expect(issuer.requestCount('/jwks.json')).toBe(1)
  })

  it('hang never answers, and close() still finishes', async () => {
    const issuer = await start()
    issuer.setOutage('hang')
    const started = Date.now()
    await expect(fetch(issuer.jwksUri, { signal: AbortSignal.timeout(300) })).rejects.toMatchObject({
      name: 'TimeoutError',
    })
    expect(Date.now() - started).toBeGreaterThanOrEqual(250)
    const pending = fetch(issuer.jwksUri).catch((error: unknown) => error)
    await new Promise((resolve) => setTimeout(resolve, 50))
    await issuer.close()
    expect(await pending).toBeInstanceOf(TypeError)
  })

  it('garbage answers 200 with a non-JSON body', async () => {
    const issuer = await start()
    issuer.setOutage('garbage')
    const res = await fetch(issuer.jwksUri)
    expect(res.status).toBe(200)
    await expect(res.json()).rejects.toBeInstanceOf(SyntaxError)
  })

  it('huge answers 200 with a multi-megabyte JSON body', async () => {
    const issuer = await start({ hugeBodyBytes: 3 * 1024 * 1024 })
    issuer.setOutage('huge')
    const res = await fetch(issuer.jwksUri)
    expect(res.status).toBe(200)
    const text = await res.text()
    expect(text.length).toBeGreaterThanOrEqual(3 * 1024 * 1024)
    const body = JSON.parse(text) as { keys: unknown[] }
    expect(body.keys).toEqual(issuer.publicJwks().keys)
    const defaultSize = await start()
    defaultSize.setOutage('huge')
    expect((await (await fetch(`${defaultSize.origin}/anything`)).arrayBuffer()).byteLength).toBeGreaterThanOrEqual(5 * 1024 * 1024)
  })

  it('latency delays responses', async () => {
    const issuer = await start()
    issuer.setLatency(150)
    const started = Date.now()
    expect((await getJson(issuer.jwksUri)).status).toBe(200)
    expect(Date.now() - started).toBeGreaterThanOrEqual(140)
  })

  it('rejects unknown modes', async () => {
    const issuer = await start()
    expect(() => issuer.setOutage('bogus' as never)).toThrow(TypeError)
  })
})
