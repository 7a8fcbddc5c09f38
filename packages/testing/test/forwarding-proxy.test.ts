import { webcrypto, X509Certificate } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import { createServer as createHttpServer } from 'node:http'
import { createServer, request, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  certificateHash,
  createTestCa,
  nginxEscapedCert,
  startForwardingProxy,
  xfccElement,
  type ForwardingProxy,
  type ForwardingProxyOptions,
  type IssuedCertificate,
  type TestCa,
} from '../src/index.js'
import { x509 } from '../src/x509-provider.js'

const CLIENT_ID = 'spiffe://example.org/ns/web/sa/frontend'
const PROXY_ID = 'spiffe://example.org/ns/istio-system/sa/ingress'

/** What the upstream app saw. */
interface Seen {
  method: string
  url: string
  headers: IncomingHttpHeaders
  /** SAN of the proxy's certificate on the upstream connection, null when none. */
  peer: string | null
  authorized: boolean
  encrypted: boolean
  body: string
}

let ca: TestCa
let otherCa: TestCa
let client: IssuedCertificate
let stranger: IssuedCertificate
let proxyIdentity: IssuedCertificate
let proxyServer: IssuedCertificate
let proxyServerWithUri: IssuedCertificate
let upstream: Server
let upstreamUrl: string
let plainUpstreamUrl: string
let closePlain: () => Promise<void>
const proxies: ForwardingProxy[] = []

function report(req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): void {
  let body = ''
  req.setEncoding('utf8')
  req.on('data', (chunk: string) => (body += chunk))
  req.on('end', () => {
    const socket = req.socket as TLSSocket
    const seen: Seen = {
      method: req.method ?? '',
      url: req.url ?? '',
      headers: req.headers,
      peer: socket.encrypted ? (socket.getPeerCertificate().subjectaltname ?? null) : null,
      authorized: socket.encrypted ? socket.authorized : false,
      encrypted: socket.encrypted === true,
      body,
    }
    res.writeHead(201, { 'content-type': 'application/json', 'x-upstream': 'yes' })
    res.end(JSON.stringify(seen))
  })
}

beforeAll(async () => {
  ;[ca, otherCa] = await Promise.all([createTestCa(), createTestCa()])
  const server = await ca.issueServerCertificate()
  ;[client, stranger, proxyIdentity, proxyServer, proxyServerWithUri] = await Promise.all([
    ca.issueCertificate({ spiffeId: CLIENT_ID, dnsNames: ['web.example.org'] }),
    otherCa.issueCertificate({ spiffeId: CLIENT_ID }),
    ca.issueCertificate({ spiffeId: PROXY_ID }),
    ca.issueServerCertificate(),
    ca.issueServerCertificate({ uris: [PROXY_ID] }),
  ])
  upstream = createServer({ cert: server.certPem, key: server.keyPem, ca: [ca.certPem], requestCert: true, rejectUnauthorized: false }, report)
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve))
  upstreamUrl = `https://127.0.0.1:${(upstream.address() as AddressInfo).port}`
  const plain = createHttpServer(report)
  await new Promise<void>((resolve) => plain.listen(0, '127.0.0.1', resolve))
  plainUpstreamUrl = `http://127.0.0.1:${(plain.address() as AddressInfo).port}`
  closePlain = () =>
    new Promise<void>((resolve) => {
      plain.close(() => resolve())
      plain.closeAllConnections()
    })
})

afterAll(async () => {
  await Promise.all(proxies.map((proxy) => proxy.close()))
  await closePlain?.()
  await new Promise<void>((resolve) => {
    upstream?.close(() => resolve())
    upstream?.closeAllConnections()
  })
})

async function proxy(options: Partial<ForwardingProxyOptions> = {}): Promise<ForwardingProxy> {
  const started = await startForwardingProxy({
    target: upstreamUrl,
    targetCa: ca.certPem,
    clientCert: proxyIdentity,
    tls: { certPem: proxyServer.certPem, keyPem: proxyServer.keyPem, caPem: ca.certPem },
    format: 'xfcc',
    ...options,
  })
  proxies.push(started)
  return started
}

interface Reply {
  status: number
  headers: IncomingHttpHeaders
  seen: Seen
}

function send(url: string, cert: IssuedCertificate | undefined, headers: Record<string, string | string[]> = {}, body?: string): Promise<Reply> {
  const target = new URL(url)
  return new Promise<Reply>((resolve, reject) => {
    const req = request(
      {
        host: target.hostname,
        port: target.port,
        path: '/orders?x=1',
        method: body === undefined ? 'GET' : 'POST',
        ca: [ca.certPem],
        agent: false,
        ...(cert ? { cert: cert.certPem, key: cert.keyPem } : {}),
      },
      (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => (text += chunk))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, seen: JSON.parse(text) as Seen }))
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    for (const [name, value] of Object.entries(headers)) req.setHeader(name, value)
    req.end(body)
  })
}

