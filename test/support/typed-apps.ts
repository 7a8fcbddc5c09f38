/**
 * Apps that use the typed path of each adapter (`requireAuth(rule, handler)` and `getAuth`) in the
 * framework's idiom, over real HTTPS. Every app serves the same {@link TYPED_ROUTES}; the handlers
 * read `user.sub` without `?` or `!`, so this file also proves the narrowing compiles.
 */
import type { Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import Router from '@koa/router'
import express from 'express'
import { fastify } from 'fastify'
import Koa from 'koa'
import { toHttpResponse, type AuthContext, type CallsignOptions, type ServiceAuthContext, type UserAuthContext } from '@callsign/core'
import * as expressAdapter from '@callsign/express'
import fastifyCallsign, * as fastifyAdapter from '@callsign/fastify'
import * as koaAdapter from '@callsign/koa'
import * as nodeAdapter from '@callsign/node'
import { closer, createAppServer, listen, type AdapterName, type RunningApp, type ServerTls } from './adapters.js'

/** The routes every typed app serves, with what each one does. */
export const TYPED_ROUTES = {
  /** `requireAuth({ onBehalfOf: 'required' }, handler)`: answers `{ caller, user }`. */
  user: '/user',
  /** `requireAuth({ onBehalfOf: 'forbidden' }, handler)`: answers `{ caller, user: null }`. */
  service: '/service',
  /** `requireAuth({ scopes: ['orders:read'] }, handler)`: answers `{ caller }`. */
  orders: '/orders',
  /** `requireAuth({ onBehalfOf: 'required' })`, then a handler reading `getAuth(req, { onBehalfOf: 'required' })`. */
  getAuth: '/get-auth',
  /** No `requireAuth`; the handler calls `getAuth(req)`: a setup error. */
  unguarded: '/unguarded',
  /** `requireAuth()`, then `getAuth(req, { onBehalfOf: 'required' })`: a setup error, user or not. */
  mismatch: '/mismatch',
  /** `requireAuth({ onBehalfOf: 'required' })`, then a handler answering `{ auth: req.auth ?? null }` (the untyped path). */
  plain: '/plain',
} as const

export interface TypedApp extends RunningApp {
  /** Errors that reached the framework's error handling, in order. */
  errors: unknown[]
}

const userBody = (auth: UserAuthContext) => ({ caller: auth.caller.id, user: auth.user.sub })
const serviceBody = (auth: ServiceAuthContext) => ({ caller: auth.caller.id, user: auth.user ?? null })
const callerBody = (auth: AuthContext) => ({ caller: auth.caller.id })

async function serveExpress(options: CallsignOptions, tls: ServerTls): Promise<TypedApp> {
  const { callsign, requireAuth, getAuth } = expressAdapter
  const errors: unknown[] = []
  const guard = callsign(options)
  const app = express()
  app.use(guard)
  app.get(
    TYPED_ROUTES.user,
    requireAuth({ onBehalfOf: 'required' }, (req, res) => res.json(userBody(req.auth))),
  )
  app.get(
    TYPED_ROUTES.service,
    requireAuth({ onBehalfOf: 'forbidden' }, (req, res) => res.json(serviceBody(req.auth))),
  )
  app.get(
    TYPED_ROUTES.orders,
    requireAuth({ scopes: ['orders:read'] }, async (req, res) => res.json(callerBody(req.auth))),
  )
  app.get(TYPED_ROUTES.getAuth, requireAuth({ onBehalfOf: 'required' }), (req, res) => res.json(userBody(getAuth(req, { onBehalfOf: 'required' }))))
  app.get(TYPED_ROUTES.unguarded, (req, res) => res.json(callerBody(getAuth(req))))
  app.get(TYPED_ROUTES.mismatch, requireAuth(), (req, res) => res.json(userBody(getAuth(req, { onBehalfOf: 'required' }))))
  app.get(TYPED_ROUTES.plain, requireAuth({ onBehalfOf: 'required' }), (req, res) => res.json({ auth: req.auth ?? null }))
  app.use((error: unknown, _req: express.Request, _res: express.Response, next: express.NextFunction) => {
    errors.push(error)
    next(error) // Express's own handler answers
  })
  const server = createAppServer(tls, undefined, app)
  return { url: await listen(server), guard: guard.guard, close: closer(server), errors }
}

async function serveFastify(options: CallsignOptions, tls: ServerTls): Promise<TypedApp> {
  const { requireAuth, getAuth } = fastifyAdapter
  const errors: unknown[] = []
  let server: Server | undefined
  const app = fastify({
    serverFactory: (handler) => {
      server = createAppServer(tls, undefined, handler)
      return server
    },
    forceCloseConnections: true,
  })
  try {
    await app.register(fastifyCallsign, options)
    app.addHook('onError', async (_request, _reply, error) => {
      errors.push(error)
    })
    app.get(
      TYPED_ROUTES.user,
      requireAuth({ onBehalfOf: 'required' }, async (request) => userBody(request.auth)),
    )
    app.get(
      TYPED_ROUTES.service,
      requireAuth({ onBehalfOf: 'forbidden' }, (request, reply) => reply.send(serviceBody(request.auth))),
    )
    app.get(
      TYPED_ROUTES.orders,
      requireAuth({ scopes: ['orders:read'] }, async (request) => callerBody(request.auth)),
    )
    app.get(TYPED_ROUTES.getAuth, { preHandler: requireAuth({ onBehalfOf: 'required' }) }, async (request) =>
      userBody(getAuth(request, { onBehalfOf: 'required' })),
    )
    app.get(TYPED_ROUTES.unguarded, async (request) => callerBody(getAuth(request)))
    app.get(TYPED_ROUTES.mismatch, { preHandler: requireAuth() }, async (request) => userBody(getAuth(request, { onBehalfOf: 'required' })))
    app.get(TYPED_ROUTES.plain, { preHandler: requireAuth({ onBehalfOf: 'required' }) }, async (request) => ({ auth: request.auth }))
    await app.listen({ port: 0, host: '127.0.0.1' })
  } catch (error) {
    await app.close()
    throw error
  }
  const httpsServer = server!
  let closing: Promise<void> | undefined
  return {
    url: `https://127.0.0.1:${(httpsServer.address() as AddressInfo).port}`,
    guard: app.callsign,
    errors,
    close: () => {
      closing ??= (async () => {
        httpsServer.closeAllConnections()
        await app.close()
      })()
      return closing
    },
  }
}

async function serveKoa(options: CallsignOptions, tls: ServerTls): Promise<TypedApp> {
  const { callsign, requireAuth, getAuth } = koaAdapter
  const errors: unknown[] = []
  const app = new Koa()
  app.silent = true
  app.on('error', (error: unknown) => errors.push(error))
  const middleware = callsign(options)
  app.use(middleware)
  const router = new Router()
  router.get(
    TYPED_ROUTES.user,
    requireAuth({ onBehalfOf: 'required' }, (ctx) => {
      ctx.body = userBody(ctx.state.auth)
    }),
  )
  router.get(
    TYPED_ROUTES.service,
    requireAuth({ onBehalfOf: 'forbidden' }, (ctx) => {
      ctx.body = serviceBody(ctx.state.auth)
    }),
  )
  router.get(
    TYPED_ROUTES.orders,
    requireAuth({ scopes: ['orders:read'] }, async (ctx) => {
      ctx.body = callerBody(ctx.state.auth)
    }),
  )
  router.get(TYPED_ROUTES.getAuth, requireAuth({ onBehalfOf: 'required' }), (ctx) => {
    ctx.body = userBody(getAuth(ctx, { onBehalfOf: 'required' }))
  })
  router.get(TYPED_ROUTES.unguarded, (ctx) => {
    ctx.body = callerBody(getAuth(ctx))
  })
  router.get(TYPED_ROUTES.mismatch, requireAuth(), (ctx) => {
    ctx.body = userBody(getAuth(ctx, { onBehalfOf: 'required' }))
  })
  router.get(TYPED_ROUTES.plain, requireAuth({ onBehalfOf: 'required' }), (ctx) => {
    ctx.body = { auth: ctx.state.auth ?? null }
  })
  app.use(router.routes())
  const server = createAppServer(tls, undefined, app.callback())
  return { url: await listen(server), guard: middleware.guard, close: closer(server), errors }
}

async function serveNode(options: CallsignOptions, tls: ServerTls): Promise<TypedApp> {
  const { callsign, requireAuth, getAuth } = nodeAdapter
  const errors: unknown[] = []
  const authenticate = callsign(options)
  const json = (res: import('node:http').ServerResponse, body: unknown): void => {
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(body))
  }
  const canRequireUser = requireAuth({ onBehalfOf: 'required' })
  const canAny = requireAuth()
  const routes: Record<string, (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse) => unknown> = {
    [TYPED_ROUTES.user]: requireAuth({ onBehalfOf: 'required' }, (req, res) => json(res, userBody(req.auth))),
    [TYPED_ROUTES.service]: requireAuth({ onBehalfOf: 'forbidden' }, (req, res) => json(res, serviceBody(req.auth))),
    [TYPED_ROUTES.orders]: requireAuth({ scopes: ['orders:read'] }, async (req, res) => json(res, callerBody(req.auth))),
    [TYPED_ROUTES.getAuth]: (req, res) => canRequireUser(req, res) && json(res, userBody(getAuth(req, { onBehalfOf: 'required' }))),
    [TYPED_ROUTES.unguarded]: (req, res) => json(res, callerBody(getAuth(req))),
    [TYPED_ROUTES.mismatch]: (req, res) => canAny(req, res) && json(res, userBody(getAuth(req, { onBehalfOf: 'required' }))),
    [TYPED_ROUTES.plain]: (req, res) => canRequireUser(req, res) && json(res, { auth: req.auth ?? null }),
  }
  const server = createAppServer(tls, undefined, async (req, res) => {
    try {
      if (!(await authenticate(req, res))) return
      const route = routes[(req.url ?? '/').split('?', 1)[0]!]
      if (route) await route(req, res)
      else res.writeHead(404).end()
    } catch (error) {
      errors.push(error)
      // What a listener does with a refusal getAuth throws: the adapter's own answer.
      const { status, headers, body } = error instanceof nodeAdapter.AuthError ? toHttpResponse(error) : { status: 500, headers: {}, body: '' }
      res.writeHead(status, headers).end(body)
    }
  })
  return { url: await listen(server), guard: authenticate.guard, close: closer(server), errors }
}

export interface TypedAdapter {
  name: AdapterName
  start(options: CallsignOptions, tls: ServerTls): Promise<TypedApp>
  /** The adapter's `requireAuth(rule, handler)`, with an untyped handler (for misuse from JavaScript). */
  requireAuthWith(rule: object, handler: unknown): unknown
}

/** Use with `describe.each(typedAdapters)('$name', (adapter) => ...)`. */
export const typedAdapters: readonly TypedAdapter[] = [
  { name: 'express', start: serveExpress, requireAuthWith: (rule, handler) => (expressAdapter.requireAuth as (...args: unknown[]) => unknown)(rule, handler) },
  { name: 'fastify', start: serveFastify, requireAuthWith: (rule, handler) => (fastifyAdapter.requireAuth as (...args: unknown[]) => unknown)(rule, handler) },
  { name: 'koa', start: serveKoa, requireAuthWith: (rule, handler) => (koaAdapter.requireAuth as (...args: unknown[]) => unknown)(rule, handler) },
  { name: 'node', start: serveNode, requireAuthWith: (rule, handler) => (nodeAdapter.requireAuth as (...args: unknown[]) => unknown)(rule, handler) },
]
