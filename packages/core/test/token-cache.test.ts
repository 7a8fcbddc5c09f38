import { startTestIssuer, type TestIssuer } from '@callsign/testing'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { VerifiedTokenCache, verifyAccessToken, verifySignature } from '../src/access-token.js'
import { IssuerKeys } from '../src/jwks.js'
import { resolveConfig } from '../src/options.js'

const NOW_S = 1_900_000_000
const AUD = 'https://orders.example'

let issuer: TestIssuer
beforeAll(async () => {
  issuer = await startTestIssuer({ algorithms: ['ES256', 'ES384', 'PS256', 'RS256', 'EdDSA'] })
})
afterAll(async () => {
  await issuer?.close()
})
beforeEach(() => issuer.clearRequests())

function setup(extra: { maxTokenAge?: number } = {}) {
  let now = NOW_S * 1000
  const config = resolveConfig({
    issuers: { issuer: issuer.issuer, audience: AUD, jwksUri: issuer.jwksUri },
    now: () => now,
    logger: { warn() {} },
    jwks: { cooldownSeconds: 0, cacheMaxAgeSeconds: 60 },
    ...extra,
  })
  const keys = new IssuerKeys(config)
  const cache = new VerifiedTokenCache(100)
  return {
    cache,
    keys,
    advance: (seconds: number) => (now += seconds * 1000),
    verify: (token: string) => verifyAccessToken(token, config, keys, cache),
  }
}

const sign = (claims: Record<string, unknown> = {}, options: Parameters<TestIssuer['signAccessToken']>[1] = {}) =>
  issuer.signAccessToken({ sub: 'svc', client_id: 'svc', ...claims }, { audience: AUD, issuedAt: NOW_S, expiresInSeconds: 300, ...options })

describe('node:crypto signature verification', () => {
  it.each(['ES256', 'ES384', 'PS256', 'RS256', 'EdDSA'] as const)('verifies %s tokens from a real issuer', async (alg) => {
    const { verify } = setup()
    const token = await sign({}, { alg })
    expect((await verify(token)).claims.sub).toBe('svc')
  })

  it.each(['ES256', 'PS256', 'RS256', 'EdDSA'] as const)('refuses a %s token whose signature is altered', async (alg) => {
    const { verify } = setup()
    const token = await sign({}, { alg })
    const [h, p, s] = token.split('.') as [string, string, string]
    const flipped = s.slice(0, 5) + (s[5] === 'A' ? 'B' : 'A') + s.slice(6)
    await expect(verify(`${h}.${p}.${flipped}`)).rejects.toMatchObject({ code: 'invalid_token', message: 'signature verification failed' })
  })

  it('refuses an all-zero ECDSA signature (CVE-2022-21449 class)', async () => {
    const { verify } = setup()
    const [h, p] = (await sign()).split('.') as [string, string]
    await expect(verify(`${h}.${p}.${Buffer.alloc(64).toString('base64url')}`)).rejects.toMatchObject({ message: 'signature verification failed' })
  })

  it('returns false for an unknown algorithm instead of throwing', () => {
    expect(verifySignature('HS256', undefined as never, 'a.b', 'c')).toBe(false)
  })

  it.each([
    ['base64 padding', (s: string) => `${s}=`],
    ['a "+" character', (s: string) => `${s.slice(0, -1)}+`],
    ['a "/" character', (s: string) => `${s.slice(0, -1)}/`],
  ])('refuses a signature spelled with %s (one signature, one spelling)', async (_case, respell) => {
    const { verify } = setup()
    const [h, p, s] = (await sign()).split('.') as [string, string, string]
    await expect(verify(`${h}.${p}.${respell(s)}`)).rejects.toMatchObject({ code: 'invalid_token', message: 'malformed token' })
  })

  it('refuses any crit header without fetching keys', async () => {
    const { verify } = setup()
    const token = await sign({}, { header: { crit: ['urn:example:ext'], 'urn:example:ext': true } })
    await expect(verify(token)).rejects.toMatchObject({ code: 'invalid_token', message: 'malformed token' })
    expect(issuer.requestCount()).toBe(0)
  })
})

describe('VerifiedTokenCache', () => {
  it('caches a token on its second verification and then returns the same result', async () => {
    const { verify, cache } = setup()
    const token = await sign()
    const first = await verify(token)
    expect(cache.size).toBe(0) // seen once: a token used only once never enters the cache
    const second = await verify(token)
    expect(second).not.toBe(first)
    expect(second).toEqual(first)
    expect(cache.size).toBe(1)
    expect(await verify(token)).toBe(second)
  })

  it('never serves an entry past the token exp (plus tolerance)', async () => {
    const { verify, advance, cache } = setup()
    const token = await sign({}, { expiresInSeconds: 60 })
    await verify(token)
    await verify(token)
    expect(cache.size).toBe(1)
    advance(60 + 30 + 1)
    await expect(verify(token)).rejects.toMatchObject({ code: 'invalid_token', message: 'token expired' })
  })

  it('never serves an entry past maxTokenAge', async () => {
    const { verify, advance, cache } = setup({ maxTokenAge: 60 })
    const token = await sign()
    await verify(token)
    await verify(token)
    expect(cache.size).toBe(1)
    advance(60 + 30 + 1)
    await expect(verify(token)).rejects.toMatchObject({ message: 'token too old' })
  })

  it('drops an entry once its key is no longer published by the issuer', async () => {
    const { verify, keys, cache } = setup()
    const token = await sign({}, { alg: 'ES256' })
    await verify(token)
    const cached = await verify(token)
    // The issuer rotates ES256 and drops the old key; a refetch makes it current.
    await issuer.rotateKeys({ alg: 'ES256', keepPrevious: false })
    await keys.refresh(cached.issuer)
    expect(cache.size).toBe(1)
    await expect(verify(token)).rejects.toMatchObject({ code: 'invalid_token', message: 'no key of the issuer matches the token' })
  })

  it('does not cache refused tokens', async () => {
    const { verify, cache } = setup()
    const token = await sign({}, { audience: 'https://elsewhere.example' })
    await expect(verify(token)).rejects.toMatchObject({ message: 'token audience does not match' })
    await expect(verify(token)).rejects.toMatchObject({ message: 'token audience does not match' })
    expect(cache.size).toBe(0)
  })

  it('admits no token used only once, and stays within its bound under many reused tokens', async () => {
    const { verify, cache } = setup()
    for (let i = 0; i < 150; i++) await verify(await sign({ jti: `once${i}` }))
    expect(cache.size).toBe(0)
    for (let i = 0; i < 150; i++) {
      const token = await sign({ jti: `twice${i}` })
      await verify(token)
      await verify(token)
    }
    expect(cache.size).toBe(100)
  })

  it('bounds the admission memory too: a flood of distinct tokens only resets it', () => {
    const cache = new VerifiedTokenCache(2)
    const verified = {} as never
    const key = {} as never
    // Five distinct tokens seen once each (more than maxEntries): none cached, and the earlier ones forgotten.
    for (let i = 0; i < 5; i++) cache.set(`${'x'.repeat(40)}-token-${i}`, verified, Infinity, key)
    expect(cache.size).toBe(0)
    cache.set(`${'x'.repeat(40)}-token-4`, verified, Infinity, key)
    expect(cache.size).toBe(1)
  })
})
