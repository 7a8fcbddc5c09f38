// Smoke test of examples/{express,fastify,koa}: each service on port 0 behind real mTLS, with the
// test kit's CA and issuer; one allowed and one refused call per framework.
import * as https from 'node:https'
import type { AddressInfo } from 'node:net'
import type { RequestListener } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createTestCa, startTestIssuer, type IssuedCertificate, type TestCa, type TestIssuer } from '@callsign/testing'

interface ExampleOptions {
  issuer: string
  audience: string
  tls: { cert: string; key: string; ca: string }
}
interface Running {
  port: number
  close(): Promise<void>
}

// The examples are plain JavaScript: load them through a non-literal specifier (typed here).
const load = async <T>(path: string): Promise<T> => (await import(new URL(path, import.meta.url).href)) as T
const { mtlsServerOptions } = await load<{ mtlsServerOptions(tls: ExampleOptions['tls']): https.ServerOptions }>('./config.js')

const listenHttps = async (options: ExampleOptions, handler: RequestListener): Promise<Running> => {
  const server = https.createServer(mtlsServerOptions(options.tls), handler)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as AddressInfo).port,
    close: async () => {
      server.closeAllConnections()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

const examples: Record<string, (options: ExampleOptions) => Promise<Running>> = {
  express: async (options) => {
    const { createApp } = await load<{ createApp(o: ExampleOptions): RequestListener }>('./express/server.js')
    return listenHttps(options, createApp(options))
  },
  fastify: async (options) => {
    type App = { listen(o: { port: number; host: string }): Promise<string>; server: https.Server; close(): Promise<void> }
    const { build } = await load<{ build(o: ExampleOptions): Promise<App> }>('./fastify/server.js')
    const app = await build(options)
    await app.listen({ port: 0, host: '127.0.0.1' })
    return { port: (app.server.address() as AddressInfo).port, close: () => app.close() }
  },
  koa: async (options) => {
    const { createApp } = await load<{ createApp(o: ExampleOptions): { callback(): RequestListener } }>('./koa/server.js')
    return listenHttps(options, createApp(options).callback())
  },
}

const AUDIENCE = 'https://orders.example'
const FRONTEND = 'spiffe://example.org/ns/web/sa/frontend'
let ca: TestCa
let issuer: TestIssuer
let frontend: IssuedCertificate
let options: ExampleOptions
let aliceViaFrontend: string

beforeAll(async () => {
  ca = await createTestCa()
  issuer = await startTestIssuer()
  const server = await ca.issueServerCertificate()
  frontend = await ca.issueCertificate({ spiffeId: FRONTEND })
  options = { issuer: issuer.issuer, audience: AUDIENCE, tls: { cert: server.certPem, key: server.keyPem, ca: ca.certPem } }
  aliceViaFrontend = await issuer.signAccessToken(
    { sub: 'alice', act: { sub: FRONTEND }, scope: 'orders:read orders:write', cnf: { 'x5t#S256': frontend.x5tS256 } },
    { audience: AUDIENCE },
  )
})
afterAll(() => issuer?.close())

function get(port: number, path: string, cert: IssuedCertificate, token: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port, path, agent: false, ca: [ca.certPem], cert: cert.certPem, key: cert.keyPem, headers: { authorization: `Bearer ${token}` } },
      (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => (text += chunk))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }))
      },
    )
    req.on('error', reject)
    req.end()
  })
}

describe.each(Object.keys(examples))('examples/%s', (name) => {
  let running: Running
  beforeAll(async () => {
    running = await examples[name]!(options)
  })
  afterAll(() => running?.close())

  it('allows the frontend on behalf of alice to read orders', async () => {
    const { status, body } = await get(running.port, '/orders', frontend, aliceViaFrontend)
    expect(status).toBe(200)
    expect(body).toMatchObject({ caller: FRONTEND, user: 'alice' })
  })

  it('refuses the frontend on the batch-only route, naming the caller side', async () => {
    const { status, body } = await get(running.port, '/reports/daily', frontend, aliceViaFrontend)
    expect(status).toBe(403)
    expect(body).toMatchObject({ code: 'caller_forbidden', side: 'caller', type: 'urn:callsign:problem:caller_forbidden' })
  })
})
