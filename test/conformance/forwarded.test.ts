/**
 * Forwarded client certificates: apps behind a real TLS-terminating proxy (the kit's
 * `startForwardingProxy`, Envoy XFCC `SANITIZE_SET` / `APPEND_FORWARD` or nginx
 * `$ssl_client_escaped_cert`; and one real nginx) that is trusted by its SPIFFE ID or its
 * address. The forwarded certificate is verified by Callsign itself; the header is ignored from
 * anyone but a trusted proxy; the proxy's own certificate never becomes the caller. Identical in
 * Express, Fastify and Koa.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { CallsignOptions, MtlsOptions } from '@callsign/core'
import {
  certificateHash,
  createDpopKey,
  createDpopProof,
  nginxEscapedCert,
  xfccElement,
  xfccHeader,
  type DpopKey,
  type IssuedCertificate,
} from '@callsign/testing'
import { adapters, type Adapter, type RunningApp } from '../support/adapters.js'
import { call, type CallOptions } from '../support/client.js'
import { htuFor } from '../support/dpop.js'
import {
  accept,
  expectAccepted,
  expectOutcome,
  forbidden,
  invalidRequest,
  invalidToken,
  mtlsRequired,
  peerUnauthorized,
  type Outcome,
} from '../support/expectations.js'
import { createFixture, ID, quiet, sign, type Fixture } from '../support/fixtures.js'
import { describeWithNginx, startNginx } from '../support/nginx.js'

/** The ingress proxy's own SPIFFE ID, presented to the app over mTLS. */
const INGRESS = 'spiffe://example.org/ns/istio-system/sa/ingress'
const XFCC = 'x-forwarded-client-cert'
const NGINX_HEADER = 'x-ssl-client-cert'

let fx: Fixture
/** The ingress proxy's certificate towards the apps. */
let ingress: IssuedCertificate
let dpopKey: DpopKey
beforeAll(async () => {
  fx = await createFixture()
  ;[ingress, dpopKey] = await Promise.all([fx.ca.issueCertificate({ spiffeId: INGRESS }), createDpopKey('ES256')])
})
afterAll(() => fx?.close())

type Forwarded = NonNullable<MtlsOptions['forwarded']>

/** App configurations. */
type AppName = 'spiffe' | 'required' | 'cidr' | 'cidrPlain' | 'elsewhere' | 'smallHeader' | 'nginx' | 'assertions' | 'trustDomain'

function appOptions(name: AppName): { options: CallsignOptions; plain?: boolean } {
  const byId: Forwarded = { trustedProxies: { spiffeIds: [INGRESS] }, ca: fx.ca.certPem }
  const loopback: Forwarded = { trustedProxies: { cidrs: ['127.0.0.1/32', '::1/128'] }, ca: fx.ca.certPem }
  const mtls: Record<AppName, MtlsOptions> = {
    spiffe: { forwarded: byId },
    // A prefix pattern names the proxies here.
    required: { mode: 'required', forwarded: { ...byId, trustedProxies: { spiffeIds: ['spiffe://example.org/ns/istio-system/*'] } } },
    cidr: { mode: 'required', forwarded: loopback },
    cidrPlain: { mode: 'required', forwarded: loopback },
    elsewhere: { mode: 'required', forwarded: { trustedProxies: { cidrs: ['10.0.0.0/8'] }, ca: fx.ca.certPem } },
    smallHeader: { forwarded: { ...byId, maxHeaderBytes: 256 } },
    nginx: { forwarded: { ...byId, format: 'nginx', header: NGINX_HEADER } },
    assertions: { mode: 'required', forwarded: { trustedProxies: { spiffeIds: [INGRESS] }, trustProxyAssertions: true } },
    trustDomain: { trustDomains: ['example.org'], forwarded: byId },
  }
  return { options: { issuers: fx.issuerOptions.main, mtls: mtls[name], logger: quiet }, ...(name === 'cidrPlain' ? { plain: true } : {}) }
}

/** Proxies in front of the apps. All let a client without certificate through (`clientCertificate: 'optional'`). */
type ProxyName =
  | 'spiffe'
  | 'required'
  | 'bothCas'
  | 'append'
  | 'cidr'
  | 'cidrPlain'
  | 'smallHeader'
  | 'nginx'
  | 'assertions'
  | 'assertionsToStrict'
  | 'notAProxy'
  | 'trustDomain'

