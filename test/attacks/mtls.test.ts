/**
 * Attacks on the caller's certificate identity, one test per attack, against every adapter over
 * real HTTPS: certificates the TLS stack did not authorize, SANs that are no valid X509-SVID
 * (SPIFFE X509-SVID §2, SPIFFE ID §2), SAN injection, and certificates forwarded by proxies (XFCC):
 * spoofed by an untrusted peer, several elements, quoting tricks. Each asserts the exact status
 * and challenge AND that no issuer was contacted (the peer is judged before the token). Never a 5xx.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { CallsignOptions, MtlsOptions } from '@callsign/core'
import { certificateHash, xfccElement, xfccHeader, type IssuedCertificate, type TestIssuer } from '@callsign/testing'
import { adapters, type RunningApp } from '../support/adapters.js'
import { statusRecorder, type StatusRecorder } from '../support/attacks.js'
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
beforeAll(async () => {
  fx = await createFixture()
  ;[A, ingress, spiffeAndHttps, forwardedExpired, ...malformed] = await Promise.all([
    fx.startIssuer({ discovery: 'none' }),
    fx.ca.issueCertificate({ spiffeId: INGRESS }),
    fx.ca.issueCertificate({ spiffeId: ID.frontend, uris: ['https://frontend.example.org/'] }),
    fx.ca.issueCertificate({ spiffeId: ID.worker, validity: 'expired' }),
    ...MALFORMED_SPIFFE_IDS.map((uri) => fx.ca.issueCertificate({ uris: [uri] })),
  ]) as [TestIssuer, IssuedCertificate, IssuedCertificate, IssuedCertificate, ...IssuedCertificate[]]
})
afterAll(() => fx?.close())

/** A valid service token naming a client that is none of the workloads. */
const serviceToken = (claims: Record<string, unknown> = {}): Promise<string> => sign(A, { sub: 'svc-token', client_id: 'svc-token', scope: 'orders:read', ...claims })
const PEER_UNAUTHORIZED: RefusalExpectation = { status: 401, code: 'peer_unauthorized' }
const INVALID_REQUEST: RefusalExpectation = { status: 400, code: 'invalid_request' }
/** The auth context of a call whose caller is the token's client. */
const tokenCaller = (peer?: ClientIdentity & { x5tS256: string; spiffeId?: string }): AcceptExpectation => ({
  caller: { id: 'svc-token', source: 'token' }, scopes: ['orders:read'], ...(peer ? { peer } : {}),
})

