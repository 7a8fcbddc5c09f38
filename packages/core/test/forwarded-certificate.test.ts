import { createHash, webcrypto, X509Certificate } from 'node:crypto'
import { createRequire } from 'node:module'
import { BlockList } from 'node:net'
import { createTestCa, xfccElement, xfccHeader, nginxEscapedCert, type IssuedCertificate, type TestCa } from '@callsign/testing'
import { beforeAll, describe, expect, it } from 'vitest'
import { AuthError } from '../src/errors.js'
import {
  addressTrusted,
  compileCidrs,
  decodeForwardedPem,
  ForwardedPeers,
  parseXfcc,
  verifyForwardedChain,
  XFCC_LIMITS,
  type ResolvedForwarded,
} from '../src/forwarded-certificate.js'
import { TrustBundles } from '../src/trust-bundles.js'

const CLIENT_ID = 'spiffe://example.org/ns/web/sa/frontend'
const ENVOY_HASH = '468ed33be74eee6556d90c0149c1309e9ba61d6425303443c0748a02dd8de688'
const HOUR = 3600_000
const DAY = 24 * HOUR

let ca: TestCa
let otherCa: TestCa
let client: IssuedCertificate
let expired: IssuedCertificate
let notYetValid: IssuedCertificate
let serverOnly: IssuedCertificate
let bothUsages: IssuedCertificate
let untrusted: IssuedCertificate
let twoUris: IssuedCertificate
let pki: TwoLevelPki

const cert = (pem: string | IssuedCertificate): X509Certificate => new X509Certificate(typeof pem === 'string' ? pem : pem.certPem)
const hexHash = (issued: IssuedCertificate): string => createHash('sha256').update(cert(issued).raw).digest('hex')

beforeAll(async () => {
  ;[ca, otherCa] = await Promise.all([createTestCa(), createTestCa()])
  ;[client, expired, notYetValid, serverOnly, bothUsages, untrusted, twoUris, pki] = await Promise.all([
    ca.issueCertificate({ spiffeId: CLIENT_ID, dnsNames: ['web.example.org'] }),
    ca.issueCertificate({ spiffeId: CLIENT_ID, validity: 'expired' }),
    ca.issueCertificate({ spiffeId: CLIENT_ID, validity: 'not-yet-valid' }),
    ca.issueCertificate({ spiffeId: CLIENT_ID, usage: 'server' }),
    ca.issueCertificate({ spiffeId: CLIENT_ID, usage: 'both' }),
    otherCa.issueCertificate({ spiffeId: CLIENT_ID }),
    ca.issueCertificate({ spiffeId: CLIENT_ID, uris: ['spiffe://example.org/ns/batch/sa/worker'] }),
    twoLevelPki(ca),
  ])
})

/** The AuthError `fn` throws. */
function caught(fn: () => unknown): AuthError {
  try {
    fn()
  } catch (error) {
    expect(error).toBeInstanceOf(AuthError)
    return error as AuthError
  }
  throw new Error('expected an AuthError, nothing was thrown')
}

const entries = (element: Map<string, string[]>): Record<string, string[]> => Object.fromEntries(element)

