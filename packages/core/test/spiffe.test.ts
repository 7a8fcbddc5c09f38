import { X509Certificate } from 'node:crypto'
import { createTestCa, type TestCa } from '@callsign/testing'
import { beforeAll, describe, expect, it } from 'vitest'
import { compileCallerPattern, isWorkloadSpiffeId, parseSpiffeId, spiffeIdOfCertificate } from '../src/spiffe.js'

describe('parseSpiffeId', () => {
  it.each([
    ['spiffe://example.org/ns/orders/sa/api', 'example.org', ['ns', 'orders', 'sa', 'api']],
    ['spiffe://example.org', 'example.org', []],
    ['spiffe://my-domain_1.example.org/a', 'my-domain_1.example.org', ['a']],
    ['spiffe://example.org/A-Z.a_z09', 'example.org', ['A-Z.a_z09']],
    ['spiffe://example.org/.hidden/..x/x..', 'example.org', ['.hidden', '..x', 'x..']],
  ])('parses the valid ID %s', (id, trustDomain, segments) => {
    expect(parseSpiffeId(id)).toEqual({ id, trustDomain, segments })
  })

  it('accepts an ID of exactly 2048 bytes', () => {
    const base = 'spiffe://example.org/'
    const id = base + 'a'.repeat(2048 - base.length)
    expect(id.length).toBe(2048)
    expect(parseSpiffeId(id)?.segments).toEqual(['a'.repeat(2048 - base.length)])
  })

  it.each([
    ['upper-case scheme', 'SPIFFE://example.org/a'],
    ['mixed-case scheme', 'Spiffe://example.org/a'],
    ['other scheme', 'https://example.org/a'],
    ['missing authority slashes', 'spiffe:example.org/a'],
    ['upper-case trust domain', 'spiffe://Example.org/a'],
    ['port', 'spiffe://example.org:8443/a'],
    ['userinfo', 'spiffe://user@example.org/a'],
    ['userinfo with password', 'spiffe://user:pw@example.org/a'],
    ['query', 'spiffe://example.org/a?x=1'],
    ['fragment', 'spiffe://example.org/a#frag'],
    ['percent-encoding in the path', 'spiffe://example.org/a%2Fb'],
    ['percent-encoding in the trust domain', 'spiffe://exa%6Dple.org/a'],
    ['empty segment', 'spiffe://example.org/a//b'],
    ['leading empty segment', 'spiffe://example.org//a'],
    ['"." segment', 'spiffe://example.org/a/./b'],
    ['".." segment', 'spiffe://example.org/a/../b'],
    ['final ".." segment', 'spiffe://example.org/a/..'],
    ['trailing slash', 'spiffe://example.org/a/'],
    ['trailing slash after the trust domain', 'spiffe://example.org/'],
    ['empty trust domain', 'spiffe:///a'],
    ['nothing after the scheme', 'spiffe://'],
    ['space in a segment', 'spiffe://example.org/a b'],
    ['non-ASCII segment', 'spiffe://example.org/caf\u00e9'],
    ['wildcard segment', 'spiffe://example.org/*'],
    ['more than 2048 bytes', `spiffe://example.org/${'a'.repeat(2048 - 'spiffe://example.org/'.length + 1)}`],
    ['trust domain longer than 255 characters', `spiffe://${'a'.repeat(256)}/x`],
    ['empty string', ''],
  ])('refuses an ID with %s', (_case, id) => {
    expect(parseSpiffeId(id)).toBeUndefined()
  })

  it('refuses a non-string value', () => {
    expect(parseSpiffeId(42 as unknown as string)).toBeUndefined()
  })

  it('tells workload IDs from trust-domain IDs', () => {
    expect(isWorkloadSpiffeId('spiffe://example.org/ns/a')).toBe(true)
    expect(isWorkloadSpiffeId('spiffe://example.org')).toBe(false)
    expect(isWorkloadSpiffeId('spiffe://example.org/a/')).toBe(false)
  })
})

