/**
 * Property-based tests of `verifyAccessToken` and `verifyDpopProof` with a counting `fetch` and a
 * counting replay store (no network: the JWKS is served from memory):
 * - arbitrary strings and forged headers: only `AuthError`s, and a key fetch happens exactly when
 *   the token names a configured issuer and passes every check that needs no key;
 * - correctly signed tokens with arbitrary claims (scope, act, aud, times, types): accepted exactly
 *   when a reference model of the documented rules accepts them, with the same scopes and actors;
 * - DPoP proofs with any combination of defects: the replay store is reached exactly when there is
 *   none; arbitrary proof strings never reach it;
 * - huge scope claims, deep act chains and 100 KB tokens complete.
 * Seeded: deterministic.
 */
import { createHash, generateKeyPairSync, sign as cryptoSign, type KeyObject } from 'node:crypto'
import fc from 'fast-check'
import { calculateJwkThumbprint } from 'jose'
import { beforeAll, describe, expect, it } from 'vitest'
import { verifyAccessToken } from '../../src/access-token.js'
import { verifyDpopProof, type DpopCheckConfig } from '../../src/dpop.js'
import { AuthError } from '../../src/errors.js'
import { IssuerKeys } from '../../src/jwks.js'
import { resolveConfig, SUPPORTED_ALGORITHMS, type ScopeClaim } from '../../src/options.js'

const SEED = 1_337_2024
const ISS = 'https://issuer.test'
const AUD = 'https://api.test'
const NOW_S = 1_900_000_000
const TOLERANCE = 30

const b64 = (value: unknown): string => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value)).toString('base64url')
const es256 = (key: KeyObject, input: string): string => cryptoSign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')

const issuerKey = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const JWKS = { keys: [{ ...issuerKey.publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'ES256', use: 'sig' }] }
/** A compact JWS signed by the issuer's key over exactly these header and payload values. */
const signToken = (header: unknown, payload: unknown): string => {
  const input = `${b64(header)}.${b64(payload)}`
  return `${input}.${es256(issuerKey.privateKey, input)}`
}
const HEADER = { alg: 'ES256', typ: 'at+jwt', kid: 'k1' }

/** A guard configuration whose `fetch` serves the JWKS from memory and counts calls. */
function setup(scopeClaim: ScopeClaim = 'scope') {
  const calls: string[] = []
  const fetch = (async (url: string) => {
    calls.push(String(url))
    return new Response(JSON.stringify(JWKS), { headers: { 'content-type': 'application/json' } })
  }) as typeof globalThis.fetch
  const config = resolveConfig({
    issuers: { issuer: ISS, audience: AUD, jwksUri: `${ISS}/jwks`, scopeClaim },
    fetch,
    now: () => NOW_S * 1000,
    logger: { warn() {} },
  })
  return { config, calls, fresh: () => new IssuerKeys(config) }
}

async function outcome<T>(promise: Promise<T>): Promise<{ ok: T } | { error: AuthError }> {
  try {
    return { ok: await promise }
  } catch (error) {
    if (!(error instanceof AuthError)) throw error
    return { error }
  }
}

