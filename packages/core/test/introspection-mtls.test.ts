// RFC 8705 §2 `tls_client_auth` to the introspection endpoint: a real HTTPS authorization server
// on loopback that authenticates the resource server by its client certificate (from a CA made
// here), discovery through `mtls_endpoint_aliases` (§5), certificate files rotated on disk.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createTestCa, type IssuedCertificate, type TestCa } from '@callsign/testing'
import { Agent, fetch as undiciFetch } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startIntrospectionServer, type IntrospectionServer } from '../../../test/support/introspection-server.js'
import { Introspector } from '../src/introspection.js'
import { resolveConfig, type IntrospectionOptions } from '../src/options.js'
import { refusal } from './refusal.js'

const AUD = 'https://orders.example'
const RS = 'spiffe://example.org/ns/orders/sa/api'
const CLIENT = 'spiffe://example.org/ns/web/sa/frontend'

let ca: TestCa
let otherCa: TestCa
let rs: IssuedCertificate
let impostor: IssuedCertificate
let as: IntrospectionServer
let dir: string
let trustingFetch: typeof globalThis.fetch

beforeAll(async () => {
  ;[ca, otherCa] = await Promise.all([createTestCa(), createTestCa()])
  const server = await ca.issueServerCertificate()
  ;[rs, impostor] = await Promise.all([ca.issueCertificate({ spiffeId: RS }), ca.issueCertificate({ spiffeId: 'spiffe://example.org/ns/evil/sa/x' })])
  as = await startIntrospectionServer({
    audience: AUD,
    clientId: RS,
    tlsClientAuth: { key: server.keyPem, cert: server.chainPem, clientCa: ca.certPem, clientSpiffeId: RS },
  })
  // Metadata is fetched by the guard's `fetch` (no client certificate): trust the test CA there.
  const dispatcher = new Agent({ connect: { ca: ca.certPem } })
  trustingFetch = ((input: string, init?: RequestInit) => undiciFetch(input, { ...(init as object), dispatcher })) as unknown as typeof globalThis.fetch
  dir = mkdtempSync(join(tmpdir(), 'callsign-tls-client-'))
})
afterAll(async () => {
  await as?.close()
  if (dir) rmSync(dir, { recursive: true, force: true })
})

const warnings: string[] = []
const logger = { warn: (message: string, details?: Record<string, unknown>) => void warnings.push(`${message} ${JSON.stringify(details)}`) }

function introspector(introspection: Partial<IntrospectionOptions>): Introspector {
  const config = resolveConfig({
    logger,
    fetch: trustingFetch,
    issuers: {
      issuer: as.issuer,
      audience: AUD,
      introspection: {
        clientId: RS,
        auth: 'tls_client_auth',
        tls: { cert: rs.certPem, key: rs.keyPem, ca: ca.certPem },
        cacheSeconds: 0,
        failureBackoffSeconds: 0,
        ...introspection,
      } as IntrospectionOptions,
    },
  })
  return new Introspector(config)
}

