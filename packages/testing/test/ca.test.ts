import { createHash, X509Certificate } from 'node:crypto'
import { createServer, get } from 'node:https'
import type { AddressInfo } from 'node:net'
import { createSecureContext, type TLSSocket } from 'node:tls'
import { describe, expect, it } from 'vitest'
import { createTestCa, type IssuedCertificate } from '../src/index.js'
import { x509 } from '../src/x509-provider.js'

const SPIFFE_ID = 'spiffe://example.org/ns/web/sa/frontend'

describe('createTestCa', () => {
  it('creates a self-signed ECDSA P-256 root CA', async () => {
    const ca = await createTestCa({ commonName: 'Unit Test CA' })
    const cert = new X509Certificate(ca.certPem)
    expect(ca.name).toBe('Unit Test CA')
    expect(cert.ca).toBe(true)
    expect(cert.subject).toBe('CN=Unit Test CA')
    expect(cert.issuer).toBe(cert.subject)
    expect(cert.publicKey.asymmetricKeyType).toBe('ec')
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('prime256v1')
    expect(cert.verify(cert.publicKey)).toBe(true)
    expect(new Date(cert.validTo).getTime()).toBeGreaterThan(Date.now() + 9 * 365 * 24 * 3600 * 1000)
    expect(ca.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/)
    expect(cert.checkPrivateKey((await import('node:crypto')).createPrivateKey(ca.keyPem))).toBe(true)
  })

  it('uses random serial numbers and names by default', async () => {
    const [a, b] = await Promise.all([createTestCa(), createTestCa()])
    expect(a.name).not.toBe(b.name)
    expect(new X509Certificate(a.certPem).serialNumber).not.toBe(new X509Certificate(b.certPem).serialNumber)
  })
})