/** Where a scenario sends its request: through a proxy, or straight to an app. */
type Via = { proxy: ProxyName } | { app: AppName }

interface Ctx {
  apps: Record<AppName, RunningApp>
  urls: Record<ProxyName, string>
}

async function startAll(adapter: Adapter): Promise<Ctx> {
  const names: AppName[] = ['spiffe', 'required', 'cidr', 'cidrPlain', 'elsewhere', 'smallHeader', 'nginx', 'assertions', 'trustDomain']
  const started = await Promise.all(
    names.map(async (name) => {
      const { options, plain } = appOptions(name)
      return [name, await fx.start(adapter, options, plain ? { protocol: 'http' } : {})] as const
    }),
  )
  const apps = Object.fromEntries(started) as Record<AppName, RunningApp>
  const optional = { clientCertificate: 'optional' } as const
  const xfcc = { format: 'xfcc', ...optional } as const
  const proxies: Record<ProxyName, () => Promise<{ url: string }>> = {
    spiffe: () => fx.startProxy(apps.spiffe, { ...xfcc, clientCert: ingress }),
    required: () => fx.startProxy(apps.required, { ...xfcc, clientCert: ingress }),
    bothCas: () => fx.startProxy(apps.spiffe, { ...xfcc, clientCert: ingress, tls: { caPem: [fx.ca.certPem, fx.untrustedCa.certPem] } }),
    append: () => fx.startProxy(apps.spiffe, { ...xfcc, clientCert: ingress, mode: 'append-forward' }),
    // Trusted by address: no certificate of its own towards the app.
    cidr: () => fx.startProxy(apps.cidr, { ...xfcc }),
    cidrPlain: () => fx.startProxy(apps.cidrPlain, { ...xfcc }),
    smallHeader: () => fx.startProxy(apps.smallHeader, { ...xfcc, clientCert: ingress }),
    nginx: () => fx.startProxy(apps.nginx, { format: 'nginx', header: NGINX_HEADER, ...optional, clientCert: ingress }),
    assertions: () => fx.startProxy(apps.assertions, { ...xfcc, clientCert: ingress, details: { cert: false } }),
    assertionsToStrict: () => fx.startProxy(apps.spiffe, { ...xfcc, clientCert: ingress, details: { cert: false } }),
    // A proxy whose own certificate is a workload's, not one of trustedProxies.
    notAProxy: () => fx.startProxy(apps.spiffe, { ...xfcc, clientCert: fx.certs.worker }),
    trustDomain: () => fx.startProxy(apps.trustDomain, { ...xfcc, clientCert: ingress }),
  }
  const urls = Object.fromEntries(await Promise.all(Object.entries(proxies).map(async ([name, start]) => [name, (await start()).url] as const)))
  return { apps, urls: urls as Record<ProxyName, string> }
}

function urlOf(ctx: Ctx, via: Via): string {
  return 'proxy' in via ? ctx.urls[via.proxy] : ctx.apps[via.app].url
}

interface Scenario {
  title: string
  via: Via
  request: (ctx: Ctx) => Promise<CallOptions>
  outcome: () => Outcome
}

type CertName = keyof Fixture['certs']

/** A valid service token naming a client that is none of the certificates. */
const serviceToken = (claims: Record<string, unknown> = {}, x5tS256?: string): Promise<string> =>
  sign(fx.main, { sub: 'svc-from-token', client_id: 'svc-from-token', scope: 'orders:read', ...claims }, x5tS256 === undefined ? {} : { x5tS256 })
type Lazy<T> = () => T
/** Request options made when the scenario runs (the fixture exists only then). */
const withCert =
  (cert: CertName, extra: Lazy<Omit<CallOptions, 'cert'>> = () => ({})) =>
  async (): Promise<CallOptions> => ({ cert: fx.certs[cert], token: await serviceToken(), ...extra() })
const withoutCert =
  (extra: Lazy<Omit<CallOptions, 'cert'>> = () => ({})) =>
  async (): Promise<CallOptions> => ({ token: await serviceToken(), ...extra() })
/** A trusted peer speaking for itself: the ingress certificate, straight to the app, with a hand-made header. */
const asIngress = (headers: Lazy<Record<string, string | string[]>>) => async (): Promise<CallOptions> => ({
  cert: ingress,
  token: await serviceToken(),
  headers: headers(),
})

