import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createTestCa, type TestCa } from '@callsign/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DpopNonces } from '../src/dpop-nonce.js'
import { DEFAULT_ALGORITHMS, resolveConfig, SUPPORTED_ALGORITHMS, type CallsignOptions } from '../src/options.js'
import { parseSecureUrl, scopeList } from '../src/internal/validate.js'
import { MemoryReplayStore, type ReplayStore } from '../src/replay-store.js'

const ISSUER = { issuer: 'https://auth.example.com/', audience: 'orders' }
const base = (extra: Record<string, unknown> = {}): CallsignOptions => ({ issuers: ISSUER, ...extra }) as CallsignOptions
const ASYMMETRIC = ['ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512']

describe('resolveConfig defaults', () => {
  const config = resolveConfig(base())

  it('resolves one issuer with the guard-wide defaults', () => {
    expect([...config.issuers.keys()]).toEqual(['https://auth.example.com/'])
    const issuer = config.issuers.get('https://auth.example.com/')!
    expect(issuer.issuer).toBe('https://auth.example.com/')
    expect(issuer.audience).toEqual(['orders'])
    expect(issuer.jwksUri).toBeUndefined()
    expect(issuer.typ).toBe('at+jwt')
    expect(issuer.scopeClaim).toBe('scope')
    expect([...issuer.algorithms]).toEqual(ASYMMETRIC)
  })

  it('accepts every asymmetric algorithm and nothing else by default', () => {
    expect([...SUPPORTED_ALGORITHMS]).toEqual(ASYMMETRIC)
    expect([...DEFAULT_ALGORITHMS]).toEqual(ASYMMETRIC)
  })

  it('uses the documented defaults', () => {
    expect(config.clockToleranceSeconds).toBe(30)
    expect(config.maxTokenAgeSeconds).toBeUndefined()
    expect(config.mtls).toEqual({ mode: 'optional', trustDomains: undefined })
    expect(config.callers).toBeUndefined()
    expect(config.credentials).toBe('required')
    expect(config.realm).toBe('api')
    expect(config.prefetch).toBe(false)
    expect(config.now).toBe(Date.now)
    expect(config.logger).toBe(console)
    expect(typeof config.fetch).toBe('function')
    expect(config.jwks).toEqual({
      cacheMaxAgeSeconds: 600,
      cooldownSeconds: 30,
      failureBackoffSeconds: 5,
      maxStaleSeconds: 86_400,
      timeoutSeconds: 5,
      maxBytes: 262_144,
      maxKeys: 50,
    })
  })

  it('freezes the result', () => {
    expect(Object.isFrozen(config)).toBe(true)
    expect(Object.isFrozen(config.jwks)).toBe(true)
    expect(Object.isFrozen(config.mtls)).toBe(true)
    expect(Object.isFrozen(config.issuers.get('https://auth.example.com/'))).toBe(true)
    expect(Object.isFrozen(config.issuers.get('https://auth.example.com/')!.audience)).toBe(true)
    expect(() => {
      ;(config as { realm: string }).realm = 'x'
    }).toThrow(TypeError)
    const withCallers = resolveConfig(base({ callers: { 'spiffe://example.org/*': ['a'] } }))
    expect(Object.isFrozen(withCallers.callers)).toBe(true)
  })
})

describe('resolveConfig values', () => {
  it('resolves explicit values', () => {
    const fetchFn = (async () => new Response('{}')) as typeof fetch
    const now = () => 1
    const logger = { warn() {} }
    const config = resolveConfig({
      issuers: [
        {
          issuer: 'https://a.example/',
          audience: ['orders', 'https://orders.example'],
          jwksUri: 'https://a.example/jwks',
          typ: 'jwt',
          scopeClaim: 'scp',
          algorithms: ['ES256'],
        },
        { issuer: 'https://b.example', audience: 'orders' },
      ],
      algorithms: ['ES256', 'RS256'],
      clockTolerance: 0,
      maxTokenAge: 600,
      typ: 'at+jwt',
      scopeClaim: 'permissions',
      mtls: { mode: 'required', trustDomains: ['example.org', 'prod.example.org'] },
      credentials: 'optional',
      realm: 'orders api',
      jwks: { cacheMaxAgeSeconds: 60, cooldownSeconds: 0, failureBackoffSeconds: 0, maxStaleSeconds: 0, timeoutSeconds: 60, maxBytes: 1024, maxKeys: 1 },
      prefetch: true,
      fetch: fetchFn,
      now,
      logger,
    })
    const a = config.issuers.get('https://a.example/')!
    expect(a.audience).toEqual(['orders', 'https://orders.example'])
    expect(a.jwksUri?.href).toBe('https://a.example/jwks')
    expect(a.typ).toBe('jwt')
    expect(a.scopeClaim).toBe('scp')
    expect([...a.algorithms]).toEqual(['ES256'])
    const b = config.issuers.get('https://b.example')!
    expect(b.typ).toBe('at+jwt')
    expect(b.scopeClaim).toBe('permissions')
    expect([...b.algorithms]).toEqual(['ES256', 'RS256'])
    expect(config.issuers.has('https://b.example/')).toBe(false)
    expect(config.clockToleranceSeconds).toBe(0)
    expect(config.maxTokenAgeSeconds).toBe(600)
    expect(config.mtls.mode).toBe('required')
    expect([...config.mtls.trustDomains!]).toEqual(['example.org', 'prod.example.org'])
    expect(config.credentials).toBe('optional')
    expect(config.realm).toBe('orders api')
    expect(config.jwks).toEqual({
      cacheMaxAgeSeconds: 60,
      cooldownSeconds: 0,
      failureBackoffSeconds: 0,
      maxStaleSeconds: 0,
      timeoutSeconds: 60,
      maxBytes: 1024,
      maxKeys: 1,
    })
    expect(config.prefetch).toBe(true)
    expect(config.fetch).toBe(fetchFn)
    expect(config.now).toBe(now)
    expect(config.logger).toBe(logger)
  })

  it.each(['required', 'optional'] as const)('accepts mtls shorthand %s', (mode) => {
    expect(resolveConfig(base({ mtls: mode })).mtls).toEqual({ mode, trustDomains: undefined })
  })

  it.each(['http://127.0.0.1:8080/', 'http://localhost/realms/a', 'http://[::1]:9000', 'https://auth.example.com'])(
    'accepts the issuer and jwksUri %s',
    (url) => {
      const config = resolveConfig(base({ issuers: { issuer: url, audience: 'a', jwksUri: url } }))
      expect(config.issuers.get(url)!.jwksUri!.href).toBe(new URL(url).href)
    },
  )

  it('sorts caller allowances: exact patterns first, then longer prefixes before shorter ones', () => {
    const config = resolveConfig(
      base({
        callers: {
          'spiffe://example.org/*': ['a'],
          'spiffe://example.org/ns/batch/*': ['b'],
          'spiffe://example.org/ns/batch/sa/worker': ['c'],
          'orders-client': ['d'],
          'spiffe://example.org/ns/*': [],
        },
      }),
    )
    expect(config.callers!.map((c) => c.pattern.source)).toEqual([
      'spiffe://example.org/ns/batch/sa/worker',
      'orders-client',
      'spiffe://example.org/ns/batch/*',
      'spiffe://example.org/ns/*',
      'spiffe://example.org/*',
    ])
    expect(config.callers!.map((c) => [...c.scopes])).toEqual([['c'], ['d'], ['b'], [], ['a']])
  })
})