describe('fuzz: verifyAccessToken on forged input', () => {
  const { config, calls, fresh } = setup()

  it('arbitrary strings: always an AuthError(invalid_token), and no fetch', async () => {
    const dotted = fc
      .array(fc.oneof(fc.string({ unit: fc.constantFrom(...'AZaz09-_=+/.~'), maxLength: 30 }), fc.json().map(b64)), { maxLength: 6 })
      .map((parts) => parts.join('.'))
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string({ maxLength: 80 }), fc.string({ unit: 'binary', maxLength: 80 }), dotted), async (token) => {
        const before = calls.length
        const result = await outcome(verifyAccessToken(token, config, fresh()))
        expect('error' in result && result.error.code).toBe('invalid_token')
        expect(calls.length, token).toBe(before)
      }),
      { seed: SEED, numRuns: 300 },
    )
  })

  it('forged headers and issuers: a key fetch happens exactly when iss is configured and every keyless check passes', async () => {
    const value = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined, freq: 3 })
    const header = fc.record(
      {
        alg: fc.oneof(
          fc.constantFrom('ES256', 'RS256', 'EdDSA', 'ES384', 'PS512'),
          fc.constantFrom('none', 'None', 'HS256', 'HS512', 'es256', 'ES256 ', '', 'dir'),
          fc.integer(),
        ),
        typ: value(fc.constantFrom('at+jwt', 'AT+JWT', 'application/at+jwt', 'Application/AT+JWT', 'JWT', 'jwt', 'dpop+jwt', 'at+jwt ', '')),
        kid: value(
          fc.oneof(
            fc.constantFrom('k1', 'unknown', '../../etc/passwd', "' OR 1=1 --", ''),
            fc.string({ minLength: 255, maxLength: 258 }),
            fc.integer(),
            fc.constant(null),
          ),
        ),
        crit: value(fc.constantFrom(['b64'], ['exp'], [], 'x')),
        b64: value(fc.boolean()),
        jku: value(fc.constant('https://attacker.test/jwks')),
        x5u: value(fc.constant('https://attacker.test/cert')),
        jwk: value(fc.constant({ kty: 'EC', crv: 'P-256', x: 'AA', y: 'AA' })),
      },
      { requiredKeys: ['alg'] },
    )
    const iss = fc.constantFrom(ISS, ISS, ISS, `${ISS}/`, 'HTTPS://issuer.test', 'https://issuer.test.evil', '', 42, null, [ISS])
    const payload = fc.record({ iss, aud: fc.constantFrom(AUD, 'x'), exp: fc.constantFrom(NOW_S + 60, NOW_S - 3600, 'x'), sub: fc.constantFrom('a', 42) })
    await fc.assert(
      fc.asyncProperty(header, payload, fc.constantFrom('junk', 'sig', 'empty'), async (h, p, signature) => {
        const token = signature === 'sig' ? signToken(h, p) : `${b64(h)}.${b64(p)}.${signature === 'junk' ? 'c2ln' : ''}`
        const before = calls.length
        const result = await outcome(verifyAccessToken(token, config, fresh()))
        const typ = typeof h.typ === 'string' ? h.typ.toLowerCase().replace(/^application\//, '') : h.typ
        const keyless =
          signature !== 'empty' &&
          p.iss === ISS &&
          typeof h.alg === 'string' &&
          (SUPPORTED_ALGORITHMS as readonly string[]).includes(h.alg) &&
          (h.kid === undefined || (typeof h.kid === 'string' && h.kid.length > 0 && h.kid.length <= 256)) &&
          h.crit === undefined &&
          h.b64 === undefined &&
          typ === 'at+jwt'
        expect(calls.length - before, JSON.stringify(h)).toBe(keyless ? 1 : 0)
        if ('ok' in result) {
          // Only a genuine signature by the issuer's key under its own alg, with valid claims.
          expect(signature).toBe('sig')
          expect(h.alg).toBe('ES256')
        }
      }),
      { seed: SEED + 1, numRuns: 600 },
    )
  })
})

/** The documented acceptance rules (README "Errors", RFC 9068 / RFC 7519), as a reference model. */
function reference(claims: Record<string, unknown>, scopeClaim: ScopeClaim): { scopes: string[]; actors: string[] } | 'refused' {
  const finite = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v)
  const { exp, nbf, iat } = claims
  if (!finite(exp) || exp <= NOW_S - TOLERANCE) return 'refused'
  if (nbf !== undefined && (!finite(nbf) || nbf > NOW_S + TOLERANCE)) return 'refused'
  if (iat !== undefined && (!finite(iat) || iat > NOW_S + TOLERANCE)) return 'refused'
  if (claims.iss !== ISS) return 'refused'
  const aud = claims.aud
  if (!(aud === AUD || (Array.isArray(aud) && aud.includes(AUD)))) return 'refused'
  for (const name of ['sub', 'client_id', 'azp', 'jti']) {
    const v = claims[name]
    if (v !== undefined && (typeof v !== 'string' || v === '')) return 'refused'
  }
  const cnf = claims.cnf
  if (cnf !== undefined && (typeof cnf !== 'object' || cnf === null || Array.isArray(cnf))) return 'refused'
  // Only enforced confirmation methods (RFC 7800 §3), at least one, each a non-empty string.
  if (cnf !== undefined) {
    const members = Object.entries(cnf as Record<string, unknown>)
    if (members.length === 0 || members.some(([method, v]) => (method !== 'jkt' && method !== 'x5t#S256') || typeof v !== 'string' || v === ''))
      return 'refused'
  }
  const raw = claims[scopeClaim]
  let scopes: unknown[] = []
  if (typeof raw === 'string') {
    if (raw.length > 256 * 128) return 'refused'
    scopes = raw.split(' ').filter((s) => s !== '')
  } else if (Array.isArray(raw) && scopeClaim !== 'scope') scopes = raw
  else if (raw !== undefined) return 'refused'
  if (scopes.length > 256) return 'refused'
  if (!scopes.every((s) => typeof s === 'string' && s.length <= 256 && /^[\x21\x23-\x5b\x5d-\x7e]+$/.test(s))) return 'refused'
  const actors: string[] = []
  for (let act = claims.act; act !== undefined; act = (act as { act?: unknown }).act) {
    if (typeof act !== 'object' || act === null || Array.isArray(act)) return 'refused'
    const sub = (act as { sub?: unknown }).sub
    if (typeof sub !== 'string' || sub === '') return 'refused'
    actors.push(sub)
    if (actors.length > 8) return 'refused'
  }
  return { scopes: [...new Set(scopes as string[])], actors }
}

