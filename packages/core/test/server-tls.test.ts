import { X509Certificate } from 'node:crypto'
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises'
import { Agent, createServer, request, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TLSSocket } from 'node:tls'
import { createTestCa, type IssuedCertificate, type TestCa } from '@callsign/testing'
import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import {
  createServerTlsOptions,
  type CertificateExpiryEvent,
  type ServerTlsBundle,
  type ServerTlsOptions,
  type ServerTlsReloadEvent,
} from '../src/server-tls.js'

const DAY_MS = 24 * 60 * 60 * 1000

let ca: TestCa
let otherCa: TestCa
let serverCert: IssuedCertificate
let client: IssuedCertificate
let foreignClient: IssuedCertificate

beforeAll(async () => {
  ;[ca, otherCa] = await Promise.all([createTestCa(), createTestCa()])
  ;[serverCert, client, foreignClient] = await Promise.all([
    issueServerCertificate(),
    ca.issueCertificate({ spiffeId: 'spiffe://example.org/ns/web/sa/frontend' }),
    otherCa.issueCertificate({ spiffeId: 'spiffe://example.org/ns/web/sa/frontend' }),
  ])
})

/** A server certificate valid for a year, so the default expiry warning stays quiet. */
const issueServerCertificate = (): Promise<IssuedCertificate> => ca.issueServerCertificate({ notAfter: new Date(Date.now() + 365 * DAY_MS) })

const cleanups: Array<() => unknown> = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

/** What the server saw of the client, and what the client saw of the server. */
interface Reply {
  authorized: boolean
  error: string | null
  /** Serial number of the server certificate, lower case. */
  serial: string
  socket: TLSSocket
  reused: boolean
}

async function serve(tlsOptions: object): Promise<{ server: Server; port: number }> {
  const server = createServer(tlsOptions, (req, res) => {
    const socket = req.socket as TLSSocket
    res.setHeader('content-type', 'application/json')
    res.end(JSON.stringify({ authorized: socket.authorized, error: socket.authorizationError ? String(socket.authorizationError) : null }))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  )
  return { server, port: (server.address() as AddressInfo).port }
}

function call(port: number, as: IssuedCertificate | undefined, agent: Agent | false = false): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/', ca: ca.certPem, agent, ...(as ? { cert: as.certPem, key: as.keyPem } : {}) }, (res) => {
      // Captured now: at 'end' the socket may already be released to the agent or closed.
      const socket = res.socket as TLSSocket
      const serial = serialOf(socket.getPeerCertificate().serialNumber)
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (body += chunk))
      res.on('error', reject)
      res.on('end', () => {
        resolve({
          ...(JSON.parse(body) as { authorized: boolean; error: string | null }),
          serial,
          socket,
          reused: req.reusedSocket,
        })
      })
    })
    req.on('error', reject)
    req.end()
  })
}

const serialOf = (serial: string): string => serial.toLowerCase().replace(/^(00)+/, '')

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

function tlsOptions(options: ServerTlsOptions): ServerTlsBundle {
  const bundle = createServerTlsOptions(options)
  cleanups.push(() => bundle.close())
  return bundle
}

/** A temp dir holding the material as files, rewritten atomically (temp file + rename) like cert-manager or Vault agent do. */
async function tlsDir(files: Record<string, string>): Promise<{ path: (name: string) => string; write: (name: string, content: string) => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'callsign-tls-'))
  cleanups.push(() => rm(dir, { recursive: true, force: true }))
  let n = 0
  const write = async (name: string, content: string): Promise<void> => {
    const temp = join(dir, `.${name}.${n++}.tmp`)
    await writeFile(temp, content)
    await rename(temp, join(dir, name))
  }
  for (const [name, content] of Object.entries(files)) await write(name, content)
  return { path: (name) => join(dir, name), write }
}

