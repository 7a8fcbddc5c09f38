// The claim rules every token must pass, JWT and introspected alike (one implementation), and the
// one-spelling rule of JWS segments: confirmation methods Callsign does not enforce (RFC 7800 §3),
// single-signer issuers (the caller is the signer), time, age and lifetime of introspected tokens,
// and canonical base64url in tokens, DPoP proofs and signed introspection answers.
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey, type JWK } from 'jose'
import { startTestIssuer, type TestIssuer } from '@callsign/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { verifyAccessToken } from '../src/access-token.js'
import { mapAnswer } from '../src/introspection.js'
import { isCanonicalBase64url, jwsSegments } from '../src/internal/jws.js'
import { IssuerKeys } from '../src/jwks.js'
import { resolveConfig, type CallsignOptions, type IssuerOptions } from '../src/options.js'
import { refusal } from './refusal.js'
import { respell, spelledToken } from '../../../test/support/attacks.js'

const NOW_S = 1_900_000_000
const NOW = NOW_S * 1000
const AUD = 'https://orders.example'
const WEB = 'spiffe://example.org/ns/web/sa/frontend'
const WORKER = 'spiffe://example.org/ns/batch/sa/worker'
const REPORT = 'spiffe://example.org/ns/batch/sa/report'

let issuer: TestIssuer
beforeAll(async () => {
  issuer = await startTestIssuer()
})
afterAll(async () => {
  await issuer?.close()
})

function setup(options: Partial<CallsignOptions> = {}, issuerOptions: Partial<IssuerOptions> = {}) {
  const config = resolveConfig({
    issuers: { issuer: issuer.issuer, audience: AUD, jwksUri: issuer.jwksUri, ...issuerOptions },
    now: () => NOW,
    logger: { warn() {} },
    ...options,
  })
  const keys = new IssuerKeys(config)
  return { config, verify: (token: string) => verifyAccessToken(token, config, keys) }
}
const sign = (claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}): Promise<string> =>
  issuer.signAccessToken({ sub: WEB, client_id: WEB, ...claims }, { audience: AUD, issuedAt: NOW_S, header })

async function expectInvalid(promise: Promise<unknown>, message: string): Promise<void> {
  const error = await refusal(promise)
  expect({ code: error.code, message: error.message }).toEqual({ code: 'invalid_token', message })
}

/** Confirmation members Callsign does not enforce (RFC 7800 §3.2-3.5, RFC 8705 §3 siblings). */
const UNENFORCED_CNF: Array<[string, Record<string, unknown>]> = [
  [
    'jwk (RFC 7800 §3.2)',
    { jwk: { kty: 'EC', crv: 'P-256', x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU', y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0' } },
  ],
  ['kid (RFC 7800 §3.4)', { kid: 'dpop-key-1' }],
  ['jku (RFC 7800 §3.5)', { jku: 'https://attacker.example/jwks' }],
  ['jwe (RFC 7800 §3.3)', { jwe: 'a.b.c.d.e' }],
  ['x5t (SHA-1 thumbprint)', { x5t: 'abc' }],
  ['an unknown member', { 'x5t#S512': 'abc' }],
  ['x5t#S256 next to jwk', { 'x5t#S256': 'abc', jwk: { kty: 'EC' } }],
  ['jkt next to kid', { jkt: 'abc', kid: 'k' }],
]

describe('cnf: only confirmation methods Callsign enforces', () => {
  it.each(UNENFORCED_CNF)('refuses a JWT whose cnf holds %s', async (_case, cnf) => {
    await expectInvalid(setup().verify(await sign({ cnf })), 'token is bound by a confirmation method that is not supported')
  })

  it.each<[string, unknown]>([
    ['an empty cnf', {}],
    ['an empty thumbprint', { 'x5t#S256': '' }],
    ['an empty jkt', { jkt: '' }],
    ['a numeric thumbprint', { 'x5t#S256': 1 }],
    ['a null thumbprint', { 'x5t#S256': null }],
    ['an object jkt', { jkt: {} }],
    ['an array', ['jkt']],
    ['a string', 'jkt'],
  ])('refuses a JWT with %s as malformed', async (_case, cnf) => {
    await expectInvalid(setup().verify(await sign({ cnf })), 'malformed cnf claim')
  })

  it.each<[string, Record<string, string>]>([
    ['jkt', { jkt: 'abc' }],
    ['x5t#S256', { 'x5t#S256': 'abc' }],
    ['both', { jkt: 'abc', 'x5t#S256': 'def' }],
  ])('accepts a JWT bound by %s (each method is then enforced at presentation)', async (_case, cnf) => {
    expect((await setup().verify(await sign({ cnf }))).claims.cnf).toEqual(cnf)
  })

  it.each(UNENFORCED_CNF)('refuses an introspected token whose cnf holds %s (same rule)', (_case, cnf) => {
    const { config } = setup()
    const error = catchError(() => mapAnswer({ active: true, client_id: WEB, exp: NOW_S + 60, cnf }, config.issuers.get(issuer.issuer)!, config, NOW))
    expect({ code: error.code, message: error.message }).toEqual({
      code: 'invalid_token',
      message: 'token is bound by a confirmation method that is not supported',
    })
  })

  it('refuses an introspected token with an empty cnf', () => {
    const { config } = setup()
    const error = catchError(() => mapAnswer({ active: true, client_id: WEB, cnf: {} }, config.issuers.get(issuer.issuer)!, config, NOW))
    expect(error.message).toBe('malformed cnf claim')
  })
})

