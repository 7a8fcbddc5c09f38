#!/usr/bin/env node
// `pnpm bench`: Callsign against no auth and against the middleware a user would pick instead,
// on Express 5, Fastify 5 and Koa 3. Every server runs in its own child process (pinned to its
// own core when `taskset` is there); autocannon drives them from this process. Configurations are
// interleaved round by round; each row's ratio is taken against its framework's no-auth row of
// the same round, and the table shows medians over rounds. See bench/README.md.
//
//   node bench/run.mjs [--duration 2] [--rounds 3] [--connections 50] [--warmup 1]
//                      [--only express,fastify,koa,floor] [--filter callsign/fresh,...]
//                      [--no-rs256] [--no-floor]
//                      [--pool 20000] [--floor-seconds 2] [--no-pin] [--quick]
//                      [--server-node-args "--cpu-prof --cpu-prof-dir=prof"]
import { fork, spawnSync } from 'node:child_process'
import { KeyObject, createHash, generateKeyPairSync, randomUUID, sign as cryptoSign, verify as cryptoVerify } from 'node:crypto'
import { readFileSync } from 'node:fs'
import http from 'node:http'
import https from 'node:https'
import { createRequire } from 'node:module'
import os from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { SignJWT, exportJWK, importJWK, jwtVerify } from 'jose'
import { createDpopKey, createDpopProof, createTestCa, startTestIssuer } from '@callsign/testing'

const here = dirname(fileURLToPath(import.meta.url))
const root = join(here, '..')
const require = createRequire(join(root, 'package.json'))

// ---------------------------------------------------------------------------------------------
// Options