describe('compileCallerPattern', () => {
  const match = (pattern: string, caller: string): boolean => compileCallerPattern(pattern, 'callers').matches(caller)

  it('keeps the pattern as its source', () => {
    expect(compileCallerPattern('spiffe://example.org/ns/batch/*', 'x').source).toBe('spiffe://example.org/ns/batch/*')
  })

  it.each([
    // exact SPIFFE ID
    ['spiffe://example.org/ns/batch/sa/worker', 'spiffe://example.org/ns/batch/sa/worker', true],
    ['spiffe://example.org/ns/batch/sa/worker', 'spiffe://example.org/ns/batch/sa/worker2', false],
    ['spiffe://example.org/ns/batch/sa/worker', 'spiffe://example.org/ns/batch/sa/worker/x', false],
    ['spiffe://example.org/ns/batch/sa/worker', 'spiffe://other.org/ns/batch/sa/worker', false],
    // prefix on segment boundaries
    ['spiffe://example.org/ns/batch/*', 'spiffe://example.org/ns/batch/sa/worker', true],
    ['spiffe://example.org/ns/batch/*', 'spiffe://example.org/ns/batch/x', true],
    ['spiffe://example.org/ns/batch/*', 'spiffe://example.org/ns/batch-evil/x', false],
    ['spiffe://example.org/ns/batch/*', 'spiffe://example.org/ns/batchx', false],
    ['spiffe://example.org/ns/batch/*', 'spiffe://example.org/ns/batch', false],
    ['spiffe://example.org/ns/batch/*', 'spiffe://example.org/ns/batch/', false],
    ['spiffe://example.org/ns/batch/*', 'spiffe://example.org/ns/batch//x', false],
    ['spiffe://example.org/ns/batch/*', 'spiffe://example.org/ns/batch/../admin', false],
    ['spiffe://example.org/ns/batch/*', 'spiffe://example.org/ns/batch/x?y', false],
    ['spiffe://example.org/ns/batch/*', 'spiffe://example.org.evil/ns/batch/x', false],
    ['spiffe://example.org/ns/batch/*', 'batch-client', false],
    // trust-domain wildcard
    ['spiffe://example.org/*', 'spiffe://example.org/ns/a/sa/b', true],
    ['spiffe://example.org/*', 'spiffe://example.org/a', true],
    ['spiffe://example.org/*', 'spiffe://example.org', false],
    ['spiffe://example.org/*', 'spiffe://example.org.evil/a', false],
    ['spiffe://example.org/*', 'spiffe://example.orgx/a', false],
    ['spiffe://example.org/*', 'spiffe://other.org/a', false],
    // client id
    ['orders-client', 'orders-client', true],
    ['orders-client', 'orders-client2', false],
    ['orders-client', 'Orders-client', false],
    ['orders-client', 'spiffe://example.org/orders-client', false],
  ])('pattern %s matches %s: %s', (pattern, caller, expected) => {
    expect(match(pattern, caller)).toBe(expected)
  })

  it.each([
    ['wildcard in a client id', 'orders-*', 'Callsign: "rule.callers[0]" ("orders-*"): wildcards are only allowed as a trailing "/*" of a SPIFFE ID'],
    ['bare wildcard', '*', 'Callsign: "rule.callers[0]" ("*"): wildcards are only allowed as a trailing "/*" of a SPIFFE ID'],
    ['empty string', '', 'Callsign: "rule.callers[0]" must be a non-empty string: a SPIFFE ID, a SPIFFE prefix ending in "/*", or a client id'],
    [
      'trust-domain ID without a path',
      'spiffe://example.org',
      'Callsign: "rule.callers[0]" ("spiffe://example.org") is not a valid SPIFFE ID or prefix: expected spiffe://<trust-domain>/<path> or spiffe://<trust-domain>/<path>/*',
    ],
    [
      'wildcard inside a SPIFFE path',
      'spiffe://example.org/ns/*/sa/x',
      'Callsign: "rule.callers[0]" ("spiffe://example.org/ns/*/sa/x") is not a valid SPIFFE ID or prefix: expected spiffe://<trust-domain>/<path> or spiffe://<trust-domain>/<path>/*',
    ],
    [
      'partial-segment wildcard',
      'spiffe://example.org/ns/batch*',
      'Callsign: "rule.callers[0]" ("spiffe://example.org/ns/batch*") is not a valid SPIFFE ID or prefix: expected spiffe://<trust-domain>/<path> or spiffe://<trust-domain>/<path>/*',
    ],
    [
      'wildcard trust domain',
      'spiffe://*.example.org/*',
      'Callsign: "rule.callers[0]" ("spiffe://*.example.org/*") is not a valid SPIFFE ID or prefix: expected spiffe://<trust-domain>/<path> or spiffe://<trust-domain>/<path>/*',
    ],
    [
      'upper-case trust domain',
      'spiffe://Example.org/a',
      'Callsign: "rule.callers[0]" ("spiffe://Example.org/a") is not a valid SPIFFE ID or prefix: expected spiffe://<trust-domain>/<path> or spiffe://<trust-domain>/<path>/*',
    ],
    [
      'trailing slash',
      'spiffe://example.org/a/',
      'Callsign: "rule.callers[0]" ("spiffe://example.org/a/") is not a valid SPIFFE ID or prefix: expected spiffe://<trust-domain>/<path> or spiffe://<trust-domain>/<path>/*',
    ],
    [
      'double wildcard',
      'spiffe://example.org/a/**',
      'Callsign: "rule.callers[0]" ("spiffe://example.org/a/**") is not a valid SPIFFE ID or prefix: expected spiffe://<trust-domain>/<path> or spiffe://<trust-domain>/<path>/*',
    ],
  ])('throws a TypeError naming the option for a %s', (_case, pattern, message) => {
    expect(() => compileCallerPattern(pattern, 'rule.callers[0]')).toThrow(new TypeError(message))
  })

  it('throws a TypeError for a non-string pattern', () => {
    expect(() => compileCallerPattern(undefined as unknown as string, 'callers')).toThrow(TypeError)
  })
})