describe('introspected tokens: the same time, age and lifetime rules as JWTs', () => {
  const answer = (claims: Record<string, unknown>) => ({ active: true, client_id: WEB, ...claims })
  const map = (options: Partial<CallsignOptions>, issuerOptions: Partial<IssuerOptions>, claims: Record<string, unknown>) => {
    const { config } = setup(options, issuerOptions)
    return () => mapAnswer(answer(claims), config.issuers.get(issuer.issuer)!, config, NOW)
  }

  it.each<[string, Partial<CallsignOptions>, Partial<IssuerOptions>, Record<string, unknown>, string]>([
    ['older than maxTokenAge', { maxTokenAge: 600 }, {}, { iat: NOW_S - 631, exp: NOW_S + 60 }, 'token too old'],
    ['without iat under maxTokenAge', { maxTokenAge: 600 }, {}, { exp: NOW_S + 60 }, 'malformed iat claim'],
    ['a lifetime over maxTokenLifetime', {}, { maxTokenLifetime: 300 }, { iat: NOW_S, exp: NOW_S + 301 }, 'token lifetime too long'],
    ['without iat under maxTokenLifetime', {}, { maxTokenLifetime: 300 }, { exp: NOW_S + 60 }, 'malformed iat claim'],
    ['without exp under maxTokenLifetime', {}, { maxTokenLifetime: 300 }, { iat: NOW_S }, 'token has no valid expiry'],
    ['issued in the future', {}, {}, { iat: NOW_S + 31, exp: NOW_S + 60 }, 'token issued in the future'],
    ['expired', {}, {}, { exp: NOW_S - 31 }, 'token expired'],
    ['a string exp', {}, {}, { exp: 'soon' }, 'malformed exp claim'],
  ])('refuses an answer %s', (_case, options, issuerOptions, claims, message) => {
    const error = catchError(map(options, issuerOptions, claims))
    expect({ code: error.code, message: error.message }).toEqual({ code: 'invalid_token', message })
  })

  it('accepts an answer within maxTokenAge and maxTokenLifetime, cached no longer than the age allows', () => {
    const { expiresAt } = map({ maxTokenAge: 600, clockTolerance: 0 }, { maxTokenLifetime: 900 }, { iat: NOW_S - 500, exp: NOW_S + 300 })()
    expect(expiresAt).toBe((NOW_S + 100) * 1000)
  })

  it('accepts an answer without exp when no rule needs it (RFC 7662 §2.2)', () => {
    expect(map({}, {}, {})().expiresAt).toBe(Infinity)
  })
})