describe('resolveConfig validation', () => {
  const SUPPORTED = ASYMMETRIC.join(', ')
  const REFUSED = 'unsigned and symmetric (HS*) algorithms are refused; access tokens must be signed with an asymmetric key'

  it.each<[string, unknown, string]>([
    ['no options object', undefined, 'Callsign: "options" must be an object'],
    ['an array as options', [], 'Callsign: "options" must be an object'],
    [
      'an unknown option key',
      base({ issuer: 'x' }),
      'Callsign: "options.issuer" is not a known option (known: issuers, algorithms, clockTolerance, maxTokenAge, typ, scopeClaim, mtls, callers, certificateGrants, credentials, realm, jwks, prefetch, fetch, now, logger, senderConstraint, dpop, callerConsistency, clientIds, delegation, tokenCacheMaxEntries, onDecision, enforce, peerExpiryWarningDays, resourceMetadata, revocation, telemetry)',
    ],
    // algorithms
    ['algorithms with none', base({ algorithms: ['ES256', 'none'] }), `Callsign: "algorithms" contains "none": ${REFUSED}`],
    ['algorithms with NONE', base({ algorithms: ['NONE'] }), `Callsign: "algorithms" contains "NONE": ${REFUSED}`],
    ['algorithms with HS256', base({ algorithms: ['HS256'] }), `Callsign: "algorithms" contains "HS256": ${REFUSED}`],
    ['algorithms with hs512', base({ algorithms: ['hs512'] }), `Callsign: "algorithms" contains "hs512": ${REFUSED}`],
    [
      'algorithms with an unknown name',
      base({ algorithms: ['ES257'] }),
      `Callsign: "algorithms" contains unsupported algorithm "ES257" (supported: ${SUPPORTED})`,
    ],
    ['algorithms in lower case', base({ algorithms: ['es256'] }), `Callsign: "algorithms" contains unsupported algorithm "es256" (supported: ${SUPPORTED})`],
    ['empty algorithms', base({ algorithms: [] }), 'Callsign: "algorithms" must be a non-empty array of algorithm names'],
    ['algorithms as a string', base({ algorithms: 'ES256' }), 'Callsign: "algorithms" must be a non-empty array of algorithm names'],
    ['a non-string algorithm', base({ algorithms: [256] }), 'Callsign: "algorithms" must contain only strings'],
    ['issuer algorithms with HS256', base({ issuers: { ...ISSUER, algorithms: ['HS256'] } }), `Callsign: "issuers.algorithms" contains "HS256": ${REFUSED}`],
    [
      'issuer algorithms outside the guard-wide list',
      base({ algorithms: ['ES256'], issuers: [{ ...ISSUER, algorithms: ['RS256'] }] }),
      'Callsign: "issuers[0].algorithms" contains RS256, which the guard-wide "algorithms" does not allow',
    ],
    // issuers
    ['no issuers', {}, 'Callsign: "issuers" must name at least one issuer: { issuer, audience, jwksUri? }'],
    ['an empty issuers array', { issuers: [] }, 'Callsign: "issuers" must name at least one issuer: { issuer, audience, jwksUri? }'],
    ['a string issuer', { issuers: 'https://auth.example.com/' }, 'Callsign: "issuers" must be an object { issuer, audience, jwksUri? }'],
    ['a null issuer entry', { issuers: [ISSUER, null] }, 'Callsign: "issuers[1]" must be an object { issuer, audience, jwksUri? }'],
    [
      'an unknown issuer key',
      { issuers: [{ ...ISSUER, jwks_uri: 'https://a' }] },
      'Callsign: "issuers[0].jwks_uri" is not a known option (known: issuer, audience, jwksUri, typ, scopeClaim, algorithms, jwks, maxTokenLifetime, subjects, trustDomain, introspection)',
    ],
    [
      'a duplicate issuer',
      { issuers: [ISSUER, { ...ISSUER, audience: 'other' }] },
      'Callsign: "issuers[1].issuer" duplicates another issuer: "https://auth.example.com/"',
    ],
    ['a missing issuer URL', { issuers: { audience: 'a' } }, 'Callsign: "issuers.issuer" must be a URL string'],
    ['an invalid issuer URL', { issuers: { issuer: 'auth.example.com', audience: 'a' } }, 'Callsign: "issuers.issuer" is not a valid URL: "auth.example.com"'],
    [
      'a non-loopback http issuer',
      { issuers: { issuer: 'http://auth.example.com', audience: 'a' } },
      'Callsign: "issuers.issuer" must use https (http is allowed only on 127.0.0.1, localhost and [::1]): "http://auth.example.com"',
    ],
    [
      'an http issuer on a private address',
      { issuers: { issuer: 'http://10.0.0.1', audience: 'a' } },
      'Callsign: "issuers.issuer" must use https (http is allowed only on 127.0.0.1, localhost and [::1]): "http://10.0.0.1"',
    ],
    [
      'an http issuer on a localhost look-alike',
      { issuers: { issuer: 'http://localhost.evil.example', audience: 'a' } },
      'Callsign: "issuers.issuer" must use https (http is allowed only on 127.0.0.1, localhost and [::1]): "http://localhost.evil.example"',
    ],
    [
      'an issuer with credentials',
      { issuers: { issuer: 'https://u:p@auth.example.com', audience: 'a' } },
      'Callsign: "issuers.issuer" must not contain credentials',
    ],
    [
      'an issuer with a fragment',
      { issuers: { issuer: 'https://auth.example.com/#x', audience: 'a' } },
      'Callsign: "issuers.issuer" must not contain a fragment',
    ],
    [
      'an issuer with a query',
      { issuers: { issuer: 'https://auth.example.com/?tenant=a', audience: 'a' } },
      'Callsign: "issuers.issuer" must not contain a query',
    ],
    [
      'a non-loopback http jwksUri',
      { issuers: [{ ...ISSUER, jwksUri: 'http://auth.example.com/jwks' }] },
      'Callsign: "issuers[0].jwksUri" must use https (http is allowed only on 127.0.0.1, localhost and [::1]): "http://auth.example.com/jwks"',
    ],
    [
      'a file jwksUri',
      { issuers: { ...ISSUER, jwksUri: 'file:///etc/jwks.json' } },
      'Callsign: "issuers.jwksUri" must use https (http is allowed only on 127.0.0.1, localhost and [::1]): "file:///etc/jwks.json"',
    ],
    ['an empty jwksUri', { issuers: { ...ISSUER, jwksUri: '' } }, 'Callsign: "issuers.jwksUri" must be a URL string'],
    // audience
    [
      'an empty audience',
      { issuers: { ...ISSUER, audience: '' } },
      'Callsign: "issuers.audience" must be a non-empty string or a non-empty array of non-empty strings',
    ],
    [
      'an empty audience array',
      { issuers: { ...ISSUER, audience: [] } },
      'Callsign: "issuers.audience" must be a non-empty string or a non-empty array of non-empty strings',
    ],
    [
      'an audience array with an empty string',
      { issuers: [{ ...ISSUER, audience: ['a', ''] }] },
      'Callsign: "issuers[0].audience" must be a non-empty string or a non-empty array of non-empty strings',
    ],
    [
      'a missing audience',
      { issuers: { issuer: 'https://a.example' } },
      'Callsign: "issuers.audience" must be a non-empty string or a non-empty array of non-empty strings',
    ],
    // typ, scopeClaim, mtls, credentials
    ['an unknown typ', base({ typ: 'JWT' }), `Callsign: "typ" must be one of 'at+jwt', 'jwt' (got "JWT")`],
    ['an unknown issuer typ', { issuers: { ...ISSUER, typ: 'id+jwt' } }, `Callsign: "issuers.typ" must be one of 'at+jwt', 'jwt' (got "id+jwt")`],
    ['an unknown scopeClaim', base({ scopeClaim: 'scopes' }), `Callsign: "scopeClaim" must be one of 'scope', 'scp', 'permissions' (got "scopes")`],
    [
      'an unknown issuer scopeClaim',
      { issuers: [{ ...ISSUER, scopeClaim: 'roles' }] },
      `Callsign: "issuers[0].scopeClaim" must be one of 'scope', 'scp', 'permissions' (got "roles")`,
    ],
    ['an unknown mtls mode', base({ mtls: 'require' }), `Callsign: "mtls" must be one of 'required', 'optional' (got "require")`],
    ['an unknown mtls.mode', base({ mtls: { mode: 'on' } }), `Callsign: "mtls.mode" must be one of 'required', 'optional' (got "on")`],
    ['mtls as a boolean', base({ mtls: true }), `Callsign: "mtls" must be 'required', 'optional' or { mode, trustDomains }`],
    ['an unknown mtls key', base({ mtls: { mode: 'required', ca: 'x' } }), 'Callsign: "mtls.ca" is not a known option (known: mode, trustDomains, forwarded)'],
    ['an unknown credentials mode', base({ credentials: 'none' }), `Callsign: "credentials" must be one of 'required', 'optional' (got "none")`],
    // trustDomains
    [
      'empty trustDomains',
      base({ mtls: { trustDomains: [] } }),
      'Callsign: "mtls.trustDomains" must be a non-empty string or a non-empty array of non-empty strings',
    ],
    [
      'an upper-case trust domain',
      base({ mtls: { trustDomains: ['Example.org'] } }),
      'Callsign: "mtls.trustDomains" contains an invalid trust domain "Example.org" (lower-case letters, digits, ".", "-", "_")',
    ],
    [
      'a trust domain with a path',
      base({ mtls: { trustDomains: ['example.org/ns'] } }),
      'Callsign: "mtls.trustDomains" contains an invalid trust domain "example.org/ns" (lower-case letters, digits, ".", "-", "_")',
    ],
    [
      'a trust domain with a scheme',
      base({ mtls: { trustDomains: ['spiffe://example.org'] } }),
      'Callsign: "mtls.trustDomains" contains an invalid trust domain "spiffe://example.org" (lower-case letters, digits, ".", "-", "_")',
    ],
    [
      'a trust domain with a port',
      base({ mtls: { trustDomains: ['example.org:443'] } }),
      'Callsign: "mtls.trustDomains" contains an invalid trust domain "example.org:443" (lower-case letters, digits, ".", "-", "_")',
    ],
    // callers
    ['callers as an array', base({ callers: ['spiffe://example.org/*'] }), 'Callsign: "callers" must be an object mapping caller patterns to scope arrays'],
    [
      'a caller pattern with a wildcard client id',
      base({ callers: { 'orders-*': ['a'] } }),
      'Callsign: "callers["orders-*"]" ("orders-*"): wildcards are only allowed as a trailing "/*" of a SPIFFE ID',
    ],
    [
      'a caller pattern with an invalid SPIFFE ID',
      base({ callers: { 'spiffe://Example.org/*': ['a'] } }),
      'Callsign: "callers["spiffe://Example.org/*"]" ("spiffe://Example.org/*") is not a valid SPIFFE ID or prefix: expected spiffe://<trust-domain>/<path> or spiffe://<trust-domain>/<path>/*',
    ],
    ['caller scopes as a string', base({ callers: { 'orders-client': 'a b' } }), 'Callsign: "callers["orders-client"]" must be an array of scope strings'],
    // certificateGrants
    [
      'certificateGrants as an array',
      base({ certificateGrants: ['spiffe://example.org/*'] }),
      'Callsign: "certificateGrants" must be an object mapping caller patterns to scope arrays',
    ],
    [
      'a client id in certificateGrants',
      base({ certificateGrants: { 'orders-client': ['a'] } }),
      'Callsign: "certificateGrants["orders-client"]" must be a SPIFFE ID or a SPIFFE prefix ending in "/*" (certificates are matched by their SPIFFE ID)',
    ],
    [
      'a malformed SPIFFE pattern in certificateGrants',
      base({ certificateGrants: { 'spiffe://example.org': ['a'] } }),
      'Callsign: "certificateGrants["spiffe://example.org"]" ("spiffe://example.org") is not a valid SPIFFE ID or prefix: expected spiffe://<trust-domain>/<path> or spiffe://<trust-domain>/<path>/*',
    ],
    [
      'a bad scope in certificateGrants',
      base({ certificateGrants: { 'spiffe://example.org/a': ['a b'] } }),
      'Callsign: "certificateGrants["spiffe://example.org/a"]" contains an invalid scope "a b" (RFC 6749 scope-token: printable ASCII, no space, quote or backslash)',
    ],
    [
      'a caller scope with a space',
      base({ callers: { 'orders-client': ['a b'] } }),
      'Callsign: "callers["orders-client"]" contains an invalid scope "a b" (RFC 6749 scope-token: printable ASCII, no space, quote or backslash)',
    ],
    [
      'a caller scope with a quote',
      base({ callers: { 'orders-client': ['a"b'] } }),
      'Callsign: "callers["orders-client"]" contains an invalid scope "a\\"b" (RFC 6749 scope-token: printable ASCII, no space, quote or backslash)',
    ],
    [
      'an empty caller scope',
      base({ callers: { 'orders-client': [''] } }),
      'Callsign: "callers["orders-client"]" contains an invalid scope "" (RFC 6749 scope-token: printable ASCII, no space, quote or backslash)',
    ],
    // numbers
    ['clockTolerance above 300', base({ clockTolerance: 301 }), 'Callsign: "clockTolerance" must be a number >= 0 and <= 300 (got 301)'],
    ['a negative clockTolerance', base({ clockTolerance: -1 }), 'Callsign: "clockTolerance" must be a number >= 0 and <= 300 (got -1)'],
    ['a string clockTolerance', base({ clockTolerance: '30' }), 'Callsign: "clockTolerance" must be a number >= 0 and <= 300 (got "30")'],
    ['a NaN clockTolerance', base({ clockTolerance: Number.NaN }), 'Callsign: "clockTolerance" must be a number >= 0 and <= 300 (got null)'],
    ['a zero maxTokenAge', base({ maxTokenAge: 0 }), 'Callsign: "maxTokenAge" must be a number > 0 (got 0)'],
    ['an infinite maxTokenAge', base({ maxTokenAge: Number.POSITIVE_INFINITY }), 'Callsign: "maxTokenAge" must be a number > 0 (got null)'],
    ['a zero jwks.cacheMaxAgeSeconds', base({ jwks: { cacheMaxAgeSeconds: 0 } }), 'Callsign: "jwks.cacheMaxAgeSeconds" must be a number > 0 (got 0)'],
    ['a negative jwks.cooldownSeconds', base({ jwks: { cooldownSeconds: -1 } }), 'Callsign: "jwks.cooldownSeconds" must be a number >= 0 (got -1)'],
    [
      'a negative jwks.failureBackoffSeconds',
      base({ jwks: { failureBackoffSeconds: -0.5 } }),
      'Callsign: "jwks.failureBackoffSeconds" must be a number >= 0 (got -0.5)',
    ],
    ['a string jwks.maxStaleSeconds', base({ jwks: { maxStaleSeconds: '1d' } }), 'Callsign: "jwks.maxStaleSeconds" must be a number >= 0 (got "1d")'],
    ['a jwks.timeoutSeconds above 60', base({ jwks: { timeoutSeconds: 61 } }), 'Callsign: "jwks.timeoutSeconds" must be a number > 0 and <= 60 (got 61)'],
    ['a zero jwks.timeoutSeconds', base({ jwks: { timeoutSeconds: 0 } }), 'Callsign: "jwks.timeoutSeconds" must be a number > 0 and <= 60 (got 0)'],
    ['a fractional jwks.maxBytes', base({ jwks: { maxBytes: 1.5 } }), 'Callsign: "jwks.maxBytes" must be a whole number > 0 and <= 16777216 (got 1.5)'],
    [
      'a jwks.maxBytes above 16 MiB',
      base({ jwks: { maxBytes: 16 * 1024 * 1024 + 1 } }),
      'Callsign: "jwks.maxBytes" must be a whole number > 0 and <= 16777216 (got 16777217)',
    ],
    ['a jwks.maxKeys above 1000', base({ jwks: { maxKeys: 1001 } }), 'Callsign: "jwks.maxKeys" must be a whole number > 0 and <= 1000 (got 1001)'],
    ['a zero jwks.maxKeys', base({ jwks: { maxKeys: 0 } }), 'Callsign: "jwks.maxKeys" must be a whole number > 0 and <= 1000 (got 0)'],
    [
      'an unknown jwks key',
      base({ jwks: { ttl: 60 } }),
      'Callsign: "jwks.ttl" is not a known option (known: cacheMaxAgeSeconds, cooldownSeconds, failureBackoffSeconds, maxStaleSeconds, timeoutSeconds, maxBytes, maxKeys)',
    ],
    ['jwks as an array', base({ jwks: [] }), 'Callsign: "jwks" must be an object'],
    // functions and flags
    ['a non-function fetch', base({ fetch: 'https://proxy' }), 'Callsign: "fetch" must be a fetch-compatible function'],
    ['a non-function now', base({ now: 1_700_000_000_000 }), 'Callsign: "now" must be a function returning epoch milliseconds'],
    ['a logger without warn', base({ logger: { log() {} } }), 'Callsign: "logger" must have a warn(message, details) method'],
    ['a null logger', base({ logger: null }), 'Callsign: "logger" must have a warn(message, details) method'],
    ['a string prefetch', base({ prefetch: 'yes' }), 'Callsign: "prefetch" must be a boolean'],
    // realm
    ['a realm with a quote', base({ realm: 'my"realm' }), 'Callsign: "realm" must be 1-100 printable ASCII characters without quotes or backslashes'],
    ['a realm with a backslash', base({ realm: 'my\\realm' }), 'Callsign: "realm" must be 1-100 printable ASCII characters without quotes or backslashes'],
    [
      'a realm with a newline',
      base({ realm: 'api\r\nSet-Cookie: x' }),
      'Callsign: "realm" must be 1-100 printable ASCII characters without quotes or backslashes',
    ],
    ['an empty realm', base({ realm: '' }), 'Callsign: "realm" must be 1-100 printable ASCII characters without quotes or backslashes'],
    [
      'a realm over 100 characters',
      base({ realm: 'r'.repeat(101) }),
      'Callsign: "realm" must be 1-100 printable ASCII characters without quotes or backslashes',
    ],
  ])('refuses %s with a TypeError naming the option', (_case, options, message) => {
    expect(() => resolveConfig(options as CallsignOptions)).toThrow(new TypeError(message))
  })

  it('throws a TypeError instance', () => {
    expect(() => resolveConfig(base({ algorithms: ['none'] }))).toThrow(TypeError)
  })

  it.each([
    ['the smallest clockTolerance', { clockTolerance: 0 }, (c: ReturnType<typeof resolveConfig>) => c.clockToleranceSeconds, 0],
    ['the largest clockTolerance', { clockTolerance: 300 }, (c: ReturnType<typeof resolveConfig>) => c.clockToleranceSeconds, 300],
    ['a fractional maxTokenAge', { maxTokenAge: 0.5 }, (c: ReturnType<typeof resolveConfig>) => c.maxTokenAgeSeconds, 0.5],
    ['the largest maxBytes', { jwks: { maxBytes: 16 * 1024 * 1024 } }, (c: ReturnType<typeof resolveConfig>) => c.jwks.maxBytes, 16 * 1024 * 1024],
    ['a realm of 100 characters', { realm: 'r'.repeat(100) }, (c: ReturnType<typeof resolveConfig>) => c.realm, 'r'.repeat(100)],
  ])('accepts %s', (_case, extra, read, expected) => {
    expect(read(resolveConfig(base(extra)))).toBe(expected)
  })
})

