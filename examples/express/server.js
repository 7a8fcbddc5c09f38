// An orders service on Express 5, protected by Callsign over mTLS.
//   node examples/express/server.js --dev     (throwaway CA + local issuer, prints curl commands)
//   ISSUER=... AUDIENCE=... TLS_CERT=... TLS_KEY=... TLS_CA=... node examples/express/server.js
import https from 'node:https'
import { pathToFileURL } from 'node:url'
import express from 'express'
import { callsign, requireAuth } from '@callsign/express'
import { closeOnSignals, loadConfig, mtlsServerOptions } from '../config.js'

/** The Express app: `createApp({ issuer, audience, jwksUri? })`. Serve it with `https.createServer(mtlsServerOptions(tls), app)`. */
export function createApp({ issuer, audience, jwksUri }) {
  const app = express()
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

  app.get('/orders', requireAuth({ scopes: ['orders:read'] }), (req, res) => {
    res.json({ orders: [{ id: 1, item: 'coffee' }], caller: req.auth.caller.id, user: req.auth.user?.sub ?? null })
  })

  // Writes only on behalf of a user who granted orders:write, by a service allowed to write.
  app.post('/orders', requireAuth({ scopes: ['orders:write'], onBehalfOf: 'required' }), (req, res) => {
    res.status(201).json({ id: 2, placedBy: req.auth.user.sub, via: req.auth.caller.id })
  })

  // Batch jobs only, acting for themselves.
  app.get('/reports/daily', requireAuth({ scopes: ['orders:read'], callers: ['spiffe://example.org/ns/batch/*'], onBehalfOf: 'forbidden' }), (req, res) =>
    res.json({ orders: 1, caller: req.auth.caller.id }),
  )
  return app
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const config = await loadConfig({ name: 'express example' })
  const server = https.createServer(mtlsServerOptions(config.tls), createApp(config))
  await new Promise((resolve) => server.listen(config.port, config.host, resolve))
  const { port } = server.address()
  if (config.dev) config.dev.printInstructions(port)
  else console.log(`express example listening on https://${config.host}:${port}`)
  closeOnSignals(async () => {
    server.close()
    server.closeAllConnections()
    await config.dev?.close()
  })
}
