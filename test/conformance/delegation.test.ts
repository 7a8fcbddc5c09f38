/**
 * Caller consistency and delegation conformance: a token that names its calling workload
 * (`act.sub`, a SPIFFE `client_id`, or a `client_id` mapped through `clientIds`) must come over
 * that workload's certificate; RFC 8693 delegation chains (`act`) within `delegation.maxDepth`,
 * `delegation.actors` and per-hop `delegation.hops`; `may_act` (RFC 8693 §4.4). Identical in
 * Express, Fastify and Koa.
 */
import { afterAll, beforeAll, describe, it } from 'vitest'
import type { CallsignOptions } from '@callsign/core'
import { actorChain, createDpopKey, type DpopKey } from '@callsign/testing'
import { adapters, type RunningApp } from '../support/adapters.js'
import type { CallOptions } from '../support/client.js'
import { dpopRequest, invalidTokenIn } from '../support/dpop.js'
import { accept, expectOutcome, forbidden, invalidToken, refuse, type Outcome } from '../support/expectations.js'
import { createFixture, ID, quiet, sign, type Certs, type Fixture } from '../support/fixtures.js'

let fx: Fixture
let dpopKey: DpopKey
beforeAll(async () => {
  ;[fx, dpopKey] = await Promise.all([createFixture(), createDpopKey('ES256')])
})
afterAll(() => fx?.close())

const GATEWAY = 'spiffe://example.org/ns/edge/sa/gateway'
const EDGE_CACHE = 'spiffe://example.org/ns/edge/sa/cache'

type Config = 'plain' | 'clientIds' | 'consistencyOff' | 'maxDepth2' | 'actors' | 'hops'
const CONFIGS: Record<Config, () => CallsignOptions> = {
  plain: () => ({ issuers: fx.issuerOptions.main, logger: quiet }),
  clientIds: () => ({ issuers: fx.issuerOptions.main, logger: quiet, clientIds: { 'reporting-client': ID.frontend } }),
  consistencyOff: () => ({ issuers: fx.issuerOptions.main, logger: quiet, callerConsistency: 'off' }),
  maxDepth2: () => ({ issuers: fx.issuerOptions.main, logger: quiet, delegation: { maxDepth: 2 } }),
  actors: () => ({
    issuers: fx.issuerOptions.main,
    logger: quiet,
    delegation: { actors: ['spiffe://example.org/ns/web/*', 'spiffe://example.org/ns/edge/*'] },
  }),
  hops: () => ({
    issuers: fx.issuerOptions.main,
    logger: quiet,
    delegation: { hops: [[ID.frontend, ID.adminUi], ['spiffe://example.org/ns/edge/*']] },
  }),
}

interface Scenario {
  title: string
  config: Config
  request: (app: RunningApp) => Promise<CallOptions>
  outcome: () => Outcome
}

/** A token for `claims` over the certificate `cert`, if given. */
const over = (claims: Record<string, unknown>, cert?: keyof Certs) => async (): Promise<CallOptions> => ({
  ...(cert ? { cert: fx.certs[cert] } : {}),
  token: await sign(fx.main, claims),
})
/** On behalf of alice through `actors`, nearest first. */
const chain = (actors: string[], cert?: keyof Certs, extra: Record<string, unknown> = {}) => over({ sub: 'alice', act: actorChain(...actors), ...extra }, cert)
/** What an accepted on-behalf-of call through `actors` looks like (caller from `cert` when given). */
const viaChain = (actors: string[], cert?: keyof Certs): Outcome =>
  accept({
    caller: cert ? { id: fx.certs[cert].spiffeId!, source: 'mtls' } : { id: actors[0]!, source: 'token' },
    user: 'alice',
    actors,
    ...(cert ? { peer: fx.certs[cert] } : {}),
  })
const callerForbidden = (): Outcome => forbidden('caller_forbidden', 'caller')