describe('startForwardingProxy (xfcc, sanitize-set)', () => {
  it('forwards the request to the app over mTLS with its own certificate', async () => {
    const p = await proxy()
    const reply = await send(p.url, client, { 'x-custom': 'kept' }, '{"a":1}')
    expect(reply.status).toBe(201)
    expect(reply.headers['x-upstream']).toBe('yes')
    expect(reply.seen).toMatchObject({ method: 'POST', url: '/orders?x=1', peer: `URI:${PROXY_ID}`, authorized: true, body: '{"a":1}' })
    expect(reply.seen.headers['x-custom']).toBe('kept')
    expect(reply.seen.headers.host).toBe(new URL(p.url).host)
  })

  it('sets one element for the verified client certificate: Hash, Cert, Subject, URI, DNS', async () => {
    const p = await proxy()
    const reply = await send(p.url, client)
    const header = reply.seen.headers['x-forwarded-client-cert']
    expect(header).toBe(xfccElement({ hash: true, cert: client, subject: `CN=${CLIENT_ID}`, uri: [CLIENT_ID], dns: ['web.example.org'] }))
    expect(p.requests.at(-1)).toEqual({ method: 'GET', path: '/orders?x=1', header })
    expect(header).toContain(`Hash=${certificateHash(client.certPem)};`)
  })

  it('removes an incoming header and sets its own element', async () => {
    const p = await proxy()
    const spoofed = xfccElement({ hash: true, cert: stranger, uri: ['spiffe://example.org/ns/admin/sa/root'] })
    const reply = await send(p.url, client, { 'x-forwarded-client-cert': [spoofed, spoofed] })
    const header = reply.seen.headers['x-forwarded-client-cert'] as string
    expect(header).not.toContain(',')
    expect(header).toContain(`URI=${CLIENT_ID}`)
    expect(header).not.toContain('admin')
  })

  it('writes By from the URI SAN of its own server certificate', async () => {
    const p = await proxy({ tls: { certPem: proxyServerWithUri.certPem, keyPem: proxyServerWithUri.keyPem, caPem: ca.certPem } })
    const reply = await send(p.url, client)
    expect(reply.seen.headers['x-forwarded-client-cert']).toMatch(new RegExp(`^By=${PROXY_ID};Hash=`))
  })

  it('with details { cert: false } writes an assertion-only element (Hash, Subject, URI, DNS)', async () => {
    const p = await proxy({ details: { cert: false } })
    const reply = await send(p.url, client)
    expect(reply.seen.headers['x-forwarded-client-cert']).toBe(
      xfccElement({ hash: certificateHash(client.certPem), subject: `CN=${CLIENT_ID}`, uri: [CLIENT_ID], dns: ['web.example.org'] }),
    )
  })

  it('writes "URI=" when the client certificate has no URI SAN (as Envoy does)', async () => {
    const p = await proxy({ details: { cert: false, subject: false } })
    const noSan = await ca.issueCertificate({ commonName: 'plain' })
    const reply = await send(p.url, noSan)
    expect(reply.seen.headers['x-forwarded-client-cert']).toBe(`Hash=${certificateHash(noSan.certPem)};URI=`)
  })

  it('with details { chain: true } forwards the leaf and the intermediates of its path (not the root)', async () => {
    const { intermediatePem, leaf } = await issueViaIntermediate(ca, CLIENT_ID)
    const p = await proxy({ details: { chain: true }, tls: { certPem: proxyServer.certPem, keyPem: proxyServer.keyPem, caPem: [ca.certPem, intermediatePem] } })
    const reply = await send(p.url, leaf)
    const header = reply.seen.headers['x-forwarded-client-cert'] as string
    const chain = /;Chain="([^"]*)"/.exec(header)?.[1]
    const certs = decodeURIComponent(chain!).match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g)!
    expect(certs.map((pem) => new X509Certificate(pem).fingerprint256)).toEqual([
      new X509Certificate(leaf.certPem).fingerprint256,
      new X509Certificate(intermediatePem).fingerprint256,
    ])
    expect(decodeURIComponent(/;Cert="([^"]*)"/.exec(header)![1]!)).toBe(new X509Certificate(leaf.certPem).toString())
  })

  it('refuses a handshake without a client certificate by default', async () => {
    const p = await proxy()
    await expect(send(p.url, undefined)).rejects.toThrow()
    await expect(send(p.url, stranger)).rejects.toThrow()
  })

  it("clientCertificate: 'optional' forwards a request without certificate with no header, even a spoofed one", async () => {
    const p = await proxy({ clientCertificate: 'optional' })
    const reply = await send(p.url, undefined, { 'x-forwarded-client-cert': xfccElement({ hash: true, cert: client }) })
    expect(reply.status).toBe(201)
    expect(reply.seen.headers).not.toHaveProperty('x-forwarded-client-cert')
    expect(p.requests.at(-1)?.header).toBeUndefined()
  })

  it("clientCertificate: 'optional' still closes the connection of an untrusted certificate", async () => {
    const p = await proxy({ clientCertificate: 'optional' })
    await expect(send(p.url, stranger)).rejects.toThrow()
  })

  it('trusts every CA given in tls.caPem', async () => {
    const p = await proxy({ tls: { certPem: proxyServer.certPem, keyPem: proxyServer.keyPem, caPem: [ca.certPem, otherCa.certPem] } })
    const reply = await send(p.url, stranger)
    expect(reply.seen.headers['x-forwarded-client-cert']).toContain(`Hash=${certificateHash(stranger.certPem)}`)
  })

  it('forwards to a plain-HTTP target without its own certificate', async () => {
    const p = await startForwardingProxy({
      target: plainUpstreamUrl,
      tls: { certPem: proxyServer.certPem, keyPem: proxyServer.keyPem, caPem: ca.certPem },
      format: 'xfcc',
    })
    proxies.push(p)
    const reply = await send(p.url, client)
    expect(reply.seen.encrypted).toBe(false)
    expect(reply.seen.headers['x-forwarded-client-cert']).toContain(`URI=${CLIENT_ID}`)
  })

  it('answers 502 when the target is unreachable', async () => {
    const p = await proxy({ target: 'https://127.0.0.1:1' })
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        { host: '127.0.0.1', port: new URL(p.url).port, path: '/', ca: [ca.certPem], cert: client.certPem, key: client.keyPem, agent: false },
        (res) => {
          res.resume()
          resolve(res.statusCode ?? 0)
        },
      )
      req.on('error', reject)
      req.end()
    })
    expect(status).toBe(502)
  })
})