describe('fuzz: verifyAccessToken on signed tokens with arbitrary claims (scopes, act, types, times)', () => {
  const scopeToken = fc.string({
    unit: fc.oneof(
      { weight: 8, arbitrary: fc.constantFrom(...'abz:/.-_AZ09!~[]') },
      { weight: 1, arbitrary: fc.constantFrom('"', '\\', '\u007f', '\u00e9', '\t', '\u0000') },
    ),
    minLength: 1,
    maxLength: 12,
  })
  const scopeValue = fc.oneof(
    { weight: 4, arbitrary: fc.array(scopeToken, { maxLength: 6 }).map((s) => s.join(' ')) },
    { weight: 2, arbitrary: fc.array(scopeToken, { maxLength: 6 }) },
    { weight: 1, arbitrary: fc.integer({ min: 250, max: 262 }).map((n) => Array.from({ length: n }, (_, i) => `s${i % 300}`).join(' ')) },
    { weight: 1, arbitrary: fc.integer({ min: 250, max: 262 }).map((n) => Array.from({ length: n }, (_, i) => `s${i}`)) },
    { weight: 1, arbitrary: fc.constantFrom('  a   b  ', '', 'a'.repeat(256), 'a'.repeat(257), 'a'.repeat(32_769), 42, null, { a: 1 }, ['a', 1], [['a']]) },
  )
  const { act } = fc.letrec<{ act: unknown }>((tie) => ({
    act: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      {
        weight: 3,
        arbitrary: fc.record({ sub: fc.constantFrom('spiffe://a/x', 'b', 'a'), act: fc.option(tie('act'), { nil: undefined }) }, { requiredKeys: ['sub'] }),
      },
      { weight: 1, arbitrary: fc.constantFrom('x', 42, null, [], {}, { sub: '' }, { sub: 7 }) },
    ),
  }))
  const deepAct = fc
    .integer({ min: 6, max: 11 })
    .map((n) => Array.from({ length: n }).reduce<unknown>((inner, _, i) => ({ sub: `a${i}`, ...(inner ? { act: inner } : {}) }), undefined))
  /** Mostly `valid`, sometimes one of the edge or invalid values, so both outcomes are common. */
  const mostly = <T, U>(valid: fc.Arbitrary<T>, edge: fc.Arbitrary<U>): fc.Arbitrary<T | U> =>
    fc.oneof({ weight: 9, arbitrary: valid }, { weight: 1, arbitrary: edge })
  const id = mostly(fc.constantFrom(undefined, 'svc', 'spiffe://a/x'), fc.constantFrom('', 42, ['svc'], {}, null))
  const claims = fc.record({
    iss: mostly(fc.constant(ISS), fc.constantFrom(`${ISS}/`, 'https://ISSUER.test', [ISS])),
    aud: mostly(fc.constantFrom(AUD, [AUD, 'x'], ['x', 42, AUD]), fc.constantFrom(['x'], 'x', 42, null, undefined, [], [[AUD]])),
    exp: mostly(fc.constantFrom(NOW_S + 300, NOW_S - 29, 1e308), fc.constantFrom(NOW_S - 30, NOW_S - 31, '9999999999', null, undefined, -1)),
    nbf: mostly(fc.constantFrom(undefined, NOW_S + 30, NOW_S), fc.constantFrom(NOW_S + 31, 'x', null)),
    iat: mostly(fc.constantFrom(undefined, NOW_S, NOW_S + 30), fc.constantFrom(NOW_S + 31, 'x', null)),
    sub: id,
    client_id: id,
    azp: id,
    jti: mostly(fc.constantFrom(undefined, 'j'), fc.constantFrom('', 1)),
    cnf: mostly(
      fc.constantFrom(undefined, { jkt: 'x' }, { 'x5t#S256': 'y' }, { jkt: 'x', 'x5t#S256': 'y' }),
      fc.constantFrom([], 'x', null, {}, { jwk: { kty: 'EC' } }, { kid: 'k' }, { jku: 'https://x' }, { 'x5t#S256': 'y', jwk: {} }, { jkt: '' }, { jkt: 1 }),
    ),
    scope: fc.option(scopeValue, { nil: undefined, freq: 2 }),
    scp: fc.option(scopeValue, { nil: undefined, freq: 2 }),
    permissions: fc.option(scopeValue, { nil: undefined, freq: 2 }),
    act: fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 3, arbitrary: act }, { weight: 1, arbitrary: deepAct }),
  })

  it('accepted exactly when the reference model accepts, with the same scopes and actors (scope, scp and permissions)', async () => {
    const guards = { scope: setup('scope'), scp: setup('scp'), permissions: setup('permissions') }
    const seen = { accepted: 0, refused: 0 }
    await fc.assert(
      fc.asyncProperty(claims, fc.constantFrom<ScopeClaim>('scope', 'scp', 'permissions'), async (c, scopeClaim) => {
        const { config, fresh } = guards[scopeClaim]
        const token = signToken(HEADER, c)
        const result = await outcome(verifyAccessToken(token, config, fresh()))
        // What actually went over the wire (undefined members dropped, 1e308 kept).
        const expected = reference(JSON.parse(JSON.stringify(c)), scopeClaim)
        if (expected === 'refused') {
          seen.refused++
          expect('error' in result && result.error.code, JSON.stringify(c).slice(0, 300)).toBe('invalid_token')
        } else {
          seen.accepted++
          expect('ok' in result, `${JSON.stringify(c).slice(0, 300)} ${'error' in result ? result.error.message : ''}`).toBe(true)
          if ('ok' in result) expect({ scopes: result.ok.scopes, actors: result.ok.actors }).toEqual(expected)
        }
      }),
      { seed: SEED + 2, numRuns: 600 },
    )
    expect(Math.min(seen.accepted, seen.refused), JSON.stringify(seen)).toBeGreaterThan(40)
  })

  it('huge scope claims, deep act chains and 100 KB tokens complete (and are refused)', async () => {
    const { config, fresh } = setup('scp')
    const base = { iss: ISS, aud: AUD, exp: NOW_S + 60 }
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ scp: 'a '.repeat(10_000) }, 'too many scopes'],
      [{ scp: Array.from({ length: 10_000 }, (_, i) => `s${i}`) }, 'too many scopes'],
      [{ scp: 'a'.repeat(40_000) }, 'scope claim too large'],
      // 5 000 nested act objects (JSON.stringify itself cannot build it: written by hand).
      [{ deepAct: true }, 'delegation chain too deep'],
    ]
    const started = performance.now()
    const deep = `${JSON.stringify(base).slice(0, -1)},"act":${'{"sub":"a","act":'.repeat(5_000)}{"sub":"a"}${'}'.repeat(5_000)}}`
    for (const [extra, message] of cases) {
      const result = await outcome(verifyAccessToken(signToken(HEADER, extra.deepAct ? deep : { ...base, ...extra }), config, fresh()))
      expect('error' in result && result.error.message).toBe(message)
    }
    for (const token of [
      'a'.repeat(100_000),
      `${'a.'.repeat(50_000)}`,
      `${b64(HEADER)}.${'A'.repeat(100_000)}.c2ln`,
      `${'A'.repeat(100_000)}.${b64(base)}.c2ln`,
    ]) {
      expect('error' in (await outcome(verifyAccessToken(token, config, fresh())))).toBe(true)
    }
    expect(performance.now() - started).toBeLessThan(5_000)
  })
})

