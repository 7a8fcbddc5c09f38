/**
 * Two-sided authorization conformance (403 `insufficient_scope` challenges): route scopes for the
 * calling service and for the user it acts for, `anyScopes`, `rule.callers` prefixes on segment
 * boundaries, the `callers` allowance map (unlisted callers, allowance ceiling, most specific
 * pattern), `onBehalfOf`.
 */
import { afterAll, beforeAll, describe, it } from 'vitest'
import type { CallsignOptions } from '@callsign/core'
import { adapters, type RunningApp } from '../support/adapters.js'
import type { CallOptions } from '../support/client.js'
import { accept, expectOutcome, forbidden, type Outcome } from '../support/expectations.js'
import { createFixture, ID, quiet, sign, type Certs, type Fixture } from '../support/fixtures.js'

let fx: Fixture
beforeAll(async () => {
  fx = await createFixture()
})
afterAll(() => fx?.close())

type Config = 'plain' | 'allowances'
const CONFIGS: Record<Config, () => CallsignOptions> = {
  plain: () => ({ issuers: fx.issuerOptions.main, logger: quiet }),
  allowances: () => ({
    issuers: fx.issuerOptions.main,
    logger: quiet,
    callers: {
      // Exact beats prefix: the frontend may only read, whatever its namespace may do.
      [ID.frontend]: ['orders:read'],
      'spiffe://example.org/ns/web/*': ['orders:read', 'orders:write'],
      'spiffe://example.org/ns/batch/*': ['orders:read', 'orders:write'],
      'reporting-client': ['orders:read'],
    },
  }),
}

interface Scenario {
  title: string
  config: Config
  request: () => Promise<CallOptions>
  outcome: () => Outcome
}

type Method = 'GET' | 'POST'
/** A service-only token (client_id = sub) with `scope`, over the certificate `cert` if given. */
const asService =
  (method: Method, path: string, scope: string | undefined, cert?: keyof Certs, clientId = 'svc-a') =>
  async (): Promise<CallOptions> => ({
    method,
    path,
    ...(cert ? { cert: fx.certs[cert] } : {}),
    token: await sign(fx.main, { sub: clientId, client_id: clientId, ...(scope === undefined ? {} : { scope }) }),
  })
/** An on-behalf-of token for user alice (RFC 8693 `act`), with the user's delegated `scope`. */
const forUser =
  (method: Method, path: string, scope: string, cert?: keyof Certs, actor: string = ID.frontend) =>
  async (): Promise<CallOptions> => ({
    method,
    path,
    ...(cert ? { cert: fx.certs[cert] } : {}),
    token: await sign(fx.main, { sub: 'alice', scope, act: { sub: actor } }),
  })
const scopes = (scope: string): string[] => scope.split(' ')

