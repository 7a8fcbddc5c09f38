/**
 * Attacks on the caller's certificate identity, one test per attack, against every adapter over
 * real HTTPS: certificates the TLS stack did not authorize, SANs that are no valid X509-SVID
 * (SPIFFE X509-SVID §2, SPIFFE ID §2), SAN injection, leaves unfit as identities (X509-SVID §4.3,
 * §4.4: CA certificates, certificate or CRL signers), certificates forwarded by proxies (XFCC,
 * nginx): spoofed by an untrusted peer, several elements, quoting tricks; and SPIFFE federation:
 * a trusted CA naming a SPIFFE ID of another trust domain. Each asserts the exact status and
 * challenge AND that no issuer was contacted (the peer is judged before the token). Never a 5xx.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createServerTlsOptions, type CallsignOptions, type MtlsOptions, type TrustDomainBundles } from '@callsign/core'
import {
  certificateHash,
  createTestCa,
  nginxEscapedCert,
  xfccElement,
  xfccHeader,
  type IssuedCertificate,
  type TestCa,
  type TestIssuer,
} from '@callsign/testing'
import { adapters, type RunningApp } from '../support/adapters.js'
import { keepAliveAgent, statusRecorder, type StatusRecorder } from '../support/attacks.js'
import type { CallOptions, CallResult, ClientIdentity } from '../support/client.js'
import { expectAccepted, expectRefusal, type AcceptExpectation, type RefusalExpectation } from '../support/expectations.js'
import { createFixture, ID, issuerOption, quiet, sign, type Fixture } from '../support/fixtures.js'

const INGRESS = 'spiffe://example.org/ns/istio-system/sa/ingress'
const XFCC = 'x-forwarded-client-cert'

/** URI SANs that are not valid SPIFFE IDs of a workload (SPIFFE ID §2, X509-SVID §2). */
const MALFORMED_SPIFFE_IDS = [
  'spiffe://Example.org/ns/web/sa/a', // upper-case trust domain
  'SPIFFE://example.org/ns/web/sa/a', // upper-case scheme
  'spiffe://example.org/ns/../sa/a', // ".." segment
  'spiffe://example.org/ns/./sa/a', // "." segment
  'spiffe://example.org/ns/web/sa/a/', // trailing slash
  'spiffe://example.org/ns//sa/a', // empty segment
  'spiffe://example.org/ns/web%2Fsa/a', // percent-encoding
  'spiffe://example.org:8443/ns/web/sa/a', // port
  'spiffe://example.org/ns/web/sa/a?x=1', // query
  'spiffe://example.org/ns/web/sa/a#f', // fragment
  'spiffe://user@example.org/ns/web/sa/a', // user info
  'spiffe://example.org', // trust domain only: not a workload
  'spiffe:///ns/web/sa/a', // no trust domain
]

let fx: Fixture
let A: TestIssuer
let ingress: IssuedCertificate
let malformed: IssuedCertificate[]
let spiffeAndHttps: IssuedCertificate
let forwardedExpired: IssuedCertificate
/** Leaves of the trusted CA that are unfit as identities, with the refusal each gets (X509-SVID §4.3, §4.4). */
let unfit: Array<[what: string, cert: IssuedCertificate, detail: string]>
beforeAll(async () => {
  fx = await createFixture()
  ;[A, ingress, spiffeAndHttps, forwardedExpired, ...malformed] = (await Promise.all([
    fx.startIssuer({ discovery: 'none' }),
    fx.ca.issueCertificate({ spiffeId: INGRESS }),
    fx.ca.issueCertificate({ spiffeId: ID.frontend, uris: ['https://frontend.example.org/'] }),
    fx.ca.issueCertificate({ spiffeId: ID.worker, validity: 'expired' }),
    ...MALFORMED_SPIFFE_IDS.map((uri) => fx.ca.issueCertificate({ uris: [uri] })),
  ])) as [TestIssuer, IssuedCertificate, IssuedCertificate, IssuedCertificate, ...IssuedCertificate[]]
  const leaves = [
    ['cA:TRUE with a SPIFFE SAN', { isCa: true }, 'client certificate is a CA certificate'],
    ['cA:TRUE with keyCertSign', { isCa: true, keyUsages: ['digitalSignature', 'keyCertSign'] }, 'client certificate is a CA certificate'],
    ['keyCertSign on a non-CA leaf', { keyUsages: ['digitalSignature', 'keyCertSign'] }, 'client certificate may sign certificates or CRLs'],
    ['cRLSign on a non-CA leaf', { keyUsages: ['digitalSignature', 'cRLSign'] }, 'client certificate may sign certificates or CRLs'],
    ['a key usage without digitalSignature', { keyUsages: ['keyAgreement'] }, 'client certificate is not for digital signatures'],
    ['an EKU of serverAuth only', { usage: 'server' }, 'client certificate is not for client authentication'],
  ] as const
  unfit = await Promise.all(
    leaves.map(
      async ([what, options, detail]) =>
        [what, await fx.ca.issueCertificate({ spiffeId: ID.worker, ...options }), detail] as [string, IssuedCertificate, string],
    ),
  )
})
afterAll(() => fx?.close())