describe('parseXfcc', () => {
  it("parses Envoy's documented single element (By, Hash, quoted Subject, URI)", () => {
    const header = `By=spiffe://lyft.com/backend-team;Hash=${ENVOY_HASH};Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=spiffe://lyft.com/frontend-team`
    const elements = parseXfcc(header)
    expect(elements).toHaveLength(1)
    expect(entries(elements[0]!)).toEqual({
      by: ['spiffe://lyft.com/backend-team'],
      hash: [ENVOY_HASH],
      subject: ['/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client'],
      uri: ['spiffe://lyft.com/frontend-team'],
    })
  })

  it("parses Envoy's documented two-element header (one element per proxy, in order)", () => {
    const second = '9ba61d6425303443c0748a02dd8de688468ed33be74eee6556d90c0149c1309e'
    const header = `By=http://frontend.lyft.com;Hash=${ENVOY_HASH};URI=http://testclient.lyft.com,By=http://backend.lyft.com;Hash=${second};URI=http://frontend.lyft.com`
    const elements = parseXfcc(header)
    expect(elements.map(entries)).toEqual([
      { by: ['http://frontend.lyft.com'], hash: [ENVOY_HASH], uri: ['http://testclient.lyft.com'] },
      { by: ['http://backend.lyft.com'], hash: [second], uri: ['http://frontend.lyft.com'] },
    ])
  })

  it('keeps every value of a repeated key (several URI and DNS), in order', () => {
    const header = `By=http://frontend.lyft.com;Hash=${ENVOY_HASH};Subject="/C=US/ST=CA/L=San Francisco/OU=Lyft/CN=Test Client";URI=http://testclient.lyft.com;URI=spiffe://lyft.com/x;DNS=lyft.com;DNS=www.lyft.com`
    const [element] = parseXfcc(header)
    expect(element!.get('uri')).toEqual(['http://testclient.lyft.com', 'spiffe://lyft.com/x'])
    expect(element!.get('dns')).toEqual(['lyft.com', 'www.lyft.com'])
  })

  it("parses Envoy's Cert (quoted, URL-encoded PEM) and Chain", () => {
    const header = xfccElement({
      by: 'spiffe://example.org/ingress',
      hash: true,
      cert: client,
      chain: [client.certPem, ca.certPem],
      subject: 'CN=x',
      uri: [CLIENT_ID],
    })
    const [element] = parseXfcc(header)
    expect(decodeURIComponent(element!.get('cert')![0]!)).toBe(client.certPem)
    expect(decodeURIComponent(element!.get('chain')![0]!)).toBe(client.certPem + ca.certPem)
  })

  it.each<[string, string, Record<string, string[]>]>([
    ['",", ";" and "=" inside quotes', 'Subject="CN=a,O=b;c=d";URI=x', { subject: ['CN=a,O=b;c=d'], uri: ['x'] }],
    ['an escaped double quote', 'Subject="CN=say \\"hi\\"";URI=x', { subject: ['CN=say "hi"'], uri: ['x'] }],
    ['an escaped backslash before the closing quote', 'Subject="a\\\\";URI=x', { subject: ['a\\'], uri: ['x'] }],
    ['a quoted "," that is no element separator', 'URI="a,URI=b"', { uri: ['a,URI=b'] }],
    ['case-insensitive keys', 'BY=a;hash=b;Uri=c;dNs=d', { by: ['a'], hash: ['b'], uri: ['c'], dns: ['d'] }],
    ['an empty value (Envoy writes "URI=" for a certificate without URI SAN)', 'Hash=ab;URI=', { hash: ['ab'], uri: [''] }],
    ['an empty quoted value', 'Subject="";URI=x', { subject: [''], uri: ['x'] }],
    ['spaces around separators', 'By=a ; Hash=b', { by: ['a'], hash: ['b'] }],
  ])('parses %s', (_name, header, expected) => {
    const elements = parseXfcc(header)
    expect(elements).toHaveLength(1)
    expect(entries(elements[0]!)).toEqual(expected)
  })

  it('accepts exactly the limits: 16 elements, 64 pairs in one element', () => {
    expect(parseXfcc(Array.from({ length: XFCC_LIMITS.maxElements }, (_, i) => `URI=e${i}`).join(','))).toHaveLength(16)
    const [element] = parseXfcc(Array.from({ length: XFCC_LIMITS.maxPairs }, (_, i) => `DNS=d${i}`).join(';'))
    expect(element!.get('dns')).toHaveLength(64)
  })

  it.each<[string, string]>([
    ['an empty header', ''],
    ['an unterminated quote', 'Subject="CN=a;URI=x'],
    ['a missing "=" (last pair)', 'By=a;Hash'],
    ['a missing "=" (bare word)', 'Hash'],
    ['a missing "=" before the next element', 'By=a;Hash,URI=x'],
    ['an empty key', '=x'],
    ['a key starting with a digit', '1By=x'],
    ['a key with a space inside', 'B y=x'],
    ['a key of 33 characters', `${'K'.repeat(33)}=x`],
    ['a stray quote in a bare value', 'Subject=ab"c'],
    ['text after a closing quote', 'Subject="a"b;URI=x'],
    ['a bare value with "="', 'URI=https://x.example/?a=b'],
    ['a trailing backslash in a quoted value', 'Subject="abc\\'],
    ['an escaped closing quote (the quote never closes)', 'Subject="abc\\"'],
    ['a trailing ";"', 'By=a;'],
    ['a trailing ","', 'By=a,'],
    ['an empty element', 'By=a,,By=b'],
    ['a leading ","', ',By=a'],
    [`${XFCC_LIMITS.maxElements + 1} elements`, Array.from({ length: XFCC_LIMITS.maxElements + 1 }, (_, i) => `URI=e${i}`).join(',')],
    [`${XFCC_LIMITS.maxPairs + 1} pairs in one element`, Array.from({ length: XFCC_LIMITS.maxPairs + 1 }, (_, i) => `DNS=d${i}`).join(';')],
  ])('refuses %s as invalid_request (400)', (_name, header) => {
    const error = caught(() => parseXfcc(header))
    expect(error.code).toBe('invalid_request')
    expect(error.status).toBe(400)
  })
})

describe('decodeForwardedPem', () => {
  it('decodes a URL-encoded PEM (Envoy Cert, nginx $ssl_client_escaped_cert)', () => {
    const [decoded] = decodeForwardedPem(encodeURIComponent(client.certPem))
    expect(decoded!.fingerprint256).toBe(cert(client).fingerprint256)
    expect(decodeForwardedPem(nginxEscapedCert(client.certPem))[0]!.fingerprint256).toBe(cert(client).fingerprint256)
  })

  it('decodes every certificate of a chain, in order, up to 8', () => {
    const eight = Array.from({ length: 8 }, (_, i) => (i % 2 === 0 ? client.certPem : ca.certPem)).join('')
    const decoded = decodeForwardedPem(encodeURIComponent(eight))
    expect(decoded).toHaveLength(8)
    expect(decoded[1]!.fingerprint256).toBe(cert(ca.certPem).fingerprint256)
  })

  it.each<[string, () => string]>([
    ['a bad % escape', () => encodeURIComponent(client.certPem).replace('%0A', '%0')],
    ['a truncated UTF-8 escape', () => '%E0%A4%A'],
    ['text that is not PEM', () => encodeURIComponent('hello')],
    ['an empty value', () => ''],
    ['a PEM private key', () => encodeURIComponent(client.keyPem)],
    ['9 certificates', () => encodeURIComponent(client.certPem.repeat(9))],
    ['a PEM block with garbage inside', () => encodeURIComponent('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n')],
  ])('refuses %s as invalid_request', (_name, value) => {
    expect(caught(() => decodeForwardedPem(value())).code).toBe('invalid_request')
  })
})