function parseArgs(argv) {
  const options = {
    duration: 2,
    rounds: 3,
    connections: 50,
    warmup: 1,
    pool: 20_000,
    floorSeconds: 2,
    only: undefined,
    rs256: true,
    floor: true,
    pin: true,
    quick: false,
    serverNodeArgs: [],
  }
  const number = (name, value) => {
    const n = Number(value)
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} needs a positive number (got ${JSON.stringify(value)})`)
    return n
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const [flag, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined]
    const value = () => inline ?? argv[++i]
    switch (flag) {
      case '--duration':
        options.duration = number('duration', value())
        break
      case '--rounds':
        options.rounds = Math.round(number('rounds', value()))
        break
      case '--connections':
        options.connections = Math.round(number('connections', value()))
        break
      case '--warmup':
        options.warmup = Number(value())
        break
      case '--pool':
        options.pool = Math.round(number('pool', value()))
        break
      case '--floor-seconds':
        options.floorSeconds = number('floor-seconds', value())
        break
      case '--only':
        options.only = value()
          .split(',')
          .map((s) => s.trim().toLowerCase())
          .filter(Boolean)
        break
      case '--filter':
        options.filter = value()
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
        break
      case '--no-rs256':
        options.rs256 = false
        break
      case '--no-floor':
        options.floor = false
        break
      case '--no-pin':
        options.pin = false
        break
      case '--server-node-args':
        options.serverNodeArgs = value().split(' ').filter(Boolean)
        break
      case '--quick':
        options.quick = true
        break
      case '--help':
      case '-h':
        console.log(
          readFileSync(fileURLToPath(import.meta.url), 'utf8')
            .split('\n')
            .slice(6, 12)
            .join('\n')
            .replace(/^\/\/ ?/gm, ''),
        )
        process.exit(0)
        break
      default:
        throw new Error(`unknown option ${arg} (see --help)`)
    }
  }
  if (options.quick) {
    // Smoke-test size: every row runs, nothing is meaningful.
    Object.assign(options, { duration: 1, rounds: 1, warmup: 0.5, pool: Math.min(options.pool, 2_000), floorSeconds: 0.25 })
  }
  const frameworks = ['express', 'fastify', 'koa']
  if (options.only) {
    const unknown = options.only.filter((o) => !frameworks.includes(o) && o !== 'floor')
    if (unknown.length) throw new Error(`--only: unknown ${unknown.join(', ')} (known: ${frameworks.join(', ')}, floor)`)
    options.frameworks = frameworks.filter((f) => options.only.includes(f))
    options.floor = options.floor && options.only.includes('floor')
  } else {
    options.frameworks = frameworks
  }
  return options
}

// ---------------------------------------------------------------------------------------------
// Versions and machine

function packageVersion(name, from = require) {
  // Walk up from the resolved entry to the package's own package.json (some block the subpath).
  try {
    let dir = dirname(from.resolve(name))
    for (;;) {
      try {
        const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'))
        if (pkg.name === name) return { version: pkg.version, dir }
      } catch {
        // no readable package.json here: look one level up
      }
      const up = dirname(dir)
      if (up === dir) return { version: '?', dir: undefined }
      dir = up
    }
  } catch {
    return { version: 'not installed', dir: undefined }
  }
}

function versions() {
  const v = (name, from) => packageVersion(name, from).version
  const nested = (parent, name) => {
    const { dir } = packageVersion(parent)
    return dir ? v(name, createRequire(join(dir, 'package.json'))) : '?'
  }
  let commit = '?'
  const git = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' })
  if (git.status === 0)
    commit = git.stdout.trim() + (spawnSync('git', ['diff', '--quiet', 'HEAD', '--', 'packages'], { cwd: root }).status === 0 ? '' : ' (packages/ modified)')
  return [
    ['node', process.version],
    ['@callsign/* (this repo)', `${v('@callsign/core')} @ ${commit}`],
    ['jose (Callsign)', nested('@callsign/core', 'jose')],
    ['express', v('express')],
    ['fastify', v('fastify')],
    ['koa', v('koa')],
    ['@koa/router', v('@koa/router')],
    ['autocannon', v('autocannon')],
    ['express-oauth2-jwt-bearer', `${v('express-oauth2-jwt-bearer')} (jose ${nested('express-oauth2-jwt-bearer', 'jose')})`],
    ['express-jwt', `${v('express-jwt')} (jsonwebtoken ${nested('express-jwt', 'jsonwebtoken')})`],
    ['jwks-rsa', v('jwks-rsa')],
    ['koa-jwt', `${v('koa-jwt')} (jsonwebtoken ${nested('koa-jwt', 'jsonwebtoken')})`],
    ['@fastify/jwt', `${v('@fastify/jwt')} (fast-jwt ${nested('@fastify/jwt', 'fast-jwt')})`],
    ['get-jwks', v('get-jwks')],
    ['fastify-jwt-jwks', v('fastify-jwt-jwks')],
  ]
}

function machine() {
  const cpus = os.cpus()
  return `${cpus.length} × ${cpus[0]?.model?.trim() ?? 'unknown CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}`
}

// ---------------------------------------------------------------------------------------------
// Configurations

const AUDIENCE = 'https://orders.bench.example'
const SCOPE = 'orders:read'
const TRUST_DOMAIN = 'example.org'
const CALLER = `spiffe://${TRUST_DOMAIN}/ns/web/sa/frontend`

const PEERS = {
  express: [
    { guard: 'express-oauth2-jwt-bearer', label: 'express-oauth2-jwt-bearer', algs: ['ES256', 'RS256'] },
    { guard: 'express-jwt', label: 'express-jwt + jwks-rsa', algs: ['ES256', 'RS256'] },
  ],
  fastify: [
    { guard: 'fastify-jwt+get-jwks', label: '@fastify/jwt + get-jwks', algs: ['ES256', 'RS256'] },
    { guard: 'fastify-jwt-jwks', label: 'fastify-jwt-jwks', algs: ['RS256'] }, // RS256/EdDSA only
  ],
  koa: [{ guard: 'koa-jwt', label: 'koa-jwt + jwks-rsa', algs: ['ES256', 'RS256'] }],
}
const REFERENCE_LABEL = 'reference: signature only'
const FRAMEWORK_LABEL = { express: 'Express 5', fastify: 'Fastify 5', koa: 'Koa 3' }
const TOKEN_LABEL = { none: '-', reused: 'reused', fresh: 'fresh per request', dpop: 'DPoP, fresh proof' }

function buildConfigs(options) {
  const configs = []
  const add = (c) => configs.push({ ...c, id: configs.length, runs: [], spent: 0 })
  for (const framework of options.frameworks) {
    const base = (transport) => `${framework}/none/${transport}`
    add({ framework, guard: 'none', label: 'no auth', token: 'none', transport: 'http', alg: '-', key: base('http'), baseline: base('http') })
    add({ framework, guard: 'none', label: 'no auth', token: 'none', transport: 'mtls', alg: '-', key: base('mtls'), baseline: base('http') })
    for (const transport of ['http', 'mtls']) {
      for (const token of ['reused', 'fresh', 'dpop']) {
        add({
          framework,
          guard: 'callsign',
          label: 'Callsign',
          token,
          transport,
          alg: 'ES256',
          key: `${framework}/callsign/${token}/${transport}/ES256`,
          baseline: base(transport),
        })
      }
    }
    // Reference rows (not protections): one raw verification, two for DPoP; see server.mjs. And
    // two empty middlewares where Callsign puts its two, for the reused-token rows.
    add({
      framework,
      guard: 'empty-middleware',
      label: 'reference: two empty middlewares',
      token: 'reused',
      transport: 'http',
      alg: 'ES256',
      key: `${framework}/empty-middleware/reused/http/ES256`,
      baseline: base('http'),
    })
    add({
      framework,
      guard: 'reference',
      label: REFERENCE_LABEL,
      token: 'fresh',
      transport: 'http',
      alg: 'ES256',
      key: `${framework}/reference/fresh/http/ES256`,
      baseline: base('http'),
    })
    add({
      framework,
      guard: 'reference',
      label: REFERENCE_LABEL,
      token: 'dpop',
      transport: 'http',
      alg: 'ES256',
      key: `${framework}/reference/dpop/http/ES256`,
      baseline: base('http'),
    })
    for (const peer of PEERS[framework].filter((p) => p.algs.includes('ES256'))) {
      for (const token of ['reused', 'fresh']) {
        add({
          framework,
          guard: peer.guard,
          label: peer.label,
          token,
          transport: 'http',
          alg: 'ES256',
          key: `${framework}/${peer.guard}/${token}/http/ES256`,
          baseline: base('http'),
        })
      }
    }
    if (options.rs256) {
      for (const token of ['reused', 'fresh']) {
        add({
          framework,
          guard: 'callsign',
          label: 'Callsign',
          token,
          transport: 'http',
          alg: 'RS256',
          key: `${framework}/callsign/${token}/http/RS256`,
          baseline: base('http'),
        })
      }
      add({
        framework,
        guard: 'reference',
        label: REFERENCE_LABEL,
        token: 'fresh',
        transport: 'http',
        alg: 'RS256',
        key: `${framework}/reference/fresh/http/RS256`,
        baseline: base('http'),
      })
      for (const peer of PEERS[framework]) {
        for (const token of ['reused', 'fresh']) {
          add({
            framework,
            guard: peer.guard,
            label: peer.label,
            token,
            transport: 'http',
            alg: 'RS256',
            key: `${framework}/${peer.guard}/${token}/http/RS256`,
            baseline: base('http'),
          })
        }
      }
    }
  }
  // --filter: keep rows whose key (framework/protection/token/transport/alg) contains one of the
  // given strings, and the no-auth rows they are compared with.
  let kept = configs
  if (options.filter) {
    const wanted = configs.filter((c) => options.filter.some((f) => c.key.includes(f)))
    const keys = new Set(wanted.flatMap((c) => [c.key, c.baseline]))
    const baselines = configs.filter((c) => keys.has(c.key) && c.guard === 'none')
    for (const b of baselines) keys.add(b.baseline)
    kept = configs.filter((c) => keys.has(c.key))
  }
  const byKey = new Map(kept.map((c) => [c.key, c]))
  for (const c of kept) c.baselineConfig = byKey.get(c.baseline)
  return kept
}

// ---------------------------------------------------------------------------------------------
// Child processes

let pinned = false
const children = new Set()

function startServer(spec, nodeArgs) {
  return new Promise((resolve, reject) => {
    // `taskset -c 1 node server.mjs`: the server's threads (including the libuv pool that
    // WebCrypto uses) stay on core 1; this process and autocannon stay on core 0.
    const child = pinned
      ? fork(join(here, 'server.mjs'), [], {
          execPath: 'taskset',
          execArgv: ['-c', '1', process.execPath, ...nodeArgs],
          stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
        })
      : fork(join(here, 'server.mjs'), [], { execArgv: nodeArgs, stdio: ['ignore', 'ignore', 'pipe', 'ipc'] })
    children.add(child)
    let stderr = ''
    child.stderr.on('data', (d) => {
      if (stderr.length < 4000) stderr += d
    })
    child.on('exit', () => children.delete(child))
    child.once('message', (message) => {
      if (message.type === 'ready') resolve({ child, pid: child.pid, port: message.port, stderr: () => stderr })
      else reject(new Error(message.message))
    })
    child.once('exit', (code) => reject(new Error(`server exited with code ${code}: ${stderr}`)))
    child.send({ type: 'start', spec })
  })
}

/** Asks every server to exit (so `--cpu-prof` profiles get written), killing stragglers after 5 s. */
function stopAll() {
  return Promise.all(
    [...children].map(
      (child) =>
        new Promise((resolve) => {
          const timer = setTimeout(() => child.kill(), 5_000)
          child.once('exit', () => {
            clearTimeout(timer)
            resolve()
          })
          try {
            child.send('stop')
          } catch {
            child.kill()
          }
        }),
    ),
  )
}
process.on('exit', () => {
  for (const child of children) child.kill()
})
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    stopAll().then(() => process.exit(130))
  })
}

