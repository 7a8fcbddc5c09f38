import { createHash, X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { createServer, get } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { createTestCa, type IssuedCertificate, type TestCa } from '@callsign/testing'
import { beforeAll, describe, expect, it, vi } from 'vitest'
import { AuthError } from '../src/errors.js'
import { checkLeafCertificate, describeCertificate, parseSubjectAltName, readPeerCertificate, type PeerState } from '../src/peer-certificate.js'

const SPIFFE_ID = 'spiffe://example.org/ns/web/sa/frontend'

let ca: TestCa
let svid: IssuedCertificate
const x509 = (issued: IssuedCertificate): X509Certificate => new X509Certificate(issued.certPem)

beforeAll(async () => {
  ca = await createTestCa()
  svid = await ca.issueCertificate({ spiffeId: SPIFFE_ID, dnsNames: ['web.example.org', 'web'] })
})

describe('parseSubjectAltName', () => {
  it.each<[string, string | undefined, Array<[string, string]>]>([
    ['undefined', undefined, []],
    ['an empty string', '', []],
    ['one URI', 'URI:spiffe://example.org/ns/a', [['URI', 'spiffe://example.org/ns/a']]],
    [
      'several entries',
      'URI:spiffe://example.org/ns/a, DNS:a.example, IP Address:127.0.0.1',
      [
        ['URI', 'spiffe://example.org/ns/a'],
        ['DNS', 'a.example'],
        ['IP Address', '127.0.0.1'],
      ],
    ],
    ['a quoted value containing ", "', 'DNS:"a, DNS:evil.example"', [['DNS', 'a, DNS:evil.example']]],
    ['a quoted value with an escaped comma (Node >= 17.3)', 'DNS:"a\\u002c DNS:evil.example"', [['DNS', 'a, DNS:evil.example']]],
    [
      'a quoted URI smuggling a SPIFFE ID (CVE-2021-44532)',
      'URI:"https://x.example/a, URI:spiffe://example.org/ns/evil", DNS:b.example',
      [
        ['URI', 'https://x.example/a, URI:spiffe://example.org/ns/evil'],
        ['DNS', 'b.example'],
      ],
    ],
    [
      'escaped quotes inside a quoted value',
      'DNS:"a\\", DNS:evil", DNS:b',
      [
        ['DNS', 'a", DNS:evil'],
        ['DNS', 'b'],
      ],
    ],
    [
      'an escaped backslash before the closing quote',
      'DNS:"a\\\\", DNS:b',
      [
        ['DNS', 'a\\'],
        ['DNS', 'b'],
      ],
    ],
    ['a value containing a colon', 'othername:UPN::user@example.org', [['othername', 'UPN::user@example.org']]],
    ['an empty value', 'DNS:', [['DNS', '']]],
  ])('parses %s', (_case, value, expected) => {
    expect(parseSubjectAltName(value)).toEqual(expected)
  })

  it.each([
    ['an entry without a type', 'spiffe'],
    ['a type with a digit', 'DNS1:a'],
    ['an empty type', ':a'],
    ['an unterminated quoted value', 'DNS:"a, DNS:b'],
    ['a quoted value ending in an escape', 'DNS:"a\\"'],
    ['an invalid JSON escape', 'DNS:"a\\x41"'],
    ['text after a closing quote', 'DNS:"a"b, DNS:c'],
    ['a separator without a space after a quoted value', 'DNS:"a",DNS:b'],
    ['a second entry without a type', 'DNS:a, b'],
  ])('returns undefined for %s', (_case, value) => {
    expect(parseSubjectAltName(value)).toBeUndefined()
  })
})

describe('describeCertificate', () => {
  it('describes an X509-SVID', () => {
    const cert = x509(svid)
    expect(describeCertificate(cert)).toEqual({
      spiffeId: SPIFFE_ID,
      uris: [SPIFFE_ID],
      dnsNames: ['web.example.org', 'web'],
      subject: `CN=${SPIFFE_ID}`,
      x5tS256: createHash('sha256').update(cert.raw).digest('base64url'),
      validFrom: new Date(cert.validFrom),
      validTo: new Date(cert.validTo),
    })
    expect(describeCertificate(cert).x5tS256).toBe(svid.x5tS256)
    expect(describeCertificate(cert).x5tS256).toMatch(/^[A-Za-z0-9_-]{43}$/)
  })

  it('describes a certificate without SANs and without a SPIFFE ID', async () => {
    const cert = x509(await ca.issueCertificate({ commonName: 'legacy' }))
    const peer = describeCertificate(cert)
    expect(peer).toEqual({
      uris: [],
      dnsNames: [],
      subject: 'CN=legacy',
      x5tS256: createHash('sha256').update(cert.raw).digest('base64url'),
      validFrom: new Date(cert.validFrom),
      validTo: new Date(cert.validTo),
    })
    expect('spiffeId' in peer).toBe(false)
  })

  it('keeps a quoted URI whole, so a smuggled SPIFFE ID is not read as the identity', async () => {
    const cert = x509(await ca.issueCertificate({ uris: ['https://x.example/a, URI:spiffe://example.org/ns/evil'], dnsNames: ['a, DNS:evil.example'] }))
    const peer = describeCertificate(cert)
    expect(peer.spiffeId).toBeUndefined()
    expect(peer.uris).toEqual(['https://x.example/a, URI:spiffe://example.org/ns/evil'])
    expect(peer.dnsNames).toEqual(['a, DNS:evil.example'])
  })

  it.each([
    ['two SPIFFE URIs', { spiffeId: SPIFFE_ID, uris: ['spiffe://example.org/ns/other'] }, 'client certificate is not a valid SVID: more than one URI SAN'],
    [
      'a SPIFFE ID next to another URI',
      { spiffeId: SPIFFE_ID, uris: ['https://web.example.org/'] },
      'client certificate is not a valid SVID: more than one URI SAN',
    ],
    ['a malformed SPIFFE ID', { uris: ['spiffe://EXAMPLE.org/../x'] }, 'client certificate is not a valid SVID: malformed SPIFFE ID'],
    ['an upper-case scheme', { uris: ['SPIFFE://example.org/ns/a'] }, 'client certificate is not a valid SVID: malformed SPIFFE ID'],
    ['a trust-domain ID without a path', { uris: ['spiffe://example.org'] }, 'client certificate is not a valid SVID: malformed SPIFFE ID'],
    ['a SPIFFE ID with a query', { uris: ['spiffe://example.org/ns/a?x=1'] }, 'client certificate is not a valid SVID: malformed SPIFFE ID'],
  ])('refuses a certificate with %s as peer_unauthorized', async (_case, options, message) => {
    const cert = x509(await ca.issueCertificate(options))
    expect(() => describeCertificate(cert)).toThrow(AuthError)
    try {
      describeCertificate(cert)
    } catch (error) {
      expect((error as AuthError).code).toBe('peer_unauthorized')
      expect((error as AuthError).message).toBe(message)
    }
  })

  it('refuses a certificate whose SANs cannot be parsed', () => {
    const cert = {
      subjectAltName: 'DNS:"unterminated',
      subject: 'CN=x',
      raw: Buffer.from('x'),
      validTo: 'Jan  1 00:00:00 2030 GMT',
    } as unknown as X509Certificate
    expect(() => describeCertificate(cert)).toThrow(new AuthError('peer_unauthorized', 'client certificate has unreadable subject alternative names'))
  })
})

describe('checkLeafCertificate (SPIFFE X509-SVID §4.3, §4.4)', () => {
  const refusal = (cert: X509Certificate): string | undefined => {
    try {
      checkLeafCertificate(cert)
      return undefined
    } catch (error) {
      expect(error).toBeInstanceOf(AuthError)
      expect((error as AuthError).code).toBe('peer_unauthorized')
      expect((error as AuthError).status).toBe(401)
      return (error as AuthError).message
    }
  }

  it.each<[string, Parameters<TestCa['issueCertificate']>[0], string]>([
    ['cA:TRUE (Node reports ca: false without keyCertSign)', { isCa: true }, 'client certificate is a CA certificate'],
    ['cA:TRUE with keyCertSign', { isCa: true, keyUsages: ['digitalSignature', 'keyCertSign'] }, 'client certificate is a CA certificate'],
    ['keyCertSign on a non-CA leaf', { keyUsages: ['digitalSignature', 'keyCertSign'] }, 'client certificate may sign certificates or CRLs'],
    ['cRLSign on a non-CA leaf', { keyUsages: ['digitalSignature', 'cRLSign'] }, 'client certificate may sign certificates or CRLs'],
    ['keyCertSign without digitalSignature', { keyUsages: ['keyCertSign'] }, 'client certificate may sign certificates or CRLs'],
    ['a key usage without digitalSignature', { keyUsages: ['keyAgreement'] }, 'client certificate is not for digital signatures'],
    ['keyEncipherment only', { keyUsages: ['keyEncipherment'] }, 'client certificate is not for digital signatures'],
    ['an EKU without clientAuth', { usage: 'server' }, 'client certificate is not for client authentication'],
  ])('refuses a leaf with %s', async (_case, options, message) => {
    expect(refusal(x509(await ca.issueCertificate({ spiffeId: SPIFFE_ID, ...options })))).toBe(message)
  })

  it.each<[string, Parameters<TestCa['issueCertificate']>[0]]>([
    ["the kit's default leaf (digitalSignature, keyAgreement, clientAuth)", { spiffeId: SPIFFE_ID }],
    ['no keyUsage extension at all', { spiffeId: SPIFFE_ID, keyUsages: [] }],
    ['digitalSignature alone', { spiffeId: SPIFFE_ID, keyUsages: ['digitalSignature'] }],
    ['clientAuth and serverAuth', { spiffeId: SPIFFE_ID, usage: 'both' }],
    ['no SAN (not an SVID: the rules still apply, and pass)', { commonName: 'no-san' }],
  ])('accepts a leaf with %s', async (_case, options) => {
    expect(refusal(x509(await ca.issueCertificate(options)))).toBeUndefined()
  })

  it('refuses the CA certificate itself and a certificate whose extensions cannot be read', () => {
    expect(refusal(new X509Certificate(ca.certPem))).toBe('client certificate is a CA certificate')
    const unreadable = { raw: Buffer.from([0x30, 0x03, 0x30, 0x80, 0x00]), ca: false, keyUsage: undefined } as unknown as X509Certificate
    expect(refusal(unreadable)).toBe('client certificate has unreadable extensions')
  })

  it('is part of describeCertificate, after the SAN checks', async () => {
    const cert = x509(await ca.issueCertificate({ spiffeId: SPIFFE_ID, isCa: true }))
    expect(() => describeCertificate(cert)).toThrow(new AuthError('peer_unauthorized', 'client certificate is a CA certificate'))
  })
})

interface FakeSocket {
  encrypted?: boolean
  authorized?: boolean
  authorizationError?: Error | string | null
  getPeerX509Certificate?: () => X509Certificate | undefined
  disableRenegotiation?: () => void
}

function fakeSocket(cert: X509Certificate | undefined, authorized: boolean, authorizationError: Error | string | null = null) {
  const getPeerX509Certificate = vi.fn(() => cert)
  const disableRenegotiation = vi.fn()
  const socket: FakeSocket = { encrypted: true, authorized, authorizationError, getPeerX509Certificate, disableRenegotiation }
  return { socket, getPeerX509Certificate, disableRenegotiation }
}

describe('readPeerCertificate', () => {
  it.each<[string, object | null | undefined]>([
    ['no connection', undefined],
    ['a null connection', null],
    ['a plain TCP socket', { encrypted: false, remoteAddress: '127.0.0.1' }],
    ['a socket without encrypted', { getPeerX509Certificate: () => undefined }],
    ['an encrypted socket without getPeerX509Certificate', { encrypted: true, authorized: true }],
  ])('reports none for %s', (_case, connection) => {
    expect(readPeerCertificate(connection)).toEqual({ kind: 'none' })
  })

  it('reports none for a TLS connection without a client certificate', () => {
    const { socket, disableRenegotiation } = fakeSocket(undefined, false, 'UNABLE_TO_GET_ISSUER_CERT')
    expect(readPeerCertificate(socket)).toEqual({ kind: 'none' })
    expect(disableRenegotiation).toHaveBeenCalledTimes(1)
  })

  it('accepts an authorized certificate, disables renegotiation and caches the result per socket', () => {
    const cert = x509(svid)
    const { socket, getPeerX509Certificate, disableRenegotiation } = fakeSocket(cert, true)
    const first = readPeerCertificate(socket)
    expect(first).toEqual({ kind: 'authorized', peer: { ...describeCertificate(cert), verification: 'tls' } })
    expect(readPeerCertificate(socket)).toBe(first)
    expect(readPeerCertificate(socket)).toBe(first)
    // Shared by every request on the connection: read-only.
    if (first.kind !== 'authorized') throw new Error('expected an authorized peer')
    for (const part of [first.peer, first.peer.uris, first.peer.dnsNames]) expect(Object.isFrozen(part)).toBe(true)
    expect(() => Object.assign(first.peer, { spiffeId: 'spiffe://example.org/ns/admin/sa/root' })).toThrow(TypeError)
    expect(getPeerX509Certificate).toHaveBeenCalledTimes(1)
    expect(disableRenegotiation).toHaveBeenCalledTimes(1)

    // Another connection with the same certificate is read anew.
    const other = fakeSocket(cert, true)
    const second = readPeerCertificate(other.socket)
    expect(second).not.toBe(first)
    expect(second).toEqual(first)
    expect(other.getPeerX509Certificate).toHaveBeenCalledTimes(1)
  })

  it('works on a socket that cannot disable renegotiation', () => {
    const socket: FakeSocket = { encrypted: true, authorized: true, getPeerX509Certificate: () => x509(svid) }
    expect(readPeerCertificate(socket).kind).toBe('authorized')
  })

  it.each<[string, Error | string | null, string]>([
    ['CERT_HAS_EXPIRED', 'CERT_HAS_EXPIRED', 'client certificate has expired'],
    ['CERT_NOT_YET_VALID', 'CERT_NOT_YET_VALID', 'client certificate is not yet valid'],
    ['CERT_REVOKED', 'CERT_REVOKED', 'client certificate is revoked'],
    [
      'an Error with code CERT_HAS_EXPIRED',
      Object.assign(new Error('certificate has expired'), { code: 'CERT_HAS_EXPIRED' }),
      'client certificate has expired',
    ],
    ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'client certificate is not trusted'],
    ['SELF_SIGNED_CERT_IN_CHAIN', 'SELF_SIGNED_CERT_IN_CHAIN', 'client certificate is not trusted'],
    ['no reason', null, 'client certificate is not trusted'],
  ])('rejects an unauthorized certificate (%s) with the matching reason', (_case, authorizationError, reason) => {
    const { socket, disableRenegotiation } = fakeSocket(x509(svid), false, authorizationError)
    const state = readPeerCertificate(socket)
    expect(state).toEqual({ kind: 'rejected', reason, cause: authorizationError })
    expect(disableRenegotiation).toHaveBeenCalledTimes(1)
    expect(readPeerCertificate(socket)).toBe(state)
  })

  it('says why OpenSSL found the leaf unfit (INVALID_PURPOSE) when the leaf rule knows, else "not trusted"', async () => {
    const serverOnly = x509(await ca.issueCertificate({ spiffeId: SPIFFE_ID, usage: 'server' }))
    expect(readPeerCertificate(fakeSocket(serverOnly, false, 'INVALID_PURPOSE').socket)).toEqual({
      kind: 'rejected',
      reason: 'client certificate is not for client authentication',
      cause: 'INVALID_PURPOSE',
    })
    // A fit leaf: the unfit certificate is elsewhere in the chain.
    expect(readPeerCertificate(fakeSocket(x509(svid), false, 'INVALID_PURPOSE').socket)).toEqual({
      kind: 'rejected',
      reason: 'client certificate is not trusted',
      cause: 'INVALID_PURPOSE',
    })
  })

  it('rejects an authorized CA certificate or certificate-signing leaf (the TLS stack accepts them)', async () => {
    for (const [options, reason] of [
      [{ isCa: true }, 'client certificate is a CA certificate'],
      [{ keyUsages: ['digitalSignature', 'keyCertSign'] }, 'client certificate may sign certificates or CRLs'],
    ] as const) {
      const { socket } = fakeSocket(x509(await ca.issueCertificate({ spiffeId: SPIFFE_ID, ...options })), true)
      expect(readPeerCertificate(socket)).toEqual({ kind: 'rejected', reason })
    }
  })

  it('rejects an authorized certificate that is not a valid SVID', async () => {
    const cert = x509(await ca.issueCertificate({ spiffeId: SPIFFE_ID, uris: ['spiffe://example.org/ns/other'] }))
    const { socket } = fakeSocket(cert, true)
    expect(readPeerCertificate(socket)).toEqual({ kind: 'rejected', reason: 'client certificate is not a valid SVID: more than one URI SAN' })
  })

  it('reads real TLS connections: authorized SVID, expired and untrusted certificates', async () => {
    const server = await ca.issueServerCertificate()
    const expired = await ca.issueCertificate({ spiffeId: SPIFFE_ID, validity: 'expired' })
    const foreign = await (await createTestCa()).issueCertificate({ spiffeId: SPIFFE_ID })
    const states: PeerState[] = []
    const httpsServer = createServer(
      { cert: server.certPem, key: server.keyPem, ca: [ca.certPem], requestCert: true, rejectUnauthorized: false },
      (req, res) => {
        states.push(readPeerCertificate(req.socket as TLSSocket))
        res.end('ok')
      },
    )
    httpsServer.listen(0, '127.0.0.1')
    await once(httpsServer, 'listening')
    const { port } = httpsServer.address() as AddressInfo
    const call = (client?: IssuedCertificate) =>
      new Promise<void>((resolve, reject) => {
        const req = get({ host: '127.0.0.1', port, ca: [ca.certPem], agent: false, ...(client ? { cert: client.certPem, key: client.keyPem } : {}) }, (res) =>
          res.resume().on('end', resolve),
        )
        req.on('error', reject)
      })
    try {
      await call(svid)
      await call(expired)
      await call(foreign)
      await call()
    } finally {
      httpsServer.closeAllConnections()
      httpsServer.close()
    }
    expect(states.map((s) => s.kind)).toEqual(['authorized', 'rejected', 'rejected', 'none'])
    expect(states[0]).toEqual({ kind: 'authorized', peer: { ...describeCertificate(x509(svid)), verification: 'tls' } })
    expect(states[1]).toMatchObject({ kind: 'rejected', reason: 'client certificate has expired' })
    expect(states[2]).toMatchObject({ kind: 'rejected', reason: 'client certificate is not trusted' })
  })

  it('keeps the intermediates a client sent (Node hands them out once per connection), never a self-signed root', async () => {
    const issuing = await createTestCa({ commonName: 'Issuing', issuer: ca })
    const [server, viaIntermediate] = await Promise.all([ca.issueServerCertificate(), issuing.issueCertificate({ spiffeId: SPIFFE_ID })])
    const chains: Array<string[] | undefined> = []
    const httpsServer = createServer(
      { cert: server.certPem, key: server.keyPem, ca: [ca.certPem], requestCert: true, rejectUnauthorized: false },
      (req, res) => {
        const state = readPeerCertificate(req.socket as TLSSocket)
        chains.push(state.kind === 'authorized' ? state.chain?.map((cert) => cert.subject) : [state.kind])
        res.end('ok')
      },
    )
    httpsServer.listen(0, '127.0.0.1')
    await once(httpsServer, 'listening')
    const { port } = httpsServer.address() as AddressInfo
    const call = (certPem: string, keyPem: string) =>
      new Promise<void>((resolve, reject) => {
        get({ host: '127.0.0.1', port, ca: [ca.certPem], agent: false, cert: certPem, key: keyPem }, (res) => res.resume().on('end', resolve)).on(
          'error',
          reject,
        )
      })
    try {
      await call(viaIntermediate.chainPem, viaIntermediate.keyPem) // leaf, intermediate, root
      await call(viaIntermediate.certPem + issuing.certPem, viaIntermediate.keyPem)
      await call(svid.certPem, svid.keyPem)
    } finally {
      httpsServer.closeAllConnections()
      httpsServer.close()
    }
    expect(chains).toEqual([['CN=Issuing'], ['CN=Issuing'], undefined])
  })
})
