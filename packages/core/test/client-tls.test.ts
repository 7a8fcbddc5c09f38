// The HTTPS client that presents the introspection client certificate (RFC 8705 §2): a real
// HTTPS server on loopback that sees the certificate, keep-alive reuse, and a server that drops
// an idle keep-alive connection just as it is reused.
import { mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TLSSocket } from 'node:tls'
import { createTestCa, type IssuedCertificate, type TestCa } from '@callsign/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ClientTls } from '../src/internal/client-tls.js'

let ca: TestCa
let client: IssuedCertificate
let server: Server
let origin: string
/** Per connection: requests seen. */
const seen = new Map<TLSSocket, number>()
/** Drop a reused connection instead of answering (once). */
let dropReused = false

beforeAll(async () => {
  ca = await createTestCa()
  const [serverCert, clientCert] = await Promise.all([ca.issueServerCertificate(), ca.issueCertificate({ spiffeId: 'spiffe://example.org/ns/orders/sa/api' })])
  client = clientCert
  server = createServer({ key: serverCert.keyPem, cert: serverCert.chainPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: false }, (req, res) => {
    const socket = req.socket as TLSSocket
    const count = (seen.get(socket) ?? 0) + 1
    seen.set(socket, count)
    if (count > 1 && dropReused) {
      dropReused = false
      socket.destroy()
      return
    }
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (chunk: string) => (body += chunk))
    req.on('end', () => {
      const peer = socket.authorized ? socket.getPeerCertificate().subjectaltname : null
      res
        .writeHead(200, { 'content-type': 'application/json', 'x-echo': req.headers['x-echo'] ?? '' })
        .end(JSON.stringify({ peer, method: req.method, body, count }))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(async () => {
  server?.closeAllConnections()
  await new Promise((resolve) => server?.close(resolve))
})

describe('ClientTls', () => {
  it('presents the certificate, sends method, headers and body, and reuses the connection', async () => {
    const tls = new ClientTls({ cert: client.certPem, key: client.keyPem, ca: ca.certPem }, 'tls')
    const first = await tls.fetch(`${origin}/a`, { method: 'POST', headers: { 'x-echo': 'hi' }, body: 'token=x' })
    expect(first.status).toBe(200)
    expect(first.headers.get('x-echo')).toBe('hi')
    expect(await first.json()).toEqual({ peer: 'URI:spiffe://example.org/ns/orders/sa/api', method: 'POST', body: 'token=x', count: 1 })
    const second = await tls.fetch(`${origin}/b`)
    expect(((await second.json()) as { count: number }).count).toBe(2)
    tls.close()
  })

  it('sends the request once more on a new connection when a reused one is dropped', async () => {
    const tls = new ClientTls({ cert: client.certPem, key: client.keyPem, ca: ca.certPem }, 'tls')
    await (await tls.fetch(`${origin}/warm`)).text()
    dropReused = true
    const res = await tls.fetch(`${origin}/again`, { method: 'POST', body: 'token=y' })
    expect(await res.json()).toMatchObject({ body: 'token=y', count: 1 })
    expect(dropReused).toBe(false)
    tls.close()
  })

  it('refuses http, and rejects when aborted', async () => {
    const tls = new ClientTls({ cert: client.certPem, key: client.keyPem, ca: ca.certPem }, 'tls')
    await expect(tls.fetch('http://127.0.0.1:1/')).rejects.toThrow('a client certificate is only presented over https')
    await expect(tls.fetch(`${origin}/x`, { signal: AbortSignal.abort(new Error('stop')) })).rejects.toThrow('stop')
    tls.close()
  })

  it('presents a rotated certificate from the next request, even when size and modification time did not change', async () => {
    const next = await ca.issueCertificate({ spiffeId: 'spiffe://example.org/ns/orders/sa/worker' })
    const dir = mkdtempSync(join(tmpdir(), 'callsign-client-tls-'))
    try {
      const paths = { cert: join(dir, 'svid.pem'), key: join(dir, 'svid.key') }
      // Padded to one length, so a stat-based check cannot tell the rotation apart.
      const pad = (a: string, b: string): [string, string] => [a.padEnd(Math.max(a.length, b.length), '\n'), b.padEnd(Math.max(a.length, b.length), '\n')]
      const [cert1, cert2] = pad(client.certPem, next.certPem)
      const [key1, key2] = pad(client.keyPem, next.keyPem)
      // One modification time for both versions (a coarse clock, or a copy that keeps times).
      const stamp = new Date('2030-01-01T00:00:00Z')
      const write = (cert: string, key: string): void => {
        writeFileSync(paths.cert, cert)
        writeFileSync(paths.key, key)
        for (const path of [paths.cert, paths.key]) utimesSync(path, stamp, stamp)
      }
      write(cert1, key1)
      const tls = new ClientTls({ cert: { path: paths.cert }, key: { path: paths.key }, ca: ca.certPem }, 'tls')
      const peer = async (): Promise<string> => ((await (await tls.fetch(`${origin}/peer`)).json()) as { peer: string }).peer
      expect(await peer()).toBe('URI:spiffe://example.org/ns/orders/sa/api')
      write(cert2, key2)
      expect(await peer()).toBe('URI:spiffe://example.org/ns/orders/sa/worker')
      tls.close()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