const CALLER_CONSISTENCY: Scenario[] = [
  {
    title: 'mTLS peer frontend + token acting as the batch worker (act.sub): 401 invalid_token',
    config: 'plain',
    request: chain([ID.worker], 'frontend'),
    outcome: () => invalidToken(),
  },
  {
    title: 'mTLS peer frontend + token acting as the frontend: accepted',
    config: 'plain',
    request: chain([ID.frontend], 'frontend'),
    outcome: () => viaChain([ID.frontend], 'frontend'),
  },
  {
    title: 'only the nearest actor is compared: peer frontend, chain [frontend, worker] accepted',
    config: 'plain',
    request: chain([ID.frontend, ID.worker], 'frontend'),
    outcome: () => viaChain([ID.frontend, ID.worker], 'frontend'),
  },
  {
    title: 'peer worker, chain [frontend, worker]: the nearest actor is the frontend: 401',
    config: 'plain',
    request: chain([ID.frontend, ID.worker], 'worker'),
    outcome: () => invalidToken(),
  },
  {
    title: 'token whose client_id is the SPIFFE ID of another workload: 401 invalid_token',
    config: 'plain',
    request: over({ sub: ID.worker, client_id: ID.worker }, 'frontend'),
    outcome: () => invalidToken(),
  },
  {
    title: "token whose client_id is the peer's own SPIFFE ID: accepted",
    config: 'plain',
    request: over({ sub: ID.frontend, client_id: ID.frontend }, 'frontend'),
    outcome: () => accept({ caller: { id: ID.frontend, source: 'mtls' }, peer: fx.certs.frontend }),
  },
  {
    title: 'a same-ID certificate with another key is the same workload: accepted',
    config: 'plain',
    request: over({ sub: ID.frontend, client_id: ID.frontend }, 'frontendOtherKey'),
    outcome: () => accept({ caller: { id: ID.frontend, source: 'mtls' }, peer: fx.certs.frontendOtherKey }),
  },
  {
    title: 'a plain client_id that is not mapped names no workload: accepted over any certificate',
    config: 'plain',
    request: over({ sub: 'reporting-client', client_id: 'reporting-client' }, 'worker'),
    outcome: () => accept({ caller: { id: ID.worker, source: 'mtls' }, peer: fx.certs.worker }),
  },
  {
    title: 'an actor that is not a SPIFFE ID is not compared with the certificate',
    config: 'plain',
    request: chain(['api-gateway'], 'frontend'),
    outcome: () => viaChain(['api-gateway'], 'frontend'),
  },
  {
    title: 'without a certificate there is nothing to compare: acting as the worker, caller from the token',
    config: 'plain',
    request: chain([ID.worker]),
    outcome: () => viaChain([ID.worker]),
  },
  {
    title: 'a DPoP request relayed by another workload: 401 invalid_token in the DPoP challenge',
    config: 'plain',
    request: async (app) =>
      dpopRequest(app, dpopKey, await sign(fx.main, { sub: 'alice', act: actorChain(ID.worker) }, { dpopJkt: dpopKey.jkt }), { cert: fx.certs.frontend }),
    outcome: () => invalidTokenIn('DPoP'),
  },
  {
    title: 'clientIds: a mapped client id presented by another workload: 401 invalid_token',
    config: 'clientIds',
    request: over({ sub: 'reporting-client', client_id: 'reporting-client' }, 'worker'),
    outcome: () => invalidToken(),
  },
  {
    title: 'clientIds: a mapped client id presented by its workload: accepted',
    config: 'clientIds',
    request: over({ sub: 'reporting-client', client_id: 'reporting-client' }, 'frontend'),
    outcome: () => accept({ caller: { id: ID.frontend, source: 'mtls' }, peer: fx.certs.frontend }),
  },
  {
    title: 'clientIds: a mapped client id without a certificate: accepted, caller from the token',
    config: 'clientIds',
    request: over({ sub: 'reporting-client', client_id: 'reporting-client' }),
    outcome: () => accept({ caller: { id: 'reporting-client', source: 'token' } }),
  },
  {
    title: 'clientIds: an unmapped plain client id is not compared',
    config: 'clientIds',
    request: over({ sub: 'other-client', client_id: 'other-client' }, 'worker'),
    outcome: () => accept({ caller: { id: ID.worker, source: 'mtls' }, peer: fx.certs.worker }),
  },
  {
    title: 'callerConsistency off: peer frontend + token acting as the worker is accepted',
    config: 'consistencyOff',
    request: chain([ID.worker], 'frontend'),
    outcome: () => viaChain([ID.worker], 'frontend'),
  },
  {
    title: 'callerConsistency off: peer frontend + client_id of the worker is accepted',
    config: 'consistencyOff',
    request: over({ sub: ID.worker, client_id: ID.worker }, 'frontend'),
    outcome: () => accept({ caller: { id: ID.frontend, source: 'mtls' }, peer: fx.certs.frontend }),
  },
]