describe('verifyForwardedChain', () => {
  const now = (): number => Date.now()
  const refusal = (fn: () => void): string => {
    const error = caught(fn)
    expect(error.code).toBe('peer_unauthorized')
    expect(error.status).toBe(401)
    return error.message
  }

  it('accepts a leaf issued by an anchor', () => {
    expect(() => verifyForwardedChain(cert(client), [], [cert(ca.certPem)], now())).not.toThrow()
    expect(() => verifyForwardedChain(cert(bothUsages), [], [cert(otherCa.certPem), cert(ca.certPem)], now())).not.toThrow()
  })

  it('refuses a leaf of another CA', () => {
    expect(refusal(() => verifyForwardedChain(cert(untrusted), [], [cert(ca.certPem)], now()))).toMatch(/not trusted/)
  })

  it('refuses a leaf whose issuer name matches but whose signature does not (a forged CA of the same name)', async () => {
    const impostor = await createTestCa({ commonName: ca.name })
    const forged = await impostor.issueCertificate({ spiffeId: CLIENT_ID })
    expect(refusal(() => verifyForwardedChain(cert(forged), [cert(impostor.certPem)], [cert(ca.certPem)], now()))).toMatch(/not trusted/)
  })

  it('refuses an expired and a not-yet-valid leaf', () => {
    expect(refusal(() => verifyForwardedChain(cert(expired), [], [cert(ca.certPem)], now()))).toMatch(/expired/)
    expect(refusal(() => verifyForwardedChain(cert(notYetValid), [], [cert(ca.certPem)], now()))).toMatch(/not yet valid/)
  })

  it('checks validity at the given time, not the wall clock', () => {
    expect(refusal(() => verifyForwardedChain(cert(client), [], [cert(ca.certPem)], now() + 2 * DAY))).toMatch(/expired/)
    expect(() => verifyForwardedChain(cert(notYetValid), [], [cert(ca.certPem)], now() + 1.5 * DAY)).not.toThrow()
    // The anchor's validity counts too: the test CA starts one hour ago.
    expect(refusal(() => verifyForwardedChain(cert(expired), [], [cert(ca.certPem)], now() - 1.5 * DAY))).toMatch(/not yet valid/)
  })

  it('refuses a CA certificate as leaf (the anchor itself, or an intermediate)', () => {
    expect(refusal(() => verifyForwardedChain(cert(ca.certPem), [], [cert(ca.certPem)], now()))).toMatch(/CA certificate/)
    expect(refusal(() => verifyForwardedChain(cert(pki.intermediate), [], [cert(ca.certPem)], now()))).toMatch(/CA certificate/)
  })

  it('refuses a leaf without the clientAuth extended key usage', () => {
    expect(refusal(() => verifyForwardedChain(cert(serverOnly), [], [cert(ca.certPem)], now()))).toMatch(/client authentication/)
  })

  it('refuses leaves that may sign certificates or CRLs, lack digitalSignature, or say cA:TRUE without keyCertSign (X509-SVID §4.3)', async () => {
    const cases = [
      [{ keyUsages: ['digitalSignature', 'keyCertSign'] }, 'client certificate may sign certificates or CRLs'],
      [{ keyUsages: ['digitalSignature', 'cRLSign'] }, 'client certificate may sign certificates or CRLs'],
      [{ keyUsages: ['keyAgreement'] }, 'client certificate is not for digital signatures'],
      [{ isCa: true }, 'client certificate is a CA certificate'],
    ] as const
    for (const [options, message] of cases) {
      const leaf = await ca.issueCertificate({ spiffeId: CLIENT_ID, ...options })
      expect(refusal(() => verifyForwardedChain(cert(leaf), [], [cert(ca.certPem)], now()))).toBe(message)
    }
  })

  it('accepts a leaf through an intermediate given in the chain, not without it', () => {
    expect(() => verifyForwardedChain(cert(pki.leaf), [cert(pki.intermediate)], [cert(ca.certPem)], now())).not.toThrow()
    expect(refusal(() => verifyForwardedChain(cert(pki.leaf), [], [cert(ca.certPem)], now()))).toMatch(/not trusted/)
  })

  it('accepts a leaf whose anchor is the intermediate itself', () => {
    expect(() => verifyForwardedChain(cert(pki.leaf), [], [cert(pki.intermediate)], now())).not.toThrow()
  })

  it('refuses a path through an intermediate that is not a CA', () => {
    expect(refusal(() => verifyForwardedChain(cert(pki.leafUnderNonCa), [cert(pki.nonCaIssuer)], [cert(ca.certPem)], now()))).toMatch(/not trusted/)
  })

  it('refuses a path through an expired intermediate', () => {
    expect(refusal(() => verifyForwardedChain(cert(pki.leafUnderExpired), [cert(pki.expiredIntermediate)], [cert(ca.certPem)], now()))).toMatch(/expired/)
  })

  it('refuses a self-signed leaf, also when it is sent as its own chain', () => {
    expect(refusal(() => verifyForwardedChain(cert(pki.selfSigned), [], [cert(ca.certPem)], now()))).toMatch(/not trusted/)
    expect(refusal(() => verifyForwardedChain(cert(pki.selfSigned), [cert(pki.selfSigned)], [cert(ca.certPem)], now()))).toMatch(/not trusted/)
  })
})

