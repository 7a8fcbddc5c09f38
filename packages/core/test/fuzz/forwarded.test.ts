/**
 * Property-based tests of the forwarded-certificate parsers: `parseXfcc` (Envoy XFCC) and
 * `decodeForwardedPem` (URL-encoded PEM), and of `parseSubjectAltName` (Node's SAN string).
 * Never anything but an `AuthError`/`undefined`; quoting round-trips exactly, so no value can
 * smuggle another key, element or SAN entry; bounds hold; 100 KB inputs complete. Seeded.
 */
import { X509Certificate } from 'node:crypto'
import fc from 'fast-check'
import { beforeAll, describe, expect, it } from 'vitest'
import { createTestCa, nginxEscapedCert, type IssuedCertificate } from '@callsign/testing'
import { AuthError } from '../../src/errors.js'
import { decodeForwardedPem, parseXfcc, XFCC_LIMITS, type XfccElement } from '../../src/forwarded-certificate.js'
import { parseSubjectAltName } from '../../src/peer-certificate.js'

const SEED = 7_357_911
const RUNS = 500

const latin1 = fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c))
/** Characters that matter to the XFCC grammar, mixed with ordinary and non-ASCII ones. */
const xfccChar = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(',', ';', '=', '"', '\\', ' ', '\t', 'U', 'R', 'I', ':', '/', '%') },
  { weight: 2, arbitrary: latin1 },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }) },
)
const KEY = /^[A-Za-z][A-Za-z0-9_-]{0,31}$/

function attempt<T>(fn: () => T): { ok: T } | { error: AuthError } {
  try {
    return { ok: fn() }
  } catch (error) {
    if (!(error instanceof AuthError)) throw error
    return { error }
  }
}

/** Envoy's quoting: a value with `,`, `;`, `=`, `"` (or `\`, outer or inner-only whitespace, or empty) is quoted, `"` and `\` escaped. */
const quote = (value: string): string => (/[,;="\\]|^\s|\s$|^$/.test(value) ? `"${value.replace(/(["\\])/g, '\\$1')}"` : value)

describe('fuzz: parseXfcc', () => {
  it('arbitrary input: elements or AuthError(invalid_request), within the element and pair bounds, keys well-formed', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: xfccChar, maxLength: 120 }), fc.string({ unit: latin1, maxLength: 120 })), (header) => {
        const outcome = attempt(() => parseXfcc(header))
        if ('error' in outcome) {
          expect(outcome.error.code).toBe('invalid_request')
          return
        }
        expect(outcome.ok.length).toBeGreaterThan(0)
        expect(outcome.ok.length).toBeLessThanOrEqual(XFCC_LIMITS.maxElements)
        for (const element of outcome.ok) {
          expect([...element.values()].flat().length).toBeLessThanOrEqual(XFCC_LIMITS.maxPairs)
          for (const key of element.keys()) expect(key).toMatch(KEY)
        }
      }),
      { seed: SEED, numRuns: RUNS },
    )
  })

  it('round trip: any values (with , ; = " \\ and spaces) quoted as Envoy does come back exactly, never as extra keys or elements', () => {
    const key = fc.stringMatching(/^[A-Za-z][A-Za-z0-9_-]{0,8}$/)
    const value = fc.string({ unit: xfccChar, maxLength: 24 })
    const element = fc.array(fc.tuple(key, value), { minLength: 1, maxLength: 8 })
    fc.assert(
      fc.property(fc.array(element, { minLength: 1, maxLength: XFCC_LIMITS.maxElements }), (elements) => {
        const header = elements.map((pairs) => pairs.map(([k, v]) => `${k}=${quote(v)}`).join(';')).join(',')
        const expected: XfccElement[] = elements.map((pairs) => {
          const map: XfccElement = new Map()
          for (const [k, v] of pairs) map.set(k.toLowerCase(), [...(map.get(k.toLowerCase()) ?? []), v])
          return map
        })
        expect(parseXfcc(header), header).toEqual(expected)
      }),
      { seed: SEED + 1, numRuns: RUNS },
    )
  })

  it('completes on 100 KB inputs', () => {
    const n = 100_000
    for (const header of [
      '"'.repeat(n),
      `URI="${'\\'.repeat(n)}`,
      'a='.repeat(n / 2),
      `${'a'.repeat(n)}=b`,
      `a="${'x'.repeat(n)}"`,
      ';'.repeat(n),
      'a=b,'.repeat(n / 4),
      ` ${' '.repeat(n)}a=b`,
    ]) {
      attempt(() => parseXfcc(header))
    }
  })
})

