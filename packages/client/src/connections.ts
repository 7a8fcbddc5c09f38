/**
 * The client's connections to services: one undici `Agent` per generation of the workload
 * identity, presenting its certificate and trusting its `ca`; a rotated identity gets a new agent
 * (new connections use the new pair) and the previous one is closed gracefully (requests already
 * sent on it finish). Every new TLS connection to a service with `spiffeId` is checked
 * (server-identity.ts) before a request is written on it.
 */
import type { Socket } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { Agent, buildConnector, Dispatcher, Pool } from 'undici'
import { ClientError } from './errors.js'
import { createServerIdentityCheck, originOfConnection, type ServerIdentityCheck } from './server-identity.js'
import type { ResolvedService } from './service-options.js'

/** The workload identity as the connections read it (core's `ClientIdentity` fits). */
export interface IdentitySource {
  /** The current pair; `generation` grows by one with each rotation applied. */
  current(): Promise<{ readonly cert: string; readonly key: string; readonly ca: string | undefined; readonly generation: number }>
}

/** Settings of {@link createConnections}. */
export interface ConnectionsSettings {
  /** The workload certificate presented to services. Absent: no client certificate, Node's root CAs. */
  readonly identity: IdentitySource | undefined
  /** The services, for their server identity checks. */
  readonly services: Iterable<ResolvedService>
}

/** The connections a client's calls go out on. */
export interface Connections {
  /**
   * Dispatches each request on the agent of the newest identity generation applied by
   * {@link Connections.refresh}. Not to be closed by callers: {@link Connections.close} does it.
   */
  readonly dispatcher: Dispatcher
  /** Apply a rotated identity, if there is one (before a call; the identity re-reads files at most once per second). */
  refresh(): Promise<void>
  /** Close every connection (gracefully: requests in flight finish). */
  close(): Promise<void>
}

/** A connector that checks the server's identity on each new connection to an origin that has an expectation. */
function checkedConnector(tls: { cert: string; key: string; ca?: string } | undefined, check: ServerIdentityCheck): buildConnector.connector {
  const connect = buildConnector({ ...tls })
  // No TLS session resumption where the identity is checked: a resumed session shows no peer
  // certificate (and undici shares sessions between ports of one host).
  const connectChecked = buildConnector({ ...tls, maxCachedSessions: 0 })
  return (options, callback) => {
    const expectation = options.protocol === 'https:' ? check.expectationFor(originOfConnection(options)) : undefined
    if (expectation === undefined) return connect(options, callback)
    connectChecked(options, (error, socket) => {
      if (error !== null) return callback(error, null)
      try {
        check.check(expectation, (socket as TLSSocket).getPeerX509Certificate())
      } catch (refusal) {
        ;(socket as Socket).destroy()
        return callback(refusal as Error, null)
      }
      callback(null, socket)
    })
  }
}

/**
 * An agent whose pool for a service's origin opens at most that service's `maxConnections`
 * (the smallest, when services share an origin); other origins keep undici's default.
 */
function cappedAgent(connect: buildConnector.connector, services: readonly ResolvedService[]): Agent {
  const caps = new Map<string, number>()
  for (const service of services) caps.set(service.origin, Math.min(caps.get(service.origin) ?? Infinity, service.maxConnections))
  return new Agent({
    connect,
    factory: (origin, options) => new Pool(origin, { ...options, connections: caps.get(new URL(String(origin)).origin) ?? null }),
  })
}

/** Forwards every request to the current agent, read at dispatch time. */
class CurrentAgentDispatcher extends Dispatcher {
  readonly #current: () => Dispatcher
  constructor(current: () => Dispatcher) {
    super()
    this.#current = current
  }
  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    return this.#current().dispatch(options, handler)
  }
  // The connections belong to the client: closing a dispatcher handed out does not close them.
  override close(callback: () => void): void
  override close(): Promise<void>
  override close(callback?: () => void): Promise<void> | void {
    if (callback) return queueMicrotask(callback)
    return Promise.resolve()
  }
  override destroy(err: Error | null, callback: () => void): void
  override destroy(callback: () => void): void
  override destroy(err: Error | null): Promise<void>
  override destroy(): Promise<void>
  override destroy(...args: unknown[]): Promise<void> | void {
    const callback = args.find((arg) => typeof arg === 'function') as (() => void) | undefined
    if (callback) return queueMicrotask(callback)
    return Promise.resolve()
  }
}

/**
 * Create the connections. With an identity, its first pair is applied by the first
 * {@link Connections.refresh}; calls made before any refresh go out without a certificate, so
 * the call side refreshes before every call.
 *
 * @example
 * const connections = createConnections({ identity, services: resolveServices(options.services).values() })
 */
export function createConnections(settings: ConnectionsSettings): Connections {
  const services = [...settings.services]
  const check = createServerIdentityCheck(services)
  const identity = settings.identity
  let agent = cappedAgent(checkedConnector(undefined, check), services)
  let generation: number | undefined
  let closed = false
  const retired = new Set<Promise<void>>()

  const retire = (old: Agent): void => {
    const closing = old.close().catch(() => {})
    retired.add(closing)
    void closing.then(() => retired.delete(closing))
  }

  return {
    dispatcher: new CurrentAgentDispatcher(() => agent),
    async refresh() {
      if (identity === undefined) return
      let material
      try {
        material = await identity.current()
      } catch (error) {
        throw new ClientError('identity_unavailable', 'the workload certificate could not be loaded', { cause: error })
      }
      // Compared again after the await: of concurrent refreshes, only the first applies a generation.
      if (closed || material.generation === generation) return
      const old = agent
      const tls = { cert: material.cert, key: material.key, ...(material.ca === undefined ? {} : { ca: material.ca }) }
      agent = cappedAgent(checkedConnector(tls, check), services)
      generation = material.generation
      retire(old)
    },
    async close() {
      closed = true
      retire(agent)
      await Promise.all(retired)
    },
  }
}