type AppName = 'optional' | 'trustDomain' | 'forwarded' | 'assertions'

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
  const withCert = async (cert: ClientIdentity, extra: Omit<CallOptions, 'cert'> = {}): Promise<CallOptions> => ({ cert, token: await serviceToken(), ...extra })

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
        await attack('optional', { cert, token: await sign(A, { sub: ID.frontend, client_id: ID.frontend }, { x5tS256: cert.x5tS256 }) }, PEER_UNAUTHORIZED, detail)
      }
    })

    it('no SAN: the caller falls back to the token (source "token"); refused where trust domains are required', async () => {
      const res = await served('optional', await withCert(fx.certs.noSan), tokenCaller(fx.certs.noSan))
      expect(res.body.peer).not.toHaveProperty('spiffeId')
      await attack('trustDomain', await withCert(fx.certs.noSan), PEER_UNAUTHORIZED, 'client certificate is not from an accepted trust domain')
    })

    it('several URI SANs (two SPIFFE IDs, or a SPIFFE ID and an https URI): not an SVID', async () => {
      for (const cert of [fx.certs.twoSpiffeIds, spiffeAndHttps]) {
        for (const app of ['optional', 'trustDomain'] as const) await attack(app, await withCert(cert), PEER_UNAUTHORIZED, 'client certificate is not a valid SVID: more than one URI SAN')
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
      await attack('trustDomain', await withCert(fx.certs.sanInjection), PEER_UNAUTHORIZED, 'client certificate is not from an accepted trust domain')
    })

    it('a certificate of another trust domain where trust domains are pinned', async () => {
      await attack('trustDomain', await withCert(fx.certs.otherDomain), PEER_UNAUTHORIZED, 'client certificate is not from an accepted trust domain')
    })

    it('never a 5xx in this family', () => {
      expect(rec.statuses.filter((s) => s.status >= 500).map((s) => s.what)).toEqual([])
    })
  })

  describe('forwarded certificates (XFCC)', () => {
    const full = (cert: IssuedCertificate): string => xfccElement({ hash: true, cert, subject: `CN=${cert.spiffeId ?? 'x'}`, uri: cert.spiffeId ? [cert.spiffeId] : [] })
    const forwardedCaller = (cert: IssuedCertificate, verification: 'forwarded-certificate' | 'proxy-assertion'): AcceptExpectation => ({
      caller: { id: cert.spiffeId!, source: 'forwarded' }, scopes: ['orders:read'], peer: { ...cert, spiffeId: cert.spiffeId!, verification },
    })
    /** A request from the trusted proxy (its own certificate) carrying `header`. */
    const fromProxy = async (header: string | string[]): Promise<CallOptions> => withCert(ingress, { headers: { [XFCC]: header } })
    const H = (cert: IssuedCertificate): string => certificateHash(cert.certPem)

    it('spoofed XFCC from a peer that is not a trusted proxy (a workload, or no certificate) is ignored', async () => {
      const spoof = xfccHeader(full(fx.certs.worker))
      await served('forwarded', await withCert(fx.certs.frontend, { headers: { [XFCC]: spoof } }), {
        caller: { id: ID.frontend, source: 'mtls' }, scopes: ['orders:read'], peer: { ...fx.certs.frontend, verification: 'tls' },
      })
      await served('forwarded', { token: await serviceToken(), headers: { [XFCC]: spoof } }, tokenCaller())
      await served('assertions', { token: await serviceToken(), headers: { [XFCC]: `Hash=${H(fx.certs.worker)};URI=${ID.worker}` } }, tokenCaller())
      // Even a malformed spoofed header is not parsed.
      await served('forwarded', { token: await serviceToken(), headers: { [XFCC]: 'Hash="unterminated' } }, tokenCaller())
    })

    it('the trusted proxy\'s own certificate never becomes the caller (no XFCC: the token names the caller)', async () => {
      await served('forwarded', await withCert(ingress), tokenCaller())
      await served('forwarded', await withCert(ingress, { headers: { [XFCC]: '' } }), tokenCaller())
    })

    it('several elements from a trusted proxy: the last (the proxy\'s own) wins, whatever earlier ones name', async () => {
      await served('forwarded', await fromProxy(xfccHeader(full(fx.certs.worker), full(fx.certs.frontend))), forwardedCaller(fx.certs.frontend, 'forwarded-certificate'))
      await served('forwarded', await fromProxy(xfccHeader(full(fx.certs.frontend), full(fx.certs.worker))), forwardedCaller(fx.certs.worker, 'forwarded-certificate'))
      // As two header lines too.
      await served('forwarded', await fromProxy([full(fx.certs.worker), full(fx.certs.frontend)]), forwardedCaller(fx.certs.frontend, 'forwarded-certificate'))
      await served('assertions', await fromProxy(xfccHeader(`Hash=${H(fx.certs.worker)};URI=${ID.worker}`, `Hash=${H(fx.certs.frontend)};URI=${ID.frontend}`)), forwardedCaller(fx.certs.frontend, 'proxy-assertion'))
      // An earlier element that is untrusted or malformed-but-parsable does not matter either.
      await served('forwarded', await fromProxy(xfccHeader(full(fx.certs.untrusted), full(fx.certs.frontend))), forwardedCaller(fx.certs.frontend, 'forwarded-certificate'))
    })

    it('quoting tricks in XFCC values (",", ";", "=" and \\" inside quotes) never create another key or element', async () => {
      const hf = H(fx.certs.frontend)
      // A Subject smuggling a URI key: it stays the Subject; the real URI decides.
      const smuggled = `Hash=${hf};Subject="CN=a\\";URI=${ID.worker}";URI=${ID.frontend}`
      await served('assertions', await fromProxy(smuggled), forwardedCaller(fx.certs.frontend, 'proxy-assertion'))
      const smuggledBy = `Hash=${hf};Subject="x,By=${INGRESS};URI=${ID.worker}";URI=${ID.frontend}`
      await served('assertions', await fromProxy(smuggledBy), forwardedCaller(fx.certs.frontend, 'proxy-assertion'))
      // One quoted URI value holding a second "URI=" is one malformed SPIFFE ID, not two URIs.
      for (const uri of [`"${ID.frontend},URI=${ID.worker}"`, `"${ID.frontend};URI=${ID.worker}"`, `"${ID.frontend}\\";URI=${ID.worker}"`, `"${ID.frontend}=x"`]) {
        await attack('assertions', await fromProxy(`Hash=${hf};URI=${uri}`), PEER_UNAUTHORIZED, 'client certificate is not a valid SVID: malformed SPIFFE ID')
      }
      await attack('assertions', await fromProxy(`Hash=${hf};URI=${ID.frontend};URI=${ID.worker}`), PEER_UNAUTHORIZED, 'client certificate is not a valid SVID: more than one URI SAN')
      // Cert-based: a Subject smuggling a Cert key does not replace the verified certificate.
      const certSmuggle = `Hash=${hf};Subject="CN=a\\";Cert=${encodeURIComponent(fx.certs.worker.certPem)}";Cert="${encodeURIComponent(fx.certs.frontend.certPem)}"`
      await served('forwarded', await fromProxy(certSmuggle), forwardedCaller(fx.certs.frontend, 'forwarded-certificate'))
    })

    it('malformed XFCC from a trusted proxy: unterminated quote, stray quote or "=", 17 elements, 65 pairs, duplicate Cert, hash mismatch: 400', async () => {
      const hf = H(fx.certs.frontend)
      const bad = [
        `Hash=${hf};URI="${ID.frontend}`, `Hash=${hf};URI=${ID.frontend}"`, `Hash=${hf};URI=${ID.frontend}=x`, `Hash=${hf};"URI"=${ID.frontend}`,
        `Hash=${hf};URI="${ID.frontend}"x`, `Hash=${hf},`, `=${hf}`, `Hash=${hf};;URI=${ID.frontend}`,
        Array.from({ length: 17 }, () => `Hash=${hf}`).join(','), Array.from({ length: 65 }, () => `DNS=a`).join(';'),
      ]
      for (const header of bad) await attack('assertions', await fromProxy(header), INVALID_REQUEST, /malformed forwarded client certificate/)
      await attack('forwarded', await fromProxy(`${full(fx.certs.frontend)};Cert="${encodeURIComponent(fx.certs.worker.certPem)}"`), INVALID_REQUEST, /malformed forwarded client certificate/)
      await attack('forwarded', await fromProxy(xfccElement({ hash: H(fx.certs.worker), cert: fx.certs.frontend })), INVALID_REQUEST, 'forwarded client certificate does not match its hash')
    })

    it('a trusted proxy forwarding a certificate Callsign cannot verify (untrusted CA, expired) or none at all to a strict guard', async () => {
      await attack('forwarded', await fromProxy(full(fx.certs.untrusted)), PEER_UNAUTHORIZED, 'client certificate is not trusted')
      await attack('forwarded', await fromProxy(full(forwardedExpired)), PEER_UNAUTHORIZED, 'client certificate has expired')
      await attack('forwarded', await fromProxy(`Hash=${H(fx.certs.frontend)};URI=${ID.frontend}`), PEER_UNAUTHORIZED, 'the proxy forwarded no client certificate to verify')
    })

    it('never a 5xx in this family', () => {
      expect(rec.statuses.filter((s) => s.status >= 500).map((s) => s.what)).toEqual([])
    })
  })
})