describe('fuzz: decodeForwardedPem', () => {
  let cert: IssuedCertificate
  let fingerprint: string
  beforeAll(async () => {
    cert = await (await createTestCa()).issueCertificate({ spiffeId: 'spiffe://example.org/ns/web/sa/frontend' })
    fingerprint = new X509Certificate(cert.certPem).fingerprint256
  })

  it('arbitrary input, including mutated real PEM: certificates or AuthError(invalid_request), never another error', () => {
    const mutated = fc
      .tuple(fc.nat(), fc.nat({ max: 40 }), fc.string({ unit: latin1, maxLength: 6 }), fc.constantFrom('uri', 'nginx', 'raw'))
      .map(([at, cut, insert, enc]) => {
        const pem = enc === 'uri' ? encodeURIComponent(cert.certPem) : enc === 'nginx' ? nginxEscapedCert(cert) : cert.certPem
        const i = at % pem.length
        return pem.slice(0, i) + insert + pem.slice(i + cut)
      })
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: latin1, maxLength: 200 }), mutated), (value) => {
        const outcome = attempt(() => decodeForwardedPem(value))
        if ('error' in outcome) expect(outcome.error.code).toBe('invalid_request')
        else for (const c of outcome.ok) expect(c).toBeInstanceOf(X509Certificate)
      }),
      { seed: SEED + 2, numRuns: 300 },
    )
  })

  it('the encodings proxies use (encodeURIComponent, nginx escaping) decode to the same certificate', () => {
    for (const value of [encodeURIComponent(cert.certPem), nginxEscapedCert(cert), cert.certPem]) {
      const [decoded, ...rest] = decodeForwardedPem(value)
      expect(rest).toEqual([])
      expect(decoded!.fingerprint256).toBe(fingerprint)
    }
  })

  it('completes on 100 KB inputs (the lazy PEM block regex is quadratic on unterminated BEGIN markers: bounded, see report)', () => {
    const begin = '-----BEGIN CERTIFICATE-----'
    const n = 100_000
    for (const value of [
      begin.repeat(n / begin.length),
      encodeURIComponent(begin).repeat(n / 40),
      '%'.repeat(n),
      `${begin}${'A'.repeat(n)}`,
      `${begin}\n-----END CERTIFICATE-----`.repeat(n / 60),
    ]) {
      attempt(() => decodeForwardedPem(value))
    }
  })
})

describe('fuzz: parseSubjectAltName', () => {
  const type = fc.constantFrom('URI', 'DNS', 'IP Address', 'email', 'othername')
  const sanChar = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(',', ' ', '"', '\\', ':', 'U', 'R', 'I', '/') },
    { weight: 2, arbitrary: latin1 },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }) },
  )

  it('arbitrary input: a list of entries or undefined, never throws', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: sanChar, maxLength: 100 }), fc.string({ unit: latin1, maxLength: 100 })), (value) => {
        const entries = parseSubjectAltName(value)
        if (entries !== undefined) for (const [t] of entries) expect(t).toMatch(/^[A-Za-z ]+$/)
      }),
      { seed: SEED + 3, numRuns: RUNS },
    )
  })

  it('round trip: values quoted JSON-style (as Node does for ambiguous ones) come back exactly, so ", URI:..." never adds an entry', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(type, fc.string({ unit: sanChar, maxLength: 20 }), fc.boolean()), { minLength: 1, maxLength: 6 }), (entries) => {
        // Quote when Node would have to (separator, quote, backslash, leading quote) and sometimes anyway.
        const text = entries.map(([t, v, force]) => `${t}:${force || /, |["\\]|^$/.test(v) ? JSON.stringify(v) : v}`).join(', ')
        expect(parseSubjectAltName(text), text).toEqual(entries.map(([t, v]) => [t, v]))
      }),
      { seed: SEED + 4, numRuns: RUNS },
    )
  })

  it('completes on 100 KB inputs', () => {
    const n = 100_000
    for (const value of ['URI:"'.padEnd(n, '\\'), 'DNS:a, '.repeat(n / 7), 'A'.repeat(n), `URI:"${'\\"'.repeat(n / 2)}"`, ':'.repeat(n), ', '.repeat(n / 2)]) {
      parseSubjectAltName(value)
    }
  })
})