describe('TestCa.issueCertificate', () => {
  it('issues a client SVID with the SPIFFE ID as URI SAN and an RFC 8705 thumbprint', async () => {
    const ca = await createTestCa()
    const svid = await ca.issueCertificate({ spiffeId: SPIFFE_ID })
    const cert = new X509Certificate(svid.certPem)

    expect(cert.subjectAltName).toBe(`URI:${SPIFFE_ID}`)
    expect(cert.subject).toBe(`CN=${SPIFFE_ID}`)
    expect(cert.ca).toBe(false)
    expect(cert.checkIssued(new X509Certificate(ca.certPem))).toBe(true)
    expect(cert.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true)
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2'])
    expect(svid.spiffeId).toBe(SPIFFE_ID)
    expect(svid.serialNumber.toUpperCase()).toBe(cert.serialNumber.toUpperCase())
    expect(svid.x5tS256).toBe(createHash('sha256').update(cert.raw).digest('base64url'))
    expect(svid.x5tS256).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(svid.chainPem).toBe(svid.certPem + ca.certPem)
    expect(svid.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/)
    const { createPrivateKey } = await import('node:crypto')
    expect(cert.checkPrivateKey(createPrivateKey(svid.keyPem))).toBe(true)
  })

  it('defaults to CN=workload, no SAN and a valid window around now', async () => {
    const ca = await createTestCa()
    const issued = await ca.issueCertificate()
    const cert = new X509Certificate(issued.certPem)
    expect(cert.subject).toBe('CN=workload')
    expect(cert.subjectAltName).toBeUndefined()
    expect(issued.spiffeId).toBeUndefined()
    const now = Date.now()
    expect(new Date(cert.validFrom).getTime()).toBeLessThanOrEqual(now - 59 * 60 * 1000)
    expect(new Date(cert.validTo).getTime()).toBeGreaterThan(now + 23 * 3600 * 1000)
  })

  it('writes extra URI, DNS and IP SANs verbatim', async () => {
    const ca = await createTestCa()
    const issued = await ca.issueCertificate({
      spiffeId: SPIFFE_ID,
      uris: ['spiffe://example.org/ns/web/sa/other', 'spiffe://EXAMPLE.org/../x'],
      dnsNames: ['web.internal'],
      ipAddresses: ['10.0.0.1'],
      commonName: 'custom',
      usage: 'both',
    })
    const cert = new X509Certificate(issued.certPem)
    expect(cert.subject).toBe('CN=custom')
    expect(cert.subjectAltName).toBe(
      `URI:${SPIFFE_ID}, URI:spiffe://example.org/ns/web/sa/other, URI:spiffe://EXAMPLE.org/../x, DNS:web.internal, IP Address:10.0.0.1`,
    )
    expect(cert.keyUsage?.sort()).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'])
  })

  it('supports expired, not-yet-valid and explicit validity windows', async () => {
    const ca = await createTestCa()
    const day = 24 * 3600 * 1000
    const expired = new X509Certificate((await ca.issueCertificate({ validity: 'expired' })).certPem)
    expect(new Date(expired.validTo).getTime()).toBeLessThan(Date.now() - day + 60_000)
    const future = new X509Certificate((await ca.issueCertificate({ validity: 'not-yet-valid' })).certPem)
    expect(new Date(future.validFrom).getTime()).toBeGreaterThan(Date.now() + day - 60_000)
    const notBefore = new Date('2030-01-01T00:00:00Z')
    const notAfter = new Date('2030-01-02T00:00:00Z')
    const explicit = new X509Certificate((await ca.issueCertificate({ notBefore, notAfter })).certPem)
    expect(new Date(explicit.validFrom).toISOString()).toBe(notBefore.toISOString())
    expect(new Date(explicit.validTo).toISOString()).toBe(notAfter.toISOString())
  })

  it('gives leaves keyUsage digitalSignature + keyAgreement and cA:FALSE by default', async () => {
    const ca = await createTestCa()
    const leaf = new x509.X509Certificate((await ca.issueCertificate({ spiffeId: SPIFFE_ID })).certPem)
    expect(leaf.getExtension(x509.KeyUsagesExtension)?.usages).toBe(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement)
    expect(leaf.getExtension(x509.BasicConstraintsExtension)?.ca).toBe(false)
  })

  it('writes cA:TRUE with isCa, the key usages asked for, and no keyUsage extension for []', async () => {
    const ca = await createTestCa()
    const [caLeaf, signer, bare] = await Promise.all([
      ca.issueCertificate({ spiffeId: SPIFFE_ID, isCa: true }),
      ca.issueCertificate({ spiffeId: SPIFFE_ID, keyUsages: ['digitalSignature', 'keyCertSign', 'cRLSign'] }),
      ca.issueCertificate({ spiffeId: SPIFFE_ID, keyUsages: [] }),
    ])
    const constraints = new x509.X509Certificate(caLeaf.certPem).getExtension(x509.BasicConstraintsExtension)
    expect(constraints?.ca).toBe(true)
    expect(constraints?.critical).toBe(true)
    const usages = new x509.X509Certificate(signer.certPem).getExtension(x509.KeyUsagesExtension)
    expect(usages?.usages).toBe(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign)
    expect(usages?.critical).toBe(true)
    expect(new x509.X509Certificate(bare.certPem).getExtension(x509.KeyUsagesExtension)).toBeNull()
    // Still leaves of this CA with the SPIFFE ID.
    for (const issued of [caLeaf, signer, bare]) {
      const cert = new X509Certificate(issued.certPem)
      expect(cert.checkIssued(new X509Certificate(ca.certPem))).toBe(true)
      expect(cert.subjectAltName).toBe(`URI:${SPIFFE_ID}`)
    }
  })
})

