/**
 * The client's connections to one service are capped (`services.<name>.maxConnections`, default
 * 32): a burst of calls waits for free connections instead of opening one TLS connection per
 * call. Counted on a real HTTPS server that requires the workload certificate.
 */
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createConnections, DEFAULT_MAX_CONNECTIONS, resolveServices, type Connections } from '@callsign/client'
import { createTestCa, type IssuedCertificate, type TestCa } from '@callsign/testing'

let ca: TestCa
let client: IssuedCertificate
let server: Server
let url: string
let open = 0
let peak = 0
let handshakes = 0
const closers: Array<() => Promise<void>> = []

beforeAll(async () => {
  ca = await createTestCa()
  const [serverCert, clientCert] = await Promise.all([
    ca.issueServerCertificate({ dnsNames: ['localhost'] }),
    ca.issueCertificate({ spiffeId: 'spiffe://example.org/ns/web/sa/frontend' }),
  ])
  client = clientCert
  server = createServer({ key: serverCert.keyPem, cert: serverCert.certPem, ca: ca.certPem, requestCert: true, rejectUnauthorized: true }, (req, res) => {
    // Answer a little later, so a burst of calls overlaps.
    setTimeout(() => res.end('ok'), 5)
  })
  server.keepAliveTimeout = 30_000
  server.on('secureConnection', (socket) => {
    handshakes++
    peak = Math.max(peak, ++open)
    socket.on('close', () => open--)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  url = `https://localhost:${(server.address() as AddressInfo).port}`
})
afterAll(async () => {
  await Promise.allSettled(closers.map((close) => close()))
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
})

async function burst(services: Record<string, Record<string, unknown>>, calls: number): Promise<{ statuses: Set<number>; handshakes: number; peak: number }> {
  const connections: Connections = createConnections({
    identity: { current: async () => ({ cert: client.certPem, key: client.keyPem, ca: ca.certPem, generation: 1 }) },
    services: resolveServices(Object.fromEntries(Object.entries(services).map(([name, service]) => [name, { url: `${url}/${name}`, ...service }]))).values(),
  })
  closers.push(() => connections.close())
  await connections.refresh()
  // The previous burst's connections close on the server side a little after the client closed them.
  while (open > 0) await new Promise((resolve) => setTimeout(resolve, 10))
  const before = handshakes
  peak = 0
  const names = Object.keys(services)
  const statuses = await Promise.all(
    Array.from({ length: calls }, async (_, i) => {
      const response = await request(`${url}/${names[i % names.length]}`, { dispatcher: connections.dispatcher })
      await response.body.text()
      return response.statusCode
    }),
  )
  await connections.close()
  return { statuses: new Set(statuses), handshakes: handshakes - before, peak }
}

describe('connections to a service', () => {
  it('open at most maxConnections at once, however many calls are made together', async () => {
    const result = await burst({ orders: { maxConnections: 3 } }, 60)
    expect(result.statuses).toEqual(new Set([200]))
    expect(result.handshakes).toBeLessThanOrEqual(3)
    expect(result.peak).toBeLessThanOrEqual(3)
  })

  it(`open at most ${DEFAULT_MAX_CONNECTIONS} by default`, async () => {
    const result = await burst({ orders: {} }, 200)
    expect(result.statuses).toEqual(new Set([200]))
    expect(result.handshakes).toBeGreaterThan(1)
    expect(result.handshakes).toBeLessThanOrEqual(DEFAULT_MAX_CONNECTIONS)
  })

  it('are shared by services at one origin, with the smallest of their limits', async () => {
    const result = await burst({ a: { maxConnections: 8 }, b: { maxConnections: 2 } }, 60)
    expect(result.statuses).toEqual(new Set([200]))
    expect(result.handshakes).toBeLessThanOrEqual(2)
    expect(result.peak).toBeLessThanOrEqual(2)
  })

  it.each([0, -1, 1.5, '4', 10_001, Number.NaN])('refuses maxConnections %s', (value) => {
    expect(() => resolveServices({ orders: { url, maxConnections: value } })).toThrow('"services.orders.maxConnections" must be an integer from 1 to 10000')
  })
})