/** A valid service token naming a client that is none of the workloads. */
const serviceToken = (claims: Record<string, unknown> = {}): Promise<string> =>
  sign(A, { sub: 'svc-token', client_id: 'svc-token', scope: 'orders:read', ...claims })
const PEER_UNAUTHORIZED: RefusalExpectation = { status: 401, code: 'peer_unauthorized' }
const INVALID_REQUEST: RefusalExpectation = { status: 400, code: 'invalid_request' }
/** The auth context of a call whose caller is the token's client. */
const tokenCaller = (peer?: ClientIdentity & { x5tS256: string; spiffeId?: string }): AcceptExpectation => ({
  caller: { id: 'svc-token', source: 'token' },
  scopes: ['orders:read'],
  ...(peer ? { peer } : {}),
})

type AppName = 'optional' | 'trustDomain' | 'forwarded' | 'assertions' | 'nginx'
const NGINX_HEADER = 'x-ssl-client-cert'

describe.each(adapters)('$name: certificate identity attacks', (adapter) => {
  let rec: StatusRecorder
  const apps = {} as Record<AppName, RunningApp>

  beforeAll(async () => {
    rec = statusRecorder(fx.call)
    const byId = { trustedProxies: { spiffeIds: [INGRESS] } }
    const mtls: Record<AppName, MtlsOptions> = {
      optional: { mode: 'optional' },
      trustDomain: { trustDomains: ['example.org'] },
      forwarded: { forwarded: { ...byId, ca: fx.ca.certPem } },
      assertions: { forwarded: { ...byId, trustProxyAssertions: true } },
      nginx: { forwarded: { ...byId, format: 'nginx', header: NGINX_HEADER, ca: fx.ca.certPem } },
    }
    for (const [name, m] of Object.entries(mtls)) {
      const options: CallsignOptions = { issuers: issuerOption(A, { explicitJwks: true }), mtls: m, logger: quiet, jwks: { cooldownSeconds: 600 } }
      apps[name as AppName] = await fx.start(adapter, options)
      await apps[name as AppName].guard.ready()
    }
  })

  async function attack(app: AppName, request: CallOptions, expected: RefusalExpectation, detail?: string | RegExp): Promise<CallResult> {
    const fetches = A.requestCount()
    const res = await rec.call(apps[app], request)
    expectRefusal(res, expected)
    if (detail !== undefined) expect(res.body.detail, res.text.slice(0, 200)).toMatch(detail)
    expect(A.requestCount(), 'issuer requests').toBe(fetches)
    return res
  }
  async function served(app: AppName, request: CallOptions, expected: AcceptExpectation): Promise<CallResult> {
    const res = await rec.call(apps[app], request)
    expectAccepted(res, expected)
    return res
  }
  const withCert = async (cert: ClientIdentity, extra: Omit<CallOptions, 'cert'> = {}): Promise<CallOptions> => ({
    cert,
    token: await serviceToken(),
    ...extra,
  })

  describe('mTLS', () => {
    it('a certificate the TLS stack did not authorize (untrusted CA, expired, not yet valid, no clientAuth EKU) is refused, never ignored', async () => {
      const cases: Array<[IssuedCertificate, string | RegExp]> = [
        [fx.certs.untrusted, 'client certificate is not trusted'],
        [fx.certs.expired, 'client certificate has expired'],
        [fx.certs.notYetValid, 'client certificate is not yet valid'],
        [fx.certs.serverOnly, /client certificate/],
      ]
      for (const [cert, detail] of cases) {
        for (const app of ['optional', 'trustDomain', 'forwarded'] as const) await attack(app, await withCert(cert), PEER_UNAUTHORIZED, detail)
        // Even with a token bound to exactly that certificate.
        await attack(
          'optional',
          { cert, token: await sign(A, { sub: ID.frontend, client_id: ID.frontend }, { x5tS256: cert.x5tS256 }) },
          PEER_UNAUTHORIZED,
          detail,
        )
      }
    })

    it('no SAN: the caller falls back to the token (source "token"); refused where trust domains are required', async () => {
      const res = await served('optional', await withCert(fx.certs.noSan), tokenCaller(fx.certs.noSan))
      expect(res.body.peer).not.toHaveProperty('spiffeId')
      await attack('trustDomain', await withCert(fx.certs.noSan), PEER_UNAUTHORIZED, 'client certificate has no SPIFFE ID')
    })

    it('several URI SANs (two SPIFFE IDs, or a SPIFFE ID and an https URI): not an SVID', async () => {
      for (const cert of [fx.certs.twoSpiffeIds, spiffeAndHttps]) {
        for (const app of ['optional', 'trustDomain'] as const)
          await attack(app, await withCert(cert), PEER_UNAUTHORIZED, 'client certificate is not a valid SVID: more than one URI SAN')
      }
    })

    it('malformed SPIFFE IDs: upper case, "." and ".." segments, trailing slash, empty segment, percent-encoding, port, query, fragment, user info, no path', async () => {
      for (const [i, cert] of malformed.entries()) {
        const res = await attack('optional', await withCert(cert), PEER_UNAUTHORIZED, 'client certificate is not a valid SVID: malformed SPIFFE ID')
        expect(res.body.detail, MALFORMED_SPIFFE_IDS[i]).toBe('client certificate is not a valid SVID: malformed SPIFFE ID')
      }
    })

    it('SAN injection: one URI SAN reading like ", URI:spiffe://..." never yields that SPIFFE ID', async () => {
      const res = await served('optional', await withCert(fx.certs.sanInjection), tokenCaller(fx.certs.sanInjection))
      expect(res.body.peer.uris).toEqual([`https://x.example/a, URI:${ID.worker}`])
      expect(res.body.peer).not.toHaveProperty('spiffeId')
      await attack('trustDomain', await withCert(fx.certs.sanInjection), PEER_UNAUTHORIZED, 'client certificate has no SPIFFE ID')
    })

    it('a certificate of another trust domain where trust domains are pinned', async () => {
      await attack('trustDomain', await withCert(fx.certs.otherDomain), PEER_UNAUTHORIZED, 'client certificate is not from an accepted trust domain')
    })

    it('a leaf of the trusted CA that is unfit as an identity (cA:TRUE, keyCertSign, cRLSign, no digitalSignature, serverAuth only) is refused, though the TLS stack may accept it', async () => {
      for (const [what, cert, detail] of unfit) {
        for (const app of ['optional', 'trustDomain', 'forwarded'] as const) {
          const res = await attack(app, await withCert(cert), PEER_UNAUTHORIZED, detail)
          expect(res.body.detail, what).toBe(detail)
        }
        // Even with a token bound to exactly that certificate, naming it as the caller.
        await attack('optional', { cert, token: await sign(A, { sub: ID.worker, client_id: ID.worker }, { x5tS256: cert.x5tS256 }) }, PEER_UNAUTHORIZED, detail)
      }
    })

    it('an unfit leaf cannot act as the trusted proxy either (its XFCC is never read)', async () => {
      const proxyAsCa = await fx.ca.issueCertificate({ spiffeId: INGRESS, isCa: true })
      await attack(
        'forwarded',
        await withCert(proxyAsCa, { headers: { [XFCC]: xfccHeader(xfccElement({ hash: true, cert: fx.certs.adminUi, uri: [ID.adminUi] })) } }),
        PEER_UNAUTHORIZED,
        'client certificate is a CA certificate',
      )
    })

    it('never a 5xx in this family', () => {
      expect(rec.statuses.filter((s) => s.status >= 500).map((s) => s.what)).toEqual([])
    })
  })

  describe('forwarded certificates (XFCC)', () => {
    const full = (cert: IssuedCertificate): string =>
      xfccElement({ hash: true, cert, subject: `CN=${cert.spiffeId ?? 'x'}`, uri: cert.spiffeId ? [cert.spiffeId] : [] })
    const forwardedCaller = (cert: IssuedCertificate, verification: 'forwarded-certificate' | 'proxy-assertion'): AcceptExpectation => ({
      caller: { id: cert.spiffeId!, source: 'forwarded' },
      scopes: ['orders:read'],
      peer: { ...cert, spiffeId: cert.spiffeId!, verification },
    })
    /** A request from the trusted proxy (its own certificate) carrying `header`. */
    const fromProxy = async (header: string | string[]): Promise<CallOptions> => withCert(ingress, { headers: { [XFCC]: header } })
    const H = (cert: IssuedCertificate): string => certificateHash(cert.certPem)

    it('spoofed XFCC from a peer that is not a trusted proxy (a workload, or no certificate) is ignored', async () => {
      const spoof = xfccHeader(full(fx.certs.worker))
      await served('forwarded', await withCert(fx.certs.frontend, { headers: { [XFCC]: spoof } }), {
        caller: { id: ID.frontend, source: 'mtls' },
        scopes: ['orders:read'],
        peer: { ...fx.certs.frontend, verification: 'tls' },
      })
      await served('forwarded', { token: await serviceToken(), headers: { [XFCC]: spoof } }, tokenCaller())
      await served('assertions', { token: await serviceToken(), headers: { [XFCC]: `Hash=${H(fx.certs.worker)};URI=${ID.worker}` } }, tokenCaller())
      // Even a malformed spoofed header is not parsed.
      await served('forwarded', { token: await serviceToken(), headers: { [XFCC]: 'Hash="unterminated' } }, tokenCaller())
    })

    it("the trusted proxy's own certificate never becomes the caller (no XFCC: the token names the caller)", async () => {
      await served('forwarded', await withCert(ingress), tokenCaller())
      await served('forwarded', await withCert(ingress, { headers: { [XFCC]: '' } }), tokenCaller())
    })

    it("several elements from a trusted proxy: the last (the proxy's own) wins, whatever earlier ones name", async () => {
      await served(
        'forwarded',
        await fromProxy(xfccHeader(full(fx.certs.worker), full(fx.certs.frontend))),
        forwardedCaller(fx.certs.frontend, 'forwarded-certificate'),
      )
      await served(
        'forwarded',
        await fromProxy(xfccHeader(full(fx.certs.frontend), full(fx.certs.worker))),
        forwardedCaller(fx.certs.worker, 'forwarded-certificate'),
      )
      // As two header lines too.
      await served('forwarded', await fromProxy([full(fx.certs.worker), full(fx.certs.frontend)]), forwardedCaller(fx.certs.frontend, 'forwarded-certificate'))
      await served(
        'assertions',
        await fromProxy(xfccHeader(`Hash=${H(fx.certs.worker)};URI=${ID.worker}`, `Hash=${H(fx.certs.frontend)};URI=${ID.frontend}`)),
        forwardedCaller(fx.certs.frontend, 'proxy-assertion'),
      )
      // An earlier element that is untrusted or malformed-but-parsable does not matter either.
      await served(
        'forwarded',
        await fromProxy(xfccHeader(full(fx.certs.untrusted), full(fx.certs.frontend))),
        forwardedCaller(fx.certs.frontend, 'forwarded-certificate'),
      )
    })

    it('quoting tricks in XFCC values (",", ";", "=" and \\" inside quotes) never create another key or element', async () => {
      const hf = H(fx.certs.frontend)
      // A Subject smuggling a URI key: it stays the Subject; the real URI decides.
      const smuggled = `Hash=${hf};Subject="CN=a\\";URI=${ID.worker}";URI=${ID.frontend}`
      await served('assertions', await fromProxy(smuggled), forwardedCaller(fx.certs.frontend, 'proxy-assertion'))
      const smuggledBy = `Hash=${hf};Subject="x,By=${INGRESS};URI=${ID.worker}";URI=${ID.frontend}`
      await served('assertions', await fromProxy(smuggledBy), forwardedCaller(fx.certs.frontend, 'proxy-assertion'))
      // One quoted URI value holding a second "URI=" is one malformed SPIFFE ID, not two URIs.
      for (const uri of [
        `"${ID.frontend},URI=${ID.worker}"`,
        `"${ID.frontend};URI=${ID.worker}"`,
        `"${ID.frontend}\\";URI=${ID.worker}"`,
        `"${ID.frontend}=x"`,
      ]) {
        await attack('assertions', await fromProxy(`Hash=${hf};URI=${uri}`), PEER_UNAUTHORIZED, 'client certificate is not a valid SVID: malformed SPIFFE ID')
      }
      await attack(
        'assertions',
        await fromProxy(`Hash=${hf};URI=${ID.frontend};URI=${ID.worker}`),
        PEER_UNAUTHORIZED,
        'client certificate is not a valid SVID: more than one URI SAN',
      )
      // Cert-based: a Subject smuggling a Cert key does not replace the verified certificate.
      const certSmuggle = `Hash=${hf};Subject="CN=a\\";Cert=${encodeURIComponent(fx.certs.worker.certPem)}";Cert="${encodeURIComponent(fx.certs.frontend.certPem)}"`
      await served('forwarded', await fromProxy(certSmuggle), forwardedCaller(fx.certs.frontend, 'forwarded-certificate'))
    })

    it('malformed XFCC from a trusted proxy: unterminated quote, stray quote or "=", 17 elements, 65 pairs, duplicate Cert, hash mismatch: 400', async () => {
      const hf = H(fx.certs.frontend)
      const bad = [
        `Hash=${hf};URI="${ID.frontend}`,
        `Hash=${hf};URI=${ID.frontend}"`,
        `Hash=${hf};URI=${ID.frontend}=x`,
        `Hash=${hf};"URI"=${ID.frontend}`,
        `Hash=${hf};URI="${ID.frontend}"x`,
        `Hash=${hf},`,
        `=${hf}`,
        `Hash=${hf};;URI=${ID.frontend}`,
        Array.from({ length: 17 }, () => `Hash=${hf}`).join(','),
        Array.from({ length: 65 }, () => `DNS=a`).join(';'),
      ]
      for (const header of bad) await attack('assertions', await fromProxy(header), INVALID_REQUEST, /malformed forwarded client certificate/)
      await attack(
        'forwarded',
        await fromProxy(`${full(fx.certs.frontend)};Cert="${encodeURIComponent(fx.certs.worker.certPem)}"`),
        INVALID_REQUEST,
        /malformed forwarded client certificate/,
      )
      await attack(
        'forwarded',
        await fromProxy(xfccElement({ hash: H(fx.certs.worker), cert: fx.certs.frontend })),
        INVALID_REQUEST,
        'forwarded client certificate does not match its hash',
      )
    })

    it('a trusted proxy forwarding a leaf unfit as an identity: refused as on a direct connection, in XFCC and nginx format', async () => {
      for (const [what, cert, detail] of unfit) {
        const viaXfcc = await attack('forwarded', await fromProxy(full(cert)), PEER_UNAUTHORIZED, detail)
        expect(viaXfcc.body.detail, what).toBe(detail)
        const viaNginx = await attack('nginx', await withCert(ingress, { headers: { [NGINX_HEADER]: nginxEscapedCert(cert) } }), PEER_UNAUTHORIZED, detail)
        expect(viaNginx.body.detail, what).toBe(detail)
      }
    })

    it('a trusted proxy forwarding a certificate Callsign cannot verify (untrusted CA, expired) or none at all to a strict guard', async () => {
      await attack('forwarded', await fromProxy(full(fx.certs.untrusted)), PEER_UNAUTHORIZED, 'client certificate is not trusted')
      await attack('forwarded', await fromProxy(full(forwardedExpired)), PEER_UNAUTHORIZED, 'client certificate has expired')
      await attack(
        'forwarded',
        await fromProxy(`Hash=${H(fx.certs.frontend)};URI=${ID.frontend}`),
        PEER_UNAUTHORIZED,
        'the proxy forwarded no client certificate to verify',
      )
    })

    it('never a 5xx in this family', () => {
      expect(rec.statuses.filter((s) => s.status >= 500).map((s) => s.what)).toEqual([])
    })
  })
})