function pinSelf(cpu) {
  const result = spawnSync('taskset', ['-a', '-cp', String(cpu), String(process.pid)], { stdio: 'ignore' })
  return result.status === 0
}

// ---------------------------------------------------------------------------------------------
// Tokens and proofs

async function signPool(issuer, alg, size, claims) {
  // Sign in batches: WebCrypto signs on the libuv pool, so this uses both cores (before pinning).
  const pool = new Array(size)
  const batch = 256
  for (let i = 0; i < size; i += batch) {
    const n = Math.min(batch, size - i)
    const tokens = await Promise.all(Array.from({ length: n }, () => issuer.signAccessToken(claims, { alg, audience: AUDIENCE, expiresInSeconds: 86_400 })))
    for (let j = 0; j < n; j++) pool[i + j] = 'Bearer ' + tokens[j]
  }
  return pool
}

/**
 * DPoP proofs (RFC 9449) for one run: each with its own `jti`, `iat` now. Same shape as
 * `createDpopProof` from @callsign/testing (checked against it by the probe), but signed
 * synchronously with node:crypto: about three times faster, which matters for tens of thousands.
 */
function makeProofs(dpopKey, htu, accessToken, count) {
  const privateKey = KeyObject.from(dpopKey.privateKey)
  const header = Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: 'ES256', jwk: dpopKey.publicJwk })).toString('base64url')
  const ath = createHash('sha256').update(accessToken).digest('base64url')
  const iat = Math.floor(Date.now() / 1000)
  const proofs = new Array(count)
  for (let i = 0; i < count; i++) {
    const payload = Buffer.from(JSON.stringify({ jti: randomUUID(), htm: 'GET', htu, iat, ath })).toString('base64url')
    const input = `${header}.${payload}`
    const signature = cryptoSign('sha256', Buffer.from(input), { key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')
    proofs[i] = `${input}.${signature}`
  }
  return proofs
}

// ---------------------------------------------------------------------------------------------
// One request (probe) and one load run

function probe(config, headers) {
  return new Promise((resolve) => {
    const mod = config.transport === 'mtls' ? https : http
    const req = mod.request(
      {
        host: '127.0.0.1',
        port: config.port,
        path: '/orders',
        method: 'GET',
        headers,
        agent: false,
        ...(config.transport === 'mtls' ? { ...state.clientTls, servername: 'localhost' } : {}),
      },
      (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (d) => (body += d))
        res.on('end', () => resolve({ status: res.statusCode, body }))
      },
    )
    req.on('error', (error) => resolve({ status: 0, body: error.message }))
    req.end()
  })
}