describe('spiffeIdOfCertificate', () => {
  const API = 'spiffe://example.org/ns/orders/sa/api'
  let ca: TestCa
  beforeAll(async () => {
    ca = await createTestCa()
  })
  const idOf = async (options: Parameters<TestCa['issueServerCertificate']>[0]): Promise<string | undefined> =>
    spiffeIdOfCertificate(new X509Certificate((await ca.issueServerCertificate(options)).certPem))

  it('reads the SPIFFE ID of a server certificate (serverAuth, DNS names beside it)', async () => {
    expect(await idOf({ spiffeId: API })).toBe(API)
    expect(await idOf({ spiffeId: API, dnsNames: ['api.example.org'] })).toBe(API)
  })

  it('reads it from a client certificate too', async () => {
    expect(spiffeIdOfCertificate(new X509Certificate((await ca.issueCertificate({ spiffeId: API })).certPem))).toBe(API)
  })

  it('ignores URI SANs that are not SPIFFE IDs', async () => {
    expect(await idOf({ spiffeId: API, uris: ['https://api.example.org/'] })).toBe(API)
  })

  it.each([
    ['no SAN', {}],
    ['only a DNS name', { dnsNames: ['api.example.org'] }],
    ['only an https URI', { uris: ['https://api.example.org/'] }],
    ['two SPIFFE IDs', { spiffeId: API, uris: ['spiffe://example.org/ns/orders/sa/other'] }],
    ['a malformed SPIFFE ID', { uris: ['spiffe://Example.org//x'] }],
    ['an upper-case scheme beside a valid ID', { spiffeId: API, uris: ['SPIFFE://example.org/ns/x'] }],
    ['a trust-domain ID (no path)', { uris: ['spiffe://example.org'] }],
    ['a SAN crafted to read like two in a naive split', { uris: [`https://x.example/a, URI:${API}`] }],
  ])('returns undefined for %s', async (_, options) => {
    expect(await idOf(options)).toBeUndefined()
  })
})
