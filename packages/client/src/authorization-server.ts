/**
 * The authorization server as the token side reaches it, through oauth4webapi: discovery (RFC 8414
 * metadata, OpenID discovery as fallback; cached, backed off after a failure), the client
 * credentials grant (RFC 6749 §4.4) and token exchange (RFC 8693) with resource indicators
 * (RFC 8707), client authentication, DPoP proofs with one `use_dpop_nonce` retry, and the
 * transport: undici with the workload certificate (one `Agent` per identity generation), a
 * timeout per request, and http only on loopback.
 */
import * as oauth from 'oauth4webapi'
import { Agent, fetch as undiciFetch } from 'undici'
import { importPKCS8 } from 'jose'
import { DEFAULT_BACKOFF, recordFailure, type BackoffPolicy, type FailureState } from './backoff.js'
import type { DpopKey } from './contracts.js'
import { AuthorizationServerUnavailableError } from './errors.js'
import type { ClientEvent } from './events.js'
import type { TokenOptions } from './token-options.js'

/** The part of the workload identity the token side uses (core's `ClientIdentity` has it). */
export interface TokenIdentity {
  current(): Promise<IdentityMaterial>
}

/** The members of core's `ClientIdentityMaterial` the token side reads. */
export interface IdentityMaterial {
  readonly cert: string
  readonly key: string
  readonly ca: string | undefined
  /** `x5t#S256` of the certificate. */
  readonly thumbprint: string
  /** +1 per applied rotation. */
  readonly generation: number
}

/** One token request. */
export interface TokenGrant {
  readonly service: string
  readonly resource: string
  readonly scopes: readonly string[]
  /** RFC 8693 `audience` values, sent beside `resource` (empty: none). */
  readonly audience: readonly string[]
  /** Present: RFC 8693 token exchange of this access token. */
  readonly subjectToken?: string
}

/** The authorization server of one token source. */
export interface AuthorizationServer {
  /** A token endpoint answer for `grant`, over the connection of `material` (the certificate the token may be bound to). */
  requestToken(grant: TokenGrant, material: IdentityMaterial | undefined): Promise<oauth.TokenEndpointResponse>
  /** Close the connections. */
  close(): Promise<void>
}

/** RFC 8693 §2.1 grant type and §3 token type. */
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange'
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token'
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]'])

/** What the steps of one authorization server share. */
interface ServerContext {
  readonly options: TokenOptions
  readonly client: oauth.Client
  readonly transport: Transport
  /** One handle: oauth4webapi remembers the server's DPoP-Nonce per origin in it (RFC 9449 §8). */
  readonly dpopHandle: oauth.DPoPHandle | undefined
}

/** Create the authorization server of a token source. */
export function createAuthorizationServer(settings: {
  options: TokenOptions
  identity: TokenIdentity | undefined
  dpop: DpopKey | undefined
  emit: (event: Omit<ClientEvent, 'time'>) => void
  now: () => number
  backoff?: BackoffPolicy
}): AuthorizationServer {
  const { options, dpop, emit, now } = settings
  const client: oauth.Client = { client_id: options.clientId, use_mtls_endpoint_aliases: settings.identity !== undefined }
  const context: ServerContext = {
    options,
    client,
    transport: new Transport(options.issuerCa),
    dpopHandle: dpop ? oauth.DPoP(client, dpop.keyPair) : undefined,
  }
  const discover = createDiscovery(context, now, settings.backoff ?? DEFAULT_BACKOFF)
  const clientAuth = createClientAuth(options)
  const send = async (grant: TokenGrant, material: IdentityMaterial | undefined): Promise<oauth.TokenEndpointResponse> => {
    const as = await discover(material)
    return grantRequest(context, { as, auth: await clientAuth() }, grant, material)
  }
  return {
    async requestToken(grant, material) {
      const response = await withNonceRetry(
        context.dpopHandle,
        () => send(grant, material),
        () => {
          emit({ type: 'retry', reason: 'use_dpop_nonce', service: grant.service, grant: grantOf(grant), binding: 'dpop' })
        },
      )
      if (dpop && response.token_type !== 'dpop') {
        // A bearer token where a DPoP-bound one was asked for: sending it would silently drop the sender constraint.
        throw new AuthorizationServerUnavailableError({
          reason: 'invalid_response',
          service: grant.service,
          message: 'the authorization server answered a Bearer token to a DPoP token request',
        })
      }
      return response
    },
    close: () => context.transport.close(),
  }
}