const DELEGATION: Scenario[] = [
  // depth
  {
    title: 'one-hop chain: accepted, actors [frontend]',
    config: 'plain',
    request: chain([ID.frontend]),
    outcome: () => viaChain([ID.frontend]),
  },
  {
    title: 'two-hop chain: accepted, actors nearest first',
    config: 'plain',
    request: chain([ID.frontend, GATEWAY]),
    outcome: () => viaChain([ID.frontend, GATEWAY]),
  },
  {
    title: 'three-hop chain: accepted, actors nearest first',
    config: 'plain',
    request: chain([ID.worker, ID.frontend, GATEWAY]),
    outcome: () => viaChain([ID.worker, ID.frontend, GATEWAY]),
  },
  {
    title: "three-hop chain over the nearest actor's certificate: caller from mTLS, actors kept",
    config: 'plain',
    request: chain([ID.worker, ID.frontend, GATEWAY], 'worker'),
    outcome: () => viaChain([ID.worker, ID.frontend, GATEWAY], 'worker'),
  },
  {
    title: 'four hops: the default maxDepth (4) still accepts',
    config: 'plain',
    request: chain([ID.worker, ID.frontend, GATEWAY, EDGE_CACHE]),
    outcome: () => viaChain([ID.worker, ID.frontend, GATEWAY, EDGE_CACHE]),
  },
  {
    title: 'five hops: beyond the default maxDepth (4): 401 invalid_token',
    config: 'plain',
    request: chain([ID.worker, ID.frontend, GATEWAY, EDGE_CACHE, ID.adminUi]),
    outcome: () => invalidToken(),
  },
  {
    title: 'maxDepth 2: a two-hop chain is accepted',
    config: 'maxDepth2',
    request: chain([ID.frontend, GATEWAY]),
    outcome: () => viaChain([ID.frontend, GATEWAY]),
  },
  {
    title: 'maxDepth 2: a three-hop chain is refused (401 invalid_token)',
    config: 'maxDepth2',
    request: chain([ID.worker, ID.frontend, GATEWAY]),
    outcome: () => invalidToken(),
  },
  {
    title: 'maxDepth 2: a three-hop chain over DPoP: invalid_token in the DPoP challenge',
    config: 'maxDepth2',
    request: async (app) =>
      dpopRequest(app, dpopKey, await sign(fx.main, { sub: 'alice', act: actorChain(ID.worker, ID.frontend, GATEWAY) }, { dpopJkt: dpopKey.jkt })),
    outcome: () => invalidTokenIn('DPoP'),
  },
  // delegation.actors
  {
    title: 'actors: a chain within the allowed patterns is accepted',
    config: 'actors',
    request: chain([ID.frontend, GATEWAY]),
    outcome: () => viaChain([ID.frontend, GATEWAY]),
  },
  {
    title: 'actors: an unknown earlier actor is refused (403 caller_forbidden, caller side)',
    config: 'actors',
    request: chain([ID.frontend, ID.stranger]),
    outcome: () => callerForbidden(),
  },
  {
    title: 'actors: an unknown nearest actor is refused',
    config: 'actors',
    request: chain([ID.stranger]),
    outcome: () => callerForbidden(),
  },
  {
    title: 'actors: a look-alike namespace (ns/web-evil) does not match ns/web/*',
    config: 'actors',
    request: chain(['spiffe://example.org/ns/web-evil/sa/x']),
    outcome: () => callerForbidden(),
  },
  {
    title: 'actors: an actor that is not a SPIFFE ID matches no SPIFFE pattern',
    config: 'actors',
    request: chain([ID.frontend, 'api-gateway']),
    outcome: () => callerForbidden(),
  },
  {
    title: 'actors: a service token without a chain is not affected',
    config: 'actors',
    request: over({ sub: 'svc-a', client_id: 'svc-a' }),
    outcome: () => accept({ caller: { id: 'svc-a', source: 'token' } }),
  },
  {
    title: 'actors: an unknown actor over DPoP: 403 with the error in the DPoP challenge',
    config: 'actors',
    request: async (app) =>
      dpopRequest(app, dpopKey, await sign(fx.main, { sub: 'alice', act: actorChain(ID.frontend, ID.stranger) }, { dpopJkt: dpopKey.jkt })),
    outcome: () => refuse({ status: 403, code: 'caller_forbidden', side: 'caller', errorScheme: 'DPoP' }),
  },
  // delegation.hops
  {
    title: 'hops: [frontend, gateway] in the right order is accepted',
    config: 'hops',
    request: chain([ID.frontend, GATEWAY]),
    outcome: () => viaChain([ID.frontend, GATEWAY]),
  },
  {
    title: 'hops: another allowed first hop (admin-ui) is accepted',
    config: 'hops',
    request: chain([ID.adminUi, EDGE_CACHE]),
    outcome: () => viaChain([ID.adminUi, EDGE_CACHE]),
  },
  {
    title: 'hops: a chain shorter than hops is accepted',
    config: 'hops',
    request: chain([ID.frontend]),
    outcome: () => viaChain([ID.frontend]),
  },
  {
    title: 'hops: the same actors swapped [gateway, frontend] are refused (403 caller_forbidden)',
    config: 'hops',
    request: chain([GATEWAY, ID.frontend]),
    outcome: () => callerForbidden(),
  },
  {
    title: 'hops: a chain longer than hops is refused',
    config: 'hops',
    request: chain([ID.frontend, GATEWAY, EDGE_CACHE]),
    outcome: () => callerForbidden(),
  },
  {
    title: 'hops: a first hop outside hops[0] is refused',
    config: 'hops',
    request: chain([ID.worker, GATEWAY]),
    outcome: () => callerForbidden(),
  },
  // may_act (RFC 8693 §4.4)
  {
    title: 'may_act naming the actor: accepted',
    config: 'plain',
    request: chain([ID.frontend], undefined, { may_act: { sub: ID.frontend } }),
    outcome: () => viaChain([ID.frontend]),
  },
  {
    title: 'may_act naming the actor, over its certificate: accepted',
    config: 'plain',
    request: chain([ID.frontend], 'frontend', { may_act: { sub: ID.frontend } }),
    outcome: () => viaChain([ID.frontend], 'frontend'),
  },
  {
    title: 'may_act naming another actor: 403 caller_forbidden',
    config: 'plain',
    request: chain([ID.frontend], undefined, { may_act: { sub: ID.worker } }),
    outcome: () => callerForbidden(),
  },
  {
    title: 'may_act naming an earlier actor of the chain, not the nearest: 403 caller_forbidden',
    config: 'plain',
    request: chain([ID.frontend, GATEWAY], undefined, { may_act: { sub: GATEWAY } }),
    outcome: () => callerForbidden(),
  },
  {
    title: 'may_act without act: the client (over its certificate) is the acting party; allowed',
    config: 'plain',
    request: over({ sub: 'alice', client_id: ID.frontend, may_act: { sub: ID.frontend } }, 'frontend'),
    outcome: () => accept({ caller: { id: ID.frontend, source: 'mtls' }, user: 'alice', peer: fx.certs.frontend }),
  },
  {
    title: 'may_act without act naming another party than the client: 403 caller_forbidden',
    config: 'plain',
    request: over({ sub: 'alice', client_id: ID.frontend, may_act: { sub: ID.worker } }, 'frontend'),
    outcome: () => callerForbidden(),
  },
  {
    title: "may_act naming the token's own client (mapped by clientIds to the peer): accepted over mTLS as without it",
    config: 'clientIds',
    request: over({ sub: 'alice', client_id: 'reporting-client', may_act: { sub: 'reporting-client' } }, 'frontend'),
    outcome: () => accept({ caller: { id: ID.frontend, source: 'mtls' }, user: 'alice', peer: fx.certs.frontend }),
  },
  {
    title: "may_act naming the token's own client, without a certificate: accepted",
    config: 'clientIds',
    request: over({ sub: 'alice', client_id: 'reporting-client', may_act: { sub: 'reporting-client' } }),
    outcome: () => accept({ caller: { id: 'reporting-client', source: 'token' }, user: 'alice' }),
  },
  {
    title: 'may_act that is not an object with a sub: 401 invalid_token',
    config: 'plain',
    request: chain([ID.frontend], undefined, { may_act: ID.frontend }),
    outcome: () => invalidToken(),
  },
]

describe.each(adapters)('$name: caller consistency and delegation', (adapter) => {
  const apps = {} as Record<Config, RunningApp>
  beforeAll(async () => {
    const started = await Promise.all(Object.entries(CONFIGS).map(async ([config, options]) => [config, await fx.start(adapter, options())] as const))
    for (const [config, app] of started) apps[config as Config] = app
  })

  for (const [name, table] of [
    ['caller consistency', CALLER_CONSISTENCY],
    ['delegation chains', DELEGATION],
  ] as const) {
    describe(name, () => {
      for (const { title, config, request, outcome } of table)
        it(title, async () => {
          expectOutcome(await fx.call(apps[config], await request(apps[config])), outcome())
        })
    })
  }
})
