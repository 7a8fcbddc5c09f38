import { startTestIssuer, type TestIssuer } from '@callsign/testing'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { AuthError } from '../src/errors.js'
import { FetchFailure } from '../src/internal/fetch-json.js'
import { IssuerKeys } from '../src/jwks.js'
import { resolveConfig, type CallsignOptions, type JwksOptions } from '../src/options.js'
import { refusal } from './refusal.js'

const NOW = 1_900_000_000_000
const JWKS_PATH = '/jwks.json'

let issuer: TestIssuer
let now: number
const warn = vi.fn()

beforeEach(async () => {
  issuer = await startTestIssuer()
  now = NOW
  warn.mockReset()
})
afterEach(async () => {
  await issuer.close()
})

function setup(jwks: JwksOptions = {}, extra: Partial<CallsignOptions> = {}) {
  const config = resolveConfig({
    issuers: { issuer: issuer.issuer, audience: 'orders', jwksUri: issuer.jwksUri },
    jwks,
    now: () => now,
    logger: { warn },
    ...extra,
  })
  const keys = new IssuerKeys(config)
  const resolved = config.issuers.get(issuer.issuer)!
  return { config, keys, resolved, getKey: (kid: string | undefined, alg = 'ES256') => keys.getKey(resolved, { alg, kid }) }
}

async function expectNoKey(promise: Promise<unknown>): Promise<void> {
  const error = await refusal(promise)
  expect({ code: error.code, message: error.message }).toEqual({ code: 'invalid_token', message: 'no key of the issuer matches the token' })
}

async function expectUnavailable(promise: Promise<unknown>, retryAfterSeconds: number): Promise<AuthError> {
  const error = await refusal(promise)
  expect({ code: error.code, status: error.status, message: error.message, retryAfterSeconds: error.retryAfterSeconds }).toEqual({
    code: 'keys_unavailable',
    status: 503,
    message: 'the issuer keys are temporarily unavailable',
    retryAfterSeconds,
  })
  return error
}

const jsonFetch = (document: unknown): typeof fetch => (async () =>
  new Response(JSON.stringify(document), { status: 200, headers: { 'content-type': 'application/json' } })) as typeof fetch