/** `fetch` options for one request: the connection of `material`, the timeout's signal. */
function httpOptions(context: ServerContext, material: IdentityMaterial | undefined, signal: AbortSignal) {
  return {
    [oauth.customFetch]: context.transport.fetchFor(material),
    [oauth.allowInsecureRequests]: context.options.insecure,
    signal,
  }
}

/**
 * Discovery with backoff: the metadata is read once and kept; concurrent callers share one
 * request; after a failure, callers get that error at once until the backoff ends.
 */
function createDiscovery(
  context: ServerContext,
  now: () => number,
  backoff: BackoffPolicy,
): (material: IdentityMaterial | undefined) => Promise<oauth.AuthorizationServer> {
  let metadata: oauth.AuthorizationServer | undefined
  let discovering: Promise<oauth.AuthorizationServer> | undefined
  let failure: FailureState | undefined
  return (material) => {
    if (metadata) return Promise.resolve(metadata)
    if (discovering) return discovering
    if (failure && now() < failure.until) return Promise.reject(failure.error)
    discovering = fetchMetadata(context, material).then(
      (found) => {
        metadata = found
        failure = undefined
        return found
      },
      (error: unknown) => {
        failure = recordFailure(backoff, failure, error, now())
        throw error
      },
    )
    void discovering.finally(() => (discovering = undefined)).catch(() => {})
    return discovering
  }
}

/** One discovery: RFC 8414 metadata, OpenID discovery when that is 404; its token endpoint checked. */
function fetchMetadata(context: ServerContext, material: IdentityMaterial | undefined): Promise<oauth.AuthorizationServer> {
  const { options, client } = context
  return withTimeout(options.timeout, async (signal) => {
    const request = (algorithm: 'oauth2' | 'oidc'): Promise<Response> =>
      oauth.discoveryRequest(options.issuer, { algorithm, ...httpOptions(context, material, signal) })
    let response = await request('oauth2')
    if (response.status === 404) {
      await response.body?.cancel()
      response = await request('oidc')
    }
    const found = await oauth.processDiscoveryResponse(options.issuer, response)
    checkEndpoint(found, client, options.insecure)
    return found
  })
}

/** One grant request: client credentials, or a token exchange when `grant` has a subject token. */
function grantRequest(
  context: ServerContext,
  server: { as: oauth.AuthorizationServer; auth: oauth.ClientAuth },
  grant: TokenGrant,
  material: IdentityMaterial | undefined,
): Promise<oauth.TokenEndpointResponse> {
  const { client, dpopHandle } = context
  const { as, auth } = server
  return withTimeout(context.options.timeout, async (signal) => {
    const requestOptions = { ...httpOptions(context, material, signal), ...(dpopHandle ? { DPoP: dpopHandle } : {}) }
    const parameters = new URLSearchParams({ resource: grant.resource })
    for (const audience of grant.audience) parameters.append('audience', audience)
    if (grant.scopes.length > 0) parameters.set('scope', grant.scopes.join(' '))
    if (grant.subjectToken === undefined) {
      const response = await oauth.clientCredentialsGrantRequest(as, client, auth, parameters, requestOptions)
      return oauth.processClientCredentialsResponse(as, client, response)
    }
    parameters.set('subject_token', grant.subjectToken)
    parameters.set('subject_token_type', ACCESS_TOKEN_TYPE)
    parameters.set('requested_token_type', ACCESS_TOKEN_TYPE)
    const response = await oauth.genericTokenEndpointRequest(as, client, auth, TOKEN_EXCHANGE, parameters, requestOptions)
    return oauth.processGenericTokenEndpointResponse(as, client, response)
  })
}

/** RFC 9449 §8: a refusal with `use_dpop_nonce` brought a nonce (the handle kept it): exactly one retry. */
async function withNonceRetry<T>(dpopHandle: oauth.DPoPHandle | undefined, send: () => Promise<T>, onRetry: () => void): Promise<T> {
  try {
    return await send()
  } catch (error) {
    if (!dpopHandle || !oauth.isDPoPNonceError(error)) throw error
    onRetry()
    return send()
  }
}

