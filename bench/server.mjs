// One benchmark server: the same tiny route (GET /orders -> 200 JSON) behind one protection, in
// its own process. Started by bench/run.mjs (under `taskset` when available, so it has a core of
// its own), configured over IPC; answers { port } once listening and exits when the parent says
// 'stop' or goes away.
import { createPublicKey, verify } from 'node:crypto'
import http from 'node:http'
import https from 'node:https'
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const BODY = { orders: [{ id: 'o-1', item: 'widget', qty: 2 }] }
const ROUTE = '/orders'

/** Scope check for the peers that have none built in: what a user would write next to them. */
const hasScope = (scope, wanted) => typeof scope === 'string' && scope.split(' ').includes(wanted)

function tlsOptions(spec) {
  // Same listener options as Callsign's README: ask for a certificate, let the app decide.
  return { cert: spec.tls.cert, key: spec.tls.key, ca: [spec.tls.ca], requestCert: true, rejectUnauthorized: false }
}

function callsignOptions(spec) {
  return {
    issuers: { issuer: spec.issuer, audience: spec.audience, jwksUri: spec.jwksUri },
    mtls: spec.transport === 'mtls' ? { mode: 'required', trustDomains: [spec.trustDomain] } : 'optional',
    callers: { [spec.callerId]: [spec.scope] },
    ...(spec.dpopMaxProofAgeSeconds ? { dpop: { maxProofAgeSeconds: spec.dpopMaxProofAgeSeconds } } : {}),
  }
}

/**
 * The reference row, not a protection: one node:crypto `verify` of the token's signature with a
 * key prepared at startup (and, for DPoP, one of the proof's, with its key imported once per
 * proof header), nothing else: no claim read, no `aud`, `exp` or scope check. It measures what the
 * issue's targets call "one (or two) raw signature verification(s) plus the no-auth request cost"
 * inside a real server, where the CPU caches are shared with the framework, unlike the in-process
 * floor. Never deploy this: it accepts any token the issuer ever signed, for anyone.
 */
async function referenceCheck(spec) {
  const { keys } = await (await fetch(spec.jwksUri)).json()
  const jwk = keys.find((k) => (spec.alg === 'RS256' ? k.kty === 'RSA' : k.kty === 'EC' && k.crv === 'P-256'))
  const tokenKey = createPublicKey({ key: jwk, format: 'jwk' })
  const proofKeys = new Map()
  const check = (jws, key, ec) => {
    const dot = jws.lastIndexOf('.')
    const signature = Buffer.from(jws.slice(dot + 1), 'base64url')
    return verify('sha256', Buffer.from(jws.slice(0, dot), 'latin1'), ec ? { key, dsaEncoding: 'ieee-p1363' } : key, signature)
  }
  return (headers) => {
    const authorization = headers.authorization
    if (typeof authorization !== 'string') return false
    if (!check(authorization.slice(authorization.indexOf(' ') + 1), tokenKey, spec.alg !== 'RS256')) return false
    if (spec.token !== 'dpop') return true
    const proof = headers.dpop
    if (typeof proof !== 'string') return false
    const header = proof.slice(0, proof.indexOf('.'))
    let key = proofKeys.get(header)
    if (!key) {
      key = createPublicKey({ key: JSON.parse(Buffer.from(header, 'base64url').toString()).jwk, format: 'jwk' })
      proofKeys.set(header, key)
    }
    return check(proof, key, true)
  }
}