const state = {}

function requestsFor(config, seconds) {
  // Headers per request: static for no auth and a reused token; a rotating pool for fresh tokens;
  // a new proof per request for DPoP. The no-auth rows get the reused token's Authorization header
  // too (and ignore it): every row receives the same request, so a ratio is the cost of checking
  // the token, not of receiving 700 more bytes.
  if (config.token === 'none') {
    const authorization = state.reused.ES256 ?? Object.values(state.reused)[0]
    return { headers: authorization ? { authorization } : {} }
  }
  if (config.token === 'reused') return { headers: { authorization: state.reused[config.alg] } }
  if (config.token === 'fresh') {
    const pool = state.pools[config.alg]
    return {
      requests: [
        {
          setupRequest: (req) => {
            req.headers.authorization = pool[config.spent++ % pool.length]
            return req
          },
        },
      ],
    }
  }
  // DPoP: size the proof pool from what this row (or, before its first run, the same transport's
  // reused-token row, an upper bound) has done so far, with margin.
  const seen = Math.max(0, ...config.runs.map((r) => r.rps), config.warmRps ?? 0)
  const upper = seen || state.byKey.get(config.key.replace('/dpop/', '/reused/'))?.warmRps || 10_000
  const count = Math.min(400_000, Math.ceil(upper * seconds * 3) + 1_000)
  const htu = `${config.transport === 'mtls' ? 'https' : 'http'}://127.0.0.1:${config.port}/orders`
  const proofs = makeProofs(state.dpopKey, htu, state.dpopToken, count)
  let i = 0
  config.proofsShort = false
  return {
    requests: [
      {
        setupRequest: (req) => {
          req.headers.authorization = state.dpopAuthorization
          if (i >= proofs.length) config.proofsShort = true
          req.headers.dpop = proofs[i++ % proofs.length]
          return req
        },
      },
    ],
  }
}

// CPU time (user + system, all threads) a process has used so far, in µs; undefined off Linux.
const TICK_US = 1e6 / (Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100)
function cpuMicros(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) * TICK_US // utime, stime
  } catch {
    return undefined
  }
}

const percentile = (sorted, q) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : NaN)

/**
 * One autocannon run. Counting starts once every connection has had its first response (so the
 * TLS handshakes of the mTLS rows and connection setup stay out of the numbers) and 100 ms more;
 * req/s = 2xx responses in that window ÷ its length; p50/p99 from the same responses.
 */
async function load(config, seconds, connections) {
  const { headers, requests } = requestsFor(config, seconds)
  const mtls = config.transport === 'mtls'
  const instance = autocannon({
    url: `${mtls ? 'https' : 'http'}://127.0.0.1:${config.port}/orders`,
    connections,
    pipelining: 1,
    duration: seconds,
    headers,
    requests,
    ...(mtls ? { tlsOptions: state.clientTls, servername: 'localhost' } : {}),
  })
  const cpuBefore = cpuMicros(config.pid)
  const started = performance.now()
  const answered = new Set()
  let settleAt
  let from
  let cpuFrom
  let genFrom
  let last = started
  let ok = 0
  let all = 0
  const latencies = []
  instance.on('response', (client, statusCode, _bytes, responseTime) => {
    const now = performance.now()
    if (from === undefined) {
      answered.add(client)
      if (settleAt === undefined && answered.size >= connections) settleAt = now + 100
      if (settleAt !== undefined && now >= settleAt) {
        from = now
        cpuFrom = cpuMicros(config.pid)
        genFrom = process.cpuUsage()
      }
      return
    }
    last = now
    all++
    if (statusCode >= 200 && statusCode < 300) {
      ok++
      latencies.push(responseTime)
    }
  })
  const result = await instance
  const cpuAfter = cpuMicros(config.pid)
  const gen = genFrom && process.cpuUsage(genFrom)
  const perResponse = (a, b, n) => (a !== undefined && b !== undefined && n > 0 ? (b - a) / n : NaN)
  const window = (last - (from ?? last)) / 1000
  if (window < seconds / 4) {
    // Too short a settled window (connections slow to set up): fall back to autocannon's totals.
    return {
      rps: result['2xx'] / result.duration,
      p50: result.latency.p50,
      p99: result.latency.p99,
      cpu: perResponse(cpuBefore, cpuAfter, result['2xx'] + result.non2xx),
      unsettled: true,
      non2xx: result.non2xx,
      errors: result.errors,
      proofsShort: config.proofsShort === true,
    }
  }
  const sorted = Float64Array.from(latencies).sort()
  return {
    rps: ok / window,
    p50: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    // Server CPU per response in the same window: unlike req/s, barely moved by other load on the machine.
    cpu: perResponse(cpuFrom, cpuAfter, all),
    // Share of its core the server used in the window: below ~90 % the server was not the bottleneck
    // (the load generator or the machine was), so req/s says little about the server's capacity.
    serverBusy: cpuFrom !== undefined && cpuAfter !== undefined ? (cpuAfter - cpuFrom) / (window * 1e6) : NaN,
    // The same for this process (autocannon, pinned to the other core).
    generatorBusy: gen ? (gen.user + gen.system) / (window * 1e6) : NaN,
    non2xx: result.non2xx,
    errors: result.errors,
    proofsShort: config.proofsShort === true,
  }
}

// ---------------------------------------------------------------------------------------------
// The reference floor: signature verification alone, in this process

