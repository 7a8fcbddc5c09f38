/**
 * One fixture per test file (build it in `beforeAll`, close it in `afterAll`): a CA and an
 * untrusted CA, workload certificates for every mTLS scenario, a server certificate, three test
 * issuers (RFC 8414 discovery, OpenID discovery with a path, explicit `jwksUri`), and helpers that
 * start apps and issuers which are closed with the fixture.
 */
import type { CallsignOptions, IssuerOptions, Logger } from '@callsign/core'
import {
  createTestCa,
  startForwardingProxy,
  startTestIssuer,
  type ForwardingProxy,
  type ForwardingProxyOptions,
  type IssuedCertificate,
  type SignOptions,
  type TestCa,
  type TestIssuer,
  type TestIssuerOptions,
} from '@callsign/testing'
import type { Adapter, RunningApp, ServeOptions, ServerTls } from './adapters.js'
import { call, type CallOptions, type CallResult } from './client.js'

/** The `aud` this service expects. */
export const AUDIENCE = 'https://orders.example.org'

/** SPIFFE IDs used across the suite. */
export const ID = {
  frontend: 'spiffe://example.org/ns/web/sa/frontend',
  adminUi: 'spiffe://example.org/ns/web/sa/admin-ui',
  worker: 'spiffe://example.org/ns/batch/sa/worker',
  evil: 'spiffe://example.org/ns/batch-evil/sa/x',
  stranger: 'spiffe://example.org/ns/other/sa/stranger',
  otherDomain: 'spiffe://other.org/ns/web/sa/frontend',
  malformed: 'spiffe://Example.org//x',
} as const

/** A logger that swallows the (expected) "issuer unreachable" warnings. */
export const quiet: Logger = { warn() {} }

export interface Certs {
  frontend: IssuedCertificate
  /** Same SPIFFE ID as `frontend`, another key: a different `x5t#S256`. */
  frontendOtherKey: IssuedCertificate
  adminUi: IssuedCertificate
  worker: IssuedCertificate
  evil: IssuedCertificate
  stranger: IssuedCertificate
  expired: IssuedCertificate
  notYetValid: IssuedCertificate
  /** serverAuth EKU only: not usable as a client certificate. */
  serverOnly: IssuedCertificate
  untrusted: IssuedCertificate
  twoSpiffeIds: IssuedCertificate
  noSan: IssuedCertificate
  malformedSpiffeId: IssuedCertificate
  otherDomain: IssuedCertificate
  /** One URI SAN crafted to read like `..., URI:spiffe://...` in a naive SAN string split. */
  sanInjection: IssuedCertificate
}

export interface Fixture {
  ca: TestCa
  untrustedCa: TestCa
  tls: ServerTls
  certs: Certs
  /** RFC 8414 discovery at the origin; keys ES256 (current) and ES384. */
  main: TestIssuer
  /** OpenID discovery only, issuer with a path (`/tenant-a`). */
  openid: TestIssuer
  /** No metadata at all: configured with an explicit `jwksUri`. */
  explicit: TestIssuer
  /** `IssuerOptions` for the three issuers above (audience {@link AUDIENCE}). */
  issuerOptions: { main: IssuerOptions; openid: IssuerOptions; explicit: IssuerOptions }
  /** Start an app on `adapter`; it is closed with the fixture (or earlier with `close()`). */
  start(adapter: Adapter, options: CallsignOptions, serve?: ServeOptions): Promise<RunningApp>
  /**
   * Start a TLS-terminating forwarding proxy (`@callsign/testing`) in front of `app`: its server
   * certificate is the fixture's, it trusts the test CA for clients and for `app` unless
   * `options` say otherwise. Closed with the fixture.
   */
  startProxy(
    app: RunningApp,
    options: Omit<ForwardingProxyOptions, 'target' | 'tls'> & { tls?: Partial<ForwardingProxyOptions['tls']> },
  ): Promise<ForwardingProxy>
  /** Start a fresh issuer (own key, own request log); closed with the fixture. */
  startIssuer(options?: TestIssuerOptions): Promise<TestIssuer>
  /** Call an app, trusting the test CA. */
  call(app: RunningApp, options?: CallOptions): Promise<CallResult>
  close(): Promise<void>
}

/** Sign an access token for {@link AUDIENCE} (unless `options.audience` says otherwise). */
export function sign(issuer: TestIssuer, claims: Record<string, unknown> = {}, options: SignOptions = {}): Promise<string> {
  return issuer.signAccessToken(claims, { audience: AUDIENCE, ...options })
}