describe('IssuerKeys fetching', () => {
  it('resolves the key for a kid with one JWKS fetch and caches it', async () => {
    const { getKey, keys } = setup()
    expect(keys.hasKeys(issuer.issuer)).toBe(false)
    const key = await getKey(issuer.currentKid)
    expect(key.type).toBe('public')
    expect(key.asymmetricKeyType).toBe('ec')
    expect(key.asymmetricKeyDetails).toMatchObject({ namedCurve: 'prime256v1' })
    expect(await getKey(issuer.currentKid)).toBe(key)
    expect(issuer.requests).toEqual([{ method: 'GET', path: JWKS_PATH }])
    expect(keys.hasKeys(issuer.issuer)).toBe(true)
  })

  it('shares one fetch among concurrent first calls (single flight)', async () => {
    const { getKey, keys, resolved } = setup()
    issuer.setLatency(100)
    const results = await Promise.all(Array.from({ length: 6 }, () => getKey(issuer.currentKid)))
    expect(new Set(results).size).toBe(1)
    expect(issuer.requestCount(JWKS_PATH)).toBe(1)
    const a = keys.refresh(resolved)
    expect(keys.refresh(resolved)).toBe(a)
    await a
    expect(issuer.requestCount(JWKS_PATH)).toBe(2)
  })

  it('refetches for an unknown kid at most once per cooldown and then finds a rotated key', async () => {
    const { getKey } = setup({ cooldownSeconds: 30 })
    await getKey(issuer.currentKid)
    const rotated = await issuer.rotateKeys()

    await expectNoKey(getKey(rotated))
    now = NOW + 29_999
    await expectNoKey(getKey(rotated))
    await expectNoKey(getKey('unknown'))
    expect(issuer.requestCount(JWKS_PATH)).toBe(1)

    now = NOW + 30_000
    const key = await getKey(rotated)
    expect(issuer.requestCount(JWKS_PATH)).toBe(2)
    expect(await getKey(rotated)).toBe(key)

    await expectNoKey(getKey('unknown'))
    now = NOW + 59_999
    await expectNoKey(getKey('unknown'))
    expect(issuer.requestCount(JWKS_PATH)).toBe(2)
    now = NOW + 60_000
    await expectNoKey(getKey('unknown'))
    expect(issuer.requestCount(JWKS_PATH)).toBe(3)
  })

  it('never refetches for a token without kid', async () => {
    const { getKey } = setup({ cooldownSeconds: 0 })
    await getKey(undefined)
    await expectNoKey(getKey(undefined, 'ES384'))
    expect(issuer.requestCount(JWKS_PATH)).toBe(1)
  })

  it('refreshes in the background after cacheMaxAgeSeconds while serving the cached keys', async () => {
    const { getKey, keys, resolved } = setup({ cacheMaxAgeSeconds: 60, cooldownSeconds: 30 })
    const oldKid = issuer.currentKid
    const oldKey = await getKey(oldKid)
    const newKid = await issuer.rotateKeys({ keepPrevious: false })

    now = NOW + 60_000
    expect(await getKey(oldKid)).toBe(oldKey)
    expect(issuer.requestCount(JWKS_PATH)).toBe(1)

    issuer.setLatency(100)
    now = NOW + 60_001
    expect(await getKey(oldKid)).toBe(oldKey) // served at once from the stale set
    await keys.refresh(resolved) // joins the background refresh
    expect(issuer.requestCount(JWKS_PATH)).toBe(2)

    await getKey(newKid)
    await expectNoKey(getKey(oldKid)) // gone from the new set; within the cooldown of the refresh
    expect(issuer.requestCount(JWKS_PATH)).toBe(2)
  })

  it('serves stale keys for at most maxStaleSeconds while the issuer is down, then answers keys_unavailable', async () => {
    const { getKey, keys, resolved } = setup({ cacheMaxAgeSeconds: 60, maxStaleSeconds: 120, failureBackoffSeconds: 5 })
    const key = await getKey(issuer.currentKid)
    issuer.setOutage('down')

    now = NOW + 61_000
    expect(await getKey(issuer.currentKid)).toBe(key)
    await keys.refresh(resolved).catch(() => {}) // let the background refresh fail
    expect(issuer.requestCount(JWKS_PATH)).toBe(2)
    expect(warn).toHaveBeenCalledWith('callsign: could not fetch issuer keys', { issuer: issuer.issuer, reason: `${issuer.jwksUri}: HTTP 503` })

    now = NOW + 180_000
    expect(await getKey(issuer.currentKid)).toBe(key)
    await keys.refresh(resolved).catch(() => {})
    expect(keys.hasKeys(issuer.issuer)).toBe(true)

    now = NOW + 180_001
    expect(keys.hasKeys(issuer.issuer)).toBe(false)
    // The background refresh at +180 s failed 1 ms ago: no fetch, retry after the rest of the backoff.
    const requests = issuer.requestCount()
    await expectUnavailable(getKey(issuer.currentKid), 4.999)
    expect(issuer.requestCount()).toBe(requests)

    issuer.setOutage('none')
    now = NOW + 190_000
    expect(await getKey(issuer.currentKid)).not.toBe(key)
    expect(keys.hasKeys(issuer.issuer)).toBe(true)
  })

  it('backs off after a failure: keys_unavailable with retryAfterSeconds and no fetch until the backoff ends', async () => {
    const { getKey } = setup({ failureBackoffSeconds: 5 })
    issuer.setOutage('down')
    const first = await expectUnavailable(getKey(issuer.currentKid), 5)
    expect(first.cause).toBeInstanceOf(FetchFailure)
    expect((first.cause as FetchFailure).message).toBe(`${issuer.jwksUri}: HTTP 503`)
    expect((first.cause as FetchFailure).status).toBe(503)
    expect(issuer.requestCount()).toBe(1)

    now = NOW + 2_000
    await expectUnavailable(getKey(issuer.currentKid), 3)
    now = NOW + 4_500
    await expectUnavailable(getKey(issuer.currentKid), 0.5)
    expect(issuer.requestCount()).toBe(1)
    expect(warn).toHaveBeenCalledTimes(1)

    issuer.setOutage('none')
    now = NOW + 5_000
    await expect(getKey(issuer.currentKid)).resolves.toBeDefined()
    expect(issuer.requestCount()).toBe(2)
  })

  it('retries on every request when failureBackoffSeconds is 0, reporting retry after 1 s', async () => {
    const { getKey } = setup({ failureBackoffSeconds: 0 })
    issuer.setOutage('down')
    await expectUnavailable(getKey(issuer.currentKid), 1)
    await expectUnavailable(getKey(issuer.currentKid), 1)
    expect(issuer.requestCount()).toBe(2)
  })

  it.each<[string, 'huge' | 'garbage' | 'reset', JwksOptions, RegExp]>([
    ['a document over maxBytes (huge)', 'huge', {}, /: document larger than 262144 bytes$/],
    ['a body that is not JSON (garbage)', 'garbage', {}, /: not a JSON document$/],
    ['a reset connection', 'reset', {}, /^http:\/\/127\.0\.0\.1:\d+\/jwks\.json: /],
  ])('answers keys_unavailable for %s', async (_case, outage, jwks, reason) => {
    const { getKey, keys } = setup(jwks)
    issuer.setOutage(outage)
    await expectUnavailable(getKey(issuer.currentKid), 5)
    expect(warn).toHaveBeenCalledTimes(1)
    expect(warn.mock.calls[0]![1].reason).toMatch(reason)
    expect(keys.hasKeys(issuer.issuer)).toBe(false)
  })

  it('answers keys_unavailable when the issuer does not answer within timeoutSeconds', async () => {
    const { getKey } = setup({ timeoutSeconds: 0.2 })
    issuer.setOutage('hang')
    await expectUnavailable(getKey(issuer.currentKid), 5)
    expect(warn.mock.calls[0]![1].reason).toBe(`${issuer.jwksUri}: timed out`)
  })

  it('enforces a small maxBytes on a normal JWKS', async () => {
    const { getKey } = setup({ maxBytes: 100 })
    await expectUnavailable(getKey(issuer.currentKid), 5)
    expect(warn.mock.calls[0]![1].reason).toBe(`${issuer.jwksUri}: document larger than 100 bytes`)
  })

  it('refuses a JWKS with more than maxKeys keys', async () => {
    await issuer.rotateKeys()
    const { getKey } = setup({ maxKeys: 1 })
    await expectUnavailable(getKey(issuer.currentKid), 5)
    expect(warn.mock.calls[0]![1].reason).toBe(`${issuer.jwksUri}: more than 1 keys`)
  })

  it.each<[string, unknown, string]>([
    ['a JSON array', [], 'not a JWK Set'],
    ['keys that is not an array', { keys: {} }, 'not a JWK Set'],
    ['null', null, 'not a JWK Set'],
    ['no usable key', { keys: [{ kty: 'oct', k: 'c2VjcmV0' }] }, 'no usable signing key'],
  ])('answers keys_unavailable for a JWKS that is %s', async (_case, document, reason) => {
    const { getKey } = setup({}, { fetch: jsonFetch(document) })
    await expectUnavailable(getKey('k'), 5)
    expect(warn.mock.calls[0]![1].reason).toBe(`${issuer.jwksUri}: ${reason}`)
  })
})

