import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startTestIssuer, type TestIssuer } from '@callsign/testing'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { AuthError } from '../src/errors.js'
import { FetchFailure } from '../src/internal/fetch-json.js'
import { checkJwkEncoding, importPublicKey, IssuerKeys } from '../src/jwks.js'
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

const jsonFetch = (document: unknown): typeof fetch =>
  (async () => new Response(JSON.stringify(document), { status: 200, headers: { 'content-type': 'application/json' } })) as typeof fetch

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

  it('refuses a key whose JWK alg differs from the token alg (a PS256 key for RS256); drops a key whose alg does not fit it', async () => {
    const good = issuer.publicJwks().keys[0]!
    const pss = { ...publicJwkOf('rsa'), kid: 'pss', alg: 'PS256' }
    const { getKey } = setup({}, { fetch: jsonFetch({ keys: [good, pss, { ...good, kid: 'mislabelled', alg: 'ES384' }] }) })
    await expect(getKey('pss', 'PS256')).resolves.toMatchObject({ asymmetricKeyType: 'rsa' })
    await expectNoKey(getKey('pss', 'RS256'))
    await expectNoKey(getKey('mislabelled'))
    await expectNoKey(getKey('mislabelled', 'ES384'))
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

/** A fresh public JWK of a key pair of `type` (node:crypto names). */
function publicJwkOf(type: 'ec' | 'rsa' | 'ed25519', options: { namedCurve?: string; modulusLength?: number } = {}): Record<string, string> {
  const { publicKey } =
    type === 'ec'
      ? generateKeyPairSync('ec', { namedCurve: options.namedCurve ?? 'P-256' })
      : type === 'rsa'
        ? generateKeyPairSync('rsa', { modulusLength: options.modulusLength ?? 2048 })
        : generateKeyPairSync('ed25519')
  return publicKey.export({ format: 'jwk' }) as Record<string, string>
}

/** An RSA public JWK with a modulus of exactly `bits` bits (a multiple of 8; random, odd: importable, never used to verify). */
function rsaJwkOfBits(bits: number): Record<string, string> {
  const n = randomBytes(bits / 8)
  n[0]! |= 0x80
  n[n.length - 1]! |= 1
  return { kty: 'RSA', n: n.toString('base64url'), e: 'AQAB' }
}

const b64 = (value: string): Buffer => Buffer.from(value, 'base64url')
const withLeadingZero = (value: string): string => Buffer.concat([Buffer.alloc(1), b64(value)]).toString('base64url')
/** The same octets with the unused low bits of the last character set (a second spelling). */
function nonCanonical(value: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  return value.slice(0, -1) + alphabet[alphabet.indexOf(value.at(-1)!) + 1]!
}
/** A P-256 public JWK whose x starts with a zero octet (so a 31-octet spelling of x exists). */
function p256WithZeroX(): Record<string, string> {
  for (;;) {
    const jwk = publicJwkOf('ec')
    if (b64(jwk.x!)[0] === 0) return jwk
  }
}

describe('importPublicKey and checkJwkEncoding: one key, one encoding', () => {
  const p256 = publicJwkOf('ec')
  const p384 = publicJwkOf('ec', { namedCurve: 'P-384' })
  const p521 = publicJwkOf('ec', { namedCurve: 'P-521' })
  const ed = publicJwkOf('ed25519')
  const rsa = publicJwkOf('rsa')
  const zeroX = p256WithZeroX()

  it.each<[string, Record<string, string>]>([
    ['P-256 (x, y: 43 characters)', p256],
    ['P-384 (64 characters)', p384],
    ['P-521 (88 characters)', p521],
    ['Ed25519 (43 characters)', ed],
    ['RSA 2048', rsa],
    ['a P-256 key whose x starts with a zero octet, written in full', zeroX],
    ['RSA of exactly 8192 bits (the issuer key bound)', rsaJwkOfBits(8192)],
  ])('imports %s', (_case, jwk) => {
    expect(checkJwkEncoding(jwk)).toBe(true)
    expect(importPublicKey(jwk)).not.toBeNull()
  })

  it.each<[string, Record<string, unknown>]>([
    ['P-256 x with a leading zero octet (33 octets)', { ...p256, x: withLeadingZero(p256.x!) }],
    ['P-256 y with a leading zero octet (33 octets)', { ...p256, y: withLeadingZero(p256.y!) }],
    ['P-256 x of 31 octets (its leading zero octet left out)', { ...zeroX, x: b64(zeroX.x!).subarray(1).toString('base64url') }],
    ['P-384 x of 49 octets', { ...p384, x: withLeadingZero(p384.x!) }],
    ['P-521 x of 67 octets', { ...p521, x: withLeadingZero(p521.x!) }],
    ['P-256 x padded (=)', { ...p256, x: `${p256.x}=` }],
    ['P-256 x with a non-canonical last character', { ...p256, x: nonCanonical(p256.x!) }],
    ['P-256 x in base64 (+/) instead of base64url', { ...p256, x: b64(p256.x!).toString('base64') }],
    ['P-256 x with whitespace', { ...p256, x: `${p256.x!.slice(0, 20)} ${p256.x!.slice(20)}` }],
    ['P-256 x that is not a string', { ...p256, x: 7 }],
    ['P-256 without y', { kty: 'EC', crv: 'P-256', x: p256.x }],
    ['an unknown curve', { ...p256, crv: 'secp256k1' }],
    ['an EC curve name on an OKP key', { ...ed, crv: 'P-256' }],
    ['Ed25519 x of 33 octets', { ...ed, x: withLeadingZero(ed.x!) }],
    ['Ed25519 x of 31 octets', { ...ed, x: b64(ed.x!).subarray(1).toString('base64url') }],
    ['Ed25519 x padded (=)', { ...ed, x: `${ed.x}=` }],
    ['Ed25519 x with a non-canonical last character', { ...ed, x: nonCanonical(ed.x!) }],
    ['RSA n with a leading zero octet', { ...rsa, n: withLeadingZero(rsa.n!) }],
    ['RSA e with a leading zero octet', { ...rsa, e: withLeadingZero(rsa.e!) }],
    ['RSA n padded (==)', { ...rsa, n: `${rsa.n}==` }],
    ['RSA e of 9 octets (over 64 bits)', { ...rsa, e: Buffer.from([1, 0, 0, 0, 0, 0, 0, 0, 1]).toString('base64url') }],
    ['RSA without e', { kty: 'RSA', n: rsa.n }],
  ])('refuses %s', (_case, jwk) => {
    expect(checkJwkEncoding(jwk)).toBe(false)
    expect(importPublicKey(jwk)).toBeNull()
  })

  it('refuses RSA keys under 2048 bits and over maxRsaBits (default 8192)', () => {
    expect(importPublicKey(publicJwkOf('rsa', { modulusLength: 1024 }))).toBeNull()
    expect(importPublicKey(rsaJwkOfBits(2040))).toBeNull()
    expect(importPublicKey(rsaJwkOfBits(8200))).toBeNull()
    expect(importPublicKey(rsaJwkOfBits(4096), { maxRsaBits: 4096 })).not.toBeNull()
    expect(importPublicKey(rsaJwkOfBits(4104), { maxRsaBits: 4096 })).toBeNull()
  })

  it('refuses an EC point off its curve', () => {
    const x = b64(p256.x!)
    x[31]! ^= 1
    const jwk = { ...p256, x: x.toString('base64url') }
    expect(checkJwkEncoding(jwk)).toBe(true)
    expect(importPublicKey(jwk)).toBeNull()
  })
})

/** Unusable-only JWK Sets for an issuer allowing ES256 and RS256, by the rule that makes each unusable. */
function unusableSets(good: Record<string, unknown>): Array<[string, { keys: unknown[] }]> {
  const kid = good.kid
  const offCurve = b64(good.x as string)
  offCurve[31]! ^= 1
  const kinds: Array<[string, Record<string, unknown>]> = [
    ['an Ed25519 key (EdDSA not allowed)', { ...publicJwkOf('ed25519'), kid }],
    ['a P-384 key (ES384 not allowed)', { ...publicJwkOf('ec', { namedCurve: 'P-384' }), kid }],
    ['an RSA key whose alg PS256 is not allowed', { ...publicJwkOf('rsa'), kid, alg: 'PS256' }],
    ['the issuer key with alg RS256 (allowed, not for an EC key)', { ...good, alg: 'RS256' }],
    ['the issuer key with a point off the curve', { ...good, x: offCurve.toString('base64url') }],
    ['an RSA key of 1024 bits', { ...publicJwkOf('rsa', { modulusLength: 1024 }), kid, alg: 'RS256' }],
    ['an RSA key of 8200 bits', { ...rsaJwkOfBits(8200), kid, alg: 'RS256' }],
    ['an EC key without y (not importable)', { kty: 'EC', crv: 'P-256', x: good.x, kid }],
    ['the issuer key with x of 33 octets (leading zero)', { ...good, x: withLeadingZero(good.x as string) }],
  ]
  return [
    ...kinds.map(([title, jwk]): [string, { keys: unknown[] }] => [title, { keys: [jwk] }]),
    ['all of these together', { keys: kinds.map(([, jwk]) => jwk) }],
  ]
}

describe('IssuerKeys: a set without a usable key is a failed fetch', () => {
  const algorithms = ['ES256', 'RS256'] as const
  /** A guard whose fetch answers with `current.document` (the issuer's real set until changed). */
  function scripted() {
    const current: { document: unknown } = { document: issuer.publicJwks() }
    const fetch = (async () =>
      new Response(JSON.stringify(current.document), { status: 200, headers: { 'content-type': 'application/json' } })) as typeof globalThis.fetch
    return { current, ...setup({ cacheMaxAgeSeconds: 60, failureBackoffSeconds: 5, cooldownSeconds: 0 }, { fetch, algorithms: [...algorithms] }) }
  }

  it('each kind, with nothing cached: keys_unavailable (retry after the backoff), logged as "no usable signing key"', async () => {
    for (const [title, document] of unusableSets(issuer.publicJwks().keys[0]!)) {
      warn.mockReset()
      const { current, getKey, keys } = scripted()
      current.document = document
      const error = await expectUnavailable(getKey(issuer.currentKid), 5)
      expect((error.cause as Error).message, title).toBe(`${issuer.jwksUri}: no usable signing key`)
      expect(warn, title).toHaveBeenCalledWith('callsign: could not fetch issuer keys', {
        issuer: issuer.issuer,
        reason: `${issuer.jwksUri}: no usable signing key`,
      })
      expect(keys.hasKeys(issuer.issuer), title).toBe(false)
    }
  })

  it('each kind, with keys cached: the refresh that gets it fails, the cached keys keep serving (same key objects), a new kid gets keys_unavailable', async () => {
    for (const [title, document] of unusableSets(issuer.publicJwks().keys[0]!)) {
      now = NOW
      const { current, getKey, keys, resolved } = scripted()
      const key = await getKey(issuer.currentKid)
      current.document = document
      now = NOW + 61_000 // stale: refreshed in the background
      expect(await getKey(issuer.currentKid), title).toBe(key)
      await expect(keys.refresh(resolved), title).rejects.toMatchObject({ code: 'keys_unavailable' })
      expect(await getKey(issuer.currentKid), title).toBe(key)
      expect(keys.isCurrent(issuer.issuer, key), title).toBe(true)
      now = NOW + 66_000 // past the backoff: a refetch for a new kid gets the same document
      await expectUnavailable(getKey('rotated'), 5)
      expect(await getKey(issuer.currentKid), title).toBe(key)
    }
  })

  it('keeps only the usable keys of a mixed set, imported when the set is read', async () => {
    const good = issuer.publicJwks().keys[0]!
    const [, junk] = unusableSets(good).at(-1)!
    const { current, getKey } = scripted()
    current.document = { keys: [...junk.keys, good] }
    const key = await getKey(good.kid!)
    expect(key.asymmetricKeyType).toBe('ec')
    await expectNoKey(getKey(good.kid!, 'RS256'))
  })
})

describe('IssuerKeys: rotation on a quiet service', () => {
  it('cached keys older than cacheMaxAgeSeconds, the issuer rotated: the first token with the new kid waits for the refetch it starts and gets the key', async () => {
    const { getKey } = setup({ cacheMaxAgeSeconds: 600, cooldownSeconds: 30 })
    const old = await getKey(issuer.currentKid)
    const rotated = await issuer.rotateKeys()
    now = NOW + 601_000
    const key = await getKey(rotated)
    expect(key).not.toBe(old)
    expect(issuer.requestCount(JWKS_PATH)).toBe(2)
    expect(await getKey(rotated)).toBe(key)
    expect(issuer.requestCount(JWKS_PATH)).toBe(2)
  })

  it('concurrent first tokens with the new kid share one refetch', async () => {
    const { getKey } = setup({ cacheMaxAgeSeconds: 600 })
    await getKey(issuer.currentKid)
    const rotated = await issuer.rotateKeys()
    now = NOW + 601_000
    issuer.setLatency(100)
    const keys = await Promise.all(Array.from({ length: 10 }, () => getKey(rotated)))
    expect(new Set(keys).size).toBe(1)
    expect(issuer.requestCount(JWKS_PATH)).toBe(2)
  })

  it('an unknown kid within the cooldown waits for a refetch in flight from another request (fresh keys, no background refresh)', async () => {
    const { getKey } = setup({ cacheMaxAgeSeconds: 600, cooldownSeconds: 30 })
    await getKey(issuer.currentKid)
    const rotated = await issuer.rotateKeys()
    now = NOW + 30_000
    issuer.setLatency(100)
    const other = getKey('unknown-to-everyone') // past the cooldown: starts the refetch
    const waiting = getKey(rotated) // within the cooldown of that refetch: waits for it
    await expectNoKey(other)
    await expect(waiting).resolves.toMatchObject({ type: 'public' })
    expect(issuer.requestCount(JWKS_PATH)).toBe(2)
    await expectNoKey(getKey('another-unknown')) // nothing in flight, within the cooldown: no fetch
    expect(issuer.requestCount(JWKS_PATH)).toBe(2)
  })

  it('a refetch in flight that fails gives keys_unavailable to the unknown kid waiting for it; known kids keep being served', async () => {
    const { getKey } = setup({ cacheMaxAgeSeconds: 600, cooldownSeconds: 30, failureBackoffSeconds: 5 })
    const key = await getKey(issuer.currentKid)
    const rotated = await issuer.rotateKeys()
    now = NOW + 601_000
    issuer.setOutage('down')
    await expectUnavailable(getKey(rotated), 5)
    expect(await getKey(issuer.publicJwks().keys[0]!.kid!)).toBe(key)
  })

  it('the JWKS endpoint hanging: the waiting request is answered keys_unavailable once timeoutSeconds expire, never left hanging', async () => {
    const { getKey } = setup({ cacheMaxAgeSeconds: 600, timeoutSeconds: 0.3, failureBackoffSeconds: 5 })
    const key = await getKey(issuer.currentKid)
    const first = issuer.currentKid
    const rotated = await issuer.rotateKeys()
    now = NOW + 601_000
    issuer.setOutage('hang')
    const error = await expectUnavailable(getKey(rotated), 5)
    expect((error.cause as Error).message).toBe(`${issuer.jwksUri}: timed out`)
    expect(await getKey(first)).toBe(key) // stale keys still serve
  })
})

describe('IssuerKeys: local keys', () => {
  const local = (jwks: unknown, algorithms?: string[]) =>
    resolveConfig({
      issuers: [{ issuer: 'spiffe://example.org/ns/batch/sa/worker', audience: 'orders', typ: 'jwt', jwks, ...(algorithms ? { algorithms } : {}) }],
      logger: { warn },
    } as CallsignOptions)

  it.each<[string, () => unknown, string[] | undefined]>([
    ['only an RSA 1024 key', () => ({ keys: [publicJwkOf('rsa', { modulusLength: 1024 })] }), undefined],
    ['only an Ed25519 key when ES256 alone is allowed', () => ({ keys: [publicJwkOf('ed25519')] }), ['ES256']],
    [
      'only a P-256 key with x of 33 octets',
      () => {
        const jwk = publicJwkOf('ec')
        return { keys: [{ ...jwk, x: withLeadingZero(jwk.x!) }] }
      },
      undefined,
    ],
    ['only a symmetric key', () => ({ keys: [{ kty: 'oct', k: 'c2VjcmV0' }] }), undefined],
  ])('at startup, %s: a TypeError naming issuers[0].jwks, not a fetch failure', (_case, document, algorithms) => {
    const config = local(document(), algorithms)
    expect(() => new IssuerKeys(config)).toThrow(TypeError)
    expect(() => new IssuerKeys(config)).toThrow(/^Callsign: "issuers\[0\]\.jwks" must hold at least one public key usable with the issuer's algorithms \(/)
  })

  it('a key file rewritten with no usable key keeps the previous keys (logged)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'callsign-jwks-'))
    try {
      const file = join(dir, 'keys.json')
      const good: Record<string, string> = { ...publicJwkOf('ec'), kid: 'k1' }
      await writeFile(file, JSON.stringify({ keys: [good] }))
      const config = resolveConfig({ issuers: { issuer: 'worker', audience: 'orders', typ: 'jwt', jwks: { path: file, pollSeconds: 0.05 } }, logger: { warn } })
      const keys = new IssuerKeys(config)
      const resolved = config.issuers.get('worker')!
      const key = await keys.getKey(resolved, { alg: 'ES256', kid: 'k1' })
      const unusable = [
        { ...good, x: withLeadingZero(good.x!) },
        { ...publicJwkOf('rsa', { modulusLength: 1024 }), kid: 'k2' },
      ]
      // Rewritten until the watcher notices (a write racing its first read would go unseen).
      let round = 0
      await vi.waitFor(
        async () => {
          await writeFile(file, JSON.stringify({ keys: unusable, round: round++ }))
          expect(warn).toHaveBeenCalledWith('callsign: could not reload local issuer keys; keeping the previous ones', {
            issuer: 'worker',
            reason: `file://${file}: no usable signing key`,
          })
        },
        { timeout: 5000, interval: 100 },
      )
      expect(await keys.getKey(resolved, { alg: 'ES256', kid: 'k1' })).toBe(key)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('a key file rewritten with no usable key is logged once, not at every poll; close() stops following the file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'callsign-jwks-'))
    try {
      const file = join(dir, 'keys.json')
      const good: Record<string, string> = { ...publicJwkOf('ec'), kid: 'k1' }
      await writeFile(file, JSON.stringify({ keys: [good] }))
      const config = resolveConfig({ issuers: { issuer: 'batch', audience: 'orders', typ: 'jwt', jwks: { path: file, pollSeconds: 0.02 } }, logger: { warn } })
      const keys = new IssuerKeys(config)
      const reports = () => warn.mock.calls.filter(([, details]) => (details as { issuer?: string }).issuer === 'batch')
      // A good rotation first: the file is being followed.
      await writeFile(file, JSON.stringify({ keys: [{ ...publicJwkOf('ec'), kid: 'k3' }] }))
      await vi.waitFor(() => keys.getKey(config.issuers.get('batch')!, { alg: 'ES256', kid: 'k3' }), { timeout: 5000, interval: 10 })
      await writeFile(file, JSON.stringify({ keys: [{ ...publicJwkOf('rsa', { modulusLength: 1024 }), kid: 'k2' }] }))
      await vi.waitFor(() => expect(reports()).toHaveLength(1), { timeout: 5000, interval: 10 })
      // Ten more polls of the same file: nothing new to report.
      await new Promise((resolve) => setTimeout(resolve, 200))
      expect(reports()).toEqual([
        ['callsign: could not reload local issuer keys; keeping the previous ones', { issuer: 'batch', reason: `file://${file}: no usable signing key` }],
      ])
      keys.close()
      keys.close()
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
