/**
 * Setup mistakes Callsign can see are told, not guessed: a server that does not request client
 * certificates, plain HTTP where mTLS is required, a forwarded certificate from a peer that is not a
 * trusted proxy, a certificate without a SPIFFE ID under `trustDomains`. Each refusal keeps its code
 * and status, with a detail naming the cause; the server-side causes are logged once. And RFC 9728
 * metadata lists only discoverable issuers as authorization servers. In every adapter.
 */
import { generateKeyPair, exportJWK } from 'jose'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { CallsignOptions, Logger, MtlsMode, MtlsOptions } from '@callsign/core'
import { xfccElement, xfccHeader } from '@callsign/testing'
import { adapters, type RunningApp, type ServeOptions } from '../support/adapters.js'
import type { CallResult } from '../support/client.js'
import { createFixture, ID, issuerOption, sign, type Fixture } from '../support/fixtures.js'

const NOT_REQUESTED = 'the server is not requesting client certificates (requestCert)'
const NOT_TLS = 'the request did not arrive over TLS'
const UNTRUSTED_FORWARDER = 'a forwarded client certificate came from a peer that is not a trusted proxy'
const REQUIRED = 'a trusted client certificate is required'

let fx: Fixture
beforeAll(async () => {
  fx = await createFixture()
})
afterAll(() => fx?.close())

/** A logger that keeps what it was told. */
function recordingLogger(): Logger & { messages: string[]; details: Array<Record<string, unknown> | undefined> } {
  const messages: string[] = []
  const details: Array<Record<string, unknown> | undefined> = []
  return {
    messages,
    details,
    warn(message, detail) {
      messages.push(message)
      details.push(detail)
    },
  }
}

/** A GET of `/whoami` on a plain HTTP app (the test client speaks only HTTPS). */
async function plainCall(app: RunningApp, token: string, headers: Record<string, string> = {}): Promise<CallResult> {
  const res = await fetch(new URL('/whoami', app.url), { headers: { authorization: `Bearer ${token}`, ...headers } })
  const text = await res.text()
  return { status: res.status, headers: Object.fromEntries(res.headers), body: JSON.parse(text), text }
}

function expectRefused(res: CallResult, code: string, detail: string): void {
  expect(res.status).toBe(401)
  expect(res.body.code).toBe(code)
  expect(res.body.detail).toBe(detail)
}