describe('parseSecureUrl', () => {
  it('returns a URL for https and loopback http', () => {
    expect(parseSecureUrl('https://auth.example.com/x', 'o').href).toBe('https://auth.example.com/x')
    expect(parseSecureUrl('http://127.0.0.1:1234/x', 'o').href).toBe('http://127.0.0.1:1234/x')
  })

  it('refuses a non-loopback http URL naming the option', () => {
    expect(() => parseSecureUrl('http://127.0.0.2/x', 'jwks_uri')).toThrow(
      new TypeError('Callsign: "jwks_uri" must use https (http is allowed only on 127.0.0.1, localhost and [::1]): "http://127.0.0.2/x"'),
    )
  })
})

describe('scopeList', () => {
  it('returns the scopes it validated', () => {
    expect(scopeList(['orders:read', 'https://api.example/x', '!#[]~'], 'rule.scopes')).toEqual(['orders:read', 'https://api.example/x', '!#[]~'])
  })

  it.each([
    ['a tab', 'a\tb'],
    ['a backslash', 'a\\b'],
    ['a non-ASCII character', 'caf\u00e9'],
    ['a number', 1],
  ])('refuses a scope with %s', (_case, scope) => {
    expect(() => scopeList([scope], 'rule.scopes')).toThrow(/^Callsign: "rule\.scopes" contains an invalid scope /)
  })
})