/** A full XFCC element for a certificate, as the proxy writes it. */
const elementFor = (cert: IssuedCertificate, extra: Parameters<typeof xfccElement>[0] = {}): string =>
  xfccElement({ hash: true, cert, subject: 'CN=x', ...(cert.spiffeId === undefined ? {} : { uri: [cert.spiffeId] }), ...extra })
/** A spoofed header naming the admin UI (a real, valid certificate: certificates are public). */
const spoofedXfcc = (): Record<string, string> => ({ [XFCC]: elementFor(fx.certs.adminUi) })

const forwardedAs = (
  cert: CertName,
  extra: { binding?: 'bearer' | 'mtls' | 'dpop'; verification?: 'forwarded-certificate' | 'proxy-assertion' } = {},
): Outcome => {
  const issued = fx.certs[cert]
  return accept({
    caller: { id: issued.spiffeId!, source: 'forwarded' },
    scopes: ['orders:read'],
    peer: { ...issued, verification: extra.verification ?? 'forwarded-certificate' },
    ...(extra.binding ? { binding: extra.binding } : {}),
  })
}
const directAs = (cert: CertName): Outcome =>
  accept({ caller: { id: fx.certs[cert].spiffeId!, source: 'mtls' }, scopes: ['orders:read'], peer: { ...fx.certs[cert], verification: 'tls' } })
const tokenCaller = (): Outcome => accept({ caller: { id: 'svc-from-token', source: 'token' }, scopes: ['orders:read'] })