// ops/s on the wall clock, and CPU µs per op (this process, all threads: WebCrypto works on the
// libuv pool), which other load on the machine barely moves.
function measure(seconds, step) {
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const end = t0 + seconds * 1000
  let n = 0
  while (performance.now() < end) n += step()
  const cpu = process.cpuUsage(cpu0)
  return { ops: n / ((performance.now() - t0) / 1000), cpu: (cpu.user + cpu.system) / n }
}
async function measureAsync(seconds, step) {
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const end = t0 + seconds * 1000
  let n = 0
  while (performance.now() < end) n += await step()
  const cpu = process.cpuUsage(cpu0)
  return { ops: n / ((performance.now() - t0) / 1000), cpu: (cpu.user + cpu.system) / n }
}

async function floor(seconds) {
  const message = {
    iss: 'https://issuer.bench.example',
    aud: AUDIENCE,
    sub: CALLER,
    client_id: CALLER,
    scope: SCOPE,
    iat: 1_700_000_000,
    exp: 4_000_000_000,
    jti: randomUUID(),
  }
  const algs = [
    { alg: 'ES256', pair: () => generateKeyPairSync('ec', { namedCurve: 'P-256' }), digest: 'sha256', dsaEncoding: 'ieee-p1363' },
    { alg: 'EdDSA', pair: () => generateKeyPairSync('ed25519'), digest: null },
    { alg: 'RS256', pair: () => generateKeyPairSync('rsa', { modulusLength: 2048 }), digest: 'sha256' },
  ]
  const rows = []
  for (const { alg, pair, digest, dsaEncoding } of algs) {
    const { publicKey, privateKey } = pair()
    const jwt = await new SignJWT(message).setProtectedHeader({ alg, typ: 'at+jwt', kid: 'k1' }).sign(privateKey)
    const [h, p, s] = jwt.split('.')
    const input = Buffer.from(`${h}.${p}`)
    const signature = Buffer.from(s, 'base64url')
    const key = dsaEncoding ? { key: publicKey, dsaEncoding } : publicKey
    if (!cryptoVerify(digest, input, key, signature)) throw new Error(`floor: ${alg} signature does not verify`)
    // node:crypto, synchronous: prepared KeyObject, fixed message and signature.
    const node = measure(seconds, () => {
      for (let i = 0; i < 32; i++) cryptoVerify(digest, input, key, signature)
      return 32
    })
    // jose jwtVerify, one at a time: prepared CryptoKey, full JWT checks (claims parsed, alg allow-list).
    const cryptoKey = await importJWK(await exportJWK(publicKey), alg)
    const joseOptions = { algorithms: [alg], audience: AUDIENCE }
    await jwtVerify(jwt, cryptoKey, joseOptions)
    const jose = await measureAsync(seconds, async () => {
      for (let i = 0; i < 16; i++) await jwtVerify(jwt, cryptoKey, joseOptions)
      return 16
    })
    rows.push({ alg, node, jose })
  }
  return rows
}

// ---------------------------------------------------------------------------------------------
// Report

const median = (values) => {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return NaN
  const m = v.length >> 1
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2
}
const int = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'n/a')
const ms = (x) => (Number.isFinite(x) ? x.toFixed(x < 10 ? 2 : 1) : 'n/a')
const ratio = (x) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a')

const TABLE_HEADER =
  '| framework | protection | token | transport | alg | req/s | p50 ms | p99 ms | vs no auth | server CPU µs/req | capacity vs no auth | server busy | notes |'

/**
 * The runs a row's medians are taken over: the settled ones (counted after every connection had
 * answered once). A run that fell back to autocannon's totals includes connection setup (TLS
 * handshakes) in its req/s and CPU µs/req: a different measurement, used only when no run of the
 * row settled.
 */
const counted = (c) => {
  const settled = c.runs.filter((r) => r && !r.unsettled)
  return settled.length ? settled : c.runs.filter(Boolean)
}
/** Per-round `f(row run, baseline run)`, over the rounds where both settled (all rounds if none did). */
function perRound(c, f) {
  const base = c.baselineConfig
  if (!base) return []
  const pairs = c.runs.map((r, i) => [r, base.runs[i]]).filter(([r, b]) => r && b)
  const settled = pairs.filter(([r, b]) => !r.unsettled && !b.unsettled)
  return (settled.length ? settled : pairs).map(([r, b]) => f(r, b))
}
const pct = (x) => (Number.isFinite(x) ? `${Math.round(x * 100)} %` : 'n/a')

/** Medians of one row, as the table shows them. */
function summary(c) {
  const runs = counted(c)
  return {
    rps: median(runs.map((r) => r.rps)),
    p50: median(runs.map((r) => r.p50)),
    p99: median(runs.map((r) => r.p99)),
    cpu: median(runs.map((r) => r.cpu)),
    busy: median(runs.map((r) => r.serverBusy)),
    // req/s ÷ the baseline's req/s, per round.
    ratio: c === c.baselineConfig ? 1 : median(perRound(c, (r, b) => r.rps / b.rps)),
    // The baseline's CPU µs/req ÷ this row's, per round: the req/s this row reaches relative to the
    // baseline when the server's core is the limit, whatever the load generator can drive.
    capacity: c === c.baselineConfig ? 1 : median(perRound(c, (r, b) => b.cpu / r.cpu)),
  }
}