describe('introspection: tls_client_auth (RFC 8705 §2)', () => {
  it('presents the client certificate and sends client_id, with no secret or assertion', async () => {
    const i = introspector({ endpoint: `${as.origin}/mtls/introspect` })
    const token = as.issue({ client_id: CLIENT, sub: 'alice', scope: 'orders:read' })
    const before = { requests: as.requests, refused: as.unauthenticated }
    const verified = await i.introspect(token, i.issuerFor(token)!)
    expect(verified.claims).toMatchObject({ client_id: CLIENT, sub: 'alice' })
    expect(verified.scopes).toEqual(['orders:read'])
    expect([as.requests - before.requests, as.unauthenticated - before.refused]).toEqual([1, 0])
    expect(as.lastForm?.get('client_id')).toBe(RS)
    expect(as.lastForm?.has('client_assertion')).toBe(false)
  })

  it('discovers mtls_endpoint_aliases.introspection_endpoint (RFC 8705 §5) in preference to introspection_endpoint', async () => {
    const i = introspector({})
    const token = as.issue({ client_id: CLIENT })
    expect((await i.introspect(token, i.issuerFor(token)!)).claims.client_id).toBe(CLIENT)
    // Without an alias, introspection_endpoint is used (here it refuses certificate clients: 503).
    as.metadata = { issuer: as.issuer, introspection_endpoint: as.endpoint }
    try {
      const error = await refusal(introspector({}).introspect(token, i.issuerFor(token)!))
      expect([error.code, error.status]).toEqual(['introspection_unavailable', 503])
      // An http alias is refused: the certificate is only presented over TLS.
      as.metadata = {
        issuer: as.issuer,
        introspection_endpoint: as.endpoint,
        mtls_endpoint_aliases: { introspection_endpoint: 'http://127.0.0.1:1/introspect' },
      }
      const before = as.requests
      expect((await refusal(introspector({}).introspect(token, i.issuerFor(token)!))).code).toBe('introspection_unavailable')
      expect(as.requests - before).toBe(0)
    } finally {
      as.metadata = undefined
    }
  })

  it('answers 503 when the server refuses the certificate, or when its own certificate is not trusted', async () => {
    const token = as.issue({ client_id: CLIENT })
    const before = as.unauthenticated
    const wrongIdentity = introspector({ endpoint: `${as.origin}/mtls/introspect`, tls: { cert: impostor.certPem, key: impostor.keyPem, ca: ca.certPem } })
    expect((await refusal(wrongIdentity.introspect(token, wrongIdentity.issuerFor(token)!))).code).toBe('introspection_unavailable')
    expect(as.unauthenticated - before).toBe(1)
    const requests = as.requests
    const untrustedServer = introspector({ endpoint: `${as.origin}/mtls/introspect`, tls: { cert: rs.certPem, key: rs.keyPem, ca: otherCa.certPem } })
    expect((await refusal(untrustedServer.introspect(token, untrustedServer.issuerFor(token)!))).code).toBe('introspection_unavailable')
    const defaultRoots = introspector({ endpoint: `${as.origin}/mtls/introspect`, tls: { cert: rs.certPem, key: rs.keyPem } })
    expect((await refusal(defaultRoots.introspect(token, defaultRoots.issuerFor(token)!))).code).toBe('introspection_unavailable')
    expect(as.requests - requests).toBe(0)
  })

  it('re-reads certificate files when they change, and keeps the previous pair when the new one does not load', async () => {
    const certPath = join(dir, 'svid.pem')
    const keyPath = join(dir, 'svid.key')
    writeFileSync(certPath, impostor.certPem)
    writeFileSync(keyPath, impostor.keyPem)
    const i = introspector({ endpoint: `${as.origin}/mtls/introspect`, tls: { cert: { path: certPath }, key: { path: keyPath }, ca: ca.certPem } })
    const token = as.issue({ client_id: CLIENT })
    expect((await refusal(i.introspect(token, i.issuerFor(token)!))).code).toBe('introspection_unavailable')
    // Rotated to the resource server's certificate (sizes differ from the previous files or mtime moves).
    writeFileSync(certPath, `${rs.certPem}\n`)
    writeFileSync(keyPath, `${rs.keyPem}\n`)
    expect((await i.introspect(token, i.issuerFor(token)!)).claims.client_id).toBe(CLIENT)
    // Half-way through a rotation: a certificate whose key is not there yet. Refused, previous pair kept.
    warnings.length = 0
    writeFileSync(certPath, `${impostor.certPem}\n\n`)
    expect((await i.introspect(token, i.issuerFor(token)!)).claims.client_id).toBe(CLIENT)
    expect(warnings.join('\n')).toMatch(/introspection client certificate was not reloaded.*is not the private key of/)
  })
})

describe('introspection: tls_client_auth options', () => {
  let pems: { cert: string; key: string }
  beforeAll(() => {
    pems = { cert: rs.certPem, key: rs.keyPem }
  })
  const base = { clientId: RS, auth: 'tls_client_auth' as const }
  it.each<[string, () => Record<string, unknown>, string]>([
    ['no tls', () => ({ ...base }), '"issuers.introspection.tls" is required with auth: \'tls_client_auth\''],
    [
      'a client secret too',
      () => ({ ...base, tls: pems, clientSecret: 's' }),
      '"issuers.introspection.clientSecret" is not used with auth: \'tls_client_auth\'',
    ],
    [
      'tls with client_secret_basic',
      () => ({ clientId: RS, clientSecret: 's', tls: pems }),
      '"issuers.introspection.tls" is not used with auth: \'client_secret_basic\'',
    ],
    [
      'an http endpoint',
      () => ({ ...base, tls: pems, endpoint: 'http://127.0.0.1:9/introspect' }),
      '"issuers.introspection.endpoint" must use https with auth: \'tls_client_auth\'',
    ],
    [
      'a key of another certificate',
      () => ({ ...base, tls: { cert: rs.certPem, key: impostor.keyPem } }),
      '"issuers.introspection.tls.key" is not the private key of issuers.introspection.tls.cert',
    ],
    ['a certificate that is not PEM', () => ({ ...base, tls: { cert: 'nope', key: rs.keyPem } }), '"issuers.introspection.tls.cert" is not a PEM certificate'],
    [
      'a missing file',
      () => ({ ...base, tls: { cert: { path: '/nonexistent/svid.pem' }, key: rs.keyPem } }),
      '"issuers.introspection.tls.cert" could not be read',
    ],
    [
      'an unknown tls key',
      () => ({ ...base, tls: { ...pems, passphrase: 'x' } }),
      '"issuers.introspection.tls.passphrase" is not a known option (known: cert, key, ca)',
    ],
    ['a ca without certificates', () => ({ ...base, tls: { ...pems, ca: 'nothing' } }), '"issuers.introspection.tls.ca" holds no PEM certificate'],
  ])('refuses %s at startup', (_case, introspection, message) => {
    const create = () =>
      resolveConfig({ issuers: { issuer: 'https://as.example', audience: AUD, introspection: introspection() as unknown as IntrospectionOptions } })
    expect(create).toThrow(TypeError)
    expect(create).toThrow(message)
  })

  it("accepts 'self_signed_tls_client_auth' the same way (the difference is only at the authorization server)", () => {
    const config = resolveConfig({
      issuers: {
        issuer: 'https://as.example',
        audience: AUD,
        introspection: { clientId: RS, auth: 'self_signed_tls_client_auth', tls: { cert: rs.certPem, key: rs.keyPem } },
      },
    })
    expect(config.issuers.get('https://as.example')?.introspection?.auth.method).toBe('self_signed_tls_client_auth')
  })
})