describe('resolveConfig: sender constraint, DPoP, caller consistency and delegation', () => {
  const SECRET = 's'.repeat(32)
  const REFUSED = 'unsigned and symmetric (HS*) algorithms are refused; access tokens must be signed with an asymmetric key'
  const SPIFFE = 'spiffe://example.org/ns/web/sa/frontend'

  it('uses the documented defaults', () => {
    const config = resolveConfig(base())
    expect(config.senderConstraint).toBe('optional')
    expect(config.dpop.mode).toBe('allowed')
    expect([...config.dpop.algorithms]).toEqual(ASYMMETRIC)
    expect(config.dpop.algs).toBe(ASYMMETRIC.join(' '))
    expect(config.dpop.maxProofAgeSeconds).toBe(60)
    expect(config.dpop.origins).toBeUndefined()
    expect(config.dpop.nonces).toBeUndefined()
    expect(config.dpop.replayStore).toBeInstanceOf(MemoryReplayStore)
    expect(config.dpop.replayStoreTimeoutMs).toBe(500)
    expect(config.callerConsistency).toBe(true)
    expect(config.clientIds.size).toBe(0)
    expect(config.delegation).toEqual({ maxDepth: 4, actors: undefined, hops: undefined })
    expect(Object.isFrozen(config.dpop)).toBe(true)
    expect(Object.isFrozen(config.delegation)).toBe(true)
  })

  it('gives every guard its own default replay store', () => {
    expect(resolveConfig(base()).dpop.replayStore).not.toBe(resolveConfig(base()).dpop.replayStore)
  })

  it('resolves explicit values', () => {
    const replayStore: ReplayStore = { markUsed: () => true }
    const config = resolveConfig(
      base({
        senderConstraint: 'required',
        callerConsistency: 'off',
        dpop: {
          mode: 'required',
          algorithms: ['ES256', 'EdDSA'],
          maxProofAgeSeconds: 600,
          origin: ['HTTPS://Orders.Example:443', 'http://127.0.0.1:8080/'],
          nonce: { secret: SECRET, windowSeconds: 60 },
          replayStore,
          replayStoreTimeoutMs: 30_000,
        },
        clientIds: { 'web-client': SPIFFE },
        delegation: { maxDepth: 8, actors: ['spiffe://example.org/ns/edge/*', 'gateway-client'], hops: [[SPIFFE], ['spiffe://example.org/*']] },
      }),
    )
    expect(config.senderConstraint).toBe('required')
    expect(config.callerConsistency).toBe(false)
    expect(config.dpop.mode).toBe('required')
    expect([...config.dpop.algorithms]).toEqual(['ES256', 'EdDSA'])
    expect(config.dpop.algs).toBe('ES256 EdDSA')
    expect(config.dpop.maxProofAgeSeconds).toBe(600)
    expect(config.dpop.origins).toEqual(['https://orders.example', 'http://127.0.0.1:8080'])
    expect(Object.isFrozen(config.dpop.origins)).toBe(true)
    expect(config.dpop.nonces).toBeInstanceOf(DpopNonces)
    expect(config.dpop.replayStore).toBe(replayStore)
    expect(config.dpop.replayStoreTimeoutMs).toBe(30_000)
    expect([...config.clientIds]).toEqual([['web-client', SPIFFE]])
    expect(config.delegation.maxDepth).toBe(8)
    expect(config.delegation.actors!.map((p) => p.source)).toEqual(['spiffe://example.org/ns/edge/*', 'gateway-client'])
    expect(config.delegation.hops!.map((hop) => hop.map((p) => p.source))).toEqual([[SPIFFE], ['spiffe://example.org/*']])
  })

  it('accepts a single origin string', () => {
    expect(resolveConfig(base({ dpop: { origin: 'https://orders.example/' } })).dpop.origins).toEqual(['https://orders.example'])
  })

  it.each(['off', 'allowed', 'required'] as const)('accepts dpop.mode %s', (mode) => {
    expect(resolveConfig(base({ dpop: { mode } })).dpop.mode).toBe(mode)
  })

  it.each<[string, string | Uint8Array]>([
    ['a 32-character string', 's'.repeat(32)],
    ['a string of 32 UTF-8 bytes in 16 characters', '\u00e9'.repeat(16)],
    ['32 bytes', new Uint8Array(32).fill(9)],
    ['a Buffer', Buffer.alloc(64, 1)],
  ])('accepts a nonce secret of %s', (_case, secret) => {
    expect(resolveConfig(base({ dpop: { nonce: { secret } } })).dpop.nonces).toBeInstanceOf(DpopNonces)
  })

  it('builds nonces on the guard clock with a default window of 300 seconds', () => {
    const now = () => 1_900_000_000_000
    const config = resolveConfig(base({ now, dpop: { nonce: { secret: new Uint8Array(32).fill(3) } } }))
    expect(config.dpop.nonces!.current()).toBe(new DpopNonces(Buffer.alloc(32, 3), 300, now).current())
  })

  it('gives string and byte secrets of the same bytes the same nonces', () => {
    const now = () => 1_900_000_000_000
    const fromString = resolveConfig(base({ now, dpop: { nonce: { secret: SECRET } } })).dpop.nonces!.current()
    const fromBytes = resolveConfig(base({ now, dpop: { nonce: { secret: new TextEncoder().encode(SECRET) } } })).dpop.nonces!.current()
    expect(fromBytes).toBe(fromString)
  })

  it.each<[string, Record<string, unknown>, string]>([
    // dpop
    ['dpop as an array', { dpop: [] }, 'Callsign: "dpop" must be an object'],
    ['dpop as a string', { dpop: 'required' }, 'Callsign: "dpop" must be an object'],
    [
      'an unknown dpop key',
      { dpop: { nonces: {} } },
      'Callsign: "dpop.nonces" is not a known option (known: mode, algorithms, maxProofAgeSeconds, origin, nonce, replayStore, replayStoreTimeoutMs)',
    ],
    ['an unknown dpop.mode', { dpop: { mode: 'on' } }, `Callsign: "dpop.mode" must be one of 'off', 'allowed', 'required' (got "on")`],
    ['a boolean dpop.mode', { dpop: { mode: true } }, `Callsign: "dpop.mode" must be one of 'off', 'allowed', 'required' (got true)`],
    ['dpop.algorithms with HS256', { dpop: { algorithms: ['ES256', 'HS256'] } }, `Callsign: "dpop.algorithms" contains "HS256": ${REFUSED}`],
    ['dpop.algorithms with none', { dpop: { algorithms: ['none'] } }, `Callsign: "dpop.algorithms" contains "none": ${REFUSED}`],
    ['empty dpop.algorithms', { dpop: { algorithms: [] } }, 'Callsign: "dpop.algorithms" must be a non-empty array of algorithm names'],
    [
      'dpop.maxProofAgeSeconds above 600',
      { dpop: { maxProofAgeSeconds: 601 } },
      'Callsign: "dpop.maxProofAgeSeconds" must be a number > 0 and <= 600 (got 601)',
    ],
    ['a zero dpop.maxProofAgeSeconds', { dpop: { maxProofAgeSeconds: 0 } }, 'Callsign: "dpop.maxProofAgeSeconds" must be a number > 0 and <= 600 (got 0)'],
    [
      'a zero dpop.replayStoreTimeoutMs',
      { dpop: { replayStoreTimeoutMs: 0 } },
      'Callsign: "dpop.replayStoreTimeoutMs" must be a number > 0 and <= 30000 (got 0)',
    ],
    [
      'dpop.replayStoreTimeoutMs above 30 s',
      { dpop: { replayStoreTimeoutMs: 30_001 } },
      'Callsign: "dpop.replayStoreTimeoutMs" must be a number > 0 and <= 30000 (got 30001)',
    ],
    // origin
    [
      'an origin with a path',
      { dpop: { origin: 'https://orders.example/api' } },
      'Callsign: "dpop.origin" must be an origin (scheme://host[:port]) without a path: "https://orders.example/api"',
    ],
    [
      'an origin with a query',
      { dpop: { origin: 'https://orders.example/?a=1' } },
      'Callsign: "dpop.origin" must be an origin (scheme://host[:port]) without a path: "https://orders.example/?a=1"',
    ],
    ['an origin with a fragment', { dpop: { origin: 'https://orders.example/#x' } }, 'Callsign: "dpop.origin" must not contain a fragment'],
    ['an origin with credentials', { dpop: { origin: 'https://u:p@orders.example' } }, 'Callsign: "dpop.origin" must not contain credentials'],
    [
      'an http origin off loopback',
      { dpop: { origin: ['https://orders.example', 'http://orders.example'] } },
      'Callsign: "dpop.origin" must use https (http is allowed only on 127.0.0.1, localhost and [::1]): "http://orders.example"',
    ],
    ['an origin that is no URL', { dpop: { origin: 'orders.example' } }, 'Callsign: "dpop.origin" is not a valid URL: "orders.example"'],
    ['an empty origin list', { dpop: { origin: [] } }, 'Callsign: "dpop.origin" must be a non-empty string or a non-empty array of non-empty strings'],
    // nonce
    [
      'a nonce secret of 31 bytes',
      { dpop: { nonce: { secret: 's'.repeat(31) } } },
      'Callsign: "dpop.nonce.secret" must be a string or bytes of at least 32 bytes, the same on every replica',
    ],
    [
      'a nonce secret of 31 bytes as Uint8Array',
      { dpop: { nonce: { secret: new Uint8Array(31) } } },
      'Callsign: "dpop.nonce.secret" must be a string or bytes of at least 32 bytes, the same on every replica',
    ],
    [
      'a numeric nonce secret',
      { dpop: { nonce: { secret: 12345 } } },
      'Callsign: "dpop.nonce.secret" must be a string or bytes of at least 32 bytes, the same on every replica',
    ],
    [
      'a nonce without secret',
      { dpop: { nonce: {} } },
      'Callsign: "dpop.nonce.secret" must be a string or bytes of at least 32 bytes, the same on every replica',
    ],
    ['a nonce as a string', { dpop: { nonce: SECRET } }, 'Callsign: "dpop.nonce" must be { secret, windowSeconds? }'],
    [
      'an unknown nonce key',
      { dpop: { nonce: { secret: SECRET, window: 60 } } },
      'Callsign: "dpop.nonce.window" is not a known option (known: secret, windowSeconds)',
    ],
    [
      'a zero nonce window',
      { dpop: { nonce: { secret: SECRET, windowSeconds: 0 } } },
      'Callsign: "dpop.nonce.windowSeconds" must be a number > 0 and <= 86400 (got 0)',
    ],
    [
      'a nonce window above a day',
      { dpop: { nonce: { secret: SECRET, windowSeconds: 86_401 } } },
      'Callsign: "dpop.nonce.windowSeconds" must be a number > 0 and <= 86400 (got 86401)',
    ],
    // replay store
    [
      'a replayStore without markUsed',
      { dpop: { replayStore: { get() {}, set() {} } } },
      'Callsign: "dpop.replayStore" must implement markUsed(key, ttlSeconds)',
    ],
    ['a null replayStore', { dpop: { replayStore: null } }, 'Callsign: "dpop.replayStore" must implement markUsed(key, ttlSeconds)'],
    ['a function as replayStore', { dpop: { replayStore: () => true } }, 'Callsign: "dpop.replayStore" must implement markUsed(key, ttlSeconds)'],
    // senderConstraint, callerConsistency
    ['an unknown senderConstraint', { senderConstraint: 'always' }, `Callsign: "senderConstraint" must be one of 'required', 'optional' (got "always")`],
    ['a boolean callerConsistency', { callerConsistency: true }, `Callsign: "callerConsistency" must be one of 'enforce', 'off' (got true)`],
    ['an unknown callerConsistency', { callerConsistency: 'warn' }, `Callsign: "callerConsistency" must be one of 'enforce', 'off' (got "warn")`],
    // clientIds
    ['clientIds as an array', { clientIds: [SPIFFE] }, 'Callsign: "clientIds" must be an object mapping client ids to SPIFFE IDs'],
    [
      'a clientIds value that is no SPIFFE ID',
      { clientIds: { 'web-client': 'frontend' } },
      'Callsign: "clientIds["web-client"]" must be a workload SPIFFE ID (got "frontend")',
    ],
    [
      'a clientIds value naming only a trust domain',
      { clientIds: { 'web-client': 'spiffe://example.org' } },
      'Callsign: "clientIds["web-client"]" must be a workload SPIFFE ID (got "spiffe://example.org")',
    ],
    [
      'a clientIds prefix pattern',
      { clientIds: { 'web-client': 'spiffe://example.org/ns/*' } },
      'Callsign: "clientIds["web-client"]" must be a workload SPIFFE ID (got "spiffe://example.org/ns/*")',
    ],
    ['a numeric clientIds value', { clientIds: { 'web-client': 1 } }, 'Callsign: "clientIds["web-client"]" must be a workload SPIFFE ID (got 1)'],
    // delegation
    ['delegation as an array', { delegation: [] }, 'Callsign: "delegation" must be an object'],
    ['an unknown delegation key', { delegation: { depth: 2 } }, 'Callsign: "delegation.depth" is not a known option (known: maxDepth, actors, hops)'],
    ['delegation.maxDepth 9', { delegation: { maxDepth: 9 } }, 'Callsign: "delegation.maxDepth" must be a whole number > 0 and <= 8 (got 9)'],
    ['delegation.maxDepth 0', { delegation: { maxDepth: 0 } }, 'Callsign: "delegation.maxDepth" must be a whole number > 0 and <= 8 (got 0)'],
    ['a fractional delegation.maxDepth', { delegation: { maxDepth: 2.5 } }, 'Callsign: "delegation.maxDepth" must be a whole number > 0 and <= 8 (got 2.5)'],
    [
      'empty delegation.actors',
      { delegation: { actors: [] } },
      'Callsign: "delegation.actors" must be a non-empty string or a non-empty array of non-empty strings',
    ],
    [
      'a wildcard client id in delegation.actors',
      { delegation: { actors: [SPIFFE, 'gateway-*'] } },
      'Callsign: "delegation.actors[1]" ("gateway-*"): wildcards are only allowed as a trailing "/*" of a SPIFFE ID',
    ],
    [
      'an invalid SPIFFE ID in delegation.actors',
      { delegation: { actors: ['spiffe://Example.org/*'] } },
      'Callsign: "delegation.actors[0]" ("spiffe://Example.org/*") is not a valid SPIFFE ID or prefix: expected spiffe://<trust-domain>/<path> or spiffe://<trust-domain>/<path>/*',
    ],
    ['empty delegation.hops', { delegation: { hops: [] } }, 'Callsign: "delegation.hops" must be a non-empty array of pattern arrays, nearest actor first'],
    [
      'delegation.hops as a string',
      { delegation: { hops: SPIFFE } },
      'Callsign: "delegation.hops" must be a non-empty array of pattern arrays, nearest actor first',
    ],
    [
      'an empty hop',
      { delegation: { hops: [[SPIFFE], []] } },
      'Callsign: "delegation.hops[1]" must be a non-empty string or a non-empty array of non-empty strings',
    ],
    [
      'a bad pattern in a hop',
      { delegation: { hops: [[SPIFFE], [SPIFFE, 'SPIFFE://example.org/x']] } },
      'Callsign: "delegation.hops[1][1]" ("SPIFFE://example.org/x"): SPIFFE IDs start with a lower-case "spiffe://"',
    ],
  ])('refuses %s with a TypeError naming the option', (_case, extra, message) => {
    expect(() => resolveConfig(base(extra))).toThrow(new TypeError(message))
  })
})

