#!/usr/bin/env node
// `pnpm bench:client` (and the last part of `pnpm bench`): what @callsign/client costs the CALLING
// process per call. The service runs in a child process (an mTLS https server answering 200), the
// authorization server is @callsign/testing's issuer with its token endpoint; this process makes
// the calls and measures its own CPU time (process.cpuUsage) per call. Rows are interleaved round
// by round; ratios are per round against the reference row of the same round, medians printed.
//
//   node bench/client.mjs [--calls 4000] [--rounds 5] [--concurrency 16]
//
// Rows:
//   undici fetch (reference)   undici's fetch with the same certificate (an Agent) and a fixed Bearer header
//   client, certificate-bound  client.service().fetch(): cached certificate-bound token over mTLS
//   client, DPoP-bound         the same with DPoP: one proof (one ECDSA P-256 signature) per call
//   one ES256 signature        a proof-sized JWT signed as the client signs proofs (node:crypto, a KeyObject made
//                              once), in process: what DPoP should add at most
// and the number of token requests 1,000 concurrent calls at a cold start make (goal: 1).
import { fork } from 'node:child_process'
import { generateKeyPairSync, sign } from 'node:crypto'
import https from 'node:https'
import { parseArgs } from 'node:util'
import { Agent, fetch as undiciFetch } from 'undici'
import { createClient } from '@callsign/client'
import { createTestCa, startTestIssuer } from '@callsign/testing'

if (process.argv[2] === '--serve') {
  // The service: answers every request; the client's cost does not depend on the server's checks.
  process.once('message', ({ cert, key, ca }) => {
    const server = https.createServer({ cert, key, ca, requestCert: true, rejectUnauthorized: true }, (req, res) => {
      req.resume()
      res.setHeader('content-type', 'application/json')
      res.end('{"orders":[]}')
    })
    server.keepAliveTimeout = 60_000
    server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }))
    process.once('disconnect', () => process.exit(0))
  })
} else {
  await main()
}

async function main() {
  const { values } = parseArgs({
    options: { calls: { type: 'string', default: '4000' }, rounds: { type: 'string', default: '5' }, concurrency: { type: 'string', default: '16' } },
  })
  const calls = Number(values.calls)
  const rounds = Number(values.rounds)
  const concurrency = Number(values.concurrency)

  const ca = await createTestCa()
  const serverCert = await ca.issueServerCertificate()
  const frontend = await ca.issueCertificate({ spiffeId: 'spiffe://example.org/ns/web/sa/frontend' })
  const issuer = await startTestIssuer({
    tls: { certPem: serverCert.certPem, keyPem: serverCert.keyPem, clientCa: ca.certPem },
    tokenEndpoint: { clients: [{ clientId: frontend.spiffeId, auth: 'tls_client_auth' }], accessTokenTtl: 3600 },
  })
  const child = fork(new URL(import.meta.url).pathname, ['--serve'], { stdio: 'inherit' })
  child.send({ cert: serverCert.certPem, key: serverCert.keyPem, ca: ca.certPem })
  const { port } = await new Promise((resolve) => child.once('message', resolve))
  const url = `https://127.0.0.1:${port}`
  const identity = { cert: frontend.certPem, key: frontend.keyPem, ca: ca.certPem }
  const make = (dpop) =>
    createClient({
      issuer: issuer.issuer,
      clientId: frontend.spiffeId,
      auth: 'tls_client_auth',
      identity,
      dpop,
      services: { orders: { url, scopes: ['orders:read'] } },
    })
  const bound = make(false)
  const dpop = make(true)
  const { authorization } = await bound.service('orders').headers({ method: 'GET', url: '/orders' })
  const agent = new Agent({ connect: { cert: frontend.certPem, key: frontend.keyPem, ca: ca.certPem } })
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
  const proofHeader = Buffer.from(JSON.stringify({ alg: 'ES256', typ: 'dpop+jwt' })).toString('base64url')

  const rows = {
    'undici fetch (reference)': () => undiciFetch(`${url}/orders`, { dispatcher: agent, headers: { authorization } }).then((r) => r.arrayBuffer()),
    'client, certificate-bound': () =>
      bound
        .service('orders')
        .fetch('/orders')
        .then((r) => r.arrayBuffer()),
    'client, DPoP-bound': () =>
      dpop
        .service('orders')
        .fetch('/orders')
        .then((r) => r.arrayBuffer()),
    'one ES256 signature': async () => {
      const claims = Buffer.from(JSON.stringify({ htm: 'GET', htu: `${url}/orders`, jti: crypto.randomUUID(), iat: 0 })).toString('base64url')
      const input = `${proofHeader}.${claims}`
      return `${input}.${sign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`
    },
  }
  const cpuPerCall = async (call) => {
    let next = 0
    const start = process.cpuUsage()
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next++ < calls) await call()
      }),
    )
    const used = process.cpuUsage(start)
    return (used.user + used.system) / calls
  }
  for (const call of Object.values(rows)) await cpuPerCall(call) // warm-up: connections, tokens, JIT
  const results = Object.fromEntries(Object.keys(rows).map((name) => [name, []]))
  for (let round = 0; round < rounds; round++) {
    for (const [name, call] of Object.entries(rows)) results[name].push(await cpuPerCall(call))
  }
  const median = (list) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]
  const reference = results['undici fetch (reference)']
  console.log(`\nclient CPU per call (µs; median of ${rounds} rounds of ${calls} calls, ${concurrency} in flight; ratio per round to the reference)`)
  console.log('row                          µs/call   ratio   range')
  for (const [name, list] of Object.entries(results)) {
    const ratios = list.map((value, i) => value / reference[i])
    const range = `${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}`
    console.log(`${name.padEnd(28)} ${median(list).toFixed(1).padStart(7)}   ${median(ratios).toFixed(2).padStart(5)}   ${range}`)
  }
  const extra = results['client, DPoP-bound'].map((value, i) => value - results['client, certificate-bound'][i])
  console.log(`DPoP adds ${median(extra).toFixed(1)} µs/call; one ES256 signature alone costs ${median(results['one ES256 signature']).toFixed(1)} µs`)

  // Token requests under concurrency: a fresh client, 1,000 calls at once before any token exists.
  const before = issuer.tokenRequests.length
  const cold = make(true)
  await Promise.all(
    Array.from({ length: 1000 }, () =>
      cold
        .service('orders')
        .fetch('/orders')
        .then((r) => r.arrayBuffer()),
    ),
  )
  console.log(`1,000 concurrent calls at a cold start made ${issuer.tokenRequests.length - before} token request(s) (goal: 1)`)

  await Promise.all([bound.close(), dpop.close(), cold.close(), agent.close(), issuer.close()])
  child.disconnect()
}
