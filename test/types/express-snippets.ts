// Compile-only copies of every Express snippet in README.md, docs/express.md and packages/express/README.md
// that touches the auth context (checked by `pnpm typecheck` under strict, never executed). Kept
// as written, with types only where JavaScript has none (function parameters). If a snippet
// changes, change its copy here.
import { readFileSync } from 'node:fs'
// The snippets' `import https from 'node:https'` needs esModuleInterop, which this repo keeps off.
import * as https from 'node:https'
import express from 'express'
import { callsign, getAuth, requireAuth } from '@callsign/express'

// docs/express.md, step 3 (app.mjs)
export function createApp({ issuer, audience }: { issuer: string; audience: string }) {
  const app = express()
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
  app.get(
    '/orders',
    requireAuth({ scopes: ['orders:read'] }, (req, res) => {
      res.json({ caller: req.auth.caller.id, user: req.auth.user?.sub ?? null, binding: req.auth.binding })
    }),
  )
  app.post(
    '/orders',
    requireAuth({ scopes: ['orders:write'], onBehalfOf: 'required' }, (req, res) => {
      res.status(201).json({ placedBy: req.auth.user.sub, via: req.auth.caller.id })
    }),
  )
  return app
}

// README.md, Usage > Express 5
{
  const app = express()
  app.use(
    callsign({
      issuers: { issuer: 'https://auth.example.com/', audience: 'https://orders.example' },
      mtls: { mode: 'required', trustDomains: ['example.org'] },
      callers: {
        'spiffe://example.org/ns/web/sa/frontend': ['orders:read', 'orders:write'],
        'spiffe://example.org/ns/batch/*': ['orders:read'],
      },
    }),
  )
  app.get(
    '/orders',
    requireAuth({ scopes: ['orders:read'] }, (req, res) => {
      res.json({ caller: req.auth.caller.id, user: req.auth.user?.sub })
    }),
  )
  app.post(
    '/orders',
    requireAuth({ scopes: ['orders:write'], onBehalfOf: 'required' }, (req, res) => {
      res.status(201).json({ placedBy: req.auth.user.sub })
    }),
  )

  https
    .createServer(
      {
        cert: readFileSync('server.pem'),
        key: readFileSync('server-key.pem'),
        ca: readFileSync('bundle.pem'),
        requestCert: true,
        rejectUnauthorized: false,
      },
      app,
    )
    .listen(8443)
}

// README.md, The auth context > Typed handlers
{
  const app = express()
  app.post(
    '/orders',
    requireAuth({ scopes: ['orders:write'], onBehalfOf: 'required' }, (req, res) => {
      res.status(201).json({ placedBy: req.auth.user.sub }) // a string: no `?.`, no `!`
    }),
  )
  app.get('/orders/:id', requireAuth({ scopes: ['orders:read'] }), (req, res) => {
    res.json({ id: req.params.id, caller: getAuth(req).caller.id })
  })
}

// packages/express/README.md, Example
{
  const app = express()
  app.use(
    callsign({
      issuers: { issuer: 'https://auth.example.com/', audience: 'https://orders.example' },
      mtls: { mode: 'required', trustDomains: ['example.org'] },
      callers: { 'spiffe://example.org/ns/web/sa/frontend': ['orders:read'] },
    }),
  )
  app.get(
    '/orders',
    requireAuth({ scopes: ['orders:read'] }, (req, res) => res.json({ caller: req.auth.caller.id, user: req.auth.user?.sub })),
  )
}

// packages/express/src/index.ts, module example and getAuth's example
{
  const app = express()
  app.use(callsign({ issuers: { issuer: 'https://auth.example.com', audience: 'orders' }, mtls: 'required' }))
  app.get(
    '/orders',
    requireAuth({ scopes: ['orders:read'] }, (req, res) => res.json({ caller: req.auth.caller.id })),
  )
  const router = express.Router()
  router.use(requireAuth({ onBehalfOf: 'required' }))
  router.post('/orders', (req, res) => res.json({ placedBy: getAuth(req, { onBehalfOf: 'required' }).user.sub }))
}