async function expressApp(spec) {
  const { default: express } = await import('express')
  const app = express()
  const handler = (req, res) => {
    res.json(BODY)
  }
  switch (spec.guard) {
    case 'none':
      app.get(ROUTE, handler)
      break
    case 'callsign': {
      const { callsign, requireAuth } = await import('@callsign/express')
      app.use(callsign(callsignOptions(spec)))
      app.get(ROUTE, requireAuth({ scopes: [spec.scope] }), handler)
      break
    }
    case 'reference': {
      const ok = await referenceCheck(spec)
      app.use((req, res, next) => (ok(req.headers) ? next() : res.status(401).json({ error: 'invalid_token' })))
      app.get(ROUTE, handler)
      break
    }
    case 'empty-middleware': {
      // Where Callsign's two pieces go (app.use + the route's requireAuth), doing nothing.
      app.use((req, res, next) => next())
      app.get(ROUTE, (req, res, next) => next(), handler)
      break
    }
    case 'express-oauth2-jwt-bearer': {
      const { auth, requiredScopes } = require('express-oauth2-jwt-bearer')
      app.use(auth({ issuer: spec.issuer, jwksUri: spec.jwksUri, audience: spec.audience, tokenSigningAlg: spec.alg }))
      app.get(ROUTE, requiredScopes(spec.scope), handler)
      break
    }
    case 'express-jwt': {
      const { expressjwt } = require('express-jwt')
      const jwksRsa = require('jwks-rsa')
      app.use(
        expressjwt({
          secret: jwksRsa.expressJwtSecret({ jwksUri: spec.jwksUri, cache: true, rateLimit: true }),
          audience: spec.audience,
          issuer: spec.issuer,
          algorithms: [spec.alg],
        }),
      )
      const scopeCheck = (req, res, next) => {
        if (hasScope(req.auth?.scope, spec.scope)) next()
        else res.status(403).json({ error: 'insufficient_scope' })
      }
      app.get(ROUTE, scopeCheck, handler)
      break
    }
    default:
      throw new Error(`express: unknown guard ${spec.guard}`)
  }
  // Errors from the guards (401s) in the same shape for every row.
  app.use((error, req, res, _next) => {
    res.status(error.status ?? error.statusCode ?? 500).json({ error: error.code ?? error.message })
  })
  const server = spec.transport === 'mtls' ? https.createServer(tlsOptions(spec), app) : http.createServer(app)
  return listen(server)
}

async function koaApp(spec) {
  const { default: Koa } = await import('koa')
  const { default: Router } = await import('@koa/router')
  const app = new Koa()
  const router = new Router()
  const handler = (ctx) => {
    ctx.body = BODY
  }
  switch (spec.guard) {
    case 'none':
      router.get(ROUTE, handler)
      break
    case 'callsign': {
      const { callsign, requireAuth } = await import('@callsign/koa')
      app.use(callsign(callsignOptions(spec)))
      router.get(ROUTE, requireAuth({ scopes: [spec.scope] }), handler)
      break
    }
    case 'reference': {
      const ok = await referenceCheck(spec)
      app.use((ctx, next) => {
        if (ok(ctx.headers)) return next()
        ctx.status = 401
        ctx.body = { error: 'invalid_token' }
      })
      router.get(ROUTE, handler)
      break
    }
    case 'empty-middleware': {
      app.use((ctx, next) => next())
      router.get(ROUTE, (ctx, next) => next(), handler)
      break
    }
    case 'koa-jwt': {
      const jwt = require('koa-jwt')
      const jwksRsa = require('jwks-rsa')
      app.use(
        jwt({
          secret: jwksRsa.koaJwtSecret({ jwksUri: spec.jwksUri, cache: true, rateLimit: true }),
          audience: spec.audience,
          issuer: spec.issuer,
          algorithms: [spec.alg],
        }),
      )
      const scopeCheck = async (ctx, next) => {
        if (!hasScope(ctx.state.user?.scope, spec.scope)) {
          ctx.status = 403
          ctx.body = { error: 'insufficient_scope' }
          return
        }
        await next()
      }
      router.get(ROUTE, scopeCheck, handler)
      break
    }
    default:
      throw new Error(`koa: unknown guard ${spec.guard}`)
  }
  app.use(router.routes())
  // Koa logs every error it sees, including clients hanging up at the end of a run.
  app.on('error', (error) => {
    if (error.code !== 'ECONNRESET' && error.code !== 'EPIPE') console.error(error)
  })
  const callback = app.callback()
  const server = spec.transport === 'mtls' ? https.createServer(tlsOptions(spec), callback) : http.createServer(callback)
  return listen(server)
}