function report(configs) {
  const lines = [TABLE_HEADER, '| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |']
  for (const c of configs) {
    if (c.failed) {
      lines.push(
        `| ${FRAMEWORK_LABEL[c.framework]} | ${c.label} | ${TOKEN_LABEL[c.token]} | ${c.transport === 'mtls' ? 'mTLS' : 'HTTP'} | ${c.alg} | 0 | n/a | n/a | n/a | n/a | n/a | n/a | FAILED: ${c.failed.replace(/\|/g, '/').replace(/\s+/g, ' ').slice(0, 120)} |`,
      )
      continue
    }
    const m = summary(c)
    const notes = []
    const bad = c.runs.reduce((s, r) => s + r.non2xx + r.errors, 0)
    if (bad) notes.push(`${int(bad)} non-2xx/errors`)
    if (c.runs.some((r) => r.proofsShort)) notes.push('proof pool ran out')
    const unsettled = c.runs.filter((r) => r.unsettled).length
    if (unsettled === c.runs.length) notes.push('every run counted from the start (connection setup included)')
    else if (unsettled) notes.push(`${unsettled} run(s) with connection setup left out of the medians`)
    if (c.token === 'fresh' && c.spent > state.pools[c.alg].length)
      notes.push(`${int(state.pools[c.alg].length)}-token pool cycled ${(c.spent / state.pools[c.alg].length).toFixed(1)}×`)
    if (c === c.baselineConfig) notes.push('baseline')
    if (c.guard === 'none' && c.transport === 'mtls') notes.push('ratios: to no auth over HTTP')
    lines.push(
      `| ${FRAMEWORK_LABEL[c.framework]} | ${c.label} | ${TOKEN_LABEL[c.token]} | ${c.transport === 'mtls' ? 'mTLS' : 'HTTP'} | ${c.alg} | ${int(m.rps)} | ${ms(m.p50)} | ${ms(m.p99)} | ${ratio(m.ratio)} | ${int(m.cpu)} | ${ratio(m.capacity)} | ${pct(m.busy)} | ${notes.join('; ')} |`,
    )
  }
  return lines.join('\n')
}

/**
 * The issue's targets, from server CPU µs/req (medians over rounds), so that they hold whatever
 * the load generator can drive: a reused token at >= 0.90 of no auth's capacity; a fresh token per
 * request within 1.15x of (one node:crypto verification, from the floor, + the no-auth request),
 * and cheaper than every peer in the same algorithm; a DPoP request with a fresh proof within
 * 1.2x of (two verifications + the no-auth request).
 */
function targetsReport(configs, floorRows) {
  const floorCpu = Object.fromEntries((floorRows ?? []).map((r) => [r.alg, r.node.cpu]))
  const live = configs.filter((c) => !c.failed && c.runs.length)
  const lines = [
    '| framework | row | measured | target | met | against the reference rows (same server, the framework cost or the signature cost counted as the baseline) |',
    '| --- | --- | --- | --- | --- | --- |',
  ]
  const yes = (ok) => (ok === undefined ? 'n/a' : ok ? 'yes' : '**no**')
  for (const framework of [...new Set(live.map((c) => c.framework))]) {
    const F = FRAMEWORK_LABEL[framework]
    const rows = live.filter((c) => c.framework === framework && c.guard === 'callsign')
    for (const c of rows) {
      const m = summary(c)
      const base = c.baselineConfig && summary(c.baselineConfig)
      const where = `${TOKEN_LABEL[c.token]}, ${c.transport === 'mtls' ? 'mTLS' : 'HTTP'}, ${c.alg}`
      if (c.token === 'reused') {
        // The framework's own cost of two middlewares, measured: the same bound with them counted as no auth.
        const empty = c.transport === 'http' && live.find((r) => r.framework === framework && r.guard === 'empty-middleware')
        const e = empty && summary(empty)
        const ex = e ? e.cpu / m.cpu : NaN
        const inServer = Number.isFinite(ex) ? `capacity ${ratio(ex)} of two empty middlewares (${int(e.cpu)} µs): ${yes(ex >= 0.9)}` : ''
        lines.push(
          `| ${F} | ${where} | capacity ${ratio(m.capacity)} of no auth (req/s ratio ${ratio(m.ratio)}) | >= 0.90 | ${yes(Number.isFinite(m.capacity) ? m.capacity >= 0.9 : undefined)} | ${inServer} |`,
        )
      } else if (base) {
        const verifies = c.token === 'dpop' ? 2 : 1
        const limit = c.token === 'dpop' ? 1.2 : 1.15
        const floor = floorCpu[c.alg]
        const bound = Number.isFinite(floor) ? base.cpu + verifies * floor : NaN
        const x = m.cpu / bound
        // The same bound measured as a server: the reference row verifies the signature(s) and nothing else.
        const reference =
          c.transport === 'http' && live.find((r) => r.framework === framework && r.guard === 'reference' && r.token === c.token && r.alg === c.alg)
        const r = reference && summary(reference)
        const rx = r ? m.cpu / r.cpu : NaN
        const inServer = Number.isFinite(rx) ? `${rx.toFixed(2)}x of ${int(r.cpu)} µs: ${yes(rx <= limit)}` : ''
        lines.push(
          `| ${F} | ${where} | ${int(m.cpu)} µs = ${Number.isFinite(x) ? x.toFixed(2) : 'n/a'}x of (${int(base.cpu)} no auth + ${verifies === 2 ? '2 × ' : ''}${Number.isFinite(floor) ? floor.toFixed(0) : '?'} verify) | <= ${limit.toFixed(2)}x | ${yes(Number.isFinite(x) ? x <= limit : undefined)} | ${inServer} |`,
        )
        if (c.token === 'fresh') {
          const peers = live.filter(
            (p) =>
              p.framework === framework &&
              p.guard !== 'callsign' &&
              p.guard !== 'none' &&
              p.guard !== 'reference' &&
              p.token === 'fresh' &&
              p.alg === c.alg &&
              p.transport === c.transport,
          )
          if (peers.length) {
            const costs = peers.map((p) => ({ label: p.label, cpu: summary(p).cpu }))
            const ahead = costs.every((p) => m.cpu < p.cpu)
            lines.push(
              `| ${F} | ${where} vs peers | Callsign ${int(m.cpu)} µs; ${costs.map((p) => `${p.label} ${int(p.cpu)} µs`).join('; ')} | cheapest | ${yes(ahead)} | |`,
            )
          }
        }
      }
    }
  }
  return lines.join('\n')
}

