// Compile-only tests of the typed path (checked by `pnpm typecheck`, never executed): what
// `requireAuth(rule, handler)` and `getAuth(req, rule)` promise, per adapter, read from the rule.
import type { IncomingMessage, ServerResponse } from 'node:http'
import express from 'express'
import Fastify from 'fastify'
import Koa from 'koa'
import Router from '@koa/router'
import * as ex from '@callsign/express'
import fastifyCallsign, * as fy from '@callsign/fastify'
import * as ko from '@callsign/koa'
import * as no from '@callsign/node'
import type { AuthContext, AuthFor, AuthRule, ServiceAuthContext, TokenAuthContext, UserAuthContext } from '@callsign/core'

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false
const expectType = <T extends true>(): T => undefined as unknown as T

// AuthFor reads onBehalfOf from the rule's type; only a literal narrows.
expectType<Equal<AuthFor<{ onBehalfOf: 'required' }>, UserAuthContext>>()
expectType<Equal<AuthFor<{ scopes: ['a']; onBehalfOf: 'forbidden' }>, ServiceAuthContext>>()
expectType<Equal<AuthFor<{ onBehalfOf: 'optional' }>, AuthContext>>()
expectType<Equal<AuthFor<{ scopes: string[] }>, AuthContext>>()
expectType<Equal<AuthFor<AuthRule>, AuthContext>>()
// A user is only ever named by a token: its claims need no narrowing.
const claimsOfUser = (auth: UserAuthContext): TokenAuthContext['claims'] => auth.claims
const noUser = (auth: ServiceAuthContext): undefined => auth.user
void claimsOfUser
void noUser
const wide: AuthRule = { onBehalfOf: 'required' }

// ---- Express ----------------------------------------------------------------------------------
const app = express()
app.use(ex.callsign({ issuers: { issuer: 'https://a', audience: 'b' } }))
app.get(
  '/any',
  ex.requireAuth({ scopes: ['a'] }, (req, res) => {
    const auth: AuthContext = req.auth
    res.json(auth.caller.id)
  }),
)
app.get(
  '/user',
  ex.requireAuth({ onBehalfOf: 'required' }, (req, res) => {
    const sub: string = req.auth.user.sub
    res.json(sub + req.auth.claims.iss)
  }),
)
app.get(
  '/service',
  ex.requireAuth({ onBehalfOf: 'forbidden' }, (req, res) => {
    const user: undefined = req.auth.user
    res.json(user)
  }),
)
app.get(
  '/wide',
  ex.requireAuth(wide, (req, res) => {
    // @ts-expect-error a rule typed AuthRule does not promise a user
    res.json(req.auth.user.sub)
  }),
)
app.get(
  '/async',
  ex.requireAuth({}, async (req, res, next) => {
    await Promise.resolve()
    if (!req.auth.scopes.length) return next()
    res.json(req.auth.scopes)
  }),
)
const placeOrder = (req: ex.AuthorizedRequest<{ onBehalfOf: 'required' }>, res: express.Response): void => {
  res.json(req.auth.user.sub)
}
app.post('/orders', ex.requireAuth({ onBehalfOf: 'required' }, placeOrder))
// @ts-expect-error a handler that needs a user, behind a rule that does not require one
app.post('/orders', ex.requireAuth({ scopes: ['a'] }, placeOrder))
// @ts-expect-error onBehalfOf has three modes
ex.requireAuth({ onBehalfOf: 'sometimes' }, () => undefined)
// The middleware form: req.auth stays optional, and the route's params are still inferred.
app.get('/orders/:id', ex.requireAuth({ onBehalfOf: 'required' }), (req, res) => {
  const optional: AuthContext | undefined = req.auth
  // @ts-expect-error possibly undefined without the typed path
  void req.auth.caller
  const id: string = req.params.id
  const sub: string = ex.getAuth(req, { onBehalfOf: 'required' }).user.sub
  const auth: AuthContext = ex.getAuth(req)
  res.json({ optional, id, sub, auth })
})
const handlers: express.RequestHandler[] = [ex.requireAuth(), ex.requireAuth({}, (_req, res) => res.end())]
void handlers