describe('fuzz: verifyDpopProof', () => {
  const dpopKey = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const publicJwk = dpopKey.publicKey.export({ format: 'jwk' }) as Record<string, unknown>
  const privateJwk = dpopKey.privateKey.export({ format: 'jwk' }) as Record<string, unknown>
  const TOKEN = 'the.access.token'
  const HTU = 'https://api.test/orders'
  let jkt: string
  beforeAll(async () => {
    jkt = await calculateJwkThumbprint(publicJwk as never, 'sha256')
  })

  function checker() {
    let marks = 0
    const config: DpopCheckConfig = {
      algorithms: new Set(['ES256', 'EdDSA']),
      maxProofAgeSeconds: 60,
      clockToleranceSeconds: TOLERANCE,
      now: () => NOW_S * 1000,
      nonces: undefined,
      replayStore: { markUsed: () => (marks++, true) },
      replayStoreTimeoutMs: 500,
    }
    return { config, marks: () => marks }
  }
  const expectation = (overrides: Partial<{ method: string; htu: string; jkt: string }> = {}) => ({
    method: 'GET',
    htu: HTU,
    accessToken: TOKEN,
    jkt,
    ...overrides,
  })

  /** Each defect breaks exactly one RFC 9449 §4.3 check. */
  const DEFECTS = ['typ', 'alg', 'privateJwk', 'noJwk', 'signature', 'htm', 'htu', 'iatOld', 'iatFuture', 'noJti', 'ath', 'jkt', 'crit', 'exp'] as const
  type Defect = (typeof DEFECTS)[number]

  it('the replay store is reached exactly when the proof has no defect (harmless noise allowed)', async () => {
    const noise = fc.dictionary(fc.stringMatching(/^x_[a-z]{1,5}$/), fc.jsonValue(), { maxKeys: 3 })
    // Equivalent spellings of the htu that must still pass.
    const htu = fc.constantFrom(HTU, 'HTTPS://API.TEST/orders', 'https://api.test:443/orders', 'https://api.test/%6Frders', `${HTU}?q=1`, `${HTU}#f`)
    let clean = 0
    await fc.assert(
      fc.asyncProperty(
        fc.subarray([...DEFECTS]),
        noise,
        noise,
        htu,
        fc.string({ minLength: 1, maxLength: 64 }),
        async (defects, extraHeader, extraClaims, goodHtu, jti) => {
          const has = (d: Defect): boolean => defects.includes(d)
          const header: Record<string, unknown> = {
            ...extraHeader,
            typ: has('typ') ? 'jwt' : 'dpop+jwt',
            alg: has('alg') ? 'ES384' : 'ES256',
            jwk: has('privateJwk') ? privateJwk : publicJwk,
          }
          if (has('noJwk')) delete header.jwk
          if (has('crit')) header.crit = ['x_custom']
          const payload: Record<string, unknown> = {
            ...extraClaims,
            htm: has('htm') ? 'POST' : 'GET',
            htu: has('htu') ? 'https://api.test/other' : goodHtu,
            iat: has('iatOld') ? NOW_S - 200 : has('iatFuture') ? NOW_S + 100 : NOW_S,
            ath: createHash('sha256')
              .update(has('ath') ? 'another.token' : TOKEN)
              .digest('base64url'),
            jti,
          }
          if (has('noJti')) delete payload.jti
          if (has('exp')) payload.exp = NOW_S - 120
          const input = `${b64(header)}.${b64(payload)}`
          let signature = es256(dpopKey.privateKey, input)
          if (has('signature')) signature = `${signature.slice(0, 10)}${signature[10] === 'A' ? 'B' : 'A'}${signature.slice(11)}`
          const { config, marks } = checker()
          const result = await outcome(verifyDpopProof(`${input}.${signature}`, expectation(has('jkt') ? { jkt: 'another-thumbprint' } : {}), config))
          if (defects.length === 0) clean++
          expect(marks(), `defects ${defects.join(',')}`).toBe(defects.length === 0 ? 1 : 0)
          expect('ok' in result, `defects ${defects.join(',')} ${'error' in result ? result.error.message : ''}`).toBe(defects.length === 0)
          if ('error' in result) expect(['invalid_dpop_proof', 'invalid_token']).toContain(result.error.code)
        },
      ),
      { seed: SEED + 3, numRuns: 600 },
    )
    expect(clean).toBeGreaterThan(10)
  })

  it('arbitrary proof strings never reach the replay store and fail only with AuthError', async () => {
    const jsonSegments = fc
      .tuple(fc.jsonValue(), fc.jsonValue(), fc.string({ unit: fc.constantFrom(...'AZaz09-_'), maxLength: 90 }))
      .map(([h, p, s]) => `${b64(h)}.${b64(p)}.${s}`)
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string({ maxLength: 100 }), fc.string({ unit: 'binary', maxLength: 100 }), jsonSegments), async (proof) => {
        const { config, marks } = checker()
        const result = await outcome(verifyDpopProof(proof, expectation(), config))
        expect('error' in result).toBe(true)
        expect(marks()).toBe(0)
      }),
      { seed: SEED + 4, numRuns: 500 },
    )
  })
})