const SCENARIOS: Scenario[] = [
  // Trusted by SPIFFE ID (the proxy authenticates to the app with its own SVID)
  {
    title: 'spiffeIds: the client certificate forwarded by the proxy is the caller (source forwarded)',
    via: { proxy: 'spiffe' },
    request: withCert('frontend'),
    outcome: () => forwardedAs('frontend'),
  },
  {
    title: 'spiffeIds: the forwarded identity is what route caller rules see (worker on /batch)',
    via: { proxy: 'spiffe' },
    request: withCert('worker', () => ({ path: '/batch' })),
    outcome: () => forwardedAs('worker'),
  },
  {
    title: 'spiffeIds: the forwarded identity is what route caller rules see (frontend on /batch: 403)',
    via: { proxy: 'spiffe' },
    request: withCert('frontend', () => ({ path: '/batch' })),
    outcome: () => forbidden('caller_forbidden', 'caller'),
  },
  {
    title: 'spiffeIds: no client certificate at the proxy: the token names the caller, the proxy never does',
    via: { proxy: 'spiffe' },
    request: withoutCert(),
    outcome: () => tokenCaller(),
  },
  {
    title: 'spiffeIds: no client certificate, a spoofed XFCC sent to the proxy is removed by it',
    via: { proxy: 'spiffe' },
    request: withoutCert(() => ({ headers: spoofedXfcc() })),
    outcome: () => tokenCaller(),
  },
  {
    title: 'spiffeIds: a spoofed XFCC sent to the proxy with a certificate is replaced (sanitize-set)',
    via: { proxy: 'spiffe' },
    request: withCert('frontend', () => ({ headers: spoofedXfcc() })),
    outcome: () => forwardedAs('frontend'),
  },
  {
    title: 'a proxy whose own certificate is not in trustedProxies: its header is ignored, its certificate is the caller',
    via: { proxy: 'notAProxy' },
    request: withCert('frontend'),
    outcome: () => directAs('worker'),
  },
  // RFC 8705 certificate-bound tokens through the proxy
  {
    title: 'cert-bound token (x5t#S256 of the client certificate) through the proxy: accepted, binding mtls',
    via: { proxy: 'spiffe' },
    request: async () => ({ cert: fx.certs.frontend, token: await serviceToken({}, fx.certs.frontend.x5tS256) }),
    outcome: () => forwardedAs('frontend', { binding: 'mtls' }),
  },
  {
    title: 'cert-bound token presented through the proxy with another certificate of the same workload: 401 invalid_token',
    via: { proxy: 'spiffe' },
    request: async () => ({ cert: fx.certs.frontendOtherKey, token: await serviceToken({}, fx.certs.frontend.x5tS256) }),
    outcome: () => invalidToken(),
  },
  {
    title: 'cert-bound token through the proxy without a client certificate: 401 invalid_token',
    via: { proxy: 'spiffe' },
    request: async () => ({ token: await serviceToken({}, fx.certs.frontend.x5tS256) }),
    outcome: () => invalidToken(),
  },
  {
    title: "cert-bound token to the proxy's own certificate, without a client certificate: 401 invalid_token",
    via: { proxy: 'spiffe' },
    request: async () => ({ token: await serviceToken({}, ingress.x5tS256) }),
    outcome: () => invalidToken(),
  },
  // mtls: 'required'
  {
    title: "required: satisfied by the forwarded certificate (proxy named by a '/*' pattern)",
    via: { proxy: 'required' },
    request: withCert('frontend'),
    outcome: () => forwardedAs('frontend'),
  },
  {
    title: "required: no client certificate at the proxy is 401 mtls_required (the proxy's certificate does not count)",
    via: { proxy: 'required' },
    request: withoutCert(),
    outcome: () => mtlsRequired(),
  },
  {
    title: 'required: no client certificate at the proxy and a spoofed XFCC: 401 mtls_required',
    via: { proxy: 'required' },
    request: withoutCert(() => ({ headers: spoofedXfcc() })),
    outcome: () => mtlsRequired(),
  },
  // Straight to the app: the header is not the caller's to set
  {
    title: 'direct client with a valid certificate (no proxy ID) and a spoofed XFCC: header ignored, the client is the caller',
    via: { app: 'spiffe' },
    request: withCert('worker', () => ({ headers: spoofedXfcc() })),
    outcome: () => directAs('worker'),
  },
  {
    title: 'direct client without certificate and a spoofed XFCC: header ignored (token caller)',
    via: { app: 'spiffe' },
    request: withoutCert(() => ({ headers: spoofedXfcc() })),
    outcome: () => tokenCaller(),
  },
  {
    title: 'required: direct client without certificate and a spoofed XFCC: 401 mtls_required',
    via: { app: 'required' },
    request: withoutCert(() => ({ headers: spoofedXfcc() })),
    outcome: () => mtlsRequired(),
  },
  {
    title: 'direct client with a spoofed XFCC that is malformed: ignored, not parsed (no 400)',
    via: { app: 'spiffe' },
    request: withCert('worker', () => ({ headers: { [XFCC]: 'Subject="unterminated' } })),
    outcome: () => directAs('worker'),
  },
  {
    title: "the proxy's own certificate without header is no caller: the token names it",
    via: { app: 'spiffe' },
    request: asIngress(() => ({})),
    outcome: () => tokenCaller(),
  },
  {
    title: "required: the proxy's own certificate without header is 401 mtls_required",
    via: { app: 'required' },
    request: asIngress(() => ({})),
    outcome: () => mtlsRequired(),
  },
  {
    title: 'a trusted peer (ingress certificate) with an XFCC header: the forwarded certificate is the caller',
    via: { app: 'spiffe' },
    request: asIngress(() => ({ [XFCC]: elementFor(fx.certs.frontend) })),
    outcome: () => forwardedAs('frontend'),
  },
  // Trusted by address
  {
    title: 'cidrs: a proxy on loopback (no certificate of its own, TLS to the app): the forwarded certificate is the caller',
    via: { proxy: 'cidr' },
    request: withCert('frontend'),
    outcome: () => forwardedAs('frontend'),
  },
  {
    title: 'cidrs: a proxy on loopback over plain HTTP to the app (sidecar): the forwarded certificate is the caller',
    via: { proxy: 'cidrPlain' },
    request: withCert('frontend'),
    outcome: () => forwardedAs('frontend'),
  },
  {
    title: 'cidrs: no client certificate at the proxy: 401 mtls_required',
    via: { proxy: 'cidr' },
    request: withoutCert(),
    outcome: () => mtlsRequired(),
  },
  {
    title: 'cidrs over plain HTTP: no client certificate at the proxy: 401 mtls_required',
    via: { proxy: 'cidrPlain' },
    request: withoutCert(() => ({ headers: spoofedXfcc() })),
    outcome: () => mtlsRequired(),
  },
  {
    title: 'cidrs: a direct client inside the trusted range is a proxy: without header it has no certificate identity (401 mtls_required)',
    via: { app: 'cidr' },
    request: withCert('frontend'),
    outcome: () => mtlsRequired(),
  },
  {
    title: 'cidrs: a direct client outside the trusted range without certificate, with a spoofed XFCC: 401 mtls_required',
    via: { app: 'elsewhere' },
    request: withoutCert(() => ({ headers: spoofedXfcc() })),
    outcome: () => mtlsRequired(),
  },
  {
    title: 'cidrs: a direct client outside the trusted range with a certificate and a spoofed XFCC: the client is the caller',
    via: { app: 'elsewhere' },
    request: withCert('frontend', () => ({ headers: spoofedXfcc() })),
    outcome: () => directAs('frontend'),
  },
  // APPEND_FORWARD: only the last element (the trusted proxy's) counts
  {
    title: "append-forward: an attacker's first element naming another workload loses to the proxy's last element",
    via: { proxy: 'append' },
    request: withCert('frontend', () => ({ headers: spoofedXfcc() })),
    outcome: () => forwardedAs('frontend'),
  },
  {
    title: "append-forward: several attacker elements (assertion-only and full) still lose to the proxy's",
    via: { proxy: 'append' },
    request: withCert('frontend', () => ({
      headers: {
        [XFCC]: xfccHeader(xfccElement({ hash: true, cert: fx.certs.adminUi, uri: [ID.adminUi] }), xfccElement({ hash: '00'.repeat(32), uri: [ID.worker] })),
      },
    })),
    outcome: () => forwardedAs('frontend'),
  },
  {
    title: 'append-forward: no client certificate: the incoming header is dropped, not forwarded (token caller)',
    via: { proxy: 'append' },
    request: withoutCert(() => ({ headers: spoofedXfcc() })),
    outcome: () => tokenCaller(),
  },
  {
    title: 'append-forward: a malformed incoming element makes the whole header unparsable: 400 invalid_request',
    via: { proxy: 'append' },
    request: withCert('frontend', () => ({ headers: { [XFCC]: 'Subject="open' } })),
    outcome: () => invalidRequest(),
  },
  // What the trusted proxy forwards is verified by Callsign
  {
    title: 'a forwarded certificate of a CA the proxy trusts but Callsign does not: 401 peer_unauthorized',
    via: { proxy: 'bothCas' },
    request: withCert('untrusted'),
    outcome: () => peerUnauthorized(),
  },
  {
    title: 'the same proxy with a certificate of the shared CA: accepted',
    via: { proxy: 'bothCas' },
    request: withCert('frontend'),
    outcome: () => forwardedAs('frontend'),
  },
  ...(['expired', 'notYetValid', 'serverOnly', 'untrusted', 'twoSpiffeIds', 'malformedSpiffeId'] as const).map((cert): Scenario => ({
    title: `a trusted peer forwarding a certificate that is ${cert}: 401 peer_unauthorized`,
    via: { app: 'spiffe' },
    request: asIngress(() => ({ [XFCC]: elementFor(fx.certs[cert]) })),
    outcome: () => peerUnauthorized(),
  })),
  {
    title: 'a trusted peer forwarding a Hash that does not match the Cert: 400 invalid_request',
    via: { app: 'spiffe' },
    request: asIngress(() => ({ [XFCC]: elementFor(fx.certs.frontend, { hash: certificateHash(fx.certs.worker.certPem) }) })),
    outcome: () => invalidRequest(),
  },
  ...(
    [
      ['an unterminated quote', 'Subject="CN=x;URI=spiffe://example.org/ns/web/sa/frontend'],
      ['a pair without "="', 'Hash;URI=spiffe://example.org/ns/web/sa/frontend'],
      ['a stray quote', 'URI=spiffe://example.org/ns/"web'],
      ['a Cert that is not PEM', 'Cert="hello"'],
      ['a Cert with a bad % escape', 'Cert="-----BEGIN%20CERTIFICATE-----%0"'],
      ['17 elements', Array.from({ length: 17 }, () => 'URI=spiffe://example.org/x').join(',')],
    ] as const
  ).map(([name, header]): Scenario => ({
    title: `a trusted peer forwarding a malformed XFCC (${name}): 400 invalid_request`,
    via: { app: 'spiffe' },
    request: asIngress(() => ({ [XFCC]: header })),
    outcome: () => invalidRequest(),
  })),
  {
    title: 'a forwarded header above maxHeaderBytes from the trusted proxy: 400 invalid_request',
    via: { proxy: 'smallHeader' },
    request: withCert('frontend'),
    outcome: () => invalidRequest(),
  },
  {
    title: 'maxHeaderBytes: a proxy that forwards no header is fine',
    via: { proxy: 'smallHeader' },
    request: withoutCert(),
    outcome: () => tokenCaller(),
  },
  // trustDomains apply to the forwarded certificate
  {
    title: 'trustDomains: a forwarded SVID of the accepted domain is accepted',
    via: { proxy: 'trustDomain' },
    request: withCert('frontend'),
    outcome: () => forwardedAs('frontend'),
  },
  {
    title: 'trustDomains: a forwarded SVID of another domain (same CA) is 401 peer_unauthorized',
    via: { proxy: 'trustDomain' },
    request: withCert('otherDomain'),
    outcome: () => peerUnauthorized(),
  },
  // nginx: $ssl_client_escaped_cert
  {
    title: 'nginx format (x-ssl-client-cert): the forwarded certificate is the caller',
    via: { proxy: 'nginx' },
    request: withCert('frontend'),
    outcome: () => forwardedAs('frontend'),
  },
  {
    title: 'nginx format: a spoofed x-ssl-client-cert sent to the proxy is replaced',
    via: { proxy: 'nginx' },
    request: withCert('frontend', () => ({ headers: { [NGINX_HEADER]: nginxEscapedCert(fx.certs.adminUi) } })),
    outcome: () => forwardedAs('frontend'),
  },
  {
    title: 'nginx format: no client certificate at the proxy: token caller',
    via: { proxy: 'nginx' },
    request: withoutCert(() => ({ headers: { [NGINX_HEADER]: 'spoofed' } })),
    outcome: () => tokenCaller(),
  },
  {
    title: 'nginx format: an XFCC header from the trusted peer is not read (only the configured header counts)',
    via: { app: 'nginx' },
    request: asIngress(() => ({ [XFCC]: elementFor(fx.certs.frontend) })),
    outcome: () => tokenCaller(),
  },
  {
    title: 'nginx format: a trusted peer forwarding an expired certificate: 401 peer_unauthorized',
    via: { app: 'nginx' },
    request: asIngress(() => ({ [NGINX_HEADER]: nginxEscapedCert(fx.certs.expired) })),
    outcome: () => peerUnauthorized(),
  },
  {
    title: 'nginx format: a trusted peer forwarding something that is not a PEM: 400 invalid_request',
    via: { app: 'nginx' },
    request: asIngress(() => ({ [NGINX_HEADER]: 'not-a-certificate' })),
    outcome: () => invalidRequest(),
  },
  // trustProxyAssertions: Hash/URI/DNS only (Istio's default shape)
  {
    title: "trustProxyAssertions: an assertion-only element is accepted (verification 'proxy-assertion', x5t#S256 from Hash)",
    via: { proxy: 'assertions' },
    request: withCert('frontend'),
    outcome: () => forwardedAs('frontend', { verification: 'proxy-assertion' }),
  },
  {
    title: 'trustProxyAssertions: a cert-bound token matches the asserted Hash',
    via: { proxy: 'assertions' },
    request: async () => ({ cert: fx.certs.frontend, token: await serviceToken({}, fx.certs.frontend.x5tS256) }),
    outcome: () => forwardedAs('frontend', { binding: 'mtls', verification: 'proxy-assertion' }),
  },
  {
    title: 'trustProxyAssertions: an asserted certificate with two SPIFFE URIs is 401 peer_unauthorized',
    via: { proxy: 'assertions' },
    request: withCert('twoSpiffeIds'),
    outcome: () => peerUnauthorized(),
  },
  {
    title: 'trustProxyAssertions: no client certificate at the proxy is still 401 mtls_required',
    via: { proxy: 'assertions' },
    request: withoutCert(() => ({ headers: spoofedXfcc() })),
    outcome: () => mtlsRequired(),
  },
  {
    title: 'without trustProxyAssertions: an assertion-only element is 401 peer_unauthorized',
    via: { proxy: 'assertionsToStrict' },
    request: withCert('frontend'),
    outcome: () => peerUnauthorized(),
  },
]