// ---- Fastify ----------------------------------------------------------------------------------
const fastify = Fastify()
await fastify.register(fastifyCallsign, { issuers: { issuer: 'https://a', audience: 'b' } })
fastify.get(
  '/any',
  fy.requireAuth({}, async (request) => {
    const auth: AuthContext = request.auth
    return auth.caller
  }),
)
fastify.get(
  '/user',
  fy.requireAuth({ onBehalfOf: 'required' }, async (request) => request.auth.user.sub satisfies string),
)
fastify.get(
  '/service',
  fy.requireAuth({ onBehalfOf: 'forbidden' }, (request, reply) => reply.send(request.auth.user satisfies undefined)),
)
fastify.get<{ Params: { id: string } }>(
  '/orders/:id',
  fy.requireAuth({}, async (request) => request.params.id satisfies string),
)
fastify.get(
  '/this',
  fy.requireAuth({}, async function (request) {
    await this.callsign.ready()
    return request.auth.caller
  }),
)
fastify.get('/pre', { preHandler: fy.requireAuth({ onBehalfOf: 'required' }) }, async (request) => {
  const nullable: AuthContext | null = request.auth
  return { nullable, sub: fy.getAuth(request, { onBehalfOf: 'required' }).user.sub satisfies string }
})
fastify.get(
  '/wide',
  fy.requireAuth(wide, async (request) => {
    // @ts-expect-error a rule typed AuthRule does not promise a user
    return request.auth.user.sub
  }),
)
const https = Fastify({ https: { cert: '', key: '' } })
https.get(
  '/any',
  fy.requireAuth({}, async (request) => request.auth.caller),
)

// ---- Koa --------------------------------------------------------------------------------------
const koa = new Koa()
const router = new Router()
router.get(
  '/any',
  ko.requireAuth({}, (ctx) => {
    const auth: AuthContext = ctx.state.auth
    ctx.body = auth.caller
  }),
)
router.get(
  '/user',
  ko.requireAuth({ onBehalfOf: 'required' }, async (ctx, next) => {
    ctx.body = ctx.state.auth.user.sub satisfies string
    await next()
  }),
)
router.get(
  '/service',
  ko.requireAuth({ onBehalfOf: 'forbidden' }, (ctx) => {
    ctx.body = ctx.state.auth.user satisfies undefined
  }),
)
router.get(
  '/wide',
  ko.requireAuth(wide, (ctx) => {
    // @ts-expect-error a rule typed AuthRule does not promise a user
    ctx.body = ctx.state.auth.user.sub
  }),
)
router.get('/orders/:id', ko.requireAuth({ onBehalfOf: 'required' }), (ctx) => {
  const optional: AuthContext | undefined = ctx.state.auth
  ctx.body = { optional, id: ctx.params.id, sub: ko.getAuth(ctx, { onBehalfOf: 'required' }).user.sub satisfies string }
})
const named: ko.AuthorizedMiddleware<{ onBehalfOf: 'required' }> = (ctx) => {
  ctx.body = ctx.state.auth.user.sub
}
router.post('/orders', ko.requireAuth({ onBehalfOf: 'required' }, named))
koa.use(router.routes())

// ---- node:http --------------------------------------------------------------------------------
const listOrders = no.requireAuth({ scopes: ['orders:read'] }, (req, res) => res.end(req.auth.caller.id))
const placeOrder2 = no.requireAuth({ onBehalfOf: 'required' }, async (req) => req.auth.user.sub)
const check = no.requireAuth({ onBehalfOf: 'forbidden' })
export async function listener(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const written: ServerResponse | false = listOrders(req, res)
  const placed: Promise<string> | false = placeOrder2(req, res)
  const optional: AuthContext | undefined = req.auth
  if (check(req, res)) {
    const user: undefined = no.getAuth(req, { onBehalfOf: 'forbidden' }).user
    void user
  }
  void written
  void placed
  void optional
}
