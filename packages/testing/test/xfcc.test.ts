import { createHash, X509Certificate } from 'node:crypto'
import { beforeAll, describe, expect, it } from 'vitest'
import { certificateHash, createTestCa, nginxEscapedCert, xfccElement, xfccHeader, type IssuedCertificate, type TestCa } from '../src/index.js'

const SPIFFE_ID = 'spiffe://example.org/ns/web/sa/frontend'

let ca: TestCa
let svid: IssuedCertificate

beforeAll(async () => {
  ca = await createTestCa()
  svid = await ca.issueCertificate({ spiffeId: SPIFFE_ID, dnsNames: ['web.example.org'] })
})

/** The value of `key` in an element whose values are quoted (`key="..."`), unescaped. */
function quotedValue(element: string, key: string): string | undefined {
  const match = new RegExp(`(?:^|;)${key}="((?:[^"\\\\]|\\\\.)*)"`).exec(element)
  return match?.[1]?.replace(/\\(.)/g, '$1')
}

describe('xfccElement', () => {
  it('writes the keys in Envoy order, Hash as lower-case hex of the DER', () => {
    const element = xfccElement({ dns: ['web.example.org'], uri: [SPIFFE_ID], subject: 'CN=web', by: 'spiffe://example.org/ns/istio-system/sa/ingress' })
    const hash = createHash('sha256').update(new X509Certificate(svid.certPem).raw).digest('hex')
    expect(() => xfccElement({ hash: true })).toThrow(TypeError)
    const withCert = xfccElement({ cert: svid, hash: true, uri: [SPIFFE_ID] })
    expect(withCert.startsWith(`Hash=${hash};Cert="`)).toBe(true)
    expect(withCert.endsWith(`";URI=${SPIFFE_ID}`)).toBe(true)
    expect(element).toBe(`By=spiffe://example.org/ns/istio-system/sa/ingress;Subject="CN=web";URI=${SPIFFE_ID};DNS=web.example.org`)
  })

  it('reproduces the element of Envoy documentation', () => {
    expect(
      xfccElement({
        by: 'http://frontend.lyft.com',
        hash: '468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688',
        subject: '/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client',
        uri: ['http://testclient.lyft.com'],
        dns: ['lyft.com', 'www.lyft.com'],
      }),
    ).toBe(
      'By=http://frontend.lyft.com;Hash=468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688;' +
        'Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com;DNS=lyft.com;DNS=www.lyft.com',
    )
  })

  it('URL-encodes Cert and Chain and quotes them; the PEM comes back with decodeURIComponent', () => {
    const element = xfccElement({ cert: svid.certPem, chain: [svid.certPem, ca.certPem] })
    const cert = quotedValue(element, 'Cert')
    const chain = quotedValue(element, 'Chain')
    expect(cert).toMatch(/^-----BEGIN%20CERTIFICATE-----%0A[A-Za-z0-9%]+-----END%20CERTIFICATE-----%0A$/)
    expect(decodeURIComponent(cert!)).toBe(svid.certPem)
    expect(decodeURIComponent(chain!)).toBe(svid.certPem + ca.certPem)
    // No separator of the XFCC grammar survives the encoding.
    expect(cert).not.toMatch(/[,;="\\]/)
  })

  it.each([
    ['a comma', 'a,b', '"a,b"'],
    ['a semicolon', 'a;b', '"a;b"'],
    ['an equals sign', 'https://x.example/?a=b', '"https://x.example/?a=b"'],
    ['a double quote', 'say "hi"', '"say \\"hi\\""'],
    ['a backslash', 'a\\b', '"a\\\\b"'],
    ['outer spaces', ' a ', '" a "'],
  ])('quotes and escapes a value with %s', (_name, value, written) => {
    expect(xfccElement({ uri: [value] })).toBe(`URI=${written}`)
    expect(xfccElement({ subject: value })).toBe(`Subject=${written.startsWith('"') ? written : `"${written}"`}`)
  })

  it('leaves plain values unquoted (Envoy writes URI, DNS, By and Hash bare)', () => {
    expect(xfccElement({ uri: [SPIFFE_ID], dns: ['a.example'], hash: 'ab12', by: 'spiffe://x/y' })).toBe(
      `By=spiffe://x/y;Hash=ab12;URI=${SPIFFE_ID};DNS=a.example`,
    )
  })

  it('refuses an element without keys', () => {
    expect(() => xfccElement({})).toThrow(TypeError)
  })
})

describe('xfccHeader', () => {
  it('joins elements with a comma, first proxy first', () => {
    expect(xfccHeader('By=a;Hash=01', 'By=b;Hash=02')).toBe('By=a;Hash=01,By=b;Hash=02')
    expect(xfccHeader('URI=x')).toBe('URI=x')
  })
})

describe('nginxEscapedCert', () => {
  it('escapes everything but unreserved characters, upper-case hex, as nginx does', () => {
    const escaped = nginxEscapedCert(svid.certPem)
    expect(escaped).toMatch(/^-----BEGIN%20CERTIFICATE-----%0A[A-Za-z0-9%._~-]+-----END%20CERTIFICATE-----%0A$/)
    expect(escaped).not.toMatch(/%[0-9a-f][a-f]|%[a-f][0-9]/) // upper-case hex only
    expect(decodeURIComponent(escaped)).toBe(svid.certPem)
    expect(nginxEscapedCert(svid)).toBe(escaped)
    // For PEM text (no !*'()) it is exactly encodeURIComponent.
    expect(escaped).toBe(encodeURIComponent(svid.certPem))
    expect(nginxEscapedCert("a!*'()~b")).toBe('a%21%2A%27%28%29~b')
  })
})

describe('certificateHash', () => {
  it('is the lower-case hex SHA-256 of the DER, the hex form of x5tS256', () => {
    const hash = certificateHash(svid.certPem)
    expect(hash).toMatch(/^[0-9a-f]{64}$/)
    expect(Buffer.from(hash, 'hex').toString('base64url')).toBe(svid.x5tS256)
  })
})
