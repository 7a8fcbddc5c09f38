/**
 * mTLS conformance: the peer certificate as caller identity, `mtls: 'required'`, certificates
 * the TLS stack did not authorize, invalid SVIDs, trust domains.
 */
import { afterAll, beforeAll, describe, it } from 'vitest'
import type { CallsignOptions, MtlsMode, MtlsOptions } from '@callsign/core'
import { adapters, type RunningApp } from '../support/adapters.js'
import type { CallOptions } from '../support/client.js'
import { accept, expectOutcome, mtlsRequired, peerUnauthorized, type Outcome } from '../support/expectations.js'
import { createFixture, ID, quiet, sign, type Fixture } from '../support/fixtures.js'

let fx: Fixture
beforeAll(async () => {
  fx = await createFixture()
})
afterAll(() => fx?.close())

type MtlsConfig = 'optional' | 'required' | 'trust-domain'
const MTLS: Record<MtlsConfig, MtlsMode | MtlsOptions> = {
  optional: 'optional',
  required: 'required',
  'trust-domain': { trustDomains: ['example.org'] },
}
const options = (mtls: MtlsMode | MtlsOptions): CallsignOptions => ({ issuers: fx.issuerOptions.main, mtls, logger: quiet })

interface Scenario {
  title: string
  config: MtlsConfig
  request: () => Promise<CallOptions>
  outcome: () => Outcome
}

/** A valid service token naming a client id that differs from any certificate. */
const serviceToken = (): Promise<string> => sign(fx.main, { sub: 'svc-from-token', client_id: 'svc-from-token', scope: 'orders:read' })
const withCert = (cert: keyof Fixture['certs']) => async (): Promise<CallOptions> => ({ cert: fx.certs[cert], token: await serviceToken() })
const tokenOnly = async (): Promise<CallOptions> => ({ token: await serviceToken() })

const SCENARIOS: Scenario[] = [
  // mtls optional (the default)
  {
    title: 'optional: the peer SPIFFE ID wins over the token client_id as caller',
    config: 'optional',
    request: withCert('frontend'),
    outcome: () => accept({ caller: { id: ID.frontend, source: 'mtls' }, scopes: ['orders:read'], peer: fx.certs.frontend }),
  },
  {
    title: 'optional: without a certificate the token names the caller',
    config: 'optional',
    request: tokenOnly,
    outcome: () => accept({ caller: { id: 'svc-from-token', source: 'token' }, scopes: ['orders:read'] }),
  },
  {
    title: 'optional: a trusted certificate without SAN is described, the token names the caller',
    config: 'optional',
    request: withCert('noSan'),
    outcome: () => accept({ caller: { id: 'svc-from-token', source: 'token' }, scopes: ['orders:read'], peer: fx.certs.noSan }),
  },
  {
    title: 'optional: a certificate from an untrusted CA is refused (401 peer_unauthorized), not ignored',
    config: 'optional',
    request: withCert('untrusted'),
    outcome: () => peerUnauthorized(),
  },
  {
    title: 'optional: an expired certificate is refused (401 peer_unauthorized)',
    config: 'optional',
    request: withCert('expired'),
    outcome: () => peerUnauthorized(),
  },
  {
    title: 'optional: a not-yet-valid certificate is refused (401 peer_unauthorized)',
    config: 'optional',
    request: withCert('notYetValid'),
    outcome: () => peerUnauthorized(),
  },
  {
    title: 'optional: a certificate without the clientAuth extended key usage is refused (401 peer_unauthorized)',
    config: 'optional',
    request: withCert('serverOnly'),
    outcome: () => peerUnauthorized(),
  },
  {
    title: 'optional: a certificate with two SPIFFE URIs is no SVID (401 peer_unauthorized)',
    config: 'optional',
    request: withCert('twoSpiffeIds'),
    outcome: () => peerUnauthorized(),
  },
  {
    title: 'optional: a certificate with a malformed SPIFFE ID is no SVID (401 peer_unauthorized)',
    config: 'optional',
    request: withCert('malformedSpiffeId'),
    outcome: () => peerUnauthorized(),
  },
  {
    title: 'optional: a URI SAN that reads like ", URI:spiffe://..." does not smuggle in a SPIFFE ID',
    config: 'optional',
    request: withCert('sanInjection'),
    outcome: () => accept({ caller: { id: 'svc-from-token', source: 'token' }, scopes: ['orders:read'], peer: fx.certs.sanInjection }),
  },
  {
    title: 'optional: an untrusted certificate is refused even without a token',
    config: 'optional',
    request: async () => ({ cert: fx.certs.untrusted }),
    outcome: () => peerUnauthorized(),
  },
  // mtls required
  {
    title: 'required: a valid token without a certificate is refused (401 mtls_required)',
    config: 'required',
    request: tokenOnly,
    outcome: () => mtlsRequired(),
  },
  {
    title: 'required: no certificate and no token is mtls_required (checked first)',
    config: 'required',
    request: async () => ({}),
    outcome: () => mtlsRequired(),
  },
  {
    title: 'required: a trusted SVID with a token is accepted',
    config: 'required',
    request: withCert('worker'),
    outcome: () => accept({ caller: { id: ID.worker, source: 'mtls' }, scopes: ['orders:read'], peer: fx.certs.worker }),
  },
  {
    title: 'required: a certificate from an untrusted CA is peer_unauthorized, not mtls_required',
    config: 'required',
    request: withCert('untrusted'),
    outcome: () => peerUnauthorized(),
  },
  {
    title: 'required: an expired certificate is peer_unauthorized',
    config: 'required',
    request: withCert('expired'),
    outcome: () => peerUnauthorized(),
  },
  // trust domains
  {
    title: 'trustDomains: an SVID of the accepted trust domain is accepted',
    config: 'trust-domain',
    request: withCert('frontend'),
    outcome: () => accept({ caller: { id: ID.frontend, source: 'mtls' }, scopes: ['orders:read'], peer: fx.certs.frontend }),
  },
  {
    title: 'trustDomains: an SVID of another trust domain (same CA) is refused',
    config: 'trust-domain',
    request: withCert('otherDomain'),
    outcome: () => peerUnauthorized(),
  },
  {
    title: 'trustDomains: a trusted certificate without a SPIFFE ID is refused',
    config: 'trust-domain',
    request: withCert('noSan'),
    outcome: () => peerUnauthorized(),
  },
  {
    title: 'trustDomains with mode optional: a call without a certificate is still accepted',
    config: 'trust-domain',
    request: tokenOnly,
    outcome: () => accept({ caller: { id: 'svc-from-token', source: 'token' }, scopes: ['orders:read'] }),
  },
]

describe.each(adapters)('$name: mTLS', (adapter) => {
  const apps = new Map<MtlsConfig, RunningApp>()
  beforeAll(async () => {
    for (const [config, mtls] of Object.entries(MTLS) as Array<[MtlsConfig, MtlsMode | MtlsOptions]>) {
      apps.set(config, await fx.start(adapter, options(mtls)))
    }
  })

  for (const { title, config, request, outcome } of SCENARIOS)
    it(title, async () => {
      expectOutcome(await fx.call(apps.get(config)!, await request()), outcome())
    })
})
