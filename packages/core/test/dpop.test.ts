import { createHash, generateKeyPair, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto'
import { promisify } from 'node:util'
import { createDpopKey, createDpopProof, type DpopKey, type DpopProofOptions } from '@callsign/testing'
import { calculateJwkThumbprint, CompactSign, type CryptoKey, type JWK } from 'jose'
import { beforeAll, describe, expect, it } from 'vitest'
import { MAX_PROOF_LENGTH, normalizeHtu, verifyDpopProof, type DpopCheckConfig, type DpopExpectation } from '../src/dpop.js'
import { DpopNonces } from '../src/dpop-nonce.js'
import { SUPPORTED_ALGORITHMS } from '../src/options.js'
import { MemoryReplayStore, type ReplayStore } from '../src/replay-store.js'
import { refusal } from './refusal.js'

const NOW_S = 1_900_000_000
const NOW = NOW_S * 1000
const URL = 'https://api.example/orders'
const TOKEN = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln'
const MAX_AGE = 60
const TOLERANCE = 5
const NONCE_SECRET = Buffer.alloc(32, 7)

let es256: DpopKey
let es384: DpopKey
let eddsa: DpopKey
let ps256: DpopKey
let rs256: DpopKey
let other: DpopKey

beforeAll(async () => {
  ;[es256, es384, eddsa, ps256, rs256, other] = await Promise.all([
    createDpopKey('ES256'),
    createDpopKey('ES384'),
    createDpopKey('EdDSA'),
    createDpopKey('PS256'),
    createDpopKey('RS256'),
    createDpopKey('ES256'),
  ])
})

/** A store that counts the calls it gets and answers fresh. */
class SpyStore implements ReplayStore {
  calls: Array<[string, number]> = []
  markUsed(key: string, ttlSeconds: number): boolean {
    this.calls.push([key, ttlSeconds])
    return true
  }
}

const checkConfig = (overrides: Partial<DpopCheckConfig> = {}): DpopCheckConfig => ({
  algorithms: new Set<string>(SUPPORTED_ALGORITHMS),
  maxProofAgeSeconds: MAX_AGE,
  clockToleranceSeconds: TOLERANCE,
  now: () => NOW,
  nonces: undefined,
  replayStore: new MemoryReplayStore(),
  replayStoreTimeoutMs: 500,
  ...overrides,
})

const expectation = (key: DpopKey, overrides: Partial<DpopExpectation> = {}): DpopExpectation => ({
  method: 'GET',
  htu: URL,
  accessToken: TOKEN,
  jkt: key.jkt,
  ...overrides,
})

const proofFor = (key: DpopKey, options: Partial<DpopProofOptions> = {}): Promise<string> =>
  createDpopProof(key, { method: 'GET', url: URL, accessToken: TOKEN, iat: NOW_S, ...options })

/** A proof whose claims carry `padding` characters of filler. */
const paddedProof = (key: DpopKey, padding: number): Promise<string> => proofFor(key, { extraClaims: { pad: 'x'.repeat(padding) } })

describe('verifyDpopProof: valid proofs', () => {
  it.each(['ES256', 'ES384', 'EdDSA', 'PS256', 'RS256'] as const)('accepts a valid %s proof and records it once', async (alg) => {
    const key = { ES256: es256, ES384: es384, EdDSA: eddsa, PS256: ps256, RS256: rs256 }[alg]
    const store = new SpyStore()
    await expect(verifyDpopProof(await proofFor(key), expectation(key), checkConfig({ replayStore: store }))).resolves.toBeUndefined()
    expect(store.calls).toHaveLength(1)
  })

  it.each<[string, Partial<DpopProofOptions>]>([
    ['an htu with a query and a fragment (ignored, RFC 9449 §4.3)', { htu: `${URL}?page=2#top` }],
    ['an htu with upper-case scheme and host and the default port', { htu: 'HTTPS://API.Example:443/orders' }],
    ['a typ in another case (media types are case-insensitive)', { typ: 'DPoP+JWT' }],
    ['an iat exactly maxProofAgeSeconds + clockTolerance old', { iat: NOW_S - MAX_AGE - TOLERANCE }],
    ['an iat exactly clockTolerance in the future', { iat: NOW_S + TOLERANCE }],
    ['a fractional iat', { iat: NOW_S - 0.5 }],
    ['a jti of 256 characters', { jti: 'j'.repeat(256) }],
    ['extra header members and claims', { extraHeader: { kid: 'ignored' }, extraClaims: { client_note: 'x' } }],
  ])('accepts %s', async (_case, options) => {
    await expect(verifyDpopProof(await proofFor(es256, options), expectation(es256), checkConfig())).resolves.toBeUndefined()
  })

  it('accepts a proof just within the 8 KiB limit', async () => {
    const base = (await paddedProof(es256, 0)).length
    // Each 3 claim characters add 4 base64url characters.
    const proof = await paddedProof(es256, Math.floor(((MAX_PROOF_LENGTH - base) * 3) / 4) - 3)
    expect(proof.length).toBeLessThanOrEqual(MAX_PROOF_LENGTH)
    expect(proof.length).toBeGreaterThan(MAX_PROOF_LENGTH - 8)
    await expect(verifyDpopProof(proof, expectation(es256), checkConfig())).resolves.toBeUndefined()
  })

  it('accepts a proof carrying a nonce when no nonces are configured', async () => {
    await expect(verifyDpopProof(await proofFor(es256, { nonce: 'anything' }), expectation(es256), checkConfig())).resolves.toBeUndefined()
  })

  it("reuses a client's checked proof header, but applies each guard's algorithm allowlist every time", async () => {
    const [first, second, third] = [await proofFor(es256), await proofFor(es256), await proofFor(es256)]
    expect(first.split('.')[0]).toBe(second.split('.')[0])
    await expect(verifyDpopProof(first, expectation(es256), checkConfig())).resolves.toBeUndefined()
    const strict = checkConfig({ algorithms: new Set(['EdDSA']) })
    expect((await refusal(verifyDpopProof(second, expectation(es256), strict))).message).toBe('DPoP proof algorithm not allowed')
    await expect(verifyDpopProof(third, expectation(es256), checkConfig())).resolves.toBeUndefined()
    // The signature is still checked per proof: a cached header with another proof's signature fails.
    const [h, p] = second.split('.')
    expect((await refusal(verifyDpopProof(`${h}.${p}.${first.split('.')[2]}`, expectation(es256), checkConfig()))).message).toBe('DPoP proof signature invalid')
  })
})

describe('verifyDpopProof: RFC 9449 §4.3 violations', () => {
  const signedNonJson = async (): Promise<string> =>
    new CompactSign(new TextEncoder().encode('not json')).setProtectedHeader({ typ: 'dpop+jwt', alg: 'ES256', jwk: es256.publicJwk }).sign(es256.privateKey)

  it.each<[string, () => Promise<string>, string, Partial<DpopCheckConfig>?]>([
    // one JWS
    ['an empty proof', async () => '', 'malformed DPoP proof'],
    ['a proof of two parts', async () => 'eyJhIjoxfQ.eyJhIjoxfQ', 'malformed DPoP proof'],
    ['a proof of four parts', async () => `${await proofFor(es256)}.x`, 'malformed DPoP proof'],
    ['a proof of five parts (a JWE)', async () => 'a.b.c.d.e', 'malformed DPoP proof'],
    ['an empty part', async () => 'eyJhIjoxfQ..c2ln', 'malformed DPoP proof'],
    ['an unsecured proof (alg none, empty signature)', () => proofFor(es256, { unsigned: true }), 'malformed DPoP proof'],
    ['a header that is not base64url JSON', async () => '!!!.eyJhIjoxfQ.c2ln', 'malformed DPoP proof'],
    ['a signed payload that is not JSON', signedNonJson, 'malformed DPoP proof'],
    ['a proof over 8 KiB', () => paddedProof(es256, MAX_PROOF_LENGTH), 'malformed DPoP proof'],
    ['a proof without iat', () => proofFor(es256, { extraClaims: { iat: undefined } }), 'malformed DPoP proof'],
    ['a proof with a string iat', () => proofFor(es256, { extraClaims: { iat: String(NOW_S) } }), 'malformed DPoP proof iat'],
    ['a proof without htm', () => proofFor(es256, { extraClaims: { htm: undefined } }), 'malformed DPoP proof'],
    ['a proof without htu', () => proofFor(es256, { extraClaims: { htu: undefined } }), 'malformed DPoP proof'],
    ['a proof without jti', () => proofFor(es256, { jti: null }), 'malformed DPoP proof'],
    ['a proof with an exp in the past', () => proofFor(es256, { extraClaims: { exp: NOW_S - 3600 } }), 'malformed DPoP proof'],
    // typ
    ['a proof without typ', () => proofFor(es256, { typ: null }), 'DPoP proof typ must be dpop+jwt'],
    ['typ JWT', () => proofFor(es256, { typ: 'JWT' }), 'DPoP proof typ must be dpop+jwt'],
    ['typ at+jwt (an access token)', () => proofFor(es256, { typ: 'at+jwt' }), 'DPoP proof typ must be dpop+jwt'],
    ['a numeric typ', () => proofFor(es256, { extraHeader: { typ: 1 } }), 'DPoP proof typ must be dpop+jwt'],
    // alg
    ['alg none with a signature', () => proofFor(es256, { alg: 'none' }), 'DPoP proof algorithm not allowed'],
    ['alg HS256', () => proofFor(es256, { alg: 'HS256' }), 'DPoP proof algorithm not allowed'],
    ['alg in lower case', () => proofFor(es256, { alg: 'es256' }), 'DPoP proof algorithm not allowed'],
    ['no alg', () => proofFor(es256, { extraHeader: { alg: undefined } }), 'DPoP proof algorithm not allowed'],
    ['a valid alg that is not configured', () => proofFor(eddsa), 'DPoP proof algorithm not allowed', { algorithms: new Set(['ES256', 'PS256']) }],
    // jwk
    ['no jwk', () => proofFor(es256, { omitJwk: true }), 'DPoP proof has no jwk'],
    ['a string jwk', () => proofFor(es256, { jwk: 'key' as unknown as Record<string, unknown> }), 'DPoP proof has no jwk'],
    ['a jwk array', () => proofFor(es256, { extraHeader: { jwk: [es256.publicJwk] } }), 'DPoP proof has no jwk'],
    ['a null jwk', () => proofFor(es256, { extraHeader: { jwk: null } }), 'DPoP proof has no jwk'],
    ['a private EC jwk', () => proofFor(es256, { includePrivateKey: true }), 'DPoP proof jwk contains a private key'],
    ['a private RSA jwk', () => proofFor(rs256, { includePrivateKey: true }), 'DPoP proof jwk contains a private key'],
    ['a symmetric jwk', () => proofFor(es256, { jwk: { kty: 'oct', k: 'c2VjcmV0' } }), 'DPoP proof jwk contains a private key'],
    ['a public jwk with a stray d member', () => proofFor(es256, { jwk: { ...es256.publicJwk, d: '' } }), 'DPoP proof jwk contains a private key'],
    // signature
    ['a tampered payload', () => proofFor(es256, { tamper: true }), 'DPoP proof signature invalid'],
    ['a proof signed by another key than its jwk', () => proofFor(es256, { signWith: other }), 'DPoP proof signature invalid'],
    ['a jwk of another key', () => proofFor(es256, { jwk: other.publicJwk }), 'DPoP proof signature invalid'],
    // htm
    ['htm POST for a GET', () => proofFor(es256, { htm: 'POST' }), 'DPoP proof htm does not match the request method'],
    ['htm in lower case', () => proofFor(es256, { htm: 'get' }), 'DPoP proof htm does not match the request method'],
    // htu
    ['htu of another path', () => proofFor(es256, { htu: `${URL}/1` }), 'DPoP proof htu does not match the request URI'],
    ['htu with a trailing slash', () => proofFor(es256, { htu: `${URL}/` }), 'DPoP proof htu does not match the request URI'],
    ['htu of another host', () => proofFor(es256, { htu: 'https://evil.example/orders' }), 'DPoP proof htu does not match the request URI'],
    ['htu over http', () => proofFor(es256, { htu: 'http://api.example/orders' }), 'DPoP proof htu does not match the request URI'],
    ['htu with another port', () => proofFor(es256, { htu: 'https://api.example:8443/orders' }), 'DPoP proof htu does not match the request URI'],
    ['a relative htu', () => proofFor(es256, { htu: '/orders' }), 'DPoP proof htu does not match the request URI'],
    ['htu with userinfo', () => proofFor(es256, { htu: 'https://u@api.example/orders' }), 'DPoP proof htu does not match the request URI'],
    ['a numeric htu', () => proofFor(es256, { extraClaims: { htu: 1 } }), 'DPoP proof htu does not match the request URI'],
    // iat
    ['an iat one second past maxProofAgeSeconds + clockTolerance', () => proofFor(es256, { iat: NOW_S - MAX_AGE - TOLERANCE - 1 }), 'DPoP proof is too old'],
    ['an iat ten minutes old', () => proofFor(es256, { iat: NOW_S - 600 }), 'DPoP proof is too old'],
    ['an iat one second beyond clockTolerance in the future', () => proofFor(es256, { iat: NOW_S + TOLERANCE + 1 }), 'DPoP proof is issued in the future'],
    // jti
    ['an empty jti', () => proofFor(es256, { jti: '' }), 'malformed DPoP proof jti'],
    ['a jti of 257 characters', () => proofFor(es256, { jti: 'j'.repeat(257) }), 'malformed DPoP proof jti'],
    ['a numeric jti', () => proofFor(es256, { extraClaims: { jti: 1 } }), 'malformed DPoP proof jti'],
    // ath
    ['a proof without ath', () => proofFor(es256, { ath: null }), 'DPoP proof ath does not match the access token'],
    [
      'an ath of another token',
      () => proofFor(es256, { ath: createHash('sha256').update(`${TOKEN}x`).digest('base64url') }),
      'DPoP proof ath does not match the access token',
    ],
    ['an ath in hex', () => proofFor(es256, { ath: createHash('sha256').update(TOKEN).digest('hex') }), 'DPoP proof ath does not match the access token'],
  ])('refuses %s with invalid_dpop_proof, before the replay store', async (_case, build, message, config = {}) => {
    const store = new SpyStore()
    const error = await refusal(verifyDpopProof(await build(), expectation(es256), checkConfig({ ...config, replayStore: store })))
    expect({ code: error.code, message: error.message, status: error.status }).toEqual({ code: 'invalid_dpop_proof', message, status: 401 })
    expect(store.calls).toHaveLength(0)
  })

  it('refuses an alg header that does not fit the jwk', async () => {
    const error = await refusal(verifyDpopProof(await proofFor(es256, { alg: 'ES384' }), expectation(es256), checkConfig()))
    expect(error.code).toBe('invalid_dpop_proof')
  })

  it('refuses a request method other than the proof htm', async () => {
    const error = await refusal(verifyDpopProof(await proofFor(es256), expectation(es256, { method: 'DELETE' }), checkConfig()))
    expect([error.code, error.message]).toEqual(['invalid_dpop_proof', 'DPoP proof htm does not match the request method'])
  })

  it('refuses a proof by another key than the token cnf.jkt with invalid_token', async () => {
    const store = new SpyStore()
    const error = await refusal(verifyDpopProof(await proofFor(other), expectation(es256), checkConfig({ replayStore: store })))
    expect({ code: error.code, message: error.message }).toEqual({ code: 'invalid_token', message: 'token is bound to another DPoP key' })
    expect(store.calls).toHaveLength(0)
  })

  it('checks the signature before the token binding', async () => {
    const error = await refusal(verifyDpopProof(await proofFor(other, { tamper: true }), expectation(es256), checkConfig()))
    expect([error.code, error.message]).toEqual(['invalid_dpop_proof', 'DPoP proof signature invalid'])
  })
})

/** A DPoP key from a node:crypto key pair (jose signs with a KeyObject as with a CryptoKey). */
async function dpopKeyOf(pair: { privateKey: KeyObject; publicKey: KeyObject }, alg: DpopKey['alg']): Promise<DpopKey> {
  const publicJwk = pair.publicKey.export({ format: 'jwk' }) as JWK
  return {
    alg,
    privateKey: pair.privateKey as unknown as CryptoKey,
    publicKey: pair.publicKey as unknown as CryptoKey,
    publicJwk,
    jkt: await calculateJwkThumbprint(publicJwk),
  }
}

describe('verifyDpopProof: one proof key, one jwk encoding, one thumbprint', () => {
  const b64 = (value: unknown): Buffer => Buffer.from(value as string, 'base64url')
  const withLeadingZero = (value: unknown): string => Buffer.concat([Buffer.alloc(1), b64(value)]).toString('base64url')
  const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
  /** The same octets, the unused low bits of the last character set. */
  const nonCanonical = (value: unknown): string => (value as string).slice(0, -1) + ALPHABET[ALPHABET.indexOf((value as string).at(-1)!) + 1]!
  let zeroX: DpopKey
  let rsa4096: DpopKey

  beforeAll(async () => {
    // A P-256 key whose x starts with a zero octet: its 31-octet spelling is the same key.
    let pair = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    while (b64((pair.publicKey.export({ format: 'jwk' }) as JWK).x)[0] !== 0) pair = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    zeroX = await dpopKeyOf(pair, 'ES256')
    rsa4096 = await dpopKeyOf(await promisify(generateKeyPair)('rsa', { modulusLength: 4096 }), 'PS256')
  })

  /**
   * Each is another spelling of the signing key's own public key (or, for RSA 8192, a key too
   * costly to verify with), and the token is bound to that spelling's thumbprint: before the
   * encoding check these proofs passed, each a new thumbprint (and replay key) for one key.
   */
  it.each<[string, () => [DpopKey, Record<string, unknown>]]>([
    ['a P-256 x of 33 octets (leading zero)', () => [es256, { ...es256.publicJwk, x: withLeadingZero(es256.publicJwk.x) }]],
    ['a P-256 y of 33 octets (leading zero)', () => [es256, { ...es256.publicJwk, y: withLeadingZero(es256.publicJwk.y) }]],
    ['a P-256 x of 31 octets (its leading zero left out)', () => [zeroX, { ...zeroX.publicJwk, x: b64(zeroX.publicJwk.x).subarray(1).toString('base64url') }]],
    ['a P-384 x of 49 octets', () => [es384, { ...es384.publicJwk, x: withLeadingZero(es384.publicJwk.x) }]],
    ['a padded P-256 x', () => [es256, { ...es256.publicJwk, x: `${es256.publicJwk.x}=` }]],
    ['a P-256 x with a non-canonical last character', () => [es256, { ...es256.publicJwk, x: nonCanonical(es256.publicJwk.x) }]],
    ['a padded Ed25519 x', () => [eddsa, { ...eddsa.publicJwk, x: `${eddsa.publicJwk.x}=` }]],
    ['an Ed25519 x with a non-canonical last character', () => [eddsa, { ...eddsa.publicJwk, x: nonCanonical(eddsa.publicJwk.x) }]],
    ['an Ed25519 x of 33 octets', () => [eddsa, { ...eddsa.publicJwk, x: withLeadingZero(eddsa.publicJwk.x) }]],
    ['an Ed25519 x of 31 octets', () => [eddsa, { ...eddsa.publicJwk, x: b64(eddsa.publicJwk.x).subarray(1).toString('base64url') }]],
    ['an RSA n with a leading zero octet', () => [rs256, { ...rs256.publicJwk, n: withLeadingZero(rs256.publicJwk.n) }]],
    ['an RSA e with a leading zero octet', () => [ps256, { ...ps256.publicJwk, e: withLeadingZero(ps256.publicJwk.e) }]],
    [
      'an RSA key of 8192 bits (over the 4096-bit bound)',
      () => {
        const n = randomBytes(1024)
        n[0]! |= 0x80
        n[1023]! |= 1
        return [ps256, { kty: 'RSA', n: n.toString('base64url'), e: 'AQAB' }]
      },
    ],
  ])('refuses %s: invalid_dpop_proof "malformed DPoP proof jwk", before the replay store', async (_case, variant) => {
    const [key, jwk] = variant()
    const store = new SpyStore()
    const jkt = await calculateJwkThumbprint(jwk as JWK)
    const error = await refusal(verifyDpopProof(await proofFor(key, { jwk }), expectation(key, { jkt }), checkConfig({ replayStore: store })))
    expect({ code: error.code, message: error.message, status: error.status }).toEqual({
      code: 'invalid_dpop_proof',
      message: 'malformed DPoP proof jwk',
      status: 401,
    })
    expect(store.calls).toHaveLength(0)
  })

  it('accepts the canonical spellings: a P-256 x starting with a zero octet in full, and an RSA key of 4096 bits', async () => {
    for (const key of [zeroX, rsa4096]) await expect(verifyDpopProof(await proofFor(key), expectation(key), checkConfig())).resolves.toBeUndefined()
  })
})

describe('verifyDpopProof: server nonces', () => {
  const WINDOW = 300
  const nonces = (now = NOW, secret = NONCE_SECRET) => new DpopNonces(secret, WINDOW, () => now)

  it('accepts the current nonce and one of the previous window', async () => {
    const config = checkConfig({ nonces: nonces() })
    await expect(verifyDpopProof(await proofFor(es256, { nonce: nonces().current() }), expectation(es256), config)).resolves.toBeUndefined()
    const previous = nonces(NOW - WINDOW * 1000).current()
    await expect(verifyDpopProof(await proofFor(es256, { nonce: previous }), expectation(es256), config)).resolves.toBeUndefined()
  })

  it.each<[string, () => Partial<DpopProofOptions>]>([
    ['no nonce', () => ({})],
    ['a nonce the server never issued', () => ({ nonce: 'abc.def' })],
    ['a nonce under another secret', () => ({ nonce: nonces(NOW, Buffer.alloc(32, 8)).current() })],
    ['a nonce two windows old', () => ({ nonce: nonces(NOW - 2 * WINDOW * 1000).current() })],
    ['a numeric nonce', () => ({ extraClaims: { nonce: 1 } })],
  ])('asks for a fresh nonce (use_dpop_nonce) for %s, before the replay store', async (_case, options) => {
    const store = new SpyStore()
    const error = await refusal(verifyDpopProof(await proofFor(es256, options()), expectation(es256), checkConfig({ nonces: nonces(), replayStore: store })))
    expect({ code: error.code, message: error.message, status: error.status }).toEqual({
      code: 'use_dpop_nonce',
      message: 'a fresh DPoP nonce is required',
      status: 401,
    })
    expect(store.calls).toHaveLength(0)
  })

  it('checks everything else before the nonce', async () => {
    const config = checkConfig({ nonces: nonces() })
    const badSignature = await refusal(verifyDpopProof(await proofFor(es256, { tamper: true }), expectation(es256), config))
    expect(badSignature.message).toBe('DPoP proof signature invalid')
    const otherKey = await refusal(verifyDpopProof(await proofFor(other), expectation(es256), config))
    expect(otherKey.code).toBe('invalid_token')
  })
})

describe('verifyDpopProof: replay', () => {
  it('refuses the second use of a proof', async () => {
    const config = checkConfig()
    const proof = await proofFor(es256)
    await verifyDpopProof(proof, expectation(es256), config)
    const error = await refusal(verifyDpopProof(proof, expectation(es256), config))
    expect({ code: error.code, message: error.message }).toEqual({ code: 'invalid_dpop_proof', message: 'DPoP proof has already been used' })
  })

  it('refuses a new proof reusing a jti of the same key', async () => {
    const config = checkConfig()
    await verifyDpopProof(await proofFor(es256, { jti: 'same' }), expectation(es256), config)
    const error = await refusal(verifyDpopProof(await proofFor(es256, { jti: 'same', iat: NOW_S - 1 }), expectation(es256), config))
    expect(error.message).toBe('DPoP proof has already been used')
  })

  it('keeps jti values of different keys apart', async () => {
    const config = checkConfig()
    await verifyDpopProof(await proofFor(es256, { jti: 'same' }), expectation(es256), config)
    await expect(verifyDpopProof(await proofFor(other, { jti: 'same' }), expectation(other), config)).resolves.toBeUndefined()
  })

  it('refuses when an asynchronous store says the proof was seen', async () => {
    const store: ReplayStore = { markUsed: async () => false }
    const error = await refusal(verifyDpopProof(await proofFor(es256), expectation(es256), checkConfig({ replayStore: store })))
    expect([error.code, error.message]).toEqual(['invalid_dpop_proof', 'DPoP proof has already been used'])
  })

  it('stores a hash of key and jti for maxProofAgeSeconds + 2 x clockTolerance', async () => {
    const store = new SpyStore()
    await verifyDpopProof(await proofFor(es256, { jti: 'visible-jti' }), expectation(es256), checkConfig({ replayStore: store }))
    expect(store.calls).toHaveLength(1)
    const [key, ttl] = store.calls[0]!
    expect(key).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(key).not.toContain('visible-jti')
    expect(ttl).toBe(MAX_AGE + 2 * TOLERANCE)
  })

  it('accepts a store answering within replayStoreTimeoutMs', async () => {
    const store: ReplayStore = { markUsed: () => new Promise((resolve) => setTimeout(() => resolve(true), 10)) }
    await expect(verifyDpopProof(await proofFor(es256), expectation(es256), checkConfig({ replayStore: store }))).resolves.toBeUndefined()
  })

  it.each<[string, ReplayStore, RegExp | string]>([
    ['rejects', { markUsed: () => Promise.reject(new Error('connection refused')) }, 'connection refused'],
    [
      'throws synchronously',
      {
        markUsed: () => {
          throw new Error('not connected')
        },
      },
      'not connected',
    ],
    ['never answers', { markUsed: () => new Promise<boolean>(() => {}) }, 'replay store did not answer within 50 ms'],
  ])('fails closed with replay_store_unavailable (503) when the store %s', async (_case, store, cause) => {
    const started = performance.now()
    const error = await refusal(verifyDpopProof(await proofFor(es256), expectation(es256), checkConfig({ replayStore: store, replayStoreTimeoutMs: 50 })))
    expect({ code: error.code, message: error.message, status: error.status, retryAfterSeconds: error.retryAfterSeconds }).toEqual({
      code: 'replay_store_unavailable',
      message: 'DPoP replay protection is temporarily unavailable',
      status: 503,
      retryAfterSeconds: 1,
    })
    expect((error.cause as Error).message).toBe(cause)
    expect(performance.now() - started).toBeLessThan(2000)
  })

  it('waits replayStoreTimeoutMs for a hanging store', async () => {
    const proof = await proofFor(es256)
    const started = performance.now()
    const error = await refusal(
      verifyDpopProof(proof, expectation(es256), checkConfig({ replayStore: { markUsed: () => new Promise<boolean>(() => {}) }, replayStoreTimeoutMs: 120 })),
    )
    expect(error.code).toBe('replay_store_unavailable')
    expect(performance.now() - started).toBeGreaterThanOrEqual(110)
  })
})

describe('normalizeHtu', () => {
  it.each<[string, string | undefined]>([
    ['https://api.example/orders', 'https://api.example/orders'],
    // case of scheme and host (RFC 3986 §6.2.2.1); the path keeps its case
    ['HTTPS://API.Example.COM/Orders', 'https://api.example.com/Orders'],
    ['HtTp://LOCALHOST:8080/x', 'http://localhost:8080/x'],
    // default ports removed (§6.2.3), others kept
    ['https://api.example:443/orders', 'https://api.example/orders'],
    ['http://api.example:80/orders', 'http://api.example/orders'],
    ['https://api.example:80/orders', 'https://api.example:80/orders'],
    ['http://api.example:443/orders', 'http://api.example:443/orders'],
    ['https://api.example:8443/orders', 'https://api.example:8443/orders'],
    ['https://[::1]:443/x', 'https://[::1]/x'],
    // query and fragment dropped
    ['https://api.example/orders?page=2', 'https://api.example/orders'],
    ['https://api.example/orders#top', 'https://api.example/orders'],
    ['https://api.example/orders?page=2#top', 'https://api.example/orders'],
    // empty path
    ['https://api.example', 'https://api.example/'],
    ['https://api.example?x=1', 'https://api.example/'],
    ['https://api.example:443', 'https://api.example/'],
    // dot segments removed (§6.2.2.3)
    ['https://api.example/a/../orders', 'https://api.example/orders'],
    // percent-encoding preserved as sent
    ['https://api.example/a%2Fb', 'https://api.example/a%2Fb'],
    ['https://api.example/a%2fb', 'https://api.example/a%2Fb'],
    ['https://api.example/caf%C3%A9', 'https://api.example/caf%C3%A9'],
    ['https://api.example/%7Euser', 'https://api.example/~user'],
    // not an absolute http(s) URI without userinfo
    ['https://user@api.example/orders', undefined],
    ['https://user:pass@api.example/orders', undefined],
    ['ftp://api.example/orders', undefined],
    ['wss://api.example/orders', undefined],
    ['file:///etc/passwd', undefined],
    ['mailto:a@api.example', undefined],
    ['/orders', undefined],
    ['api.example/orders', undefined],
    ['', undefined],
  ])('normalizes %j to %j', (input, expected) => {
    expect(normalizeHtu(input)).toBe(expected)
  })
})