describe.each(adapters)('$name: a misconfiguration the guard can see is told', (adapter) => {
  const token = (): Promise<string> => sign(fx.main, { sub: ID.frontend, client_id: ID.frontend, scope: 'orders:read' })
  const start = async (mtls: MtlsMode | MtlsOptions, serve: ServeOptions = {}) => {
    const logger = recordingLogger()
    const options: CallsignOptions = { issuers: fx.issuerOptions.main, mtls, logger }
    return { app: await fx.start(adapter, options, serve), logger }
  }

  it('an https server without requestCert: 401 mtls_required says the server does not request certificates, logged once', async () => {
    const { app, logger } = await start('required', { requestCert: false })
    // Fastify sees its server at startup and tells before any request.
    expect(logger.messages).toHaveLength(adapter.name === 'fastify' ? 1 : 0)
    for (let i = 0; i < 2; i++) expectRefused(await fx.call(app, { cert: fx.certs.frontend, token: await token() }), 'mtls_required', NOT_REQUESTED)
    expect(logger.messages).toHaveLength(1)
    expect(logger.messages[0]).toMatch(/does not request client certificates.*requestCert: true.*createServerTlsOptions.*mtls\.forwarded/)
  })

  it('a plain HTTP server: 401 mtls_required says the request did not arrive over TLS, logged once', async () => {
    const { app, logger } = await start('required', { protocol: 'http' })
    expect(logger.messages).toHaveLength(adapter.name === 'fastify' ? 1 : 0)
    for (let i = 0; i < 2; i++) expectRefused(await plainCall(app, await token()), 'mtls_required', NOT_TLS)
    expect(logger.messages).toHaveLength(1)
    expect(logger.messages[0]).toMatch(/plain HTTP.*requestCert: true.*createServerTlsOptions.*mtls\.forwarded/)
  })

  it('a TLS server that asked and got no certificate keeps the old detail, and logs nothing', async () => {
    const { app, logger } = await start('required')
    expectRefused(await fx.call(app, { token: await token() }), 'mtls_required', REQUIRED)
    expect(logger.messages).toEqual([])
  })

  it('optional mTLS on a server without requestCert is not a misconfiguration: accepted, nothing logged', async () => {
    const { app, logger } = await start('optional', { requestCert: false })
    expect((await fx.call(app, { cert: fx.certs.frontend, token: await token() })).status).toBe(200)
    expect(logger.messages).toEqual([])
  })

  it('a forwarded certificate from a peer that is not a trusted proxy: 401 mtls_required says so, logged once for the address', async () => {
    const forwarded = { trustedProxies: { cidrs: ['10.0.0.0/8'] }, ca: fx.ca.certPem }
    const { app, logger } = await start({ mode: 'required', forwarded }, { protocol: 'http' })
    const xfcc = xfccHeader(xfccElement({ cert: fx.certs.frontend.certPem }))
    for (let i = 0; i < 2; i++) {
      expectRefused(await plainCall(app, await token(), { 'x-forwarded-client-cert': xfcc }), 'mtls_required', UNTRUSTED_FORWARDER)
    }
    expect(logger.messages).toHaveLength(1)
    expect(logger.messages[0]).toContain('mtls.forwarded.trustedProxies')
    expect(logger.details[0]).toEqual({ address: expect.stringMatching(/127\.0\.0\.1/) })
    // Without the header, a direct caller is just missing its certificate (plain HTTP is the proxied setup).
    expectRefused(await plainCall(app, await token()), 'mtls_required', REQUIRED)
    expect(logger.messages).toHaveLength(1)
  })

  it('trustDomains: a certificate without a SPIFFE ID says so; one of another domain keeps its detail', async () => {
    const { app } = await start({ trustDomains: ['example.org'] })
    for (const cert of [fx.certs.noSan, fx.certs.sanInjection]) {
      expectRefused(await fx.call(app, { cert, token: await token() }), 'peer_unauthorized', 'client certificate has no SPIFFE ID')
    }
    expectRefused(
      await fx.call(app, { cert: fx.certs.otherDomain, token: await token() }),
      'peer_unauthorized',
      'client certificate is not from an accepted trust domain',
    )
  })
})

describe.each(adapters)('$name: RFC 9728 authorization_servers lists discoverable issuers only', (adapter) => {
  const RESOURCE = 'https://orders.example.org'
  let selfIssued: CallsignOptions['issuers']

  beforeAll(async () => {
    const { publicKey } = await generateKeyPair('ES256')
    selfIssued = { issuer: ID.worker, audience: RESOURCE, typ: 'jwt', jwks: { keys: [await exportJWK(publicKey)] } }
  })

  const metadata = async (options: Partial<CallsignOptions>): Promise<Record<string, unknown>> => {
    const app = await fx.start(adapter, { issuers: issuerOption(fx.main), logger: recordingLogger(), resourceMetadata: { resource: RESOURCE }, ...options })
    const res = await fx.call(app, { path: '/.well-known/oauth-protected-resource' })
    expect(res.status).toBe(200)
    return res.body
  }

  it("by default leaves out a self-issued signer's SPIFFE ID", async () => {
    const body = await metadata({ issuers: [issuerOption(fx.main), selfIssued as never] })
    expect(body.authorization_servers).toEqual([fx.main.issuer])
  })

  it('omits the member when no issuer is discoverable', async () => {
    const body = await metadata({ issuers: selfIssued! })
    expect(body).not.toHaveProperty('authorization_servers')
    expect(body.resource).toBe(RESOURCE)
  })

  it('publishes an explicit authorizationServers as given', async () => {
    const body = await metadata({ issuers: selfIssued!, resourceMetadata: { resource: RESOURCE, authorizationServers: ['https://auth.example.org'] } })
    expect(body.authorization_servers).toEqual(['https://auth.example.org'])
  })
})