describe('createTestCa({ issuer })', () => {
  it('creates an intermediate CA whose leaves Node authorizes against the root alone when they present chainPem', async () => {
    const root = await createTestCa({ commonName: 'Root' })
    const intermediate = await createTestCa({ commonName: 'Intermediate', issuer: root })
    const interCert = new X509Certificate(intermediate.certPem)
    expect(interCert.ca).toBe(true)
    expect(interCert.issuer).toBe('CN=Root')
    expect(interCert.verify(new X509Certificate(root.certPem).publicKey)).toBe(true)
    expect(intermediate.chainPem).toBe(intermediate.certPem + root.certPem)
    expect(root.chainPem).toBe(root.certPem)
    const [serverCert, leaf] = await Promise.all([root.issueServerCertificate(), intermediate.issueCertificate({ spiffeId: SPIFFE_ID })])
    expect(leaf.chainPem).toBe(leaf.certPem + intermediate.certPem + root.certPem)
    const server = createServer(
      { cert: serverCert.certPem, key: serverCert.keyPem, ca: [root.certPem], requestCert: true, rejectUnauthorized: false },
      (req, res) => res.end(JSON.stringify((req.socket as TLSSocket).authorized)),
    )
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as AddressInfo
    const call = (cert: string): Promise<unknown> =>
      new Promise((resolve, reject) => {
        get({ host: '127.0.0.1', port, ca: root.certPem, cert, key: leaf.keyPem, agent: false }, (res) => {
          let body = ''
          res.setEncoding('utf8')
          res.on('data', (chunk: string) => (body += chunk))
          res.on('end', () => resolve(JSON.parse(body)))
        }).on('error', reject)
      })
    try {
      expect(await call(leaf.chainPem)).toBe(true)
      expect(await call(leaf.certPem)).toBe(false)
    } finally {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  })
})

describe('TestCa.issueServerCertificate', () => {
  it('defaults to localhost and loopback SANs with serverAuth', async () => {
    const ca = await createTestCa()
    const cert = new X509Certificate((await ca.issueServerCertificate()).certPem)
    expect(cert.subject).toBe('CN=localhost')
    expect(cert.subjectAltName).toBe('DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1')
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1'])
    expect(cert.checkHost('localhost')).toBe('localhost')
    expect(cert.checkIP('127.0.0.1')).toBe('127.0.0.1')
  })

  it('lets options replace the defaults', async () => {
    const ca = await createTestCa()
    const issued = await ca.issueServerCertificate({
      spiffeId: 'spiffe://example.org/ns/api/sa/backend',
      dnsNames: ['api.internal'],
      ipAddresses: [],
    })
    const cert = new X509Certificate(issued.certPem)
    expect(cert.subjectAltName).toBe('URI:spiffe://example.org/ns/api/sa/backend, DNS:api.internal')
    expect(cert.subject).toBe('CN=spiffe://example.org/ns/api/sa/backend')
  })
})

describe('TestCa.issueCrl', () => {
  it('issues a CA-signed X.509 v2 CRL listing the revoked serial numbers', async () => {
    const ca = await createTestCa()
    const [revoked, other] = await Promise.all([ca.issueCertificate(), ca.issueCertificate()])
    const pem = await ca.issueCrl({ revoked: [revoked, other.serialNumber.toUpperCase()] })
    expect(pem).toMatch(/^-----BEGIN X509 CRL-----\n[\s\S]+\n-----END X509 CRL-----\n$/)

    const crl = new x509.X509Crl(pem)
    const caCert = new x509.X509Certificate(ca.certPem)
    expect(crl.version).toBe(1) // v2
    expect(crl.issuer).toBe(caCert.subject)
    expect(await crl.verify({ publicKey: caCert })).toBe(true)
    expect(crl.entries.map((entry) => entry.serialNumber.toLowerCase())).toEqual([revoked.serialNumber, other.serialNumber])
    const extensions = crl.extensions.map((extension) => extension.type)
    expect(extensions).toEqual(['2.5.29.35', '2.5.29.20']) // authorityKeyIdentifier, cRLNumber
    expect(crl.nextUpdate!.getTime()).toBeGreaterThan(Date.now() + 23 * 3600 * 1000)
    expect(crl.thisUpdate.getTime()).toBeLessThan(Date.now() - 59 * 60 * 1000)
    expect(() => createSecureContext({ ca: ca.certPem, crl: pem })).not.toThrow()
  })

  it('writes strict DER: no empty entry extensions, each cRLNumber one higher', async () => {
    const ca = await createTestCa()
    const revoked = await ca.issueCertificate()
    const first = new x509.X509Crl(await ca.issueCrl({ revoked: [revoked] }))
    const second = new x509.X509Crl(await ca.issueCrl())
    // An entry is SEQUENCE { serial INTEGER (16 + 2 octets), revocationDate UTCTime (13 + 2 octets) } only.
    expect(first.entries[0]!.rawData.byteLength).toBe(2 + 18 + 15)
    expect(first.entries[0]!.extensions).toEqual([])
    expect(second.entries).toEqual([])
    const number = (crl: x509.X509Crl): string => Buffer.from(crl.getExtension('2.5.29.20')!.value).toString('hex')
    expect(number(first)).toBe('020101')
    expect(number(second)).toBe('020102')
  })

  it("takes explicit dates and serial numbers in Node's notation", async () => {
    const ca = await createTestCa()
    const issued = await ca.issueCertificate()
    const nodeSerial = new X509Certificate(issued.certPem).serialNumber // upper case
    const thisUpdate = new Date('2030-01-01T00:00:00Z')
    const nextUpdate = new Date('2050-06-01T00:00:00Z') // GeneralizedTime from 2050 (RFC 5280 §5.1.2.4)
    const crl = new x509.X509Crl(await ca.issueCrl({ revoked: [nodeSerial.match(/../g)!.join(':'), '80'], thisUpdate, nextUpdate }))
    expect(crl.thisUpdate.toISOString()).toBe(thisUpdate.toISOString())
    expect(crl.nextUpdate!.toISOString()).toBe(nextUpdate.toISOString())
    expect(crl.entries[0]!.serialNumber.toLowerCase()).toBe(issued.serialNumber)
    // 0x80 is written as the positive INTEGER 00 80 (RFC 5280 §4.1.2.2: serial numbers are positive).
    expect(Buffer.from(crl.entries[1]!.rawData).subarray(2, 6).toString('hex')).toBe('02020080')
    expect(crl.entries[0]!.revocationDate.toISOString()).toBe(thisUpdate.toISOString())
  })

  it('refuses non-hexadecimal and duplicate serial numbers', async () => {
    const ca = await createTestCa()
    const issued = await ca.issueCertificate()
    await expect(ca.issueCrl({ revoked: ['not-hex'] })).rejects.toThrow(/not hexadecimal/)
    await expect(ca.issueCrl({ revoked: [issued, issued.serialNumber.toUpperCase()] })).rejects.toThrow(/listed twice/)
  })

  it('makes Node refuse a revoked client certificate with CERT_REVOKED', async () => {
    const ca = await createTestCa()
    const [serverCert, good, revoked] = await Promise.all([
      ca.issueServerCertificate(),
      ca.issueCertificate({ spiffeId: SPIFFE_ID }),
      ca.issueCertificate({ spiffeId: SPIFFE_ID }),
    ])
    const crl = await ca.issueCrl({ revoked: [revoked] })
    const server = createServer(
      { cert: serverCert.certPem, key: serverCert.keyPem, ca: [ca.certPem], crl, requestCert: true, rejectUnauthorized: false },
      (req, res) => {
        const socket = req.socket as TLSSocket
        res.end(
          JSON.stringify([
            socket.authorized,
            socket.authorizationError ? String((socket.authorizationError as NodeJS.ErrnoException).code ?? socket.authorizationError) : null,
          ]),
        )
      },
    )
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const { port } = server.address() as AddressInfo
    const call = (client: IssuedCertificate): Promise<unknown> =>
      new Promise((resolve, reject) => {
        get({ host: '127.0.0.1', port, ca: ca.certPem, cert: client.certPem, key: client.keyPem, agent: false }, (res) => {
          let body = ''
          res.setEncoding('utf8')
          res.on('data', (chunk: string) => (body += chunk))
          res.on('end', () => resolve(JSON.parse(body)))
        }).on('error', reject)
      })
    try {
      expect(await call(good)).toEqual([true, null])
      expect(await call(revoked)).toEqual([false, 'CERT_REVOKED'])
    } finally {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    }
  })
})