const SCENARIOS: Scenario[] = [
  // route scopes
  {
    title: 'GET /orders: a service token with orders:read passes',
    config: 'plain',
    request: asService('GET', '/orders', 'orders:read'),
    outcome: () => accept({ caller: { id: 'svc-a', source: 'token' }, scopes: ['orders:read'] }),
  },
  {
    title: 'GET /orders: a service token without orders:read is refused on the caller side',
    config: 'plain',
    request: asService('GET', '/orders', 'orders:write'),
    outcome: () => forbidden('insufficient_scope', 'caller', 'orders:read'),
  },
  {
    title: 'GET /orders: a token with no scope claim is refused on the caller side',
    config: 'plain',
    request: asService('GET', '/orders', undefined),
    outcome: () => forbidden('insufficient_scope', 'caller', 'orders:read'),
  },
  {
    title: 'GET /orders: scopes are exact strings (orders:readonly, Orders:Read do not count)',
    config: 'plain',
    request: asService('GET', '/orders', 'orders:readonly Orders:Read'),
    outcome: () => forbidden('insufficient_scope', 'caller', 'orders:read'),
  },
  {
    title: 'GET /orders: an on-behalf-of token without orders:read is refused on the user side',
    config: 'plain',
    request: forUser('GET', '/orders', 'profile'),
    outcome: () => forbidden('insufficient_scope', 'user', 'orders:read'),
  },
  {
    title: 'GET /orders over mTLS: the user side still decides for an on-behalf-of token',
    config: 'plain',
    request: forUser('GET', '/orders', 'profile', 'frontend'),
    outcome: () => forbidden('insufficient_scope', 'user', 'orders:read'),
  },
  // anyScopes
  {
    title: 'GET /any: one of the accepted scopes (b) is enough',
    config: 'plain',
    request: asService('GET', '/any', 'b'),
    outcome: () => accept({ caller: { id: 'svc-a', source: 'token' }, scopes: ['b'] }),
  },
  {
    title: 'GET /any: a user who granted a passes',
    config: 'plain',
    request: forUser('GET', '/any', 'a'),
    outcome: () => accept({ caller: { id: ID.frontend, source: 'token' }, user: 'alice', scopes: ['a'], actors: [ID.frontend] }),
  },
  {
    title: 'GET /any: none of the accepted scopes is refused with scope="a b"',
    config: 'plain',
    request: asService('GET', '/any', 'c'),
    outcome: () => forbidden('insufficient_scope', 'caller', 'a b'),
  },
  // rule.callers
  {
    title: 'GET /batch: a workload under spiffe://example.org/ns/batch/* passes',
    config: 'plain',
    request: asService('GET', '/batch', undefined, 'worker'),
    outcome: () => accept({ caller: { id: ID.worker, source: 'mtls' }, peer: fx.certs.worker }),
  },
  {
    title: 'GET /batch: /ns/batch-evil/sa/x does not match /ns/batch/* (segment boundary)',
    config: 'plain',
    request: asService('GET', '/batch', undefined, 'evil'),
    outcome: () => forbidden('caller_forbidden', 'caller'),
  },
  {
    title: 'GET /batch: another namespace is refused',
    config: 'plain',
    request: asService('GET', '/batch', undefined, 'frontend'),
    outcome: () => forbidden('caller_forbidden', 'caller'),
  },
  {
    title: 'GET /batch: a token-only caller (client id) is refused',
    config: 'plain',
    request: asService('GET', '/batch', undefined, undefined, 'batch-worker'),
    outcome: () => forbidden('caller_forbidden', 'caller'),
  },
  // onBehalfOf
  {
    title: 'POST /orders: a user who granted orders:write passes',
    config: 'plain',
    request: forUser('POST', '/orders', 'orders:write'),
    outcome: () => accept({ caller: { id: ID.frontend, source: 'token' }, user: 'alice', scopes: ['orders:write'], actors: [ID.frontend] }),
  },
  {
    title: 'POST /orders: a service-only token is refused (on_behalf_of_required, side user)',
    config: 'plain',
    request: asService('POST', '/orders', 'orders:write'),
    outcome: () => forbidden('on_behalf_of_required', 'user'),
  },
  {
    title: 'POST /orders: a user who did not grant orders:write is refused on the user side',
    config: 'plain',
    request: forUser('POST', '/orders', 'orders:read'),
    outcome: () => forbidden('insufficient_scope', 'user', 'orders:write'),
  },
  {
    title: 'GET /service-only: a service-only call passes',
    config: 'plain',
    request: asService('GET', '/service-only', undefined, 'frontend'),
    outcome: () => accept({ caller: { id: ID.frontend, source: 'mtls' }, peer: fx.certs.frontend }),
  },
  {
    title: 'GET /service-only: an on-behalf-of call (act) is refused (on_behalf_of_forbidden, side caller)',
    config: 'plain',
    request: forUser('GET', '/service-only', 'orders:read'),
    outcome: () => forbidden('on_behalf_of_forbidden', 'caller'),
  },
  {
    title: 'GET /service-only: client_id different from sub is a user call, refused',
    config: 'plain',
    request: async () => ({ path: '/service-only', token: await sign(fx.main, { sub: 'bob', client_id: 'web-app' }) }),
    outcome: () => forbidden('on_behalf_of_forbidden', 'caller'),
  },
  // callers allowance map
  {
    title: 'allowances: the frontend may read orders',
    config: 'allowances',
    request: asService('GET', '/orders', 'orders:read', 'frontend'),
    outcome: () => accept({ caller: { id: ID.frontend, source: 'mtls' }, scopes: ['orders:read'], peer: fx.certs.frontend }),
  },
  {
    title: "allowances: a user's orders:write does not let the read-only frontend write (caller_scope_exceeded)",
    config: 'allowances',
    request: forUser('POST', '/orders', 'orders:read orders:write', 'frontend'),
    outcome: () => forbidden('caller_scope_exceeded', 'caller', 'orders:write'),
  },
  {
    title: 'allowances: the same ceiling holds when the token names the frontend as actor (no certificate)',
    config: 'allowances',
    request: forUser('POST', '/orders', 'orders:read orders:write'),
    outcome: () => forbidden('caller_scope_exceeded', 'caller', 'orders:write'),
  },
  {
    title: 'allowances: another web workload gets the broader spiffe://example.org/ns/web/* allowance',
    config: 'allowances',
    request: forUser('POST', '/orders', 'orders:read orders:write', 'adminUi', ID.adminUi),
    outcome: () =>
      accept({
        caller: { id: ID.adminUi, source: 'mtls' },
        user: 'alice',
        scopes: scopes('orders:read orders:write'),
        actors: [ID.adminUi],
        peer: fx.certs.adminUi,
      }),
  },
  {
    title: 'allowances: a batch workload may write on behalf of a user',
    config: 'allowances',
    request: forUser('POST', '/orders', 'orders:write', 'worker', ID.worker),
    outcome: () => accept({ caller: { id: ID.worker, source: 'mtls' }, user: 'alice', scopes: ['orders:write'], actors: [ID.worker], peer: fx.certs.worker }),
  },
  {
    title: 'allowances: an unlisted workload is refused on every route (caller_forbidden)',
    config: 'allowances',
    request: asService('GET', '/whoami', 'orders:read', 'stranger'),
    outcome: () => forbidden('caller_forbidden', 'caller'),
  },
  {
    title: 'allowances: /ns/batch-evil/sa/x is not covered by spiffe://example.org/ns/batch/*',
    config: 'allowances',
    request: asService('GET', '/whoami', 'orders:read', 'evil'),
    outcome: () => forbidden('caller_forbidden', 'caller'),
  },
  {
    title: 'allowances: a listed client id (token only) may read',
    config: 'allowances',
    request: asService('GET', '/orders', 'orders:read', undefined, 'reporting-client'),
    outcome: () => accept({ caller: { id: 'reporting-client', source: 'token' }, scopes: ['orders:read'] }),
  },
  {
    title: 'allowances: an unlisted client id (token only) is refused',
    config: 'allowances',
    request: asService('GET', '/whoami', 'orders:read', undefined, 'unknown-client'),
    outcome: () => forbidden('caller_forbidden', 'caller'),
  },
  {
    title: "allowances: anyScopes must be met within the caller's allowance too",
    config: 'allowances',
    request: asService('GET', '/any', 'a', undefined, 'reporting-client'),
    outcome: () => forbidden('caller_scope_exceeded', 'caller', 'a b'),
  },
]

describe.each(adapters)('$name: authorization', (adapter) => {
  const apps = new Map<Config, RunningApp>()
  beforeAll(async () => {
    for (const [config, options] of Object.entries(CONFIGS) as Array<[Config, () => CallsignOptions]>) {
      apps.set(config, await fx.start(adapter, options()))
    }
  })

  for (const { title, config, request, outcome } of SCENARIOS)
    it(title, async () => {
      expectOutcome(await fx.call(apps.get(config)!, await request()), outcome())
    })
})