describe('single-signer issuers: the caller is the signer', () => {
  let keys: { publicKey: CryptoKey; privateKey: CryptoKey }
  let jwk: JWK
  beforeAll(async () => {
    keys = await generateKeyPair('ES256')
    jwk = await exportJWK(keys.publicKey)
  })
  const signerSetup = (extra: Partial<IssuerOptions> = {}) => {
    const config = resolveConfig({
      issuers: { issuer: WORKER, audience: AUD, typ: 'jwt', jwks: { keys: [jwk] }, ...extra },
      now: () => NOW,
      logger: { warn() {} },
    })
    const issuerKeys = new IssuerKeys(config)
    return (token: string) => verifyAccessToken(token, config, issuerKeys)
  }
  const selfSigned = (claims: Record<string, unknown>) =>
    new SignJWT({ aud: AUD, ...claims })
      .setProtectedHeader({ alg: 'ES256', typ: 'JWT' })
      .setIssuer(WORKER)
      .setIssuedAt(NOW_S)
      .setExpirationTime(NOW_S + 60)
      .sign(keys.privateKey)

  it('accepts the signer naming itself (iss = sub)', async () => {
    expect((await signerSetup()(await selfSigned({ sub: WORKER }))).claims.sub).toBe(WORKER)
  })

  it.each<[string, Record<string, unknown>, string]>([
    ['sub naming another service', { sub: REPORT }, 'token names a subject its signer may not assert'],
    ['sub naming a user', { sub: 'alice' }, 'token names a subject its signer may not assert'],
    ['client_id naming another service', { sub: WORKER, client_id: REPORT }, 'token names a caller other than its signer'],
    ['azp naming another service', { sub: WORKER, azp: REPORT }, 'token names a caller other than its signer'],
    ['act naming another service', { sub: WORKER, act: { sub: REPORT } }, 'token names a caller other than its signer'],
    ['no identity at all', {}, 'token names a caller other than its signer'],
  ])('refuses %s', async (_case, claims, message) => {
    await expectInvalid(signerSetup()(await selfSigned(claims)), message)
  })

  it('with subjects, accepts a listed subject when the signer is the caller (client_id or act.sub)', async () => {
    const verify = signerSetup({ subjects: ['user:alice', 'spiffe://example.org/ns/users/*'] })
    expect((await verify(await selfSigned({ sub: 'user:alice', client_id: WORKER }))).claims.sub).toBe('user:alice')
    expect((await verify(await selfSigned({ sub: 'spiffe://example.org/ns/users/bob', act: { sub: WORKER } }))).actors).toEqual([WORKER])
    await expectInvalid(verify(await selfSigned({ sub: 'user:mallory', client_id: WORKER })), 'token names a subject its signer may not assert')
    // A listed subject still does not make the subject the caller.
    await expectInvalid(verify(await selfSigned({ sub: 'user:alice' })), 'token names a caller other than its signer')
  })

  it('leaves issuers that are not one signer alone: URL issuers with local keys, JWT-SVID trust domains', async () => {
    const config = resolveConfig({
      issuers: { issuer: 'https://auth.example', audience: AUD, typ: 'jwt', jwks: { keys: [jwk] } },
      now: () => NOW,
      logger: { warn() {} },
    })
    const token = await new SignJWT({ aud: AUD, sub: REPORT, client_id: REPORT })
      .setProtectedHeader({ alg: 'ES256', typ: 'JWT' })
      .setIssuer('https://auth.example')
      .setIssuedAt(NOW_S)
      .setExpirationTime(NOW_S + 60)
      .sign(keys.privateKey)
    expect((await verifyAccessToken(token, config, new IssuerKeys(config))).claims.sub).toBe(REPORT)
    expect(
      resolveConfig({ issuers: { issuer: WORKER, audience: AUD, jwks: { keys: [jwk] }, trustDomain: 'example.org' } }).issuers.get(WORKER)!.signer,
    ).toBeUndefined()
  })

  it('refuses subjects on an issuer that is not one signer, naming the option', () => {
    expect(() => resolveConfig({ issuers: { issuer: issuer.issuer, audience: AUD, subjects: ['alice'] } })).toThrow(
      new TypeError('Callsign: "issuers.subjects" applies only to a single-signer issuer: local "jwks" and the signing workload\'s SPIFFE ID as "issuer"'),
    )
    expect(() =>
      resolveConfig({
        issuers: {
          issuer: WORKER,
          audience: AUD,
          jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU', y: 'x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0' }] },
          subjects: ['spiffe://x/*/y'],
        },
      }),
    ).toThrow(TypeError)
  })
})

describe('one token, one spelling: canonical base64url in every segment', () => {
  it('isCanonicalBase64url: the unused low bits of the last character are zero, no length of 1 mod 4', () => {
    expect(['', 'AAAA', 'AA', 'AQ', 'Ag', 'Aw', 'AAA', 'AAE', 'AA8'].map(isCanonicalBase64url)).toEqual(Array(9).fill(true))
    expect(['AB', 'AR', 'A_', 'AAB', 'AAF', 'AA-', 'A', 'AAAAA'].map(isCanonicalBase64url)).toEqual(Array(8).fill(false))
    // Exactly one spelling per byte string: the canonical encoding round-trips, every other one does not.
    for (let n = 1; n <= 5; n++) {
      const bytes = Buffer.alloc(n, 0xa5)
      const canonical = bytes.toString('base64url')
      expect(isCanonicalBase64url(canonical)).toBe(true)
      const last = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
      for (const c of last) {
        const variant = canonical.slice(0, -1) + c
        expect(isCanonicalBase64url(variant)).toBe(Buffer.from(variant, 'base64url').toString('base64url') === variant)
      }
    }
  })

  it('jwsSegments refuses a token whose segment has a second spelling', () => {
    expect(jwsSegments('AAAA.AAAA.AQ')).toEqual(['AAAA', 'AAAA', 'AQ'])
    expect(jwsSegments('AAAA.AAAA.AR')).toBeUndefined()
    expect(jwsSegments('AAB.AAAA.AQ')).toBeUndefined()
    expect(jwsSegments('AAAA.AAAAAB.AQ')).toBeUndefined()
    expect(jwsSegments('AAAA.AAAAB.AQ')).toBeUndefined()
    expect(jwsSegments('AAAA.AAAA.AQ=')).toBeUndefined()
  })

  it.each([0, 1, 2])('refuses a valid token with segment %i spelled differently (same bytes, same signature)', async (index) => {
    const { verify } = setup()
    const token = await spelledToken(sign)
    await verify(token) // the canonical spelling is accepted
    await expectInvalid(verify(respell(token, index)), 'malformed token')
  })
})

function catchError(fn: () => unknown): { code: string; message: string } {
  try {
    fn()
  } catch (error) {
    return error as { code: string; message: string }
  }
  throw new Error('expected a refusal')
}
