/**
 * The four adapters (Express, Fastify, Koa, plain node:http) behind one interface, each serving the SAME routes in its framework's idiom
 * over a real `https.createServer` that requests (but does not require) a client certificate
 * (or, with `serve: { protocol: 'http' }`, a plain `http.createServer`, as behind a sidecar).
 */
import { createServer as createPlainServer } from 'node:http'
import { createServer, Server, type ServerOptions } from 'node:https'
import type { AddressInfo } from 'node:net'
import Router from '@koa/router'
import express from 'express'
import { fastify } from 'fastify'
import Koa from 'koa'
import { presentedToken, type AuthContext, type AuthRule, type Callsign, type CallsignOptions } from '@callsign/core'
import * as expressAdapter from '@callsign/express'
import fastifyCallsign, * as fastifyAdapter from '@callsign/fastify'
import * as koaAdapter from '@callsign/koa'
import * as nodeAdapter from '@callsign/node'

/** Server side of TLS: the server's certificate and the CA its clients' certificates must chain to. */
export interface ServerTls {
  key: string
  cert: string
  /** PEM of the client CA (the only one the server trusts). */
  ca: string
}

export interface RunningApp {
  /** `https://127.0.0.1:<port>` (`http://` when served with `protocol: 'http'`) */
  url: string
  /** The guard the adapter created (for `ready()`). */
  guard: Callsign
  /** Closes the server and every open (keep-alive) connection. Idempotent. */
  close(): Promise<void>
}

export type AdapterName = 'express' | 'fastify' | 'koa' | 'node'

/** How an app is served. */
export interface ServeOptions {
  /**
   * `'https'` (default): TLS, requesting a client certificate. `'http'`: plain HTTP, as an app
   * behind a sidecar proxy on the same host; the app's `url` is then `http://127.0.0.1:<port>`.
   */
  protocol?: 'https' | 'http'
  /** With `'https'`: `false` serves TLS without asking for a client certificate (a misconfigured mTLS server). Default true. */
  requestCert?: boolean
}

export interface Adapter {
  name: AdapterName
  /** Build the app with `options`, register {@link ROUTES}, listen on 127.0.0.1:0. */
  start(options: CallsignOptions, tls: ServerTls, serve?: ServeOptions): Promise<RunningApp>
  /** Create (and, for Fastify, register and boot) only the middleware: rejects when options are invalid. */
  create(options: CallsignOptions): Promise<void>
  /** The adapter's own `requireAuth` (throws synchronously on a bad rule). */
  requireAuth(rule: AuthRule): unknown
}

export interface RouteSpec {
  method: 'GET' | 'POST'
  path: string
  /** `undefined`: no `requireAuth` on the route (it answers `{ auth }`, possibly `null`). */
  rule: AuthRule | undefined
  /** The body, from the auth context exactly as the adapter stored it (default: see `rule`). */
  answer?: (auth: AuthContext | null | undefined) => unknown
}

/** Every adapter serves exactly these routes. Protected routes answer the auth context as JSON. */
export const ROUTES: readonly RouteSpec[] = [
  { method: 'GET', path: '/whoami', rule: {} },
  { method: 'GET', path: '/orders', rule: { scopes: ['orders:read'] } },
  { method: 'POST', path: '/orders', rule: { scopes: ['orders:write'], onBehalfOf: 'required' } },
  { method: 'GET', path: '/batch', rule: { callers: ['spiffe://example.org/ns/batch/*'] } },
  { method: 'GET', path: '/service-only', rule: { onBehalfOf: 'forbidden' } },
  { method: 'GET', path: '/any', rule: { anyScopes: ['a', 'b'] } },
  /** Rule-level sender constraint: plain bearer tokens are refused here only. */
  { method: 'GET', path: '/constrained', rule: { senderConstraint: 'required' } },
  { method: 'GET', path: '/public', rule: undefined },
  /** What `presentedToken` finds for the stored context, and the context as JSON. */
  {
    method: 'GET',
    path: '/presented',
    rule: undefined,
    answer: (auth) => ({ presented: presentedToken(auth) ?? null, json: JSON.stringify(auth ?? null) }),
  },
]

const publicBody = (auth: AuthContext | null | undefined): { auth: AuthContext | null } => ({ auth: auth ?? null })
const bodyOf = (route: RouteSpec, auth: AuthContext | null | undefined): unknown => (route.answer ? route.answer(auth) : route.rule ? auth : publicBody(auth))

function serverOptions(tls: ServerTls, serve: ServeOptions | undefined): ServerOptions {
  if (serve?.requestCert === false) return { key: tls.key, cert: tls.cert }
  return { key: tls.key, cert: tls.cert, ca: [tls.ca], requestCert: true, rejectUnauthorized: false }
}

type Handler = Parameters<typeof createPlainServer>[1] & {}