/** `IssuerOptions` for a test issuer, discovered from metadata unless `jwksUri` is asked for. */
export function issuerOption(issuer: TestIssuer, extra: Partial<IssuerOptions> & { explicitJwks?: boolean } = {}): IssuerOptions {
  const { explicitJwks, ...rest } = extra
  return { issuer: issuer.issuer, audience: AUDIENCE, ...(explicitJwks ? { jwksUri: issuer.jwksUri } : {}), ...rest }
}

export async function createFixture(): Promise<Fixture> {
  const closers: Array<() => Promise<void>> = []
  const [ca, untrustedCa] = await Promise.all([createTestCa(), createTestCa({ commonName: 'Untrusted Test CA' })])
  const [server, certList, main, openid, explicit] = await Promise.all([
    ca.issueServerCertificate(),
    Promise.all([
      ca.issueCertificate({ spiffeId: ID.frontend }),
      ca.issueCertificate({ spiffeId: ID.frontend }),
      ca.issueCertificate({ spiffeId: ID.adminUi }),
      ca.issueCertificate({ spiffeId: ID.worker }),
      ca.issueCertificate({ spiffeId: ID.evil }),
      ca.issueCertificate({ spiffeId: ID.stranger }),
      ca.issueCertificate({ spiffeId: ID.frontend, validity: 'expired' }),
      untrustedCa.issueCertificate({ spiffeId: ID.frontend }),
      ca.issueCertificate({ spiffeId: ID.frontend, uris: [ID.worker] }),
      ca.issueCertificate({ commonName: 'no-san-workload' }),
      ca.issueCertificate({ uris: [ID.malformed] }),
      ca.issueCertificate({ spiffeId: ID.otherDomain }),
      ca.issueCertificate({ uris: [`https://x.example/a, URI:${ID.worker}`] }),
      ca.issueCertificate({ spiffeId: ID.frontend, validity: 'not-yet-valid' }),
      ca.issueCertificate({ spiffeId: ID.frontend, usage: 'server' }),
    ]),
    startTestIssuer({ discovery: 'oauth', algorithms: ['ES256', 'ES384'] }),
    startTestIssuer({ discovery: 'openid', path: '/tenant-a' }),
    startTestIssuer({ discovery: 'none' }),
  ])
  closers.push(
    () => main.close(),
    () => openid.close(),
    () => explicit.close(),
  )
  const [
    frontend,
    frontendOtherKey,
    adminUi,
    worker,
    evil,
    stranger,
    expired,
    untrusted,
    twoSpiffeIds,
    noSan,
    malformedSpiffeId,
    otherDomain,
    sanInjection,
    notYetValid,
    serverOnly,
  ] = certList
  const tls: ServerTls = { key: server.keyPem, cert: server.certPem, ca: ca.certPem }

  return {
    ca,
    untrustedCa,
    tls,
    certs: {
      frontend,
      frontendOtherKey,
      adminUi,
      worker,
      evil,
      stranger,
      expired,
      untrusted,
      twoSpiffeIds,
      noSan,
      malformedSpiffeId,
      otherDomain,
      sanInjection,
      notYetValid,
      serverOnly,
    },
    main,
    openid,
    explicit,
    issuerOptions: {
      main: issuerOption(main),
      openid: issuerOption(openid),
      explicit: issuerOption(explicit, { explicitJwks: true }),
    },
    async start(adapter, options, serve) {
      const app = await adapter.start(options, tls, serve)
      closers.push(() => app.close())
      return app
    },
    async startProxy(app, { tls: proxyTls, ...options }) {
      const proxy = await startForwardingProxy({
        target: app.url,
        targetCa: ca.certPem,
        tls: { certPem: server.certPem, keyPem: server.keyPem, caPem: ca.certPem, ...proxyTls },
        ...options,
      })
      closers.push(() => proxy.close())
      return proxy
    },
    async startIssuer(options) {
      const issuer = await startTestIssuer(options)
      closers.push(() => issuer.close())
      return issuer
    },
    call: (app, options) => call(app.url, ca.certPem, options),
    async close() {
      const pending = closers
        .splice(0)
        .reverse()
        .map((close) => close())
      const results = await Promise.allSettled(pending)
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
      if (failed) throw failed.reason
    },
  }
}