describe('compileCidrs', () => {
  it('accepts IPv4 and IPv6 ranges and single addresses', () => {
    const list = compileCidrs(['10.0.0.0/8', '192.168.1.7', 'fd00::/8', '::1', '0.0.0.0/0'.replace('0.0.0.0/0', '172.16.0.0/12')], 'opt')
    expect(list.check('10.255.1.2', 'ipv4')).toBe(true)
    expect(list.check('11.0.0.1', 'ipv4')).toBe(false)
    expect(list.check('192.168.1.7', 'ipv4')).toBe(true)
    expect(list.check('192.168.1.8', 'ipv4')).toBe(false)
    expect(list.check('172.31.255.255', 'ipv4')).toBe(true)
    expect(list.check('fd12:3456::1', 'ipv6')).toBe(true)
    expect(list.check('fe80::1', 'ipv6')).toBe(false)
    expect(list.check('::1', 'ipv6')).toBe(true)
    expect(list.check('::2', 'ipv6')).toBe(false)
  })

  it('accepts /0 and full-length prefixes', () => {
    expect(compileCidrs(['0.0.0.0/0'], 'o').check('8.8.8.8', 'ipv4')).toBe(true)
    expect(compileCidrs(['127.0.0.1/32', '::1/128'], 'o').check('127.0.0.2', 'ipv4')).toBe(false)
  })

  it.each([
    '10.0.0.0/33',
    '::/129',
    '10.0.0.0/',
    '10.0.0.0/x',
    '10.0.0.0/-1',
    '10.0.0.0/8/1',
    '10.0.0',
    'localhost',
    '',
    ' 10.0.0.1',
    '10.0.0.0/ 8',
    '256.0.0.1',
  ])('refuses %j with a TypeError naming the option and index', (bad) => {
    expect(() => compileCidrs(['127.0.0.1/32', bad], 'mtls.forwarded.trustedProxies.cidrs')).toThrow(
      new TypeError(`Callsign: "mtls.forwarded.trustedProxies.cidrs[1]" is not an IP address or CIDR range: ${JSON.stringify(bad)}`),
    )
  })
})

describe('addressTrusted', () => {
  const list = compileCidrs(['127.0.0.1/32', '10.0.0.0/8', '::1/128'], 'o')

  it.each<[string | undefined, boolean]>([
    ['127.0.0.1', true],
    ['::ffff:127.0.0.1', true],
    ['::FFFF:10.1.2.3', true],
    ['::1', true],
    ['127.0.0.2', false],
    ['::ffff:127.0.0.2', false],
    ['::2', false],
    ['not-an-ip', false],
    ['', false],
    [undefined, false],
  ])('%j -> %s', (address, expected) => {
    expect(addressTrusted(list, address)).toBe(expected)
  })

  it('is false without a list', () => {
    expect(addressTrusted(undefined, '127.0.0.1')).toBe(false)
    expect(addressTrusted(new BlockList(), '127.0.0.1')).toBe(false)
  })
})

