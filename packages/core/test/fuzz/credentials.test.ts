/**
 * Property-based tests of `readCredentials` (Authorization and DPoP headers, query string):
 * never anything but an `AuthError` (or a result), never a token a reference reading of
 * RFC 6750 §2.1 / RFC 9449 §7.1 would not give, a token in the query string under any
 * percent-encoding of its name is always refused, and long inputs complete. Seeded: deterministic.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { MAX_TOKEN_LENGTH, readCredentials, type Credentials } from '../../src/credentials.js'
import { AuthError } from '../../src/errors.js'
import type { AuthRequest } from '../../src/request.js'

const SEED = 20_240_611
const RUNS = 600

/** One byte of a header value as Node hands it over (latin-1). */
const latin1 = fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c))
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/'
/** Tokens mostly from the b64token alphabet, sometimes with padding or a stray character. */
const tokenish = fc.oneof(
  { weight: 5, arbitrary: fc.string({ unit: fc.constantFrom(...B64), minLength: 1, maxLength: 40 }) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(
        fc.string({ unit: fc.constantFrom(...B64), minLength: 1, maxLength: 30 }),
        fc.constantFrom('', '=', '==', '=a', ' ', '\t', ',', '"', '%', '\u00e9', '*'),
      )
      .map(([t, s]) => t + s),
  },
  { weight: 1, arbitrary: fc.string({ unit: latin1, maxLength: 30 }) },
  { weight: 3, arbitrary: jwsish() },
)
/** Dot-separated base64url segments: mostly three (a JWS), sometimes empty, fewer or more, or with a b64token-only character. */
function jwsish(): fc.Arbitrary<string> {
  const segment = fc.oneof(
    { weight: 8, arbitrary: fc.string({ unit: fc.constantFrom(...B64.replace(/[.~+/]/g, '')), minLength: 1, maxLength: 12 }) },
    { weight: 1, arbitrary: fc.constantFrom('', 'a~b', 'a+b', 'a/b', 'ab=') },
  )
  return fc
    .oneof({ weight: 6, arbitrary: fc.constant(3) }, { weight: 1, arbitrary: fc.constantFrom(1, 2, 4, 5) })
    .chain((count) => fc.array(segment, { minLength: count, maxLength: count }).map((parts) => parts.join('.')))
}
const scheme = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('Bearer', 'bearer', 'BEARER', 'bEaReR', 'DPoP', 'dpop', 'DPOP') },
  { weight: 1, arbitrary: fc.constantFrom('Basic', 'Token', 'Bearer,', 'Be arer', '', 'B\u00e9arer') },
)
const separator = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(' ', '  ') },
  { weight: 1, arbitrary: fc.constantFrom('   ', '\t', ' \t', '', ',', '\u00a0') },
)
const pad = fc.oneof({ weight: 4, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.constantFrom(' ', '  ', '\t', '\u00a0') })
/** Header values shaped like credentials, plus arbitrary latin-1 noise. */
const authorization = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(pad, scheme, separator, tokenish, pad).map((parts) => parts.join('')) },
  { weight: 1, arbitrary: fc.string({ unit: latin1, maxLength: 80 }) },
)
/** Zero, one (mostly) or two values of a header. */
const values = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T[]> =>
  fc.oneof(
    { weight: 6, arbitrary: arb.map((v): T[] => [v]) },
    { weight: 1, arbitrary: fc.constant<T[]>([]) },
    { weight: 1, arbitrary: fc.tuple(arb, arb).map((pair): T[] => [...pair]) },
  )

const request = (headers: { authorization?: string[]; dpop?: string[] }, url = '/orders'): AuthRequest => ({
  method: 'GET',
  url,
  headers: {},
  headersDistinct: { ...(headers.authorization ? { authorization: headers.authorization } : {}), ...(headers.dpop ? { dpop: headers.dpop } : {}) },
})

type Outcome = { ok: Credentials | undefined } | { error: AuthError }
function read(req: AuthRequest, acceptDpop = true): Outcome {
  try {
    return { ok: readCredentials(req, acceptDpop) }
  } catch (error) {
    if (!(error instanceof AuthError)) throw error
    return { error }
  }
}

/**
 * Reference reading (RFC 6750 §2.1, RFC 9110 §11.1, RFC 9449 §7.1): one header; after trimming,
 * a case-insensitive `Bearer`/`DPoP`, one or more spaces, a b64token of at most 12 KiB; for DPoP
 * exactly one DPoP header.
 */
function reference(values: string[], dpop: string[], acceptDpop: boolean): Credentials | undefined | 'refused' {
  if (values.length === 0) return undefined
  if (values.length > 1) return 'refused'
  const m = /^(bearer|dpop) +([A-Za-z0-9\-._~+/]+=*)$/i.exec(values[0]!.trim())
  if (!m || m[2]!.length > MAX_TOKEN_LENGTH) return 'refused'
  const isDpop = m[1]!.toLowerCase() === 'dpop'
  if (isDpop && !acceptDpop) return 'refused'
  // `compact`: a JWS compact serialization, three non-empty base64url segments (RFC 7515 §7.1).
  const segments = m[2]!.split('.')
  const compact = segments.length === 3 && segments.every((segment) => segment.length > 0 && /^[A-Za-z0-9_-]+$/.test(segment))
  if (!isDpop) return { scheme: 'bearer', token: m[2]!, compact }
  if (dpop.length !== 1) return 'refused'
  return { scheme: 'dpop', token: m[2]!, compact, proof: dpop[0]!.trim() }
}

