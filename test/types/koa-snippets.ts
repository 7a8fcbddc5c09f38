// Compile-only copies of every Koa snippet in README.md, docs/koa.md and packages/koa/README.md
// that touches the auth context (checked by `pnpm typecheck` under strict, never executed). Kept
// as written, with types only where JavaScript has none (function parameters). If a snippet
// changes, change its copy here.
import { readFileSync } from 'node:fs'
// The snippets' `import https from 'node:https'` needs esModuleInterop, which this repo keeps off.
import * as https from 'node:https'
import Koa from 'koa'
import Router from '@koa/router'
import { callsign, getAuth, requireAuth } from '@callsign/koa'

// docs/koa.md, step 3 (app.mjs)
export function createApp({ issuer, audience }: { issuer: string; audience: string }) {
  const app = new Koa()
  app.use(
    callsign({
      issuers: { issuer, audience },
      mtls: { mode: 'required', trustDomains: ['example.org'] },
      // What each service may ever do, whatever its token says. Unlisted services are refused.
      callers: {
        'spiffe://example.org/ns/web/sa/frontend': ['orders:read', 'orders:write'],
        'spiffe://example.org/ns/batch/*': ['orders:read'],
      },
    }),
  )
  const router = new Router()
  router.get(
    '/orders',
    requireAuth({ scopes: ['orders:read'] }, (ctx) => {
      const { auth } = ctx.state
      ctx.body = { caller: auth.caller.id, user: auth.user?.sub ?? null, binding: auth.binding }
    }),
  )
  router.post(
    '/orders',
    requireAuth({ scopes: ['orders:write'], onBehalfOf: 'required' }, (ctx) => {
      ctx.status = 201
      ctx.body = { placedBy: ctx.state.auth.user.sub, via: ctx.state.auth.caller.id }
    }),
  )
  app.use(router.routes())
  return app
}

// README.md, Usage > Koa 3
{
  const app = new Koa()
  app.use(
    callsign({
      issuers: { issuer: 'https://auth.example.com/', audience: 'https://orders.example' },
      mtls: { mode: 'required', trustDomains: ['example.org'] },
      callers: { 'spiffe://example.org/ns/batch/*': ['orders:read'] },
    }),
  )
  const router = new Router()
  router.get(
    '/reports/daily',
    requireAuth({ scopes: ['orders:read'], onBehalfOf: 'forbidden' }, (ctx) => {
      ctx.body = { caller: ctx.state.auth.caller.id }
    }),
  )
  app.use(router.routes())

  https
    .createServer(
      {
        cert: readFileSync('server.pem'),
        key: readFileSync('server-key.pem'),
        ca: readFileSync('bundle.pem'),
        requestCert: true,
        rejectUnauthorized: false,
      },
      app.callback(),
    )
    .listen(8443)
}

// packages/koa/README.md, Example
{
  const app = new Koa()
  app.use(
    callsign({
      issuers: { issuer: 'https://auth.example.com/', audience: 'https://orders.example' },
      mtls: { mode: 'required', trustDomains: ['example.org'] },
      callers: { 'spiffe://example.org/ns/web/sa/frontend': ['orders:read'] },
    }),
  )
  const router = new Router()
  router.get(
    '/orders',
    requireAuth({ scopes: ['orders:read'] }, (ctx) => {
      ctx.body = { caller: ctx.state.auth.caller.id }
    }),
  )
  app.use(router.routes())
}

// packages/koa/src/index.ts, module example, getAuth's and requireAuth's examples
{
  const app = new Koa()
  app.use(callsign({ issuers: { issuer: 'https://auth.example.com', audience: 'orders' } }))
  const router = new Router()
  router.get(
    '/orders',
    requireAuth({ scopes: ['orders:read'] }, (ctx) => {
      ctx.body = ctx.state.auth.caller
    }),
  )
  router.use(requireAuth({ onBehalfOf: 'required' }))
  router.post('/orders', (ctx) => {
    ctx.body = { placedBy: getAuth(ctx, { onBehalfOf: 'required' }).user.sub }
  })
  router.post(
    '/orders',
    requireAuth({ scopes: ['orders:write'], onBehalfOf: 'required' }, (ctx) => {
      ctx.status = 201
      ctx.body = { placedBy: ctx.state.auth.user.sub }
    }),
  )
  app.use(router.routes())
}