describe('ForwardedPeers', () => {
  const config = (extra: Partial<ResolvedForwarded> = {}): ResolvedForwarded => ({
    header: 'x-forwarded-client-cert',
    format: 'xfcc',
    elements: 'last',
    proxySpiffeIds: undefined,
    proxyAddresses: undefined,
    anchors: [cert(ca.certPem)],
    trustProxyAssertions: false,
    maxHeaderBytes: 12_288,
    ...extra,
  })
  const element = (issued: IssuedCertificate, extra: Parameters<typeof xfccElement>[0] = {}): string =>
    xfccElement({ hash: true, cert: issued, subject: 'CN=x', uri: issued.spiffeId === undefined ? [] : [issued.spiffeId], ...extra })

  it('is undefined without a header or with an empty one (the proxy saw no client certificate)', () => {
    const peers = new ForwardedPeers(config())
    expect(peers.read([], Date.now())).toBeUndefined()
    expect(peers.read([''], Date.now())).toBeUndefined()
    expect(peers.read(['   '], Date.now())).toBeUndefined()
  })

  it('describes a verified forwarded certificate', () => {
    const peer = new ForwardedPeers(config()).read([element(client)], Date.now())
    expect(peer).toMatchObject({
      spiffeId: CLIENT_ID,
      uris: [CLIENT_ID],
      dnsNames: ['web.example.org'],
      subject: cert(client).subject,
      x5tS256: client.x5tS256,
      validFrom: new Date(cert(client).validFrom),
      validTo: new Date(cert(client).validTo),
      verification: 'forwarded-certificate',
    })
  })

  it('hands out a read-only peer: the cached one every request with this element gets', () => {
    const peers = new ForwardedPeers(config({ trustProxyAssertions: true }))
    for (const forwarded of [element(client), xfccElement({ hash: 'ab'.repeat(32), uri: [CLIENT_ID] })]) {
      const peer = peers.read([forwarded], Date.now())!
      expect(peers.read([forwarded], Date.now())).toBe(peer)
      for (const part of [peer, peer.uris, peer.dnsNames]) expect(Object.isFrozen(part)).toBe(true)
      expect(() => Object.assign(peer, { spiffeId: 'spiffe://example.org/ns/admin/sa/root' })).toThrow(TypeError)
    }
  })

  it('describes the certificate, not the URI/DNS/Subject keys next to it', () => {
    const peer = new ForwardedPeers(config()).read(
      [element(client, { uri: ['spiffe://example.org/ns/admin/sa/root'], dns: ['evil.example'], subject: 'CN=root' })],
      Date.now(),
    )
    expect(peer).toMatchObject({ spiffeId: CLIENT_ID, dnsNames: ['web.example.org'], subject: cert(client).subject })
  })

  it('uses the last element (the trusted proxy appends its own last)', () => {
    const header = xfccHeader(element(bothUsages), element(client))
    expect(new ForwardedPeers(config()).read([header], Date.now())?.x5tS256).toBe(client.x5tS256)
  })

  it('joins repeated header lines before taking the last element', () => {
    expect(new ForwardedPeers(config()).read([element(bothUsages), element(client)], Date.now())?.x5tS256).toBe(client.x5tS256)
  })

  it('verifies a leaf through an intermediate given in Chain (Envoy: leaf first)', () => {
    const peers = new ForwardedPeers(config())
    const chained = xfccElement({ hash: true, cert: pki.leaf, chain: [pki.leaf, pki.intermediate] })
    expect(peers.read([chained], Date.now())?.spiffeId).toBe(CLIENT_ID)
    expect(caught(() => peers.read([xfccElement({ hash: true, cert: pki.leaf })], Date.now())).code).toBe('peer_unauthorized')
  })

  it('caches a verified element: the same object for the same element, also spelt differently', () => {
    const peers = new ForwardedPeers(config())
    const now = Date.now()
    const first = peers.read([element(client)], now)
    expect(peers.read([element(client)], now + 1000)).toBe(first)
    // Same keys and values, other spelling (key case, quoting): the canonical cache key is the same.
    const respelt = element(client).replace('Hash=', 'HASH=').replace('URI=', 'uri=').replace(`uri=${CLIENT_ID}`, `uri="${CLIENT_ID}"`)
    expect(respelt).not.toBe(element(client))
    expect(peers.read([respelt], now)).toBe(first)
    // A different element is verified on its own.
    expect(peers.read([element(bothUsages)], now)).not.toBe(first)
  })

  it('rechecks validity on a cache hit', () => {
    const peers = new ForwardedPeers(config())
    const now = Date.now()
    expect(peers.read([element(client)], now)).toBeDefined()
    const later = caught(() => peers.read([element(client)], now + 2 * DAY))
    expect(later).toMatchObject({ code: 'peer_unauthorized', message: expect.stringMatching(/expired/) })
    const earlier = caught(() => peers.read([element(client)], now - 2 * HOUR))
    expect(earlier).toMatchObject({ code: 'peer_unauthorized', message: expect.stringMatching(/not yet valid/) })
    // Still valid (and cached) in between.
    expect(peers.read([element(client)], now + HOUR)?.x5tS256).toBe(client.x5tS256)
  })

  it('rechecks the validity of an intermediate on a cache hit', () => {
    const peers = new ForwardedPeers(config())
    const now = Date.now()
    const chained = xfccElement({ hash: true, cert: pki.leafUnderShortIntermediate, chain: [pki.leafUnderShortIntermediate, pki.shortIntermediate] })
    expect(peers.read([chained], now)).toBeDefined()
    // The intermediate ends in 2 hours, the leaf in 24.
    expect(caught(() => peers.read([chained], now + 3 * HOUR)).message).toMatch(/expired/)
  })

  it('rechecks the validity of the anchor on a cache hit', () => {
    // Anchored at the short intermediate (ends in 2 hours); the leaf ends in 24.
    const peers = new ForwardedPeers(config({ anchors: [cert(pki.shortIntermediate)] }))
    const now = Date.now()
    const value = xfccElement({ hash: true, cert: pki.leafUnderShortIntermediate })
    expect(peers.read([value], now)).toBeDefined()
    expect(caught(() => new ForwardedPeers(config({ anchors: [cert(pki.shortIntermediate)] })).read([value], now + 3 * HOUR)).message).toMatch(/expired/)
    expect(caught(() => peers.read([value], now + 3 * HOUR)).message).toMatch(/expired/)
  })

  it('gives the same answer on a cache hit as on a miss when Chain carries an unused expired certificate', () => {
    // The expired certificate is not on the path: the miss accepts the element, so must the hit.
    const chained = xfccElement({ hash: true, cert: client, chain: [client.certPem, expired.certPem] })
    const peers = new ForwardedPeers(config())
    const now = Date.now()
    expect(peers.read([chained], now)?.x5tS256).toBe(client.x5tS256)
    expect(peers.read([chained], now)?.x5tS256).toBe(client.x5tS256)
  })

  it('refuses a forwarded certificate that does not verify: untrusted, expired, server-only', () => {
    const peers = new ForwardedPeers(config())
    for (const bad of [untrusted, expired, notYetValid, serverOnly]) {
      expect(caught(() => peers.read([element(bad)], Date.now())).code).toBe('peer_unauthorized')
    }
  })

  it('refuses a Hash that does not match the Cert (400), accepts upper-case hex', () => {
    const peers = new ForwardedPeers(config())
    const mismatch = caught(() => peers.read([element(client, { hash: hexHash(bothUsages) })], Date.now()))
    expect(mismatch).toMatchObject({ code: 'invalid_request', status: 400 })
    expect(peers.read([element(client, { hash: hexHash(client).toUpperCase() })], Date.now())?.x5tS256).toBe(client.x5tS256)
  })

  it('refuses two Cert keys, or a Cert with two certificates, as invalid_request', () => {
    const peers = new ForwardedPeers(config())
    const twoKeys = `${element(client)};Cert="${encodeURIComponent(bothUsages.certPem)}"`
    expect(caught(() => peers.read([twoKeys], Date.now())).code).toBe('invalid_request')
    const twoCerts = xfccElement({ cert: client.certPem + bothUsages.certPem })
    expect(caught(() => peers.read([twoCerts], Date.now())).code).toBe('invalid_request')
  })

  it('refuses a malformed header as invalid_request', () => {
    expect(caught(() => new ForwardedPeers(config()).read(['Subject="open'], Date.now())).code).toBe('invalid_request')
  })

  it('refuses a header above maxHeaderBytes as invalid_request, counting every line', () => {
    const one = element(client)
    const peers = new ForwardedPeers(config({ maxHeaderBytes: one.length + 10 }))
    expect(peers.read([one], Date.now())).toBeDefined()
    expect(caught(() => peers.read([one, one], Date.now())).code).toBe('invalid_request')
    expect(caught(() => peers.read([`${one},${one}`], Date.now())).code).toBe('invalid_request')
  })

  describe('assertion-only elements (Hash/URI/DNS, no Cert)', () => {
    const assertion = (extra: Parameters<typeof xfccElement>[0] = {}): string =>
      xfccElement({
        by: 'spiffe://example.org/ns/istio-system/sa/ingress',
        hash: hexHash(client),
        subject: 'CN=x',
        uri: [CLIENT_ID],
        dns: ['web.example.org'],
        ...extra,
      })

    it('are refused without trustProxyAssertions (401 peer_unauthorized)', () => {
      const error = caught(() => new ForwardedPeers(config()).read([assertion()], Date.now()))
      expect(error).toMatchObject({ code: 'peer_unauthorized', status: 401 })
    })

    it("are accepted with trustProxyAssertions: verification 'proxy-assertion', x5tS256 from the hex Hash", () => {
      const peer = new ForwardedPeers(config({ trustProxyAssertions: true })).read([assertion()], Date.now())
      // Nothing was verified, so nothing about validity is claimed.
      expect(peer).not.toHaveProperty('validTo')
      expect(peer).toMatchObject({
        spiffeId: CLIENT_ID,
        uris: [CLIENT_ID],
        dnsNames: ['web.example.org'],
        subject: 'CN=x',
        x5tS256: client.x5tS256,
        verification: 'proxy-assertion',
      })
    })

    it('are accepted with trustProxyAssertions and no anchors at all', () => {
      const peer = new ForwardedPeers(config({ trustProxyAssertions: true, anchors: [] })).read([assertion()], Date.now())
      expect(peer?.spiffeId).toBe(CLIENT_ID)
    })

    it('without a SPIFFE URI describe a peer without spiffeId', () => {
      const peer = new ForwardedPeers(config({ trustProxyAssertions: true })).read([assertion({ uri: [''] })], Date.now())
      expect(peer).toMatchObject({ uris: [''], x5tS256: client.x5tS256 })
      expect(peer).not.toHaveProperty('spiffeId')
    })

    it.each<[string, Parameters<typeof xfccElement>[0]]>([
      ['two URIs (no valid SVID)', { uri: [CLIENT_ID, 'spiffe://example.org/ns/batch/sa/worker'] }],
      ['a SPIFFE and another URI', { uri: [CLIENT_ID, 'https://web.example.org'] }],
      ['a malformed SPIFFE ID', { uri: ['spiffe://Example.org//x'] }],
      ['a SPIFFE ID without path', { uri: ['spiffe://example.org'] }],
    ])('with %s are refused (401 peer_unauthorized)', (_name, extra) => {
      expect(caught(() => new ForwardedPeers(config({ trustProxyAssertions: true })).read([assertion(extra)], Date.now())).code).toBe('peer_unauthorized')
    })

    it.each<[string, () => string]>([
      ['no Hash', () => xfccElement({ uri: [CLIENT_ID] })],
      ['a Hash that is not 64 hex digits', () => assertion({ hash: 'abc' })],
      ['two Hash keys', () => `${assertion()};Hash=${hexHash(bothUsages)}`],
    ])('with %s are invalid_request', (_name, value) => {
      expect(caught(() => new ForwardedPeers(config({ trustProxyAssertions: true })).read([value()], Date.now())).code).toBe('invalid_request')
    })

    it('a Cert still wins over the assertion keys when present', () => {
      const peer = new ForwardedPeers(config({ trustProxyAssertions: true })).read([element(client)], Date.now())
      expect(peer?.verification).toBe('forwarded-certificate')
    })
  })

  describe("format 'nginx'", () => {
    const nginx = (extra: Partial<ResolvedForwarded> = {}): ForwardedPeers =>
      new ForwardedPeers(config({ format: 'nginx', header: 'x-ssl-client-cert', ...extra }))

    it('verifies $ssl_client_escaped_cert', () => {
      const peer = nginx().read([nginxEscapedCert(client.certPem)], Date.now())
      expect(peer).toMatchObject({ spiffeId: CLIENT_ID, x5tS256: client.x5tS256, verification: 'forwarded-certificate' })
    })

    it('treats an empty value, "-" and "(null)" as no certificate', () => {
      for (const none of ['', '-', '(null)']) expect(nginx().read([none], Date.now())).toBeUndefined()
    })

    it('refuses what is not a URL-encoded PEM (400) and an untrusted certificate (401)', () => {
      expect(caught(() => nginx().read(['not a certificate'], Date.now())).code).toBe('invalid_request')
      expect(caught(() => nginx().read([nginxEscapedCert(untrusted.certPem)], Date.now())).code).toBe('peer_unauthorized')
    })

    it('verifies a leaf followed by its intermediate', () => {
      expect(nginx().read([nginxEscapedCert(pki.leaf + pki.intermediate)], Date.now())?.spiffeId).toBe(CLIENT_ID)
    })
  })

  it('refuses a certificate with two SPIFFE URIs (no valid SVID)', () => {
    expect(caught(() => new ForwardedPeers(config()).read([element(twoUris)], Date.now())).code).toBe('peer_unauthorized')
  })

  it('refuses forwarded leaves unfit as identities, in XFCC and nginx format (X509-SVID §4.3)', async () => {
    const cases = [
      [{ isCa: true }, 'client certificate is a CA certificate'],
      [{ keyUsages: ['digitalSignature', 'keyCertSign'] }, 'client certificate may sign certificates or CRLs'],
      [{ keyUsages: ['digitalSignature', 'cRLSign'] }, 'client certificate may sign certificates or CRLs'],
      [{ keyUsages: ['keyAgreement'] }, 'client certificate is not for digital signatures'],
      [{ usage: 'server' }, 'client certificate is not for client authentication'],
    ] as const
    for (const [options, message] of cases) {
      const leaf = await ca.issueCertificate({ spiffeId: CLIENT_ID, ...options })
      expect(caught(() => new ForwardedPeers(config()).read([element(leaf)], Date.now()))).toMatchObject({ code: 'peer_unauthorized', message })
      const nginx = new ForwardedPeers(config({ format: 'nginx', header: 'x-ssl-client-cert' }))
      expect(caught(() => nginx.read([nginxEscapedCert(leaf.certPem)], Date.now()))).toMatchObject({ code: 'peer_unauthorized', message })
    }
  })

  describe('with trust-domain bundles (mtls.trustDomains as a map)', () => {
    const NOT_CHAINED = "client certificate does not chain to its trust domain's bundle"
    const bundles = (): TrustBundles =>
      new TrustBundles(
        [
          { domain: 'example.org', option: 'ours', text: ca.certPem, path: undefined, pollSeconds: 0 },
          { domain: 'partner.org', option: 'partner', text: otherCa.certPem, path: undefined, pollSeconds: 0 },
        ],
        () => {},
      )

    it("accepts each domain's SPIFFE IDs from its own CA, refuses them from the other's (anchors default to the union)", async () => {
      const peers = new ForwardedPeers(config({ anchors: [] }), bundles())
      const [partner, partnerNamingUs, oursNamingPartner, stranger] = await Promise.all([
        otherCa.issueCertificate({ spiffeId: 'spiffe://partner.org/ns/billing/sa/api' }),
        otherCa.issueCertificate({ spiffeId: CLIENT_ID }),
        ca.issueCertificate({ spiffeId: 'spiffe://partner.org/ns/billing/sa/api' }),
        ca.issueCertificate({ spiffeId: 'spiffe://other.org/ns/x' }),
      ])
      expect(peers.read([element(client)], Date.now())?.spiffeId).toBe(CLIENT_ID)
      expect(peers.read([element(partner)], Date.now())?.spiffeId).toBe('spiffe://partner.org/ns/billing/sa/api')
      for (const bad of [partnerNamingUs, oursNamingPartner])
        expect(caught(() => peers.read([element(bad)], Date.now()))).toMatchObject({ code: 'peer_unauthorized', message: NOT_CHAINED })
      // A domain without a bundle is left to mtls.trustDomains (not accepted there).
      expect(peers.read([element(stranger)], Date.now())?.spiffeId).toBe('spiffe://other.org/ns/x')
      // A certificate of no bundle's CA is not trusted at all.
      const foreign = await (await createTestCa()).issueCertificate({ spiffeId: CLIENT_ID })
      expect(caught(() => peers.read([element(foreign)], Date.now())).message).toBe('client certificate is not trusted')
    })

    it('checks the domain even when mtls.forwarded.ca trusts every CA', async () => {
      const peers = new ForwardedPeers(config({ anchors: [cert(ca.certPem), cert(otherCa.certPem)] }), bundles())
      const partnerNamingUs = await otherCa.issueCertificate({ spiffeId: CLIENT_ID })
      expect(caught(() => peers.read([element(partnerNamingUs)], Date.now())).message).toBe(NOT_CHAINED)
    })

    it('follows the forwarded Chain to the bundle through an intermediate', () => {
      const peers = new ForwardedPeers(config({ anchors: [] }), bundles())
      expect(peers.read([xfccElement({ hash: true, cert: pki.leaf, chain: [pki.leaf, pki.intermediate] })], Date.now())?.spiffeId).toBe(CLIENT_ID)
    })

    it('verifies a cached element again after a bundle change', () => {
      const trust = bundles()
      const peers = new ForwardedPeers(config({ anchors: [] }), trust)
      const first = peers.read([element(client)], Date.now())
      expect(peers.read([element(client)], Date.now())).toBe(first)
      ;(trust as { generation: number }).generation++
      const again = peers.read([element(client)], Date.now())
      expect(again).not.toBe(first)
      expect(again).toEqual(first)
    })
  })
})

