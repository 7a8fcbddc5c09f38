/**
 * Apps whose guard sits behind a mount, a router prefix or a URL rewrite, in each framework's own
 * idiom, over real HTTPS: each serves `GET whoami` (with `requireAuth()`) at the `path` a client
 * calls, while the framework hands the inner middleware a shorter path (`stripped`).
 */
import type { IncomingMessage } from 'node:http'
import type { Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import Router from '@koa/router'
import express from 'express'
import { fastify, type FastifyInstance } from 'fastify'
import Koa from 'koa'
import mount from 'koa-mount'
import type { Callsign, CallsignOptions } from '@callsign/core'
import * as expressAdapter from '@callsign/express'
import fastifyCallsign, * as fastifyAdapter from '@callsign/fastify'
import * as koaAdapter from '@callsign/koa'
import * as nodeAdapter from '@callsign/node'
import { closer, createAppServer, listen, type AdapterName, type RunningApp, type ServerTls } from './adapters.js'

export interface MountStyle {
  adapter: AdapterName
  /** What the style does, for test titles. */
  title: string
  /** The path the client calls. */
  path: string
  /** Paths an inner middleware sees in place of {@link path}: a proof for one of them must be refused. */
  stripped: string[]
  /** Build the app with `options` (and `rule` for its `requireAuth`), listen on 127.0.0.1:0. */
  start(options: CallsignOptions, tls: ServerTls, rule?: { enforce?: boolean }): Promise<RunningApp>
}

// ---- Express 5 --------------------------------------------------------------------------------

async function serveExpress(app: express.Express, guard: expressAdapter.CallsignMiddleware, tls: ServerTls): Promise<RunningApp> {
  const server = createAppServer(tls, undefined, app)
  return { url: await listen(server), guard: guard.guard, close: closer(server) }
}

/** A router (or app) with the guard and `GET /whoami`. */
function expressWhoami<T extends express.Router>(router: T, guard: expressAdapter.CallsignMiddleware, rule: { enforce?: boolean } = {}): T {
  router.use(guard)
  router.get('/whoami', expressAdapter.requireAuth(rule), (req, res) => {
    res.json(req.auth)
  })
  return router
}

const expressStyles: MountStyle[] = [
  {
    adapter: 'express',
    title: 'sub-app at app.use("/v1", sub), guard in the sub-app',
    path: '/v1/whoami',
    stripped: ['/whoami'],
    async start(options, tls, rule) {
      const guard = expressAdapter.callsign(options)
      const app = express()
      app.use('/v1', expressWhoami(express(), guard, rule))
      return serveExpress(app, guard, tls)
    },
  },
  {
    adapter: 'express',
    title: 'express.Router() at "/v1", guard in the router',
    path: '/v1/whoami',
    stripped: ['/whoami'],
    async start(options, tls, rule) {
      const guard = expressAdapter.callsign(options)
      const app = express()
      app.use('/v1', expressWhoami(express.Router(), guard, rule))
      return serveExpress(app, guard, tls)
    },
  },
  {
    adapter: 'express',
    title: 'nested routers "/v1" then "/api", guard in the inner router',
    path: '/v1/api/whoami',
    stripped: ['/whoami', '/api/whoami'],
    async start(options, tls, rule) {
      const guard = expressAdapter.callsign(options)
      const outer = express.Router()
      outer.use('/api', expressWhoami(express.Router(), guard, rule))
      const app = express()
      app.use('/v1', outer)
      return serveExpress(app, guard, tls)
    },
  },
]

// ---- Fastify 5 --------------------------------------------------------------------------------

/** Serve a Fastify app built by `setup`, which returns the guard of the scope callsign was registered in. */
async function serveFastify(tls: ServerTls, setup: (app: FastifyInstance) => Promise<Callsign>, rewriteUrl?: (url: string) => string): Promise<RunningApp> {
  let server: Server | undefined
  const app = fastify({
    serverFactory: (handler) => {
      server = createAppServer(tls, undefined, handler)
      return server
    },
    forceCloseConnections: true,
    ...(rewriteUrl ? { rewriteUrl: (req: IncomingMessage) => rewriteUrl(req.url ?? '/') } : {}),
  })
  let guard: Callsign
  try {
    guard = await setup(app)
    await app.listen({ port: 0, host: '127.0.0.1' })
  } catch (error) {
    await app.close()
    throw error
  }
  const httpsServer = server!
  let closing: Promise<void> | undefined
  return {
    url: `https://127.0.0.1:${(httpsServer.address() as AddressInfo).port}`,
    guard,
    close: () => {
      closing ??= (async () => {
        httpsServer.closeAllConnections()
        await app.close()
      })()
      return closing
    },
  }
}

/** Register callsign and `GET /whoami` in `scope`; resolves the guard. */
async function fastifyWhoami(scope: FastifyInstance, options: CallsignOptions, rule: { enforce?: boolean } = {}): Promise<Callsign> {
  await scope.register(fastifyCallsign, options)
  scope.get('/whoami', { preHandler: fastifyAdapter.requireAuth(rule) }, async (request) => request.auth)
  return scope.callsign
}

/** Register `inner` as a plugin under `prefix` (its own encapsulated scope); resolves what it returned. */
async function underPrefix<T>(app: FastifyInstance, prefix: string, inner: (scope: FastifyInstance) => Promise<T>): Promise<T> {
  let result: T | undefined
  await app.register(
    async (scope) => {
      result = await inner(scope)
    },
    { prefix },
  )
  return result!
}

const fastifyStyles: MountStyle[] = [
  {
    adapter: 'fastify',
    title: 'register(plugin, { prefix: "/v1" }), callsign inside the plugin',
    path: '/v1/whoami',
    stripped: ['/whoami'],
    start: (options, tls, rule) => serveFastify(tls, (app) => underPrefix(app, '/v1', (v1) => fastifyWhoami(v1, options, rule))),
  },
  {
    adapter: 'fastify',
    title: 'nested prefixes "/v1" then "/api", callsign in the inner plugin',
    path: '/v1/api/whoami',
    stripped: ['/whoami', '/api/whoami'],
    start: (options, tls, rule) =>
      serveFastify(tls, (app) => underPrefix(app, '/v1', (v1) => underPrefix(v1, '/api', (api) => fastifyWhoami(api, options, rule)))),
  },
  {
    adapter: 'fastify',
    title: 'rewriteUrl "/v1/x" to "/x", callsign at the root',
    path: '/v1/whoami',
    stripped: ['/whoami'],
    start: (options, tls, rule) =>
      serveFastify(
        tls,
        (app) => fastifyWhoami(app, options, rule),
        (url) => (url.startsWith('/v1/') ? url.slice(3) : url),
      ),
  },
]

// ---- Koa 3 ------------------------------------------------------------------------------------

async function serveKoa(app: Koa, guard: koaAdapter.CallsignMiddleware, tls: ServerTls): Promise<RunningApp> {
  app.silent = true
  const server = createAppServer(tls, undefined, app.callback())
  return { url: await listen(server), guard: guard.guard, close: closer(server) }
}

/** A router with `GET /whoami` behind `requireAuth` (and the guard first, when given). */
function koaWhoami(guard: koaAdapter.CallsignMiddleware | undefined, rule: { enforce?: boolean } = {}, prefix?: string): Router {
  const router = new Router(prefix === undefined ? {} : { prefix })
  if (guard) router.use(guard)
  router.get('/whoami', koaAdapter.requireAuth(rule), (ctx) => {
    ctx.body = ctx.state.auth
  })
  return router
}

/** A Koa app serving `router`. */
function koaApp(router: Router, guard?: koaAdapter.CallsignMiddleware): Koa {
  const app = new Koa()
  if (guard) app.use(guard)
  app.use(router.routes())
  return app
}

const koaStyles: MountStyle[] = [
  {
    adapter: 'koa',
    title: 'koa-mount("/v1", sub-app), guard in the mounted sub-app',
    path: '/v1/whoami',
    stripped: ['/whoami'],
    async start(options, tls, rule) {
      const guard = koaAdapter.callsign(options)
      const app = new Koa()
      app.use(mount('/v1', koaApp(koaWhoami(undefined, rule), guard)))
      return serveKoa(app, guard, tls)
    },
  },
  {
    adapter: 'koa',
    title: 'koa-mount("/v1", sub-app), guard in the outer app',
    path: '/v1/whoami',
    stripped: ['/whoami'],
    async start(options, tls, rule) {
      const guard = koaAdapter.callsign(options)
      const app = new Koa()
      app.use(guard)
      app.use(mount('/v1', koaApp(koaWhoami(undefined, rule))))
      return serveKoa(app, guard, tls)
    },
  },
  {
    adapter: 'koa',
    title: 'nested koa-mount "/v1" then "/api", guard in the innermost app',
    path: '/v1/api/whoami',
    stripped: ['/whoami', '/api/whoami'],
    async start(options, tls, rule) {
      const guard = koaAdapter.callsign(options)
      const v1 = new Koa()
      v1.use(mount('/api', koaApp(koaWhoami(undefined, rule), guard)))
      const app = new Koa()
      app.use(mount('/v1', v1))
      return serveKoa(app, guard, tls)
    },
  },
  {
    adapter: 'koa',
    title: '@koa/router with prefix "/v1", guard as router middleware',
    path: '/v1/whoami',
    stripped: ['/whoami'],
    async start(options, tls, rule) {
      const guard = koaAdapter.callsign(options)
      return serveKoa(koaApp(koaWhoami(guard, rule, '/v1')), guard, tls)
    },
  },
  {
    adapter: 'koa',
    title: 'nested @koa/router, router.use("/v1", nested.routes()), guard in the nested router',
    path: '/v1/whoami',
    stripped: ['/whoami'],
    async start(options, tls, rule) {
      const guard = koaAdapter.callsign(options)
      const root = new Router()
      const nested = koaWhoami(guard, rule)
      root.use('/v1', nested.routes(), nested.allowedMethods())
      return serveKoa(koaApp(root), guard, tls)
    },
  },
]

// ---- node:http --------------------------------------------------------------------------------

const nodeStyles: MountStyle[] = [
  {
    adapter: 'node',
    title: 'plain listener serving "/v1/whoami" (nothing strips a prefix)',
    path: '/v1/whoami',
    stripped: ['/whoami'],
    async start(options, tls, rule) {
      const authenticate = nodeAdapter.callsign(options)
      const check = nodeAdapter.requireAuth(rule)
      const server = createAppServer(tls, undefined, async (req, res) => {
        if (!(await authenticate(req, res))) return
        if ((req.url ?? '/').split('?', 1)[0] !== '/v1/whoami') {
          res.writeHead(404).end()
          return
        }
        if (!check(req, res)) return
        res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(req.auth))
      })
      return { url: await listen(server), guard: authenticate.guard, close: closer(server) }
    },
  },
]

/** Every mounting style, by adapter. */
export const mountStyles: readonly MountStyle[] = [...expressStyles, ...fastifyStyles, ...koaStyles, ...nodeStyles]