describe('createServerTlsOptions: trust', () => {
  it('gives spreadable mTLS server options that trust exactly the given CA bundle', async () => {
    const bundle = tlsOptions({ cert: serverCert.certPem, key: Buffer.from(serverCert.keyPem), ca: ca.certPem })
    expect({ ...bundle }).toEqual({
      cert: serverCert.certPem,
      key: serverCert.keyPem,
      ca: ca.certPem,
      requestCert: true,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.2',
    })
    const { port } = await serve(bundle)

    expect(await call(port, client)).toMatchObject({ authorized: true, error: null, serial: serialOf(serverCert.serialNumber) })
    // Another CA, even with its own root sent along: the handshake completes (Callsign answers 401), unauthorized.
    expect(await call(port, foreignClient)).toMatchObject({ authorized: false, error: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' })
    expect(await call(port, { ...foreignClient, certPem: foreignClient.chainPem })).toMatchObject({ authorized: false })
    expect(await call(port, undefined)).toMatchObject({ authorized: false })
  })

  it('refuses revoked client certificates with CERT_REVOKED, from every CRL of a concatenated file', async () => {
    const [revoked, otherRevoked] = await Promise.all([ca.issueCertificate(), otherCa.issueCertificate()])
    // Node itself reads only the first CRL of a string; the bundle hands them over one by one.
    const crl = (await ca.issueCrl({ revoked: [revoked] })) + (await otherCa.issueCrl({ revoked: [otherRevoked] }))
    const bundle = tlsOptions({ cert: serverCert.certPem, key: serverCert.keyPem, ca: ca.certPem + otherCa.certPem, crl })
    expect(bundle.crl).toHaveLength(2)
    const { port } = await serve(bundle)

    expect(await call(port, client)).toMatchObject({ authorized: true })
    expect(await call(port, foreignClient)).toMatchObject({ authorized: true })
    expect(await call(port, revoked)).toMatchObject({ authorized: false, error: 'CERT_REVOKED' })
    expect(await call(port, otherRevoked)).toMatchObject({ authorized: false, error: 'CERT_REVOKED' })
  })

  it('keeps server settings besides the material (ciphers, maxVersion) when it swaps the context', async () => {
    const files = await tlsDir({ 'cert.pem': serverCert.certPem, 'key.pem': serverCert.keyPem, 'ca.pem': ca.certPem })
    const bundle = tlsOptions({ cert: { path: files.path('cert.pem') }, key: { path: files.path('key.pem') }, ca: { path: files.path('ca.pem') } })
    const { server, port } = await serve({ ...bundle, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256' })
    bundle.attach(server)
    const next = await issueServerCertificate()
    await files.write('cert.pem', next.certPem)
    await files.write('key.pem', next.keyPem)
    expect(await bundle.reload()).toBe(true)

    const reply = await call(port, client)
    expect(reply.serial).toBe(serialOf(next.serialNumber))
    expect(reply.socket.getProtocol()).toBe('TLSv1.2')
    expect(reply.socket.getCipher().standardName).toBe('TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256')
  })
})

describe('createServerTlsOptions: rotation without restart', () => {
  async function watchedServer(extra: Partial<ServerTlsOptions> = {}) {
    const files = await tlsDir({ 'cert.pem': serverCert.certPem, 'key.pem': serverCert.keyPem, 'ca.pem': ca.certPem })
    const events: ServerTlsReloadEvent[] = []
    const bundle = tlsOptions({
      cert: { path: files.path('cert.pem') },
      key: { path: files.path('key.pem') },
      ca: { path: files.path('ca.pem') },
      watch: { intervalMs: 100 },
      onReload: (event) => events.push(event),
      ...extra,
    })
    const { server, port } = await serve(bundle)
    bundle.attach(server)
    return { files, events, bundle, server, port }
  }

  it('serves a rotated server certificate to new connections; no request fails; keep-alive connections survive', async () => {
    const { files, events, port } = await watchedServer()
    const keepAlive = new Agent({ keepAlive: true, maxSockets: 1 })
    cleanups.push(() => keepAlive.destroy())
    const before = await call(port, client, keepAlive)
    expect(before.serial).toBe(serialOf(serverCert.serialNumber))

    const failures: unknown[] = []
    const serials = new Set<string>()
    let running = true
    const loop = async (): Promise<void> => {
      while (running) {
        try {
          const reply = await call(port, client)
          serials.add(reply.serial)
          if (!reply.authorized) failures.push(reply.error)
        } catch (error) {
          failures.push(error)
        }
      }
    }
    const loops = [loop(), loop()]
    const next = await issueServerCertificate()
    await until(() => serials.size > 0, 'traffic')
    await files.write('cert.pem', next.certPem)
    await files.write('key.pem', next.keyPem)
    await until(() => serials.has(serialOf(next.serialNumber)), 'the new certificate')
    await new Promise((resolve) => setTimeout(resolve, 100))
    running = false
    await Promise.all(loops)

    expect(failures).toEqual([])
    expect([...serials].sort()).toEqual([serialOf(serverCert.serialNumber), serialOf(next.serialNumber)].sort())
    expect(events).toEqual([{ ok: true, files: [files.path('cert.pem'), files.path('key.pem')] }])
    expect((await call(port, client)).serial).toBe(serialOf(next.serialNumber))

    // The keep-alive connection made before the rotation is still the same TLS session.
    const after = await call(port, client, keepAlive)
    expect(after.reused).toBe(true)
    expect(after.socket).toBe(before.socket)
    expect(after.serial).toBe(serialOf(serverCert.serialNumber))
    expect(after.authorized).toBe(true)
  })

  it('rotates the client CA bundle: new CA appended, then the old one removed', async () => {
    const { files, events, port } = await watchedServer()
    const newCa = await createTestCa()
    const newClient = await newCa.issueCertificate({ spiffeId: 'spiffe://example.org/ns/web/sa/frontend' })
    expect(await call(port, newClient)).toMatchObject({ authorized: false })

    await files.write('ca.pem', ca.certPem + newCa.certPem)
    await until(() => events.length === 1, 'the CA bundle reload')
    expect(await call(port, newClient)).toMatchObject({ authorized: true })
    expect(await call(port, client)).toMatchObject({ authorized: true })

    await files.write('ca.pem', newCa.certPem)
    await until(() => events.length === 2, 'the second CA bundle reload')
    expect(await call(port, newClient)).toMatchObject({ authorized: true })
    // The client sends its CA along (OpenSSL completes the chain from the client's own trust store).
    expect(await call(port, client)).toMatchObject({ authorized: false, error: 'SELF_SIGNED_CERT_IN_CHAIN' })
    expect(events).toEqual([
      { ok: true, files: [files.path('ca.pem')] },
      { ok: true, files: [files.path('ca.pem')] },
    ])
  })

  it('picks up a new CRL', async () => {
    const files = await tlsDir({ 'crl.pem': await ca.issueCrl() })
    const events: ServerTlsReloadEvent[] = []
    const bundle = tlsOptions({
      cert: serverCert.certPem,
      key: serverCert.keyPem,
      ca: ca.certPem,
      crl: { path: files.path('crl.pem') },
      watch: { intervalMs: 100 },
      onReload: (event) => events.push(event),
    })
    const { server, port } = await serve(bundle)
    bundle.attach(server)
    expect(await call(port, client)).toMatchObject({ authorized: true })
    await files.write('crl.pem', await ca.issueCrl({ revoked: [client] }))
    await until(() => events.length === 1, 'the CRL reload')
    expect(await call(port, client)).toMatchObject({ authorized: false, error: 'CERT_REVOKED' })
  })

  it('keeps the old certificate when a key file is half-written or does not match, and recovers when it is fixed', async () => {
    const { files, events, bundle, port } = await watchedServer()
    const next = await issueServerCertificate()

    await files.write('key.pem', next.keyPem.slice(0, 100)) // half-written
    await until(() => events.length === 1, 'the failed reload')
    expect(events[0]).toMatchObject({ ok: false })
    const error = (events[0] as { error: Error }).error
    expect(error).toBeInstanceOf(TypeError)
    expect(error.message).toContain(`"key" (${files.path('key.pem')})`)
    expect(await call(port, client)).toMatchObject({ authorized: true, serial: serialOf(serverCert.serialNumber) })

    await files.write('key.pem', next.keyPem) // complete, but cert.pem is still the old certificate
    await until(() => events.length === 2, 'the second failed reload')
    expect((events[1] as { error: Error }).error.message).toMatch(/"key" \(.*\) is not the private key of the certificate in "cert"/)
    expect(await call(port, client)).toMatchObject({ serial: serialOf(serverCert.serialNumber) })
    expect(await bundle.reload()).toBe(false)
    expect(events).toHaveLength(3) // an explicit reload() reports again; polls report each bad state once

    await files.write('cert.pem', next.certPem)
    await until(() => events.length === 4, 'the recovery')
    expect(events[3]).toEqual({ ok: true, files: [files.path('cert.pem'), files.path('key.pem')] })
    expect(await call(port, client)).toMatchObject({ authorized: true, serial: serialOf(next.serialNumber) })
    expect(bundle.cert).toBe(next.certPem)
    expect(await bundle.reload()).toBe(true) // unchanged: nothing to do
    expect(events).toHaveLength(4)
  })

  it('reports a deleted file and keeps serving', async () => {
    const { files, events, port } = await watchedServer()
    await rm(files.path('key.pem'))
    await until(() => events.length === 1, 'the failed reload')
    expect((events[0] as { error: Error }).error.message).toContain(`"key" could not be read from ${files.path('key.pem')}: ENOENT`)
    expect(await call(port, client)).toMatchObject({ authorized: true })
  })

  it('stops watching on close() and when the server closes', async () => {
    const first = await watchedServer()
    first.bundle.close()
    expect(() => first.bundle.attach(first.server)).toThrow(/closed/)
    const second = await watchedServer()
    await new Promise<void>((resolve) => {
      second.server.close(() => resolve())
      second.server.closeAllConnections()
    })
    const next = await issueServerCertificate()
    for (const { files } of [first, second]) {
      await files.write('cert.pem', next.certPem)
      await files.write('key.pem', next.keyPem)
    }
    await new Promise((resolve) => setTimeout(resolve, 400))
    expect(first.events).toEqual([])
    expect(second.events).toEqual([])
  })
})

describe('createServerTlsOptions: expiry', () => {
  it('reports a server certificate that expires within the window, once, and not a 1-year one', async () => {
    const shortLived = await ca.issueServerCertificate({ notAfter: new Date(Date.now() + 3 * DAY_MS + 60 * 60 * 1000) })
    const longLived = await ca.issueServerCertificate({ notAfter: new Date(Date.now() + 365 * DAY_MS) })
    const files = await tlsDir({ 'cert.pem': longLived.certPem, 'key.pem': longLived.keyPem })
    const expiring: CertificateExpiryEvent[] = []
    const bundle = tlsOptions({
      cert: { path: files.path('cert.pem') },
      key: { path: files.path('key.pem') },
      ca: ca.certPem,
      onExpiringSoon: (event) => expiring.push(event),
    })
    expect(expiring).toEqual([])

    await files.write('cert.pem', shortLived.certPem)
    await files.write('key.pem', shortLived.keyPem)
    expect(await bundle.reload()).toBe(true)
    expect(expiring).toEqual([{ subject: 'server', validTo: new Date(new X509Certificate(shortLived.certPem).validTo), daysLeft: 3 }])

    const atCreation: CertificateExpiryEvent[] = []
    tlsOptions({ cert: shortLived.certPem, key: shortLived.keyPem, ca: ca.certPem, onExpiringSoon: (event) => atCreation.push(event) })
    expect(atCreation).toMatchObject([{ subject: 'server', daysLeft: 3 }])
    const narrow: CertificateExpiryEvent[] = []
    tlsOptions({ cert: shortLived.certPem, key: shortLived.keyPem, ca: ca.certPem, expiryWarningDays: 2, onExpiringSoon: (event) => narrow.push(event) })
    expect(narrow).toEqual([])
  })

  it('warns on the console by default', async () => {
    const expired = await ca.issueServerCertificate({ validity: 'expired' })
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => undefined)
    cleanups.push(() => warn.mockRestore())
    tlsOptions({ cert: expired.certPem, key: expired.keyPem, ca: ca.certPem })
    expect(warn).toHaveBeenCalledWith(expect.stringMatching(/^Callsign: the server certificate expired \(notAfter /))
  })
})

describe('createServerTlsOptions: option validation', () => {
  const valid = (): ServerTlsOptions => ({ cert: serverCert.certPem, key: serverCert.keyPem, ca: ca.certPem })
  const truncate = (pem: string): string => pem.slice(0, Math.floor(pem.length / 2))
  const cases: Array<[string, () => unknown, RegExp]> = [
    ['options that are not an object', () => null, /"options" must be an object/],
    ['an unknown option', () => ({ ...valid(), passphrase: 'x' }), /"passphrase" is not a known option/],
    ['a missing cert', () => ({ ...valid(), cert: undefined }), /"cert" must be PEM text .* \(got undefined\)/],
    ['a cert of the wrong type', () => ({ ...valid(), cert: 42 }), /"cert" must be PEM text/],
    ['an empty cert', () => ({ ...valid(), cert: '  ' }), /"cert" must not be empty/],
    ['an empty path', () => ({ ...valid(), key: { path: '' } }), /"key.path" must be a non-empty string/],
    ['an unknown file option', () => ({ ...valid(), ca: { path: '/x', watch: true } }), /"ca.watch" is not a known option/],
    ['a missing file', () => ({ ...valid(), cert: { path: '/nonexistent/cert.pem' } }), /"cert" could not be read from \/nonexistent\/cert.pem: ENOENT/],
    ['a cert without PEM', () => ({ ...valid(), cert: 'hello' }), /"cert" holds no PEM certificate/],
    ['a truncated cert', () => ({ ...valid(), cert: truncate(serverCert.certPem) }), /"cert" has a PEM block without its END line/],
    [
      'a garbled cert',
      () => ({ ...valid(), cert: serverCert.certPem.replace(/\n[A-Za-z0-9+/]{64}\n/, '\nnot*base64\n') }),
      /"cert" has a PEM block "CERTIFICATE" that is not valid base64/,
    ],
    ['a key that is not a key', () => ({ ...valid(), key: serverCert.certPem }), /"key" is not a readable unencrypted PEM private key/],
    ['a truncated key', () => ({ ...valid(), key: truncate(serverCert.keyPem) }), /"key" has a PEM block without its END line/],
    ['a key of another certificate', () => ({ ...valid(), key: client.keyPem }), /"key" is not the private key of the certificate in "cert"/],
    ['a CA bundle without certificates', () => ({ ...valid(), ca: 'nothing' }), /"ca" holds no PEM certificate/],
    ['a CA bundle with a key in it', () => ({ ...valid(), ca: ca.certPem + ca.keyPem }), /"ca" block #2 is a "PRIVATE KEY", not a CERTIFICATE/],
    ['a half-written CA bundle', () => ({ ...valid(), ca: ca.certPem + truncate(otherCa.certPem) }), /"ca" has a PEM block without its END line/],
    ['a CRL that is not a CRL', () => ({ ...valid(), crl: ca.certPem }), /"crl" block #1 is a "CERTIFICATE", not an X509 CRL/],
    ['a CRL without PEM', () => ({ ...valid(), crl: 'none' }), /"crl" holds no PEM CRL/],
    [
      'a mislabelled CRL',
      () => ({ ...valid(), crl: `-----BEGIN X509 CRL-----\n${Buffer.from('garbage!').toString('base64')}\n-----END X509 CRL-----\n` }),
      /"crl" block #1 is not a valid X.509 CRL/,
    ],
    ['watch that is not a boolean', () => ({ ...valid(), watch: 'yes' }), /"watch" must be a boolean or \{ intervalMs \}/],
    ['a zero poll interval', () => ({ ...valid(), cert: { path: '/x' }, watch: { intervalMs: 0 } }), /"watch.intervalMs" must be a whole number/],
    ['an unknown watch option', () => ({ ...valid(), watch: { interval: 5 } }), /"watch.interval" is not a known option/],
    ['watch without files', () => ({ ...valid(), watch: true }), /"watch" needs at least one of/],
    ['an old TLS version', () => ({ ...valid(), minVersion: 'TLSv1.1' }), /"minVersion" must be 'TLSv1.2' or 'TLSv1.3'/],
    ['onReload that is not a function', () => ({ ...valid(), onReload: 'log' }), /"onReload" must be a function/],
    ['onExpiringSoon that is not a function', () => ({ ...valid(), onExpiringSoon: 1 }), /"onExpiringSoon" must be a function/],
    ['negative expiryWarningDays', () => ({ ...valid(), expiryWarningDays: -1 }), /"expiryWarningDays" must be a number >= 0/],
    ['NaN expiryWarningDays', () => ({ ...valid(), expiryWarningDays: Number.NaN }), /"expiryWarningDays" must be a number >= 0/],
  ]
  it.each(cases)('refuses %s', (_name, options, message) => {
    expect(() => createServerTlsOptions(options() as ServerTlsOptions)).toThrow(TypeError)
    expect(() => createServerTlsOptions(options() as ServerTlsOptions)).toThrow(message)
  })

  it('refuses CRLs that would make Node refuse every client', async () => {
    const hour = 60 * 60 * 1000
    const expired = await ca.issueCrl({ thisUpdate: new Date(Date.now() - 2 * hour), nextUpdate: new Date(Date.now() - hour) })
    const future = await ca.issueCrl({ thisUpdate: new Date(Date.now() + hour), nextUpdate: new Date(Date.now() + 2 * hour) })
    const options = (crl: string, caPem = ca.certPem): ServerTlsOptions => ({ cert: serverCert.certPem, key: serverCert.keyPem, ca: caPem, crl })
    expect(() => createServerTlsOptions(options(expired))).toThrow(/"crl" block #1 expired at .* \(CRL_HAS_EXPIRED\)/)
    expect(() => createServerTlsOptions(options(future))).toThrow(/"crl" block #1 is not valid before .* \(CRL_NOT_YET_VALID\)/)
    // Two CAs, a CRL for one: Node would refuse every client of the other with UNABLE_TO_GET_CRL.
    const onlyOne = await ca.issueCrl()
    expect(() => createServerTlsOptions(options(onlyOne, ca.certPem + otherCa.certPem))).toThrow(
      new RegExp(`"crl" has no CRL issued by the CA "CN=${otherCa.name}" of "ca".*UNABLE_TO_GET_CRL`),
    )
  })

  it('names the file of a bad option read from disk', async () => {
    const files = await tlsDir({ 'key.pem': client.keyPem })
    expect(() => createServerTlsOptions({ ...valid(), key: { path: files.path('key.pem') } })).toThrow(
      `Callsign: "key" (${files.path('key.pem')}) is not the private key of the certificate in "cert"`,
    )
  })

  it('refuses to attach something that is not a TLS server', () => {
    const bundle = tlsOptions(valid())
    expect(() => bundle.attach({} as Server)).toThrow(/"server" must be a tls.Server or https.Server/)
  })
})

describe('createServerTlsOptions: trustDomains (one CA bundle per SPIFFE trust domain)', () => {
  it("builds the trusted CA bundle from every domain's bundle, in order; the server authorizes clients of each", async () => {
    const bundle = tlsOptions({
      cert: serverCert.certPem,
      key: serverCert.keyPem,
      trustDomains: { 'example.org': ca.certPem, 'partner.org': Buffer.from(otherCa.certPem) },
    })
    expect(bundle.ca).toBe(ca.certPem + otherCa.certPem)
    expect(Object.keys({ ...bundle })).toEqual(['cert', 'key', 'ca', 'requestCert', 'rejectUnauthorized', 'minVersion'])
    const { port } = await serve(bundle)
    expect(await call(port, client)).toMatchObject({ authorized: true })
    expect(await call(port, foreignClient)).toMatchObject({ authorized: true })
    const stranger = await (await createTestCa()).issueCertificate()
    expect(await call(port, stranger)).toMatchObject({ authorized: false })
  })

  it('reloads a domain\'s bundle file like "ca": a partner CA rotated in and out', async () => {
    const files = await tlsDir({ 'partner.pem': otherCa.certPem })
    const events: ServerTlsReloadEvent[] = []
    const bundle = tlsOptions({
      cert: serverCert.certPem,
      key: serverCert.keyPem,
      trustDomains: { 'example.org': ca.certPem, 'partner.org': { path: files.path('partner.pem') } },
      watch: { intervalMs: 50 },
      onReload: (event) => events.push(event),
    })
    const { server, port } = await serve(bundle)
    bundle.attach(server)
    const rotated = await createTestCa()
    const rotatedClient = await rotated.issueCertificate({ spiffeId: 'spiffe://partner.org/ns/billing/sa/api' })
    expect(await call(port, rotatedClient)).toMatchObject({ authorized: false })

    await files.write('partner.pem', rotated.certPem)
    await until(() => events.length === 1, 'the bundle reload')
    expect(events).toEqual([{ ok: true, files: [files.path('partner.pem')] }])
    expect(bundle.ca).toBe(ca.certPem + rotated.certPem)
    expect(await call(port, rotatedClient)).toMatchObject({ authorized: true })
    expect(await call(port, foreignClient)).toMatchObject({ authorized: false })
    expect(await call(port, client)).toMatchObject({ authorized: true })

    // A bad bundle is refused, naming the domain and file; the previous one stays.
    await files.write('partner.pem', 'garbage')
    await until(() => events.length === 2, 'the refused reload')
    expect(events[1]).toMatchObject({
      ok: false,
      error: { message: `Callsign: "trustDomains["partner.org"]" (${files.path('partner.pem')}) holds no PEM certificate (-----BEGIN CERTIFICATE-----)` },
    })
    expect(await call(port, rotatedClient)).toMatchObject({ authorized: true })
  })

  it("checks every domain's CAs against the CRLs", async () => {
    const crl = await ca.issueCrl()
    expect(() =>
      createServerTlsOptions({
        cert: serverCert.certPem,
        key: serverCert.keyPem,
        trustDomains: { 'example.org': ca.certPem, 'partner.org': otherCa.certPem },
        crl,
      }),
    ).toThrow(new RegExp(`"crl" has no CRL issued by the CA "CN=${otherCa.name}" of "trustDomains".*UNABLE_TO_GET_CRL`))
  })

  const valid = (): Omit<ServerTlsOptions, 'ca'> => ({ cert: serverCert.certPem, key: serverCert.keyPem })
  it.each<[string, () => unknown, string | RegExp]>([
    [
      'both ca and trustDomains',
      () => ({ ...valid(), ca: ca.certPem, trustDomains: { 'example.org': ca.certPem } }),
      'Callsign: "trustDomains" cannot be combined with "ca": give the client CAs once, as "ca" or as each trust domain\'s bundle',
    ],
    ['neither ca nor trustDomains (the message of a missing ca)', () => valid(), /"ca" must be PEM text .* \(got undefined\)/],
    [
      'an empty map',
      () => ({ ...valid(), trustDomains: {} }),
      'Callsign: "trustDomains" must be an object mapping each SPIFFE trust domain to its CA bundle ({ "example.org": PEM or { path } })',
    ],
    ['an array', () => ({ ...valid(), trustDomains: ['example.org'] }), /"trustDomains" must be an object mapping/],
    ['a Buffer', () => ({ ...valid(), trustDomains: Buffer.from(ca.certPem) }), /"trustDomains" must be an object mapping/],
    [
      'an invalid trust domain',
      () => ({ ...valid(), trustDomains: { 'spiffe://example.org': ca.certPem } }),
      'Callsign: "trustDomains" contains an invalid trust domain "spiffe://example.org" (lower-case letters, digits, ".", "-", "_")',
    ],
    [
      'a bundle of the wrong type',
      () => ({ ...valid(), trustDomains: { 'example.org': 42 } }),
      /"trustDomains\["example.org"\]" must be PEM text \(a string or Buffer\) or \{ path \}/,
    ],
    [
      'a bundle without certificates',
      () => ({ ...valid(), trustDomains: { 'example.org': ca.certPem, 'partner.org': 'nothing' } }),
      'Callsign: "trustDomains["partner.org"]" holds no PEM certificate (-----BEGIN CERTIFICATE-----)',
    ],
    [
      'a bundle with a key in it',
      () => ({ ...valid(), trustDomains: { 'example.org': ca.certPem + ca.keyPem } }),
      'Callsign: "trustDomains["example.org"]" block #2 is a "PRIVATE KEY", not a CERTIFICATE',
    ],
    [
      'a missing bundle file',
      () => ({ ...valid(), trustDomains: { 'example.org': { path: '/nonexistent/bundle.pem' } } }),
      /"trustDomains\["example.org"\]" could not be read from \/nonexistent\/bundle.pem: ENOENT/,
    ],
    [
      'an unknown key next to path',
      () => ({ ...valid(), trustDomains: { 'example.org': { path: '/x', pollSeconds: 5 } } }),
      /"trustDomains\["example.org"\].pollSeconds" is not a known option \(known: path\)/,
    ],
  ])('refuses %s', (_name, options, message) => {
    expect(() => createServerTlsOptions(options() as ServerTlsOptions)).toThrow(TypeError)
    expect(() => createServerTlsOptions(options() as ServerTlsOptions)).toThrow(message)
  })
})

describe('createServerTlsOptions: the clock (now)', () => {
  it("judges the server certificate's expiry and each CRL's dates by the injected clock", async () => {
    const validTo = new Date(new X509Certificate(serverCert.certPem).validTo)
    const later = validTo.getTime() - 3 * DAY_MS - 60 * 60 * 1000
    const expiring: CertificateExpiryEvent[] = []
    tlsOptions({ cert: serverCert.certPem, key: serverCert.keyPem, ca: ca.certPem, now: () => later, onExpiringSoon: (event) => expiring.push(event) })
    expect(expiring).toEqual([{ subject: 'server', validTo, daysLeft: 3 }])

    // A CRL current by the system clock (nextUpdate in 24 hours) has expired two days later.
    const crl = await ca.issueCrl()
    const twoDaysLater = Date.now() + 2 * DAY_MS
    expect(() => createServerTlsOptions({ cert: serverCert.certPem, key: serverCert.keyPem, ca: ca.certPem, crl, now: () => twoDaysLater })).toThrow(
      /"crl" block #1 expired at .* \(CRL_HAS_EXPIRED\)/,
    )
    // One not yet valid by the system clock is current an hour and a half later.
    const hour = 60 * 60 * 1000
    const future = await ca.issueCrl({ thisUpdate: new Date(Date.now() + hour), nextUpdate: new Date(Date.now() + 2 * hour) })
    const inTime = Date.now() + 1.5 * hour
    expect(tlsOptions({ cert: serverCert.certPem, key: serverCert.keyPem, ca: ca.certPem, crl: future, now: () => inTime }).crl).toEqual([future.trim() + '\n'])
  })

  it('refuses a clock that is not a function', () => {
    expect(() => createServerTlsOptions({ cert: serverCert.certPem, key: serverCert.keyPem, ca: ca.certPem, now: 5 as unknown as () => number })).toThrow(
      'Callsign: "now" must be a function',
    )
  })
})