describe.each(adapters)('$name', (adapter) => {
  let ctx: Ctx
  beforeAll(async () => {
    ctx = await startAll(adapter)
  })

  it.each(SCENARIOS)('$title', async (scenario) => {
    const res = await call(urlOf(ctx, scenario.via), fx.ca.certPem, await scenario.request(ctx))
    expectOutcome(res, scenario.outcome())
  })

  it('a DPoP proof for the public URL (the proxy forwards Host) is accepted with the forwarded caller', async () => {
    const url = ctx.urls.spiffe
    const token = await sign(fx.main, { sub: 'svc-from-token', client_id: 'svc-from-token', scope: 'orders:read' }, { dpopJkt: dpopKey.jkt })
    const proof = await createDpopProof(dpopKey, { method: 'GET', url: htuFor(url, '/whoami'), accessToken: token })
    const res = await call(url, fx.ca.certPem, { cert: fx.certs.frontend, authorization: `DPoP ${token}`, headers: { dpop: proof } })
    expectAccepted(res, {
      caller: { id: ID.frontend, source: 'forwarded' },
      scopes: ['orders:read'],
      binding: 'dpop',
      peer: { ...fx.certs.frontend, verification: 'forwarded-certificate' },
    })
  })

  it('repeated calls with the same forwarded certificate give the same answer (verification cache)', async () => {
    for (let i = 0; i < 3; i++) {
      const res = await call(ctx.urls.spiffe, fx.ca.certPem, await withCert('frontend')())
      expectOutcome(res, forwardedAs('frontend'))
    }
    const refused = await call(ctx.apps.spiffe.url, fx.ca.certPem, await asIngress(() => ({ [XFCC]: elementFor(fx.certs.expired) }))())
    expectOutcome(refused, peerUnauthorized())
    const again = await call(ctx.apps.spiffe.url, fx.ca.certPem, await asIngress(() => ({ [XFCC]: elementFor(fx.certs.expired) }))())
    expectOutcome(again, peerUnauthorized())
  })

  it('Node itself refuses headers above its 16 KiB limit (431) before Callsign sees them', async () => {
    const res = await call(ctx.apps.spiffe.url, fx.ca.certPem, await asIngress(() => ({ [XFCC]: `URI=${'a'.repeat(17 * 1024)}` }))())
    expect(res.status).toBe(431)
  })
})