// ---------------------------------------------------------------------------------------------
// A two-level PKI under the test CA. The kit's CA issues leaves only, so the intermediates are
// signed here with @peculiar/x509, loaded from @callsign/testing's own dependencies.

interface TwoLevelPki {
  /** Intermediate CA (pathLen 0) under the root, and a client leaf it issued. */
  intermediate: string
  leaf: string
  /** An intermediate valid for 2 hours only, and a leaf (24 hours) under it. */
  shortIntermediate: string
  leafUnderShortIntermediate: string
  /** An expired intermediate, and a leaf under it. */
  expiredIntermediate: string
  leafUnderExpired: string
  /** A non-CA certificate (basicConstraints CA:false) that nonetheless signed a leaf. */
  nonCaIssuer: string
  leafUnderNonCa: string
  /** A self-signed client certificate (not a CA). */
  selfSigned: string
}

async function twoLevelPki(root: TestCa): Promise<TwoLevelPki> {
  const requireFromTesting = createRequire(createRequire(import.meta.url).resolve('@callsign/testing'))
  requireFromTesting('reflect-metadata')
  const x509: any = requireFromTesting('@peculiar/x509')
  x509.cryptoProvider.set(webcrypto)
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' }
  const der = (pem: string): Buffer => Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64')
  const rootKey = await webcrypto.subtle.importKey('pkcs8', der(root.keyPem), alg, false, ['sign'])
  const rootCert = new x509.X509Certificate(root.certPem)
  const keys = (): Promise<webcrypto.CryptoKeyPair> => webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']) as Promise<webcrypto.CryptoKeyPair>
  const now = Date.now()
  let serial = 0x1000
  const make = async (opts: {
    subject: string
    issuer: any
    signingKey: webcrypto.CryptoKey
    publicKey: webcrypto.CryptoKey
    ca: boolean
    notBefore?: number
    notAfter?: number
  }): Promise<any> =>
    x509.X509CertificateGenerator.create({
      serialNumber: (serial++).toString(16),
      subject: opts.subject,
      issuer: opts.issuer,
      notBefore: new Date(opts.notBefore ?? now - HOUR),
      notAfter: new Date(opts.notAfter ?? now + DAY),
      publicKey: opts.publicKey,
      signingKey: opts.signingKey,
      signingAlgorithm: alg,
      extensions: opts.ca
        ? [new x509.BasicConstraintsExtension(true, 0, true), new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign, true)]
        : [
            new x509.BasicConstraintsExtension(false, undefined, true),
            new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
            new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
            new x509.SubjectAlternativeNameExtension([{ type: 'url', value: CLIENT_ID }]),
          ],
    })
  const pem = (c: any): string => c.toString('pem') + '\n'

  const interKeys = await keys()
  const intermediate = await make({ subject: 'CN=Intermediate', issuer: rootCert.subject, signingKey: rootKey, publicKey: interKeys.publicKey, ca: true })
  const leaf = await make({
    subject: 'CN=leaf',
    issuer: intermediate.subject,
    signingKey: interKeys.privateKey,
    publicKey: (await keys()).publicKey,
    ca: false,
  })

  const shortKeys = await keys()
  const short = await make({
    subject: 'CN=Short Intermediate',
    issuer: rootCert.subject,
    signingKey: rootKey,
    publicKey: shortKeys.publicKey,
    ca: true,
    notAfter: now + 2 * HOUR,
  })
  const underShort = await make({ subject: 'CN=leaf', issuer: short.subject, signingKey: shortKeys.privateKey, publicKey: (await keys()).publicKey, ca: false })

  const expiredKeys = await keys()
  const expiredInter = await make({
    subject: 'CN=Expired Intermediate',
    issuer: rootCert.subject,
    signingKey: rootKey,
    publicKey: expiredKeys.publicKey,
    ca: true,
    notBefore: now - 2 * DAY,
    notAfter: now - DAY,
  })
  const underExpired = await make({
    subject: 'CN=leaf',
    issuer: expiredInter.subject,
    signingKey: expiredKeys.privateKey,
    publicKey: (await keys()).publicKey,
    ca: false,
  })

  const nonCaKeys = await keys()
  const nonCa = await make({ subject: 'CN=Not A CA', issuer: rootCert.subject, signingKey: rootKey, publicKey: nonCaKeys.publicKey, ca: false })
  const underNonCa = await make({ subject: 'CN=leaf', issuer: nonCa.subject, signingKey: nonCaKeys.privateKey, publicKey: (await keys()).publicKey, ca: false })

  const selfKeys = await keys()
  const selfSigned = await make({ subject: 'CN=self', issuer: 'CN=self', signingKey: selfKeys.privateKey, publicKey: selfKeys.publicKey, ca: false })

  return {
    intermediate: pem(intermediate),
    leaf: pem(leaf),
    shortIntermediate: pem(short),
    leafUnderShortIntermediate: pem(underShort),
    expiredIntermediate: pem(expiredInter),
    leafUnderExpired: pem(underExpired),
    nonCaIssuer: pem(nonCa),
    leafUnderNonCa: pem(underNonCa),
    selfSigned: pem(selfSigned),
  }
}

describe('PEM scanning on proxy input', () => {
  it('handles a megabyte of unterminated BEGIN markers (linear scan, no backtracking) and refuses it', async () => {
    const { pemCertificateBlocks, decodeForwardedPem } = await import('../src/forwarded-certificate.js')
    const junk = '-----BEGIN CERTIFICATE-----'.repeat(40_000)
    expect(pemCertificateBlocks(junk)).toEqual([])
    expect(() => decodeForwardedPem(encodeURIComponent(junk))).toThrow(/malformed forwarded client certificate/)
  })
})