/** `client_credentials` or `token_exchange`, for events. */
export const grantOf = (grant: { subjectToken?: string }): 'client_credentials' | 'token_exchange' =>
  grant.subjectToken === undefined ? 'client_credentials' : 'token_exchange'

/** With an http issuer on loopback, the token endpoint must be on loopback too (no plain http elsewhere). */
function checkEndpoint(as: oauth.AuthorizationServer, client: oauth.Client, insecure: boolean): void {
  if (!insecure) return
  const aliases = client.use_mtls_endpoint_aliases ? as.mtls_endpoint_aliases : undefined
  const endpoint = aliases?.token_endpoint ?? as.token_endpoint
  const url = typeof endpoint === 'string' && URL.canParse(endpoint) ? new URL(endpoint) : undefined
  if (url && url.protocol === 'http:' && !LOOPBACK.has(url.hostname)) {
    throw new AuthorizationServerUnavailableError({
      reason: 'invalid_response',
      message: 'the authorization server published a plain http token endpoint off loopback',
    })
  }
}

/** The oauth4webapi client authentication of `options.auth` (a private key imported once, at first use). */
function createClientAuth(options: TokenOptions): () => Promise<oauth.ClientAuth> {
  const { auth } = options
  if (auth.method === 'tls_client_auth') {
    const tls = oauth.TlsClientAuth()
    return () => Promise.resolve(tls)
  }
  if (auth.method === 'client_secret_basic') {
    const basic = oauth.ClientSecretBasic(auth.clientSecret)
    return () => Promise.resolve(basic)
  }
  let imported: Promise<oauth.ClientAuth> | undefined
  return () =>
    (imported ??= importPKCS8(auth.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), auth.alg).then((key) =>
      oauth.PrivateKeyJwt(auth.kid === undefined ? key : { key, kid: auth.kid }),
    ))
}

/** Run `work` with a signal aborted after `ms`; rejects with a `TimeoutError` then even if `work` ignores the signal. */
async function withTimeout<T>(ms: number, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController()
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      const error = new DOMException('the authorization server did not answer in time', 'TimeoutError')
      controller.abort(error)
      reject(error)
    }, ms)
  })
  try {
    return await Promise.race([work(controller.signal), expired])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * undici with the workload certificate: one `Agent` per identity generation, so connections made
 * after a rotation present the new certificate; the previous agent is closed (gracefully: requests
 * on it finish).
 */
class Transport {
  readonly #issuerCa: TokenOptions['issuerCa']
  #agent: Agent | undefined
  #generation: number | undefined
  readonly #fetches = new WeakMap<Agent, oauth.HttpRequestOptions<string, unknown>[typeof oauth.customFetch]>()

  /** `issuerCa`: whom the authorization server's certificate must chain to (Node's roots when no `ca` is set). */
  constructor(issuerCa: TokenOptions['issuerCa']) {
    this.#issuerCa = issuerCa
  }

  fetchFor(material: IdentityMaterial | undefined): NonNullable<oauth.HttpRequestOptions<string, unknown>[typeof oauth.customFetch]> {
    const agent = this.#agentFor(material)
    let send = this.#fetches.get(agent)
    if (!send) {
      send = (url, init) => undiciFetch(url, { ...(init as object), dispatcher: agent } as Parameters<typeof undiciFetch>[1]) as unknown as Promise<Response>
      this.#fetches.set(agent, send)
    }
    return send
  }

  #agentFor(material: IdentityMaterial | undefined): Agent {
    const generation = material?.generation ?? -1
    if (this.#agent && (this.#generation === generation || (material && this.#generation! > generation))) return this.#agent
    const previous = this.#agent
    const ca = this.#issuerCa === 'identity' ? material?.ca : this.#issuerCa === 'system' ? undefined : this.#issuerCa.pem
    const certificate = material ? { cert: material.cert, key: material.key } : {}
    this.#agent = new Agent({ connect: { ...certificate, ...(ca === undefined ? {} : { ca }) } })
    this.#generation = generation
    if (previous) previous.close().catch(() => {})
    return this.#agent
  }

  /** Close now: a background refresh still waiting for the server must not hold the client open. */
  async close(): Promise<void> {
    const agent = this.#agent
    this.#agent = undefined
    await agent?.destroy()
  }
}