describeWithNginx()('a real nginx terminating mTLS (express)', () => {
  const adapter = adapters.find((a) => a.name === 'express')!
  let url: string
  let closeNginx: (() => Promise<void>) | undefined
  beforeAll(async () => {
    const server = await fx.ca.issueServerCertificate()
    const app = await fx.start(adapter, {
      issuers: fx.issuerOptions.main,
      mtls: { mode: 'required', forwarded: { format: 'nginx', header: NGINX_HEADER, trustedProxies: { spiffeIds: [INGRESS] }, ca: fx.ca.certPem } },
      logger: quiet,
    })
    const nginx = await startNginx({ target: app.url, server, caPem: fx.ca.certPem, proxyIdentity: ingress, verifyClient: 'optional' })
    url = nginx.url
    closeNginx = () => nginx.close()
  })
  afterAll(() => closeNginx?.())

  it('proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert: the client certificate is the caller', async () => {
    expectOutcome(await call(url, fx.ca.certPem, await withCert('frontend')()), forwardedAs('frontend'))
  })

  it('a cert-bound token through nginx is accepted (binding mtls)', async () => {
    const res = await call(url, fx.ca.certPem, { cert: fx.certs.frontend, token: await serviceToken({}, fx.certs.frontend.x5tS256) })
    expectOutcome(res, forwardedAs('frontend', { binding: 'mtls' }))
  })

  it('a spoofed X-SSL-Client-Cert is replaced by nginx', async () => {
    const res = await call(url, fx.ca.certPem, await withCert('frontend', () => ({ headers: { [NGINX_HEADER]: nginxEscapedCert(fx.certs.adminUi) } }))())
    expectOutcome(res, forwardedAs('frontend'))
  })

  it('no client certificate (ssl_verify_client optional): nginx sends no header, even a spoofed one: 401 mtls_required', async () => {
    const res = await call(url, fx.ca.certPem, await withoutCert(() => ({ headers: { [NGINX_HEADER]: nginxEscapedCert(fx.certs.adminUi) } }))())
    expectOutcome(res, mtlsRequired())
  })

  it("nginx's own certificate is never the caller", async () => {
    const res = await call(url, fx.ca.certPem, await withoutCert()())
    expectOutcome(res, mtlsRequired())
  })
})