describe('startForwardingProxy (xfcc, append-forward)', () => {
  it('appends its element after the incoming ones', async () => {
    const p = await proxy({ mode: 'append-forward' })
    const earlier = xfccElement({ by: 'spiffe://example.org/edge', hash: certificateHash(stranger.certPem), uri: ['spiffe://example.org/ns/x/sa/y'] })
    const reply = await send(p.url, client, { 'x-forwarded-client-cert': earlier })
    const header = reply.seen.headers['x-forwarded-client-cert'] as string
    expect(header.startsWith(`${earlier},Hash=${certificateHash(client.certPem)};`)).toBe(true)
  })

  it('still drops the incoming header when the client presented no certificate (as Envoy does)', async () => {
    const p = await proxy({ mode: 'append-forward', clientCertificate: 'optional' })
    const reply = await send(p.url, undefined, { 'x-forwarded-client-cert': xfccElement({ hash: true, cert: client }) })
    expect(reply.seen.headers).not.toHaveProperty('x-forwarded-client-cert')
  })
})

describe('startForwardingProxy (nginx)', () => {
  it('sets $ssl_client_escaped_cert in x-ssl-client-cert, replacing an incoming one', async () => {
    const p = await proxy({ format: 'nginx' })
    const reply = await send(p.url, client, { 'x-ssl-client-cert': nginxEscapedCert(stranger.certPem) })
    expect(reply.seen.headers['x-ssl-client-cert']).toBe(nginxEscapedCert(new X509Certificate(client.certPem).toString()))
    expect(decodeURIComponent(reply.seen.headers['x-ssl-client-cert'] as string)).toBe(new X509Certificate(client.certPem).toString())
  })

  it('uses the header name given', async () => {
    const p = await proxy({ format: 'nginx', header: 'X-Client-Cert' })
    const reply = await send(p.url, client)
    expect(reply.seen.headers['x-client-cert']).toBe(nginxEscapedCert(new X509Certificate(client.certPem).toString()))
  })
})

/** A two-level PKI under `root`: an intermediate CA (made with @peculiar/x509) and a client leaf it signs. */
async function issueViaIntermediate(root: TestCa, spiffeId: string): Promise<{ intermediatePem: string; leaf: IssuedCertificate }> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const
  const rootKey = await webcrypto.subtle.importKey('pkcs8', pemBody(root.keyPem), alg, false, ['sign'])
  const rootCert = new x509.X509Certificate(root.certPem)
  const interKeys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair
  const now = Date.now()
  const intermediate = await x509.X509CertificateGenerator.create({
    serialNumber: '0a01',
    subject: 'CN=Test Intermediate CA',
    issuer: rootCert.subject,
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 86400_000),
    publicKey: interKeys.publicKey,
    signingKey: rootKey,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(interKeys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(rootCert),
    ],
  })
  const leafKeys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: '0a02',
    subject: `CN=${spiffeId}`,
    issuer: intermediate.subject,
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 86400_000),
    publicKey: leafKeys.publicKey,
    signingKey: interKeys.privateKey,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: spiffeId }]),
      await x509.AuthorityKeyIdentifierExtension.create(intermediate),
    ],
  })
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', leafKeys.privateKey)).toString('base64')
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`
  const certPem = leaf.toString('pem') + '\n'
  return {
    intermediatePem: intermediate.toString('pem') + '\n',
    leaf: { certPem, keyPem, chainPem: certPem, x5tS256: '', serialNumber: '0a02', spiffeId },
  }
}

function pemBody(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64')
}