describe('IssuerKeys key selection', () => {
  it('ignores symmetric, private, encryption and malformed keys in a JWKS', async () => {
    const goodKid = issuer.currentKid
    const privateKid = await issuer.rotateKeys()
    const [good, priv] = [goodKid, privateKid].map((kid) => issuer.publicJwks().keys.find((k) => k.kid === kid)!)
    const document = {
      keys: [
        { kty: 'oct', k: 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0', kid: 'sym', alg: 'ES256' },
        { ...priv, d: 'AAAA' },
        { ...good, kid: 'enc', use: 'enc' },
        { ...good, kid: 'ops', key_ops: ['encrypt'] },
        { ...good, kid: 'numeric-x', x: 1 },
        { ...good, kid: 5 },
        'not an object',
        good,
      ],
    }
    const { getKey } = setup({ cooldownSeconds: 0 }, { fetch: jsonFetch(document) })
    await expect(getKey(goodKid)).resolves.toMatchObject({ type: 'public' })
    for (const kid of ['sym', privateKid, 'enc', 'ops', 'numeric-x', '5']) await expectNoKey(getKey(kid))
  })

  it('accepts a key whose key_ops include verify', async () => {
    const good = issuer.publicJwks().keys[0]!
    const { getKey } = setup({}, { fetch: jsonFetch({ keys: [{ ...good, key_ops: ['verify'] }] }) })
    await expect(getKey(good.kid)).resolves.toMatchObject({ type: 'public' })
  })

  it('picks a key without kid only when it is unambiguous', async () => {
    const { getKey } = setup({ cooldownSeconds: 0 })
    await expect(getKey(undefined)).resolves.toMatchObject({ type: 'public' })
    await issuer.rotateKeys() // a second ES256 key
    const fresh = setup({ cooldownSeconds: 0 })
    await expectNoKey(fresh.getKey(undefined))
  })

  it.each([
    ['ES384', 'a P-256 key used for ES384'],
    ['RS256', 'an EC key used for RS256'],
    ['EdDSA', 'an EC key used for EdDSA'],
  ])('refuses alg %s (%s)', async (alg) => {
    const { getKey } = setup()
    await expectNoKey(getKey(issuer.currentKid, alg))
  })

  it('refuses a key whose JWK alg differs from the token alg', async () => {
    const good = issuer.publicJwks().keys[0]!
    const { getKey } = setup({}, { fetch: jsonFetch({ keys: [{ ...good, alg: 'ES384' }] }) })
    await expectNoKey(getKey(good.kid))
  })

  it('scopes keys per issuer: a kid of another issuer is never used', async () => {
    const other = await startTestIssuer()
    try {
      const config = resolveConfig({
        issuers: [
          { issuer: issuer.issuer, audience: 'orders', jwksUri: issuer.jwksUri },
          { issuer: other.issuer, audience: 'orders', jwksUri: other.jwksUri },
        ],
        now: () => now,
        logger: { warn },
      })
      const keys = new IssuerKeys(config)
      const a = config.issuers.get(issuer.issuer)!
      const b = config.issuers.get(other.issuer)!
      await expectNoKey(keys.getKey(a, { alg: 'ES256', kid: other.currentKid }))
      expect(issuer.requestCount(JWKS_PATH)).toBe(1)
      expect(other.requestCount()).toBe(0)
      const keyB = await keys.getKey(b, { alg: 'ES256', kid: other.currentKid })
      const keyA = await keys.getKey(a, { alg: 'ES256', kid: issuer.currentKid })
      expect(keyA).not.toBe(keyB)
      expect(other.requestCount(JWKS_PATH)).toBe(1)
      expect(keys.hasKeys(issuer.issuer)).toBe(true)
      expect(keys.hasKeys(other.issuer)).toBe(true)
      // Both sets stay cached side by side.
      await keys.getKey(a, { alg: 'ES256', kid: issuer.currentKid })
      await keys.getKey(b, { alg: 'ES256', kid: other.currentKid })
      expect(issuer.requestCount(JWKS_PATH) + other.requestCount(JWKS_PATH)).toBe(2)
    } finally {
      await other.close()
    }
  })
})
