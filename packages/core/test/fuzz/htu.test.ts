/**
 * Property-based tests of `normalizeHtu` (a DPoP proof's `htu`) and `expectedHtu` (the `htu` a
 * request is checked against, from the `Host` header and the request target): never throws
 * anything but `AuthError`; the normal form is idempotent, has no query, fragment or user info,
 * and identifies URIs that differ only in scheme/host case, default port or encoding of unreserved
 * characters; whatever the `Host` header says, the expected `htu` keeps the request's own path
 * (regression: a Host of `host/other?`, or an empty one, used to move the path). Seeded: deterministic.
 */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { expectedHtu } from '../../src/binding.js'
import { normalizeHtu } from '../../src/dpop.js'
import { AuthError } from '../../src/errors.js'
import { resolveConfig } from '../../src/options.js'

const SEED = 90_210
const RUNS = 800

const latin1 = fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c))
const pathChar = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...'abcXYZ019-._~/') },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      '%41',
      '%7e',
      '%7E',
      '%2F',
      '%2f',
      '%25',
      '%20',
      '%',
      '%zz',
      '?',
      '#',
      ';',
      '=',
      '@',
      ':',
      '\\',
      ' ',
      '..',
      '.',
      '%2E',
      '%2e%2e',
      '\u00e9',
      '+',
    ),
  },
  { weight: 1, arbitrary: latin1 },
)
const path = fc.string({ unit: pathChar, maxLength: 16 }).map((p) => `/${p}`)
const host = fc.constantFrom('api.example.org', 'API.Example.ORG', '127.0.0.1', '[::1]', 'xn--bcher-kva.example', 'a-b.example')
const port = fc.constantFrom('', ':443', ':80', ':8443', ':0443')
const schemeOf = fc.constantFrom('https', 'HTTPS', 'http', 'Http')
const uri = fc.tuple(schemeOf, host, port, path, fc.constantFrom('', '?q=1', '#f', '?a#b')).map(([s, h, p, pa, tail]) => `${s}://${h}${p}${pa}${tail}`)

/** Percent-encode some unreserved characters of a path. */
const encodeSome = (value: string, mask: number): string =>
  [...value]
    .map((c, i) => (/[A-Za-z0-9\-._~]/.test(c) && (mask >> (i % 30)) & 1 ? `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}` : c))
    .join('')

describe('fuzz: normalizeHtu', () => {
  it('never throws; the normal form is an absolute http(s) URI without query, fragment or user info, and is idempotent', () => {
    fc.assert(
      fc.property(fc.oneof(uri, fc.string({ unit: latin1, maxLength: 60 }), fc.string({ maxLength: 60 })), (value) => {
        const normal = normalizeHtu(value)
        if (normal === undefined) return
        expect(normal).toMatch(/^https?:\/\/[^/?#@]+\/[^?#]*$/)
        expect(normalizeHtu(normal), `${value} -> ${normal}`).toBe(normal)
      }),
      { seed: SEED, numRuns: RUNS },
    )
  })

  it('identifies URIs that differ only in scheme/host case, default port, query, fragment or encoding of unreserved characters', () => {
    const plainPath = fc.string({ unit: fc.constantFrom(...'abcXYZ019-._~/'), maxLength: 16 }).map((p) => `/${p}`)
    fc.assert(
      fc.property(fc.constantFrom('https', 'http'), host, plainPath, fc.integer(), fc.constantFrom('', '?x', '#y'), (scheme, h, p, mask, tail) => {
        const canonical = normalizeHtu(`${scheme}://${h.toLowerCase()}${p}`)
        const defaultPort = scheme === 'https' ? ':443' : ':80'
        const variant = `${scheme.toUpperCase()}://${h.toUpperCase()}${defaultPort}${encodeSome(p, mask)}${tail}`
        expect(normalizeHtu(variant), variant).toBe(canonical)
      }),
      { seed: SEED + 1, numRuns: RUNS },
    )
  })

  it('completes on 100 KB inputs', () => {
    const n = 100_000
    for (const value of [
      `https://a.example/${'%41'.repeat(n / 3)}`,
      `https://a.example/${'a/'.repeat(n / 2)}`,
      `https://${'a'.repeat(n)}.example/`,
      `https://a.example/${'../'.repeat(n / 3)}`,
      '%'.repeat(n),
    ])
      normalizeHtu(value)
  })
})

describe('fuzz: expectedHtu', () => {
  const config = resolveConfig({ issuers: { issuer: 'https://issuer.example', audience: 'https://api.example' }, logger: { warn() {} } })
  const pinned = resolveConfig({
    issuers: { issuer: 'https://issuer.example', audience: 'https://api.example' },
    dpop: { origin: ['https://api.example.org', 'https://admin.example.org:8443'] },
    logger: { warn() {} },
  })
  const hostHeader = fc.oneof(
    { weight: 3, arbitrary: fc.tuple(host, port).map(([h, p]) => h + p) },
    {
      weight: 3,
      arbitrary: fc
        .tuple(host, port, fc.constantFrom('/', '?', '#', '\\', '@', '/x?', '/admin#', '\\x?'), fc.string({ unit: pathChar, maxLength: 8 }))
        .map(([h, p, sep, rest]) => `${h}${p}${sep}${rest}`),
    },
    { weight: 1, arbitrary: fc.string({ unit: latin1, maxLength: 24 }) },
  )
  const target = fc.tuple(path, fc.constantFrom('', '?a=1', '#x', '?a#b')).map(([p, tail]) => p + tail)

  it("whatever the Host header holds, the expected htu is refused (400) or keeps the request's own path", () => {
    fc.assert(
      fc.property(hostHeader, target, fc.boolean(), fc.boolean(), (h, t, tls, withOrigin) => {
        const request = { method: 'GET', url: t, headers: { host: h }, socket: { encrypted: tls } }
        let htu: string
        try {
          htu = expectedHtu(request, withOrigin ? pinned : config)
        } catch (error) {
          expect(error).toBeInstanceOf(AuthError)
          expect((error as AuthError).code).toBe('invalid_request')
          return
        }
        const ownPath = new URL(normalizeHtu(`https://reference.invalid${t.split('?', 1)[0]!.split('#', 1)[0]}`)!).pathname
        expect(new URL(htu).pathname, `Host ${JSON.stringify(h)}, target ${JSON.stringify(t)} -> ${htu}`).toBe(ownPath)
        if (withOrigin) expect(['https://api.example.org', 'https://admin.example.org:8443']).toContain(new URL(htu).origin)
        else expect(new URL(htu).protocol).toBe(tls ? 'https:' : 'http:')
      }),
      { seed: SEED + 2, numRuns: RUNS },
    )
  })
})
