import { X509Certificate } from 'node:crypto'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, get } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createTestCa, type IssuedCertificate, type TestCa } from '@callsign/testing'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { AuthError } from '../src/errors.js'
import { readPeerCertificate } from '../src/peer-certificate.js'
import { parseBundle, TrustBundles, type TrustBundleSpec } from '../src/trust-bundles.js'

const OURS = 'spiffe://example.org/ns/web/sa/frontend'
const THEIRS = 'spiffe://partner.org/ns/billing/sa/api'
const NOT_CHAINED = "client certificate does not chain to its trust domain's bundle"

let ours: TestCa
let partner: TestCa
let partnerIntermediate: TestCa
let dir: string
beforeAll(async () => {
  ;[ours, partner] = await Promise.all([createTestCa({ commonName: 'Ours' }), createTestCa({ commonName: 'Partner' })])
  partnerIntermediate = await createTestCa({ commonName: 'Partner Issuing', issuer: partner })
  dir = mkdtempSync(join(tmpdir(), 'callsign-bundles-'))
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const spec = (domain: string, text: string, extra: Partial<TrustBundleSpec> = {}): TrustBundleSpec => ({
  domain,
  option: `mtls.trustDomains["${domain}"]`,
  text,
  path: undefined,
  pollSeconds: 0,
  ...extra,
})
const federation = (warn: (message: string, details: Record<string, unknown>) => void = () => {}): TrustBundles =>
  new TrustBundles([spec('example.org', ours.certPem), spec('partner.org', partner.certPem)], warn)
const x509 = (pem: string | IssuedCertificate): X509Certificate => new X509Certificate(typeof pem === 'string' ? pem : pem.certPem)

function refusal(fn: () => unknown): string | undefined {
  try {
    fn()
    return undefined
  } catch (error) {
    expect(error).toBeInstanceOf(AuthError)
    expect((error as AuthError).code).toBe('peer_unauthorized')
    return (error as AuthError).message
  }
}

describe('parseBundle', () => {
  it('reads every certificate, and names the option when there is none, one cannot be parsed, or one is cut off', () => {
    expect(parseBundle(ours.certPem + partner.certPem, 'x').map((c) => c.subject)).toEqual(['CN=Ours', 'CN=Partner'])
    expect(() => parseBundle('hello', 'mtls.trustDomains["a.org"]')).toThrow(
      new TypeError('Callsign: "mtls.trustDomains["a.org"]" must contain at least one PEM certificate'),
    )
    expect(() => parseBundle(ours.certPem + partner.certPem.slice(0, 200), 'b')).toThrow(/"b" has a PEM certificate without its END line/)
    expect(() => parseBundle('-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n', 'c')).toThrow(/"c" certificate #1 cannot be parsed/)
  })
})

describe('TrustBundles', () => {
  it("checkChain: a SPIFFE ID is proven only by its own domain's bundle; a domain without a bundle is left alone", async () => {
    const trust = federation()
    const [a, b, c, d, e] = await Promise.all([
      ours.issueCertificate({ spiffeId: OURS }),
      partner.issueCertificate({ spiffeId: THEIRS }),
      partner.issueCertificate({ spiffeId: OURS }),
      ours.issueCertificate({ spiffeId: THEIRS }),
      partnerIntermediate.issueCertificate({ spiffeId: THEIRS }),
    ])
    const now = Date.now()
    expect(trust.checkChain(OURS, x509(a), [], now)?.map((cert) => cert.subject)).toEqual([x509(a).subject, 'CN=Ours'])
    expect(refusal(() => trust.checkChain(THEIRS, x509(b), [], now))).toBeUndefined()
    expect(refusal(() => trust.checkChain(OURS, x509(c), [], now))).toBe(NOT_CHAINED)
    expect(refusal(() => trust.checkChain(THEIRS, x509(d), [], now))).toBe(NOT_CHAINED)
    // Through the partner's intermediate, when it is given; not without it.
    expect(refusal(() => trust.checkChain(THEIRS, x509(e), [x509(partnerIntermediate.certPem)], now))).toBeUndefined()
    expect(refusal(() => trust.checkChain(THEIRS, x509(e), [], now))).toBe(NOT_CHAINED)
    expect(trust.checkChain('spiffe://other.org/ns/x', x509(a), [], now)).toBeUndefined()
    expect(trust.domains()).toEqual(['example.org', 'partner.org'])
    expect(trust.anchors().map((cert) => cert.subject)).toEqual(['CN=Ours', 'CN=Partner'])
  })

  it('checkConnection: decided once per connection, again after a bundle change', async () => {
    const trust = federation()
    const wrong = x509(await partner.issueCertificate({ spiffeId: OURS }))
    const getPeerX509Certificate = vi.fn(() => wrong)
    const socket = { encrypted: true, authorized: true, getPeerX509Certificate }
    for (let i = 0; i < 3; i++) expect(refusal(() => trust.checkConnection(socket, OURS, [], Date.now()))).toBe(NOT_CHAINED)
    expect(getPeerX509Certificate).toHaveBeenCalledTimes(1)
    trust.generation++
    expect(refusal(() => trust.checkConnection(socket, OURS, [], Date.now()))).toBe(NOT_CHAINED)
    expect(getPeerX509Certificate).toHaveBeenCalledTimes(2)
    // No certificate on the socket at all: not proven.
    expect(refusal(() => trust.checkConnection({ getPeerX509Certificate: () => undefined }, OURS, [], Date.now()))).toBe(NOT_CHAINED)
  })

  it('checkConnection on real TLS: the chain the client sent (kept by readPeerCertificate) leads to the bundle; another CA trusted by the server does not', async () => {
    const trust = federation()
    const server = await ours.issueServerCertificate()
    const [viaIntermediate, partnerNamingUs, ourSvid] = await Promise.all([
      partnerIntermediate.issueCertificate({ spiffeId: THEIRS }),
      partnerIntermediate.issueCertificate({ spiffeId: OURS }),
      ours.issueCertificate({ spiffeId: OURS }),
    ])
    const outcomes: Array<string | undefined> = []
    const httpsServer = createServer(
      { cert: server.certPem, key: server.keyPem, ca: [ours.certPem, partner.certPem], requestCert: true, rejectUnauthorized: false },
      (req, res) => {
        const state = readPeerCertificate(req.socket)
        outcomes.push(
          state.kind === 'authorized' ? refusal(() => trust.checkConnection(req.socket, state.peer.spiffeId!, state.chain ?? [], Date.now())) : state.kind,
        )
        res.end('ok')
      },
    )
    httpsServer.listen(0, '127.0.0.1')
    await once(httpsServer, 'listening')
    const { port } = httpsServer.address() as AddressInfo
    const call = (cert: string, key: string): Promise<void> =>
      new Promise((resolve, reject) => {
        get({ host: '127.0.0.1', port, ca: [ours.certPem], agent: false, cert, key }, (res) => res.resume().on('end', resolve)).on('error', reject)
      })
    try {
      await call(viaIntermediate.chainPem, viaIntermediate.keyPem)
      await call(partnerNamingUs.chainPem, partnerNamingUs.keyPem)
      await call(ourSvid.certPem, ourSvid.keyPem)
    } finally {
      httpsServer.closeAllConnections()
      httpsServer.close()
    }
    expect(outcomes).toEqual([undefined, NOT_CHAINED, undefined])
  })

  it('watch: a changed file is swapped in; a bad or missing file keeps the previous bundle and is logged once per change', async () => {
    const path = join(dir, 'partner.pem')
    writeFileSync(path, partner.certPem)
    const warn = vi.fn()
    const trust = new TrustBundles([spec('example.org', ours.certPem), spec('partner.org', partner.certPem, { path, pollSeconds: 0.02 })], warn)
    const partnerSvid = x509(await partner.issueCertificate({ spiffeId: THEIRS }))
    const rotated = await createTestCa({ commonName: 'Partner 2' })
    trust.watch()
    trust.watch() // idempotent

    writeFileSync(path, rotated.certPem)
    await vi.waitFor(() => expect(trust.anchorsOf('partner.org')?.map((c) => c.subject)).toEqual(['CN=Partner 2']), { timeout: 5000, interval: 10 })
    expect(trust.generation).toBe(1)
    expect(trust.anchors().map((c) => c.subject)).toEqual(['CN=Ours', 'CN=Partner 2'])
    expect(refusal(() => trust.checkChain(THEIRS, partnerSvid, [], Date.now()))).toBe(NOT_CHAINED)

    writeFileSync(path, 'not a bundle')
    await vi.waitFor(() => expect(warn).toHaveBeenCalledTimes(1), { timeout: 5000, interval: 10 })
    expect(warn.mock.calls[0]).toEqual([
      "callsign: a trust domain's new bundle is refused; keeping the previous one",
      { trustDomain: 'partner.org', reason: expect.stringContaining('mtls.trustDomains["partner.org"]') },
    ])
    rmSync(path)
    await vi.waitFor(() => expect(warn).toHaveBeenCalledTimes(2), { timeout: 5000, interval: 10 })
    expect(warn.mock.calls[1]![0]).toBe("callsign: could not read a trust domain's bundle; keeping the previous one")
    expect(trust.anchorsOf('partner.org')?.map((c) => c.subject)).toEqual(['CN=Partner 2'])
    expect(trust.generation).toBe(1)

    writeFileSync(path, partner.certPem + rotated.certPem)
    await vi.waitFor(() => expect(trust.generation).toBe(2), { timeout: 5000, interval: 10 })
    expect(refusal(() => trust.checkChain(THEIRS, partnerSvid, [], Date.now()))).toBeUndefined()
    expect(warn).toHaveBeenCalledTimes(2)
  })
})