/** An https server (or, with `protocol: 'http'`, a plain one: same API for listen/close). */
export function createAppServer(tls: ServerTls, serve: ServeOptions | undefined, handler: Handler): Server {
  return serve?.protocol === 'http' ? (createPlainServer(handler) as unknown as Server) : createServer(serverOptions(tls, serve), handler)
}

export async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  return `${server instanceof Server ? 'https' : 'http'}://127.0.0.1:${(server.address() as AddressInfo).port}`
}

export function closer(server: Server): () => Promise<void> {
  let closing: Promise<void> | undefined
  return () => {
    closing ??= new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
    return closing
  }
}

const expressHarness: Adapter = {
  name: 'express',
  async start(options, tls, serve) {
    const app = express()
    const middleware = expressAdapter.callsign(options)
    app.use(middleware)
    for (const route of ROUTES) {
      const handlers: express.RequestHandler[] = []
      if (route.rule) handlers.push(expressAdapter.requireAuth(route.rule))
      handlers.push((req, res) => {
        res.json(bodyOf(route, req.auth))
      })
      if (route.method === 'GET') app.get(route.path, ...handlers)
      else app.post(route.path, ...handlers)
    }
    const server = createAppServer(tls, serve, app)
    return { url: await listen(server), guard: middleware.guard, close: closer(server) }
  },
  async create(options) {
    expressAdapter.callsign(options)
  },
  requireAuth: (rule) => expressAdapter.requireAuth(rule),
}

const fastifyHarness: Adapter = {
  name: 'fastify',
  async start(options, tls, serve) {
    let server: Server | undefined
    const app = fastify({
      serverFactory: (handler) => {
        server = createAppServer(tls, serve, handler)
        return server
      },
      forceCloseConnections: true,
    })
    try {
      await app.register(fastifyCallsign, options)
      for (const route of ROUTES) {
        const rule = route.rule
        app.route({
          method: route.method,
          url: route.path,
          ...(rule ? { preHandler: fastifyAdapter.requireAuth(rule) } : {}),
          handler: async (request) => bodyOf(route, request.auth),
        })
      }
      await app.listen({ port: 0, host: '127.0.0.1' })
    } catch (error) {
      await app.close()
      throw error
    }
    const httpsServer = server!
    let closing: Promise<void> | undefined
    return {
      url: `${serve?.protocol === 'http' ? 'http' : 'https'}://127.0.0.1:${(httpsServer.address() as AddressInfo).port}`,
      guard: app.callsign,
      close: () => {
        closing ??= (async () => {
          httpsServer.closeAllConnections()
          await app.close()
        })()
        return closing
      },
    }
  },
  async create(options) {
    const app = fastify()
    try {
      await app.register(fastifyCallsign, options)
      await app.ready()
    } finally {
      await app.close()
    }
  },
  requireAuth: (rule) => fastifyAdapter.requireAuth(rule),
}

const koaHarness: Adapter = {
  name: 'koa',
  async start(options, tls, serve) {
    const app = new Koa()
    app.silent = true
    const middleware = koaAdapter.callsign(options)
    app.use(middleware)
    const router = new Router()
    for (const route of ROUTES) {
      const rule = route.rule
      const handler = (ctx: Koa.Context): void => {
        ctx.body = bodyOf(route, ctx.state.auth)
      }
      const method = route.method === 'GET' ? 'get' : 'post'
      if (rule) router[method](route.path, koaAdapter.requireAuth(rule), handler)
      else router[method](route.path, handler)
    }
    app.use(router.routes())
    app.use(router.allowedMethods())
    const server = createAppServer(tls, serve, app.callback())
    return { url: await listen(server), guard: middleware.guard, close: closer(server) }
  },
  async create(options) {
    koaAdapter.callsign(options)
  },
  requireAuth: (rule) => koaAdapter.requireAuth(rule),
}

/** Plain node:http(s) request listener with `@callsign/node`. */
const nodeHarness: Adapter = {
  name: 'node',
  async start(options, tls, serve) {
    const authenticate = nodeAdapter.callsign(options)
    const routes = ROUTES.map((route) => ({ ...route, check: route.rule ? nodeAdapter.requireAuth(route.rule) : undefined }))
    const server = createAppServer(tls, serve, async (req, res) => {
      if (!(await authenticate(req, res))) return
      const path = (req.url ?? '/').split('?', 1)[0]
      const route = routes.find((r) => r.path === path && r.method === req.method)
      if (!route) {
        res.writeHead(404).end()
        return
      }
      if (route.check && !route.check(req, res)) return
      res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' })
      res.end(JSON.stringify(bodyOf(route, req.auth)))
    })
    return { url: await listen(server), guard: authenticate.guard, close: closer(server) }
  },
  async create(options) {
    nodeAdapter.callsign(options)
  },
  requireAuth: (rule) => nodeAdapter.requireAuth(rule),
}

/** Use with `describe.each(adapters)('$name', (adapter) => ...)`. */
export const adapters: readonly Adapter[] = [expressHarness, fastifyHarness, koaHarness, nodeHarness]
