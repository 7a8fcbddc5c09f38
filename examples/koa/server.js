// An orders service on Koa 3, protected by Callsign over mTLS.
//   node examples/koa/server.js --dev     (throwaway CA + local issuer, prints curl commands)
//   ISSUER=... AUDIENCE=... TLS_CERT=... TLS_KEY=... TLS_CA=... node examples/koa/server.js
import https from 'node:https'
import { pathToFileURL } from 'node:url'
import Koa from 'koa'
import { Router } from '@koa/router'
import { callsign, requireAuth } from '@callsign/koa'
import { closeOnSignals, loadConfig, mtlsServerOptions } from '../config.js'

/** The Koa app: `createApp({ issuer, audience, jwksUri? })`. Serve it with `https.createServer(mtlsServerOptions(tls), app.callback())`. */
export function createApp({ issuer, audience, jwksUri }) {
  const app = new Koa()
  app.use(
    callsign({
      issuers: { issuer, audience, ...(jwksUri ? { jwksUri } : {}) },
      mtls: { mode: 'required', trustDomains: ['example.org'] },
      // What each service may ever do, whatever its token says. Unlisted services are refused.
      callers: {
        'spiffe://example.org/ns/web/sa/frontend': ['orders:read', 'orders:write'],
        'spiffe://example.org/ns/batch/*': ['orders:read'],
      },
    }),
  )

  const router = new Router()
  router.get('/orders', requireAuth({ scopes: ['orders:read'] }), (ctx) => {
    const { auth } = ctx.state
    ctx.body = { orders: [{ id: 1, item: 'coffee' }], caller: auth.caller.id, user: auth.user?.sub ?? null }
  })

  // Writes only on behalf of a user who granted orders:write, by a service allowed to write.
  router.post('/orders', requireAuth({ scopes: ['orders:write'], onBehalfOf: 'required' }), (ctx) => {
    ctx.status = 201
    ctx.body = { id: 2, placedBy: ctx.state.auth.user.sub, via: ctx.state.auth.caller.id }
  })

  // Batch jobs only, acting for themselves.
  router.get('/reports/daily', requireAuth({ scopes: ['orders:read'], callers: ['spiffe://example.org/ns/batch/*'], onBehalfOf: 'forbidden' }), (ctx) => {
    ctx.body = { orders: 1, caller: ctx.state.auth.caller.id }
  })
  app.use(router.routes()).use(router.allowedMethods())
  return app
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const config = await loadConfig({ name: 'koa example' })
  const server = https.createServer(mtlsServerOptions(config.tls), createApp(config).callback())
  await new Promise((resolve) => server.listen(config.port, config.host, resolve))
  const { port } = server.address()
  if (config.dev) config.dev.printInstructions(port)
  else console.log(`koa example listening on https://${config.host}:${port}`)
  closeOnSignals(async () => {
    server.close()
    server.closeAllConnections()
    await config.dev?.close()
  })
}
