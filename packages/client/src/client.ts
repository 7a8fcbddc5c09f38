/**
 * `createClient`: the two halves joined. Options are checked now (a `TypeError` naming the
 * option); the DPoP key (an async WebCrypto import or generation) and the token side are made on
 * first use or by `ready()`, so construction stays synchronous.
 */
import { createClientIdentity, presentedToken, type AuthContext, type ClientIdentity, type ClientTlsOptions } from '@callsign/core'
import type { IssuedToken, SubjectToken, TokenRequest, TokenSource } from './contracts.js'
import { createConnections, type Connections } from './connections.js'
import { createDpopKey } from './dpop-key.js'
import type { ClientEvent, ClientEventHook } from './events.js'
import { createServiceClient, type ServiceClient } from './service.js'
import { resolveServices, type ServiceOptions } from './service-options.js'
import { fail, resolveTokenOptions, TOKEN_OPTION_KEYS, type ClientTokenOptions, type TokenOptions } from './token-options.js'
import { createTokenSource } from './tokens.js'

/** Options of {@link createClient}. */
export interface ClientOptions extends ClientTokenOptions {
  /** The workload certificate, presented to the token endpoint and to services; `{ path }` files are re-read when they rotate. */
  identity?: ClientTlsOptions
  /** The services this client calls, by name. */
  services: Readonly<Record<string, ServiceOptions>>
  /** Token requests, refreshes, failures, retries and certificate reloads (never a token or key). */
  onEvent?: ClientEventHook
}

/** A client: one per calling service. */
export interface CallsignClient {
  /** The service named `name` in `services` (a `TypeError` for another name). */
  service(name: string): ServiceClient
  /** Resolves once the DPoP key (when `dpop`) is ready; for a health check at start, make a call. */
  ready(): Promise<void>
  /** Stop background refreshes and close every connection. */
  close(): Promise<void>
}

const KNOWN_KEYS: readonly string[] = [...TOKEN_OPTION_KEYS, 'services', 'onEvent']

function checkKeys(options: Record<string, unknown>): void {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) fail('options', 'must be an object')
  for (const key of Object.keys(options)) if (!KNOWN_KEYS.includes(key)) fail(key, `is not a known option (known: ${KNOWN_KEYS.join(', ')})`)
  if (options.services === undefined) fail('services', 'is required: { <name>: { url, resource?, scopes?, spiffeId? } }')
  if (options.onEvent !== undefined && typeof options.onEvent !== 'function') fail('onEvent', 'must be a function (event) => void')
}

/** The hook, called safely: a throwing hook never breaks a call. */
function safeHook(hook: ClientEventHook | undefined): ClientEventHook {
  return (event: ClientEvent) => {
    try {
      hook?.(event)
    } catch {
      // Observability must not change what a call does.
    }
  }
}

/** The subject token of an auth context Callsign verified; `undefined` for anything else. */
const subjectOf = (onBehalfOf: unknown): SubjectToken | undefined =>
  typeof onBehalfOf === 'object' && onBehalfOf !== null ? presentedToken(onBehalfOf as AuthContext) : undefined

function watchIdentity(identity: ClientIdentity, emit: ClientEventHook): void {
  identity.onReload = () => emit({ type: 'identity_reload', time: Date.now() })
  identity.onReloadFailure = (reason) => emit({ type: 'identity_reload_failure', time: Date.now(), reason })
}

/**
 * The token side, made once the DPoP key exists. `invalidate` before then has nothing to drop:
 * no token was handed out.
 */
function lazyTokens(make: () => Promise<TokenSource>): TokenSource & { ready(): Promise<TokenSource> } {
  let made: Promise<TokenSource> | undefined
  let source: TokenSource | undefined
  const ready = (): Promise<TokenSource> =>
    (made ??= make().then((value) => {
      source = value
      return value
    }))
  return {
    ready,
    get: async (request: TokenRequest): Promise<IssuedToken> => (await ready()).get(request),
    invalidate: (request, token) => source?.invalidate(request, token),
    close: async () => {
      if (made) await (await made.catch(() => undefined))?.close()
    },
  }
}

/**
 * The calling side of Callsign.
 * @throws TypeError naming the option, e.g. `Callsign: "services.orders.url" must be an https URL ...`.
 * @example
 * const client = createClient({ issuer, clientId, auth: 'tls_client_auth', identity, dpop: true,
 *   services: { orders: { url: 'https://orders.internal', scopes: ['orders:read'], spiffeId: 'spiffe://example.org/ns/orders/sa/orders' } } })
 * const response = await client.service('orders').fetch('/orders', { onBehalfOf: req.auth })
 */
export function createClient(options: ClientOptions): CallsignClient {
  const raw = options as unknown as Record<string, unknown>
  checkKeys(raw)
  const tokenOptions: TokenOptions = resolveTokenOptions(raw)
  const services = resolveServices(raw.services)
  const emit = safeHook(options.onEvent)
  const identity = options.identity === undefined ? undefined : createClientIdentity(options.identity, { option: 'identity' })
  if (identity) watchIdentity(identity, emit)
  // Started now (validated above, so it does not fail); the first call awaits it.
  const dpop = tokenOptions.dpop
    ? createDpopKey(options.dpop === true ? true : (options.dpop as Exclude<ClientOptions['dpop'], boolean | undefined>))
    : undefined
  dpop?.catch(() => {})
  const tokens = lazyTokens(async () => createTokenSource({ options: tokenOptions, identity, dpop: await dpop, emit }))
  const connections: Connections = createConnections({ identity, services: services.values() })
  const clients = new Map<string, ServiceClient>()
  for (const [name, service] of services) {
    clients.set(name, createServiceClient({ name, service, tokens, dpop, connections, emit, subjectOf }))
  }
  return {
    service(name) {
      const client = clients.get(name)
      if (!client) throw new TypeError(`Callsign: no service "${name}" in services (known: ${[...clients.keys()].join(', ')})`)
      return client
    },
    async ready() {
      await tokens.ready()
    },
    async close() {
      await Promise.all([tokens.close(), connections.close()])
    },
  }
}
