import { request, createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestCa, type IssuedCertificate, type TestCa } from '../src/index.js'

interface PeerReport {
  authorized: boolean
  authorizationError: string | null
  subjectaltname: string | null
}

const SPIFFE_ID = 'spiffe://example.org/ns/web/sa/frontend'

describe('certificates in a real mTLS handshake', () => {
  let ca: TestCa
  let server: Server
  let port: number

  beforeAll(async () => {
    ca = await createTestCa()
    const serverCert = await ca.issueServerCertificate()
    server = createServer({ cert: serverCert.certPem, key: serverCert.keyPem, ca: [ca.certPem], requestCert: true, rejectUnauthorized: false }, (req, res) => {
      const socket = req.socket as TLSSocket
      const peer = socket.getPeerCertificate()
      const report: PeerReport = {
        authorized: socket.authorized,
        authorizationError: socket.authorizationError ? String(socket.authorizationError) : null,
        subjectaltname: peer.subjectaltname ?? null,
      }
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify(report))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    port = (server.address() as AddressInfo).port
  })

  afterAll(async () => {
    await new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
  })

  function call(client: IssuedCertificate | undefined): Promise<PeerReport> {
    return new Promise((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port,
          path: '/',
          ca: [ca.certPem],
          agent: false,
          ...(client ? { cert: client.certPem, key: client.keyPem } : {}),
        },
        (res) => {
          let body = ''
          res.setEncoding('utf8')
          res.on('data', (chunk: string) => (body += chunk))
          res.on('end', () => resolve(JSON.parse(body) as PeerReport))
          res.on('error', reject)
        },
      )
      req.on('error', reject)
      req.end()
    })
  }

  it('authorizes a client certificate issued by the trusted CA', async () => {
    const report = await call(await ca.issueCertificate({ spiffeId: SPIFFE_ID }))
    expect(report).toEqual({ authorized: true, authorizationError: null, subjectaltname: `URI:${SPIFFE_ID}` })
  })

  it('authorizes a client certificate sent with its chain', async () => {
    const svid = await ca.issueCertificate({ spiffeId: SPIFFE_ID })
    const report = await call({ ...svid, certPem: svid.chainPem })
    expect(report.authorized).toBe(true)
  })

  it('does not authorize a certificate from another CA', async () => {
    const other = await createTestCa()
    const report = await call(await other.issueCertificate({ spiffeId: SPIFFE_ID }))
    expect(report.authorized).toBe(false)
    expect(report.authorizationError).toMatch(/UNABLE_TO_GET_ISSUER_CERT|UNABLE_TO_VERIFY_LEAF_SIGNATURE/)
    expect(report.subjectaltname).toBe(`URI:${SPIFFE_ID}`)
  })

  it('does not authorize an expired certificate', async () => {
    const report = await call(await ca.issueCertificate({ spiffeId: SPIFFE_ID, validity: 'expired' }))
    expect(report).toMatchObject({ authorized: false, authorizationError: 'CERT_HAS_EXPIRED' })
  })

  it('does not authorize a not-yet-valid certificate', async () => {
    const report = await call(await ca.issueCertificate({ spiffeId: SPIFFE_ID, validity: 'not-yet-valid' }))
    expect(report).toMatchObject({ authorized: false, authorizationError: 'CERT_NOT_YET_VALID' })
  })

  it('does not authorize a server-only certificate used as a client certificate', async () => {
    const report = await call(await ca.issueCertificate({ spiffeId: SPIFFE_ID, usage: 'server' }))
    expect(report).toMatchObject({ authorized: false, authorizationError: 'INVALID_PURPOSE' })
  })

  it('reports no authorization when the client sends no certificate', async () => {
    const report = await call(undefined)
    expect(report.authorized).toBe(false)
    expect(report.subjectaltname).toBeNull()
  })
})