function floorReport(rows) {
  const lines = [
    '| alg | node:crypto verify ops/s | CPU µs/op | jose jwtVerify ops/s | CPU µs/op | jose ÷ node:crypto (ops/s) |',
    '| --- | ---: | ---: | ---: | ---: | ---: |',
  ]
  for (const r of rows)
    lines.push(
      `| ${r.alg} | ${int(r.node.ops)} | ${r.node.cpu.toFixed(1)} | ${int(r.jose.ops)} | ${r.jose.cpu.toFixed(1)} | ${ratio(r.jose.ops / r.node.ops)} |`,
    )
  return lines.join('\n')
}

// Small deterministic shuffle, so no row always runs right after the same neighbour.
function shuffled(items, seed) {
  const a = items.slice()
  let s = seed >>> 0
  const rand = () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1))
    ;[a[i], a[j]] = [a[j], a[i]]
  }
  return a
}

// ---------------------------------------------------------------------------------------------
// Main

async function main() {
  const options = parseArgs(process.argv.slice(2))
  const log = (...args) => console.error(...args)
  const started = Date.now()
  const loadStart = os.loadavg()[0].toFixed(2)
  const configs = buildConfigs(options)
  state.byKey = new Map(configs.map((c) => [c.key, c]))

  pinned = options.pin && os.cpus().length >= 2 && spawnSync('taskset', ['-c', '1', 'true']).status === 0

  // A CA, the server's certificate, a SPIFFE client certificate, and a real loopback issuer.
  const ca = await createTestCa()
  // A year of validity, so no "expires soon" warning fires in the middle of a run.
  const notAfter = new Date(Date.now() + 365 * 86_400_000)
  const serverCert = await ca.issueServerCertificate({ notAfter })
  const client = await ca.issueCertificate({ spiffeId: CALLER, notAfter })
  state.clientTls = { cert: client.certPem, key: client.keyPem, ca: [ca.certPem] }
  const algs = [...new Set(configs.map((c) => c.alg).filter((a) => a !== '-'))]
  const issuer = await startTestIssuer({ algorithms: ['ES256', 'RS256'] })
  const claims = { sub: CALLER, client_id: CALLER, scope: SCOPE }
  const sign = (alg, extra = {}) => issuer.signAccessToken(claims, { alg, audience: AUDIENCE, expiresInSeconds: 86_400, ...extra })

  // Servers: one process per row, started two at a time, each checked with one real request.
  const dpopNeeded = configs.some((c) => c.token === 'dpop')
  const longProofs = Math.max(options.warmup, options.duration) > 45
  log(`bench: starting ${configs.length} servers${pinned ? ' (pinned to core 1; this process to core 0)' : ''}`)
  const queue = configs.slice()
  await Promise.all(
    [0, 1].map(async () => {
      for (let c = queue.shift(); c; c = queue.shift()) {
        const spec = {
          framework: c.framework,
          guard: c.guard,
          transport: c.transport,
          token: c.token,
          alg: c.alg,
          issuer: issuer.issuer,
          jwksUri: issuer.jwksUri,
          audience: AUDIENCE,
          scope: SCOPE,
          callerId: CALLER,
          trustDomain: TRUST_DOMAIN,
          // Proofs are made right before each run; only a very long run needs the wider window.
          dpopMaxProofAgeSeconds: longProofs ? 600 : undefined,
          tls: c.transport === 'mtls' ? { cert: serverCert.certPem, key: serverCert.keyPem, ca: ca.certPem } : undefined,
        }
        try {
          const server = await startServer(spec, options.serverNodeArgs)
          c.port = server.port
          c.pid = server.pid
          c.stderr = server.stderr
        } catch (error) {
          c.failed = `server did not start: ${error.message.split('\n')[0]}`
        }
      }
    }),
  )

  // Tokens: one reused token per algorithm, a pool of distinct ones for the fresh rows, a
  // DPoP-bound one (ES256 key) for the DPoP rows.
  state.reused = {}
  state.pools = {}
  for (const alg of algs) {
    state.reused[alg] = 'Bearer ' + (await sign(alg))
    if (configs.some((c) => c.alg === alg && c.token === 'fresh')) {
      const t0 = performance.now()
      state.pools[alg] = await signPool(issuer, alg, options.pool, claims)
      log(`bench: signed ${int(options.pool)} distinct ${alg} tokens in ${((performance.now() - t0) / 1000).toFixed(1)} s`)
    }
  }
  if (dpopNeeded) {
    state.dpopKey = await createDpopKey('ES256')
    state.dpopToken = await sign('ES256', { dpopJkt: state.dpopKey.jkt })
    state.dpopAuthorization = 'DPoP ' + state.dpopToken
  }

  // Probe every server once with a token of its kind (not one the load will send).
  for (const c of configs.filter((x) => !x.failed)) {
    let headers = {}
    if (c.token === 'reused' || c.token === 'fresh') headers = { authorization: 'Bearer ' + (await sign(c.alg)) }
    if (c.token === 'dpop') {
      const url = `${c.transport === 'mtls' ? 'https' : 'http'}://127.0.0.1:${c.port}/orders`
      // Once with the test kit's own proof builder, once with the bench's fast one.
      for (const proof of [
        await createDpopProof(state.dpopKey, { method: 'GET', url, accessToken: state.dpopToken }),
        makeProofs(state.dpopKey, url, state.dpopToken, 1)[0],
      ]) {
        const res = await probe(c, { authorization: state.dpopAuthorization, dpop: proof })
        if (res.status !== 200) c.failed = `probe got ${res.status}: ${res.body}`
      }
      continue
    }
    const res = await probe(c, headers)
    if (res.status !== 200) c.failed = `probe got ${res.status}: ${res.body}`
  }
  for (const c of configs.filter((x) => x.failed)) log(`bench: ${c.key} FAILED: ${c.failed}`)

  if (pinned && !pinSelf(0)) pinned = false

  let floorRows
  if (options.floor) {
    log(`bench: reference floor (${options.floorSeconds} s per measurement)`)
    floorRows = await floor(options.floorSeconds)
  }

  const live = configs.filter((c) => !c.failed)
  if (options.warmup > 0 && live.length) {
    log(`bench: warm-up, ${options.warmup} s per server`)
    for (const c of live) {
      const r = await load(c, options.warmup, options.connections)
      c.warmRps = r.rps
    }
  }
  for (let round = 0; round < options.rounds; round++) {
    log(`bench: round ${round + 1}/${options.rounds}`)
    for (const c of shuffled(live, round + 1)) {
      const r = await load(c, options.duration, options.connections)
      c.runs[round] = r
      log(
        `  ${c.key.padEnd(48)} ${int(r.rps).padStart(8)} req/s  p50 ${ms(r.p50)} ms  p99 ${ms(r.p99)} ms  cpu ${int(r.cpu)} µs/req  busy ${pct(r.serverBusy)}/${pct(r.generatorBusy)}${r.unsettled ? '  (unsettled)' : ''}${r.non2xx + r.errors ? `  (${r.non2xx} non-2xx, ${r.errors} errors)` : ''}`,
      )
    }
  }

  // The report (stdout): settings, versions, machine, table, floor.
  const out = []
  out.push('# Callsign benchmark', '')
  out.push(`- machine: ${machine()}`)
  out.push(
    `- load: autocannon, ${options.connections} connections, pipelining 1, ${options.duration} s per run, ${options.rounds} round(s), ${options.warmup} s warm-up per server; rows interleaved in a shuffled order each round`,
  )
  out.push(
    `- load average (1 min) at start / end: ${loadStart} / ${os.loadavg()[0].toFixed(2)} on ${os.cpus().length} cores (other work on the machine lowers req/s; server CPU µs/req is less affected)`,
  )
  out.push(
    `- cores: ${pinned ? 'each server pinned to core 1 (taskset), load generator to core 0' : 'not pinned (no taskset or fewer than 2 cores, or --no-pin)'}`,
  )
  out.push(
    `- tokens: ES256 unless the alg column says RS256; issuer = @callsign/testing startTestIssuer on loopback; fresh rows rotate over ${int(options.pool)} pre-signed distinct tokens; DPoP rows: one DPoP-bound token, a new proof (unique jti) per request`,
  )
  out.push(
    `- req/s counts 2xx responses from the moment every connection has had its first response (+100 ms; TLS handshakes excluded); server CPU µs/req = the server process's CPU time (all threads) in the same window ÷ responses; all columns are medians over rounds; "vs no auth" is the median over rounds of req/s ÷ the same framework's no-auth req/s over the same transport in the same round`,
  )
  out.push('', '| component | version |', '| --- | --- |')
  for (const [name, version] of versions()) out.push(`| ${name} | ${version} |`)
  if (configs.length) out.push('', report(configs, options))
  const generator = median(configs.flatMap((c) => counted(c).map((r) => r.generatorBusy)))
  if (configs.length) out.push('', `Load generator (this process, core 0) busy: median ${pct(generator)} of its core over all runs.`)
  if (configs.some((c) => c.guard === 'callsign' && !c.failed))
    out.push(
      '',
      'Targets (from server CPU µs/req, medians; verify = node:crypto verify CPU µs/op from the floor below):',
      '',
      targetsReport(configs, floorRows),
    )
  if (floorRows) out.push('', `Reference floor (this process, one core, ${options.floorSeconds} s each):`, '', floorReport(floorRows))
  out.push('', `total time: ${((Date.now() - started) / 1000).toFixed(0)} s`)
  console.log(out.join('\n'))
  const noisy = configs.filter((c) => c.stderr?.().trim())
  for (const c of noisy) log(`bench: stderr of ${c.key}:\n${c.stderr().trim().slice(0, 1000)}`)

  await stopAll()
  await issuer.close()
  process.exitCode = configs.some((c) => c.failed) ? 1 : 0
}

main().catch(async (error) => {
  console.error(error)
  await stopAll()
  process.exit(1)
})