/**
 * SPIFFE federation: the server trusts our CA and a partner's (`createServerTlsOptions` with one
 * `trustDomains` map, the same map as the guard's `mtls.trustDomains`). Every trusted CA can sign
 * any SPIFFE ID; a SPIFFE ID is only proven by a chain to its own trust domain's bundle.
 */
describe.each(adapters)('$name: SPIFFE federation (a trust domain is bound to its CA bundle)', (adapter) => {
  const PARTNER = 'spiffe://partner.org/ns/billing/sa/api'
  const PARTNER_ISSUED = 'spiffe://partner.org/ns/billing/sa/batch'
  const NOT_CHAINED = "client certificate does not chain to its trust domain's bundle"
  const NOT_ACCEPTED = 'client certificate is not from an accepted trust domain'
  let rec: StatusRecorder
  let partner: TestCa
  let partnerIssuing: TestCa
  const certs = {} as Record<
    'partnerNamingUs' | 'partnerOwn' | 'oursNamingPartner' | 'viaIntermediate' | 'intermediateNamingUs' | 'partnerNamingIngress' | 'partnerNamingOther',
    IssuedCertificate
  >
  let direct: RunningApp
  let forwarded: RunningApp
  let proxyUrl: string
  const closers: Array<() => Promise<void>> = []

  beforeAll(async () => {
    rec = statusRecorder(fx.call)
    partner = await createTestCa({ commonName: 'Partner CA' })
    partnerIssuing = await createTestCa({ commonName: 'Partner Issuing CA', issuer: partner })
    ;[
      certs.partnerNamingUs,
      certs.partnerOwn,
      certs.oursNamingPartner,
      certs.viaIntermediate,
      certs.intermediateNamingUs,
      certs.partnerNamingIngress,
      certs.partnerNamingOther,
    ] = await Promise.all([
      partner.issueCertificate({ spiffeId: ID.frontend }),
      partner.issueCertificate({ spiffeId: PARTNER }),
      fx.ca.issueCertificate({ spiffeId: PARTNER }),
      partnerIssuing.issueCertificate({ spiffeId: PARTNER_ISSUED }),
      partnerIssuing.issueCertificate({ spiffeId: ID.worker }),
      partner.issueCertificate({ spiffeId: INGRESS }),
      partner.issueCertificate({ spiffeId: ID.otherDomain }),
    ])
    // The README's federation setup: one map for the TLS stack and for the guard.
    const trustDomains: TrustDomainBundles = { 'example.org': fx.ca.certPem, 'partner.org': partner.certPem }
    const serverTls = createServerTlsOptions({ cert: fx.tls.cert, key: fx.tls.key, trustDomains })
    const start = async (mtls: MtlsOptions): Promise<RunningApp> => {
      const app = await adapter.start(
        { issuers: issuerOption(A, { explicitJwks: true }), mtls, logger: quiet },
        { cert: serverTls.cert, key: serverTls.key, ca: serverTls.ca },
      )
      closers.push(() => app.close())
      await app.guard.ready()
      return app
    }
    direct = await start({ trustDomains })
    // Behind a proxy: no mtls.forwarded.ca, the bundles are the anchors.
    forwarded = await start({ trustDomains, forwarded: { trustedProxies: { spiffeIds: [INGRESS] } } })
    const proxy = await fx.startProxy(forwarded, {
      format: 'xfcc',
      clientCert: ingress,
      clientCertificate: 'optional',
      // The proxy trusts both CAs too; it forwards the leaf and its intermediates (Chain).
      tls: { caPem: [fx.ca.certPem, partner.certPem, partnerIssuing.certPem] },
      details: { chain: true },
    })
    proxyUrl = proxy.url
  })
  afterAll(async () => {
    await Promise.all(closers.splice(0).map((close) => close()))
  })

  const target = (where: 'direct' | 'proxy'): RunningApp => (where === 'direct' ? direct : { ...forwarded, url: proxyUrl })
  /** A client presenting `cert` (with its intermediates when it has any) and a service token. */
  const presenting = async (cert: IssuedCertificate, withChain = false, extra: Omit<CallOptions, 'cert'> = {}): Promise<CallOptions> => ({
    cert: { certPem: withChain ? cert.chainPem : cert.certPem, keyPem: cert.keyPem },
    token: await serviceToken(),
    ...extra,
  })
  async function refused(where: 'direct' | 'proxy', request: CallOptions, detail: string): Promise<void> {
    const fetches = A.requestCount()
    const res = await rec.call(target(where), request)
    expectRefusal(res, PEER_UNAUTHORIZED)
    expect(res.body.detail).toBe(detail)
    expect(A.requestCount(), 'issuer requests').toBe(fetches)
  }
  async function accepted(where: 'direct' | 'proxy', request: CallOptions, cert: IssuedCertificate): Promise<void> {
    const res = await rec.call(target(where), request)
    const source = where === 'direct' ? 'mtls' : 'forwarded'
    expectAccepted(res, {
      caller: { id: cert.spiffeId!, source },
      scopes: ['orders:read'],
      peer: { ...cert, spiffeId: cert.spiffeId!, verification: where === 'direct' ? 'tls' : 'forwarded-certificate' },
    })
  }

  for (const where of ['direct', 'proxy'] as const) {
    describe(where === 'direct' ? 'on the TLS connection' : 'through a forwarding proxy (XFCC, anchors defaulting to the bundles)', () => {
      it("the partner's CA naming a SPIFFE ID of our trust domain is refused", async () => {
        await refused(where, await presenting(certs.partnerNamingUs), NOT_CHAINED)
      })

      it("the partner's CA naming its own trust domain is accepted", async () => {
        await accepted(where, await presenting(certs.partnerOwn), certs.partnerOwn)
      })

      it("our CA naming the partner's trust domain is refused", async () => {
        await refused(where, await presenting(certs.oursNamingPartner), NOT_CHAINED)
      })

      it('our CA naming our trust domain is accepted', async () => {
        await accepted(where, await presenting(fx.certs.frontend), fx.certs.frontend)
      })

      it("through the partner's intermediate CA (sent by the client): its own domain accepted, ours refused", async () => {
        await accepted(where, await presenting(certs.viaIntermediate, true), certs.viaIntermediate)
        await refused(where, await presenting(certs.intermediateNamingUs, true), NOT_CHAINED)
      })

      it('a domain outside the map is not accepted, whichever trusted CA issued it', async () => {
        await refused(where, await presenting(certs.partnerNamingOther), NOT_ACCEPTED)
        await refused(where, await presenting(fx.certs.otherDomain), NOT_ACCEPTED)
      })
    })
  }

  it("the partner's CA naming our trusted proxy's SPIFFE ID is refused: it cannot inject XFCC", async () => {
    const spoof = xfccHeader(xfccElement({ hash: true, cert: fx.certs.adminUi, uri: [ID.adminUi] }))
    await refused('direct', await presenting(certs.partnerNamingIngress, false, { headers: { [XFCC]: spoof } }), NOT_CHAINED)
    const fetches = A.requestCount()
    const res = await rec.call(forwarded, await presenting(certs.partnerNamingIngress, false, { headers: { [XFCC]: spoof } }))
    expectRefusal(res, PEER_UNAUTHORIZED)
    expect(res.body.detail).toBe(NOT_CHAINED)
    expect(A.requestCount()).toBe(fetches)
    // The real proxy certificate does carry the header.
    await accepted('direct', await presenting(fx.certs.adminUi), fx.certs.adminUi)
    const viaIngress = await rec.call(forwarded, await presenting(ingress, false, { headers: { [XFCC]: spoof } }))
    expectAccepted(viaIngress, {
      caller: { id: ID.adminUi, source: 'forwarded' },
      scopes: ['orders:read'],
      peer: { ...fx.certs.adminUi, verification: 'forwarded-certificate' },
    })
  })

  it('the same connection keeps its verdict across requests (keep-alive)', async () => {
    const agent = keepAliveAgent(1)
    try {
      for (let i = 0; i < 3; i++) await refused('direct', { ...(await presenting(certs.partnerNamingUs)), agent }, NOT_CHAINED)
      const good = keepAliveAgent(1)
      try {
        for (let i = 0; i < 3; i++) await accepted('direct', { ...(await presenting(certs.partnerOwn)), agent: good }, certs.partnerOwn)
      } finally {
        good.destroy()
      }
    } finally {
      agent.destroy()
    }
  })

  it('never a 5xx in this family', () => {
    expect(rec.statuses.filter((s) => s.status >= 500).map((s) => s.what)).toEqual([])
  })
})