describe('fuzz: readCredentials', () => {
  it('only ever returns credentials, undefined, or throws an AuthError with a request-level code', () => {
    fc.assert(
      fc.property(
        fc.array(authorization, { maxLength: 3 }),
        fc.array(fc.string({ unit: latin1, maxLength: 20 }), { maxLength: 3 }),
        fc.boolean(),
        (values, dpop, acceptDpop) => {
          const outcome = read(request({ authorization: values, dpop }), acceptDpop)
          if ('error' in outcome) expect(['invalid_request', 'credentials_missing', 'invalid_dpop_proof']).toContain(outcome.error.code)
        },
      ),
      { seed: SEED, numRuns: RUNS },
    )
  })

  it('accepts exactly what the reference reading accepts, with the same token', () => {
    const seen = { bearer: 0, dpop: 0, refused: 0 }
    fc.assert(
      fc.property(values(authorization), values(fc.string({ unit: fc.constantFrom(...B64), maxLength: 12 })), fc.boolean(), (headers, dpop, acceptDpop) => {
        const outcome = read(request({ authorization: headers, dpop }), acceptDpop)
        const expected = reference(headers, dpop, acceptDpop)
        if (expected === 'refused') seen.refused++
        else if (expected) seen[expected.scheme]++
        if (expected === 'refused') expect('error' in outcome, JSON.stringify({ headers, outcome })).toBe(true)
        else expect(outcome, JSON.stringify(headers)).toEqual({ ok: expected })
      }),
      { seed: SEED + 1, numRuns: RUNS },
    )
    // The generator reaches both sides of the property.
    expect(Math.min(seen.bearer, seen.dpop, seen.refused), JSON.stringify(seen)).toBeGreaterThan(20)
  })

  it('refuses access_token in the query string under any percent-encoding of its name, anywhere in the query', () => {
    const encodedName = fc
      .tuple(
        ...[...'access_token'].map((c) =>
          fc.constantFrom(c, `%${c.charCodeAt(0).toString(16).toUpperCase()}`, `%${c.charCodeAt(0).toString(16).toLowerCase()}`),
        ),
      )
      .map((chars) => chars.join(''))
    const param = fc.stringMatching(/^[a-z]{1,6}=[a-z0-9]{0,6}$/)
    fc.assert(
      fc.property(
        encodedName,
        fc.array(param, { maxLength: 3 }),
        fc.array(param, { maxLength: 3 }),
        fc.constantFrom('', '=x', '=', '=a.b.c'),
        fc.constantFrom('', '#frag'),
        fc.option(authorization),
        (name, before, after, value, hash, header) => {
          const query = [...before, `${name}${value}`, ...after].join('&')
          const outcome = read(request({ authorization: header === null ? [] : [header] }, `/orders?${query}${hash}`))
          expect('error' in outcome && outcome.error.code === 'invalid_request', query).toBe(true)
        },
      ),
      { seed: SEED + 2, numRuns: RUNS },
    )
  })

  it('never refuses a query for a parameter that is not access_token', () => {
    const name = fc.stringMatching(/^[a-z_%0-9A-F]{1,14}$/).filter((n) => {
      try {
        return decodeURIComponent(n) !== 'access_token'
      } catch {
        return false
      }
    })
    fc.assert(
      fc.property(fc.array(fc.tuple(name, fc.stringMatching(/^[a-z0-9]{0,5}$/)), { maxLength: 4 }), (params) => {
        const url = `/orders?${params.map(([k, v]) => `${k}=${v}`).join('&')}`
        expect(read(request({}, url))).toEqual({ ok: undefined })
      }),
      { seed: SEED + 3, numRuns: RUNS },
    )
  })

  it('completes on 100 KB inputs (header, proof, query)', () => {
    const big = 'a'.repeat(100_000)
    const cases: AuthRequest[] = [
      request({ authorization: [`Bearer ${big}`] }),
      request({ authorization: [` ${' '.repeat(100_000)}Bearer x`] }),
      request({ authorization: [`Bearer ${'='.repeat(100_000)}`] }),
      request({ authorization: [`${'B'.repeat(100_000)} x`] }),
      request({ authorization: [`DPoP abc`], dpop: [big] }),
      request({}, `/orders?${'access'.repeat(20_000)}`),
      request({}, `/orders?${'%'.repeat(100_000)}`),
      request({}, `/orders?${'a=b&'.repeat(25_000)}access_token=x`),
    ]
    for (const req of cases) read(req)
  })
})