async function fastifyApp(spec) {
  const { default: Fastify } = await import('fastify')
  const app = Fastify(spec.transport === 'mtls' ? { https: tlsOptions(spec) } : {})
  const handler = async () => BODY
  const scopeCheck = async (request, reply) => {
    if (!hasScope(request.user?.scope, spec.scope)) return reply.code(403).send({ error: 'insufficient_scope' })
  }
  switch (spec.guard) {
    case 'none':
      app.get(ROUTE, handler)
      break
    case 'callsign': {
      const { default: callsign, requireAuth } = await import('@callsign/fastify')
      await app.register(callsign, callsignOptions(spec))
      app.get(ROUTE, { preHandler: requireAuth({ scopes: [spec.scope] }) }, handler)
      break
    }
    case 'reference': {
      const ok = await referenceCheck(spec)
      app.addHook('onRequest', (request, reply, done) => {
        if (ok(request.headers)) done()
        else reply.code(401).send({ error: 'invalid_token' })
      })
      app.get(ROUTE, handler)
      break
    }
    case 'empty-middleware': {
      // Where Callsign's two hooks go (a global onRequest + the route's preHandler), doing nothing.
      app.addHook('onRequest', (request, reply, done) => done())
      app.get(ROUTE, { preHandler: (request, reply, done) => done() }, handler)
      break
    }
    case 'fastify-jwt+get-jwks': {
      // The combination get-jwks documents for @fastify/jwt: the key is looked up by the token's
      // (allow-listed) issuer, kid and alg; @fastify/jwt (fast-jwt) checks alg, iss and aud.
      const { default: fastifyJwt } = await import('@fastify/jwt')
      const buildGetJwks = require('get-jwks')
      const getJwks = buildGetJwks({ jwksPath: new URL(spec.jwksUri).pathname, issuersWhitelist: [spec.issuer] })
      await app.register(fastifyJwt, {
        decode: { complete: true },
        secret: (request, token, callback) => {
          const { header, payload } = token
          getJwks.getPublicKey({ kid: header.kid, alg: header.alg, domain: payload.iss }).then((key) => callback(null, key), callback)
        },
        verify: { algorithms: [spec.alg], allowedIss: spec.issuer, allowedAud: spec.audience },
      })
      app.addHook('onRequest', async (request) => {
        await request.jwtVerify()
      })
      app.get(ROUTE, { preHandler: scopeCheck }, handler)
      break
    }
    case 'fastify-jwt-jwks': {
      // RS256 (and EdDSA) only: the plugin fixes `algorithms` itself.
      const { default: fastifyJwtJwks } = await import('fastify-jwt-jwks')
      await app.register(fastifyJwtJwks, { jwksUrl: spec.jwksUri, audience: spec.audience, issuer: spec.issuer })
      app.get(ROUTE, { preValidation: app.authenticate, preHandler: scopeCheck }, handler)
      break
    }
    default:
      throw new Error(`fastify: unknown guard ${spec.guard}`)
  }
  await app.listen({ port: 0, host: '127.0.0.1' })
  return app.server.address().port
}

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve(server.address().port))
  })
}

const builders = { express: expressApp, koa: koaApp, fastify: fastifyApp }

process.on('message', (message) => {
  if (message === 'stop') process.exit(0)
  if (message?.type !== 'start') return
  const spec = message.spec
  builders[spec.framework](spec).then(
    (port) => process.send({ type: 'ready', port }),
    (error) => {
      process.send({ type: 'error', message: error?.stack ?? String(error) })
      process.exit(1)
    },
  )
})
process.on('disconnect', () => process.exit(0))
