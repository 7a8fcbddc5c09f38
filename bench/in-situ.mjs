// Callsign's own time inside a real Fastify server, next to what the server's CPU per request says.
// `node bench/in-situ.mjs [rounds] [modes]` (after `pnpm build`): Fastify servers, each pinned to
// core 1 when `taskset` exists, all sent the same reused ES256 token by autocannon from this process:
//   none         the route alone
//   callsign     the plugin + requireAuth, as in bench/server.mjs
//   timed-empty  two empty hooks (onRequest + the route's preHandler), timed from one to the other
//   timed        Callsign, timed from a first onRequest hook to the end of requireAuth
// and, when named in `modes` (comma separated; default: the four above):
//   empty        two empty hooks, untimed
//   idle         two empty hooks, and a guard created (keys fetched) that no request uses
//   check        one onRequest hook calling guard.check, nothing else
//   check-authorize  one onRequest hook calling guard.check, then authorizeRequest
// and prints the medians over rounds of server CPU µs per request and of the timed span.
import { fork, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)
const BODY = { orders: [{ id: 'o-1', item: 'widget', qty: 2 }] }
const CALLER = 'spiffe://example.org/ns/web/sa/frontend'

if (process.argv[2] === '--server') await server(process.argv[3], JSON.parse(process.argv[4]))
else await main(Number(process.argv[2] ?? 6), process.argv[3]?.split(',') ?? ['none', 'callsign', 'timed-empty', 'timed'])

async function server(mode, spec) {
  const { default: Fastify } = await import('fastify')
  const app = Fastify()
  let total = 0n
  let count = 0
  const start = (request, reply, done) => {
    request.raw.benchStarted = process.hrtime.bigint()
    done()
  }
  const stop = (request) => {
    total += process.hrtime.bigint() - request.raw.benchStarted
    count++
  }
  if (mode === 'timed' || mode === 'timed-empty') app.addHook('onRequest', start)
  let preHandler
  if (mode === 'callsign' || mode === 'timed') {
    const { default: callsign, requireAuth } = await import('@callsign/fastify')
    await app.register(callsign, {
      issuers: { issuer: spec.issuer, audience: spec.audience, jwksUri: spec.jwksUri },
      mtls: 'optional',
      callers: { [CALLER]: ['orders:read'] },
    })
    const rule = requireAuth({ scopes: ['orders:read'] })
    preHandler = mode === 'timed' ? (request, reply, done) => rule(request, reply, () => (stop(request), done())) : rule
  } else if (mode === 'timed-empty') {
    preHandler = (request, reply, done) => (stop(request), done())
  } else if (mode === 'empty' || mode === 'idle') {
    app.addHook('onRequest', (request, reply, done) => done())
    preHandler = (request, reply, done) => done()
  }
  if (mode === 'idle' || mode === 'check' || mode === 'check-authorize') {
    const { createCallsign, compileRule, authorizeRequest } = await import('@callsign/core')
    const guard = createCallsign({
      issuers: { issuer: spec.issuer, audience: spec.audience, jwksUri: spec.jwksUri },
      mtls: 'optional',
      callers: { [CALLER]: ['orders:read'] },
    })
    await guard.ready()
    const rule = compileRule({ scopes: ['orders:read'] })
    const refuse = (reply) => reply.code(401).send()
    // Keys are cached after ready(), so a good token is decided without a promise.
    if (mode !== 'idle') {
      app.addHook('onRequest', (request, reply, done) => {
        try {
          guard.check(request.raw)
          if (mode === 'check-authorize') authorizeRequest(request.raw, rule)
        } catch {
          return refuse(reply)
        }
        done()
      })
    }
  }
  app.get('/orders', preHandler ? { preHandler } : {}, async () => BODY)
  await app.listen({ port: 0, host: '127.0.0.1' })
  process.on('message', (message) => {
    if (message !== 'stats') return
    process.send({ spanMicros: count ? Number(total / BigInt(count)) / 1000 : NaN })
    total = 0n
    count = 0
  })
  process.send({ port: app.server.address().port })
}

async function main(rounds, modes) {
  const known = ['none', 'callsign', 'timed-empty', 'timed', 'empty', 'idle', 'check', 'check-authorize']
  const unknown = modes.filter((mode) => !known.includes(mode))
  if (unknown.length > 0 || !modes.includes('none'))
    throw new Error(`in-situ: modes must include none and be among ${known.join(', ')} (got ${modes.join(', ')})`)
  const { startTestIssuer } = await import('@callsign/testing')
  const autocannon = require('autocannon')
  const issuer = await startTestIssuer()
  const audience = 'https://orders.bench.example'
  const token = await issuer.signAccessToken({ sub: CALLER, client_id: CALLER, scope: 'orders:read' }, { audience, expiresInSeconds: 3600 })
  const pinned = spawnSync('taskset', ['-c', '1', 'true']).status === 0
  const servers = {}
  for (const mode of modes) {
    const args = ['--server', mode, JSON.stringify({ issuer: issuer.issuer, jwksUri: issuer.jwksUri, audience })]
    const script = fileURLToPath(import.meta.url)
    const child = pinned ? fork(script, args, { execPath: 'taskset', execArgv: ['-c', '1', process.execPath] }) : fork(script, args)
    servers[mode] = { child, port: (await next(child)).port }
  }
  const cpu = (pid) => {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / 100 // clock ticks (100/s) to µs
  }
  const load = (port, duration) =>
    autocannon({ url: `http://127.0.0.1:${port}/orders`, connections: 50, duration, headers: { authorization: `Bearer ${token}` } })
  const results = Object.fromEntries(modes.map((m) => [m, []]))
  for (let round = 0; round < rounds; round++) {
    for (const mode of round % 2 ? modes : [...modes].reverse()) {
      const { child, port } = servers[mode]
      await load(port, 0.5) // warm, then reset the span counters
      child.send('stats')
      await next(child)
      const before = cpu(child.pid)
      const result = await load(port, 2)
      if (result.non2xx || result.errors) throw new Error(`${mode}: ${result.non2xx} non-2xx, ${result.errors} errors`)
      const cpuPerRequest = (cpu(child.pid) - before) / result.requests.total
      child.send('stats')
      results[mode].push({ cpuPerRequest, span: (await next(child)).spanMicros })
    }
  }
  const median = (values) => values.slice().sort((a, b) => a - b)[values.length >> 1]
  console.log(`| server | server CPU µs/req | timed span µs (first onRequest hook to the end of the route's preHandler) |`)
  console.log('| --- | ---: | ---: |')
  for (const mode of modes) {
    const span = median(results[mode].map((r) => r.span))
    console.log(`| ${mode} | ${median(results[mode].map((r) => r.cpuPerRequest)).toFixed(1)} | ${Number.isFinite(span) ? span.toFixed(2) : '-'} |`)
  }
  console.log(`\n${rounds} rounds of 2 s, medians; ${pinned ? 'servers pinned to core 1' : 'not pinned'}`)
  for (const { child } of Object.values(servers)) child.kill()
  await issuer.close()
  process.exit(0)
}

function next(child) {
  return new Promise((resolve) => child.once('message', resolve))
}