describe('mtls.trustDomains as a map of trust domain to CA bundle', () => {
  let ours: TestCa
  let partner: TestCa
  let dir: string
  beforeAll(async () => {
    ;[ours, partner] = await Promise.all([createTestCa({ commonName: 'Ours' }), createTestCa({ commonName: 'Partner' })])
    dir = mkdtempSync(join(tmpdir(), 'callsign-options-'))
  })
  afterAll(() => rmSync(dir, { recursive: true, force: true }))
  const subjects = (config: ReturnType<typeof resolveConfig>, domain: string): string[] | undefined =>
    config.mtls.trustBundles?.anchorsOf(domain)?.map((cert) => cert.subject)

  it('accepts PEM text, an array of PEM texts, a Buffer and { path, pollSeconds }, each read at startup', () => {
    const path = join(dir, 'partner.pem')
    writeFileSync(path, partner.certPem)
    const config = resolveConfig(
      base({
        mtls: {
          trustDomains: {
            'example.org': ours.certPem,
            'both.example': [ours.certPem, partner.certPem],
            'buffer.example': Buffer.from(ours.certPem),
            'partner.org': { path, pollSeconds: 30 },
          },
        },
      }),
    )
    expect([...config.mtls.trustDomains!]).toEqual(['example.org', 'both.example', 'buffer.example', 'partner.org'])
    expect(subjects(config, 'example.org')).toEqual(['CN=Ours'])
    expect(subjects(config, 'both.example')).toEqual(['CN=Ours', 'CN=Partner'])
    expect(subjects(config, 'buffer.example')).toEqual(['CN=Ours'])
    expect(subjects(config, 'partner.org')).toEqual(['CN=Partner'])
    // The array form keeps its meaning: no bundles.
    expect(resolveConfig(base({ mtls: { trustDomains: ['example.org'] } })).mtls.trustBundles).toBeUndefined()
  })

  it('makes mtls.forwarded.ca optional (the bundles are the default anchors), also for nginx', () => {
    const trustDomains = { 'example.org': ours.certPem }
    for (const format of ['xfcc', 'nginx'] as const) {
      const config = resolveConfig(
        base({ mtls: { trustDomains, forwarded: { format, trustedProxies: { spiffeIds: ['spiffe://example.org/ns/istio-system/*'] } } } }),
      )
      expect(config.mtls.forwarded?.anchors).toEqual([])
    }
    expect(() => resolveConfig(base({ mtls: { trustDomains: ['example.org'], forwarded: { trustedProxies: { cidrs: ['127.0.0.1'] } } } }))).toThrow(
      '"mtls.forwarded.ca" is required',
    )
  })

  it.each<[string, () => unknown, string]>([
    ['an empty map', () => ({}), 'Callsign: "mtls.trustDomains" must name at least one trust domain'],
    [
      'an invalid trust domain',
      () => ({ 'Example.org': ours.certPem }),
      'Callsign: "mtls.trustDomains" contains an invalid trust domain "Example.org" (lower-case letters, digits, ".", "-", "_")',
    ],
    [
      'text without a PEM certificate',
      () => ({ 'partner.org': 'not pem' }),
      'Callsign: "mtls.trustDomains["partner.org"]" must contain at least one PEM certificate',
    ],
    [
      'a PEM certificate that does not parse',
      () => ({ 'partner.org': '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' }),
      'Callsign: "mtls.trustDomains["partner.org"]" certificate #1 cannot be parsed',
    ],
    [
      'a cut-off PEM certificate',
      () => ({ 'partner.org': partner.certPem.slice(0, 300) }),
      'Callsign: "mtls.trustDomains["partner.org"]" has a PEM certificate without its END line (a truncated, half-written file?)',
    ],
    [
      'a missing file',
      () => ({ 'partner.org': { path: join(dir, 'missing.pem') } }),
      'Callsign: "mtls.trustDomains["partner.org"].path" cannot be read: ENOENT',
    ],
    [
      'a file without a certificate',
      () => ({ 'partner.org': { path: emptyFile() } }),
      'Callsign: "mtls.trustDomains["partner.org"].path" must contain at least one PEM certificate',
    ],
    [
      'a number',
      () => ({ 'partner.org': 42 }),
      'Callsign: "mtls.trustDomains["partner.org"]" must be the PEM CA bundle of the trust domain: a string, an array of strings, a Buffer or { path, pollSeconds? }',
    ],
    [
      'an object without path',
      () => ({ 'partner.org': { pem: partner.certPem } }),
      'Callsign: "mtls.trustDomains["partner.org"]" must be the PEM CA bundle of the trust domain: a string, an array of strings, a Buffer or { path, pollSeconds? }',
    ],
    [
      'an unknown key next to path',
      () => ({ 'partner.org': { path: emptyFile(), watch: true } }),
      'Callsign: "mtls.trustDomains["partner.org"].watch" is not a known option (known: path, pollSeconds)',
    ],
    [
      'pollSeconds 0',
      () => ({ 'partner.org': { path: emptyFile(), pollSeconds: 0 } }),
      'Callsign: "mtls.trustDomains["partner.org"].pollSeconds" must be a number > 0 and <= 3600 (got 0)',
    ],
    [
      'an empty array',
      () => ({ 'partner.org': [] }),
      'Callsign: "mtls.trustDomains["partner.org"]" must be a non-empty string or a non-empty array of non-empty strings',
    ],
  ])('refuses %s with a TypeError naming the option', (_case, trustDomains, message) => {
    const attempt = (): unknown => resolveConfig(base({ mtls: { trustDomains: trustDomains() } }))
    expect(attempt).toThrow(TypeError)
    expect(attempt).toThrow(message)
  })

  it('refuses a trusted proxy SPIFFE ID whose trust domain has no bundle (nothing could prove it)', () => {
    const mtls = {
      trustDomains: { 'example.org': ours.certPem },
      forwarded: { trustedProxies: { spiffeIds: ['spiffe://example.org/ns/a', 'spiffe://mesh.local/ingress/*'] } },
    }
    expect(() => resolveConfig(base({ mtls }))).toThrow(
      new TypeError(
        'Callsign: "mtls.forwarded.trustedProxies.spiffeIds[1]" names the trust domain "mesh.local", which has no bundle in "mtls.trustDomains": a proxy\'s SPIFFE ID is proven by its domain\'s bundle',
      ),
    )
  })

  function emptyFile(): string {
    const path = join(dir, 'empty.pem')
    writeFileSync(path, '# no certificate here\n')
    return path
  }
})
