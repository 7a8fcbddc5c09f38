/**
 * A REAL third-party OAuth 2.0 authorization server for the interop suite: `oidc-provider` (panva)
 * on 127.0.0.1, configured in memory (its own Koa app, its own token formats, client
 * authentication, introspection, revocation, DPoP and RFC 8705 code; nothing here imitates it).
 *
 * - plain loopback `http` by default; with `tls`, `https` with a server certificate of the test CA,
 *   and optionally an RFC 8705 §5 mTLS endpoint alias: a second https listener that requests a
 *   client certificate, advertised as `mtls_endpoint_aliases` in the metadata;
 * - features: client credentials, introspection (+ RFC 9701 signed answers), revocation, DPoP,
 *   resource indicators (RFC 8707) giving RFC 9068 JWT access tokens for {@link AUDIENCE}, and
 *   with `tls` certificate-bound tokens + `tls_client_auth` (SAN URI = the client's SPIFFE ID);
 * - clients obtain tokens with a real client over HTTP: `oauth4webapi` (discovery, the
 *   client_credentials grant, DPoP proofs for the token endpoint, RFC 7009 revocation).
 */
import { randomBytes, X509Certificate, type webcrypto } from 'node:crypto'
import { createServer as createHttpServer, type IncomingMessage, type RequestListener, type Server as HttpServer } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { exportJWK, generateKeyPair, jwtVerify, type JWK, type JWTPayload } from 'jose'
import * as oauth from 'oauth4webapi'
import { Agent, fetch as undiciFetch } from 'undici'
import type { ServerTls } from './adapters.js'
import type { ClientIdentity } from './client.js'
import { AUDIENCE } from './fixtures.js'

/**
 * Resource indicators (RFC 8707) oidc-provider knows: this service ({@link AUDIENCE}) with RFC 9068
 * JWT access tokens or opaque ones, and another service whose tokens Callsign must refuse.
 */
export const RESOURCE = {
  orders: AUDIENCE,
  ordersOpaque: `${AUDIENCE}/opaque`,
  billing: 'https://billing.example.org',
  billingOpaque: 'https://billing.example.org/opaque',
} as const

/** Scopes of the resource servers; a client may ask for any subset. */
export const SCOPES = 'orders:read orders:write'

/** Client metadata as registered at oidc-provider (snake_case, RFC 7591). */
export type ClientMetadata = Record<string, unknown> & { client_id: string }

export interface OidcProviderOptions {
  clients: ClientMetadata[]
  /**
   * Serve over https with this server certificate (its `ca` is also the only CA client
   * certificates may chain to) and enable RFC 8705 (certificate-bound tokens, `tls_client_auth`).
   * Default: plain loopback http.
   */
  tls?: ServerTls
  /**
   * With `tls`: certificate-bound tokens and `tls_client_auth` are served on a second listener that
   * requests client certificates (advertised as `mtls_endpoint_aliases`), the issuer's own listener
   * does not ask for one. Default false: the issuer's listener requests (not requires) one.
   */
  mtlsAlias?: boolean
  /**
   * RFC 8693 token exchange, which oidc-provider lacks, registered as a custom grant type
   * ({@link TOKEN_EXCHANGE_GRANT}) on top of its own client credentials handling (client
   * authentication, resource indicators, scopes, DPoP and certificate binding): the subject token
   * must be a JWT access token of this provider; the exchanged token keeps its `sub` and gets
   * `act: { sub: <client id>, act?: <the subject's act> }`. Clients list the grant in `grant_types`.
   */
  tokenExchange?: boolean
  /** RFC 9449 §8: the token endpoint requires a server-provided DPoP nonce (`use_dpop_nonce` first). */
  dpopNonce?: boolean
}

/** RFC 8693 §2.1 grant type of the optional token exchange. */
export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange'

export interface RunningOidcProvider {
  /** `http(s)://127.0.0.1:<port>` (no trailing slash), also the metadata `issuer`. */
  issuer: string
  /** The mTLS alias origin when `mtlsAlias` is on. */
  mtlsOrigin: string | undefined
  /** A `fetch` for Callsign's `fetch` option: trusts the test CA when served over https. */
  fetch: typeof globalThis.fetch
  /** Internal errors oidc-provider reported (`server_error` events): expected to stay empty. */
  serverErrors: Error[]
  /** Every request received: `METHOD url` (+ ` (client certificate)` when one was presented). */
  requests: string[]
  /** Requests oidc-provider refused, with its hidden detail (`error_detail`), e.g. why client authentication failed. */
  refusals: string[]
  /** Token endpoint requests received so far (`POST` to `/token`, mTLS alias included). */
  tokenRequests(): number
  /** The discovered metadata, as `oauth4webapi` processed it. */
  metadata(): Promise<oauth.AuthorizationServer>
  /** client_credentials grant by `client` (see {@link TokenRequest}); the token endpoint's answer. */
  clientCredentials(client: ClientAuthentication, request?: TokenRequest): Promise<oauth.TokenEndpointResponse>
  /** RFC 7009 revocation of `token` by the client it was issued to. */
  revoke(client: ClientAuthentication, token: string): Promise<void>
  close(): Promise<void>
}

/** How a client authenticates to oidc-provider. */
export type ClientAuthentication =
  | { clientId: string; secret: string }
  | { clientId: string; privateKey: webcrypto.CryptoKey }
  /** RFC 8705 `tls_client_auth`: the certificate is presented in the TLS handshake. */
  | { clientId: string; cert: ClientIdentity }

export interface TokenRequest {
  /** Space-separated; default {@link SCOPES}. */
  scope?: string
  /** RFC 8707 resource indicator (one of {@link RESOURCE}); none: an opaque token without `aud`. */
  resource?: string
  /** DPoP key pair: the token endpoint gets a DPoP proof (RFC 9449 §5) and binds the token to it. */
  dpop?: webcrypto.CryptoKeyPair
}

/** The client secret of `clientId` (deterministic: the tests and the client list share it). */
export const secretFor = (clientId: string): string => `secret-of-${clientId}-`.padEnd(48, 'x')

/** An extractable ES256 key pair and its public JWK (with `kid`, `alg`, `use`). */
export async function es256(kid: string): Promise<{ privateKey: webcrypto.CryptoKey; publicKey: webcrypto.CryptoKey; privateJwk: JWK; publicJwk: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true })
  const extra = { kid, alg: 'ES256', use: 'sig' }
  return { privateKey, publicKey, privateJwk: { ...(await exportJWK(privateKey)), ...extra }, publicJwk: { ...(await exportJWK(publicKey)), ...extra } }
}

// oidc-provider ships no type declarations; the few members used here are typed locally.
interface ProviderInstance {
  callback(): RequestListener
  on(event: string, listener: (ctx: unknown, error: Error) => void): void
}
type ProviderClass = new (issuer: string, configuration: Record<string, unknown>) => ProviderInstance
type GrantHandler = (ctx: unknown) => Promise<void>
interface ProviderInternals {
  registerGrantType(name: string, handler: GrantHandler, parameters: string[], duplicates: string[]): void
}
interface OidcContext {
  oidc: { params: Record<string, string | undefined>; client: { clientId: string } }
}
type ProviderErrors = Record<'InvalidGrant' | 'InvalidRequest', new (description: string) => Error>
type AdapterFactory = (model: string) => unknown
const MODULE: string = 'oidc-provider'
/**
 * oidc-provider's own in-memory adapter, through its factory: one store per provider instance, as
 * the default adapter, but without the "development-only adapter" warning printed for the default.
 */
const MEMORY_ADAPTER: string = 'oidc-provider/lib/adapters/memory_adapter.js'

/**
 * Load oidc-provider. v9 supports Node.js 22+ LTS and warns once, at import, on Node 20 (which this
 * repository supports and CI runs): that warning only is kept off the test output.
 */
async function loadProvider(): Promise<{ Provider: ProviderClass; createMemoryAdapter: () => AdapterFactory; errors: ProviderErrors }> {
  const warn = console.warn
  console.warn = (...args: unknown[]) => {
    if (!String(args[0]).includes('Unsupported runtime')) warn(...args)
  }
  try {
    const [{ default: Provider, errors }, { createMemoryAdapter }] = (await Promise.all([import(MODULE), import(MEMORY_ADAPTER)])) as [
      { default: ProviderClass; errors: ProviderErrors },
      { createMemoryAdapter: () => AdapterFactory },
    ]
    return { Provider, createMemoryAdapter, errors }
  } finally {
    console.warn = warn
  }
}

/** The client certificate of the TLS connection of `ctx`, or undefined (plain http, none sent). */
function peerCertificate(ctx: { req: IncomingMessage }): X509Certificate | undefined {
  const socket = ctx.req.socket as Partial<TLSSocket>
  if (typeof socket.getPeerCertificate !== 'function') return undefined
  const peer = socket.getPeerCertificate(true)
  return peer?.raw ? new X509Certificate(peer.raw) : undefined
}

/** `fetch` through an undici dispatcher, answering a global `Response` (what Callsign and oauth4webapi expect). */
function fetchVia(dispatcher: Agent | undefined): typeof globalThis.fetch {
  if (!dispatcher) return (input, init) => globalThis.fetch(input, init)
  return async (input, init) => {
    const res = await undiciFetch(input instanceof Request ? input.url : input, { ...(init as object), dispatcher } as Parameters<typeof undiciFetch>[1])
    const body = await res.arrayBuffer()
    return new Response(res.status === 204 || res.status === 304 ? null : body, {
      status: res.status,
      statusText: res.statusText,
      headers: new Headers([...res.headers]),
    })
  }
}

/** A `fetch` as oauth4webapi's `customFetch` wants it (its options are a subset of `RequestInit`). */
const asCustomFetch =
  (send: typeof globalThis.fetch) =>
  (url: string, options: oauth.CustomFetchOptions<string, unknown>): Promise<Response> =>
    send(url, options as RequestInit)

/** oauth4webapi's error with oidc-provider's `error` and `error_description` in the message. */
function explained(error: unknown, refusals: string[]): unknown {
  if (error instanceof oauth.ResponseBodyError)
    return new Error(`oidc-provider refused: ${error.error}: ${error.error_description ?? ''} [${refusals.at(-1) ?? ''}]`, { cause: error })
  return error
}

async function listen(server: HttpServer): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  return (server.address() as AddressInfo).port
}

export async function startOidcProvider(options: OidcProviderOptions): Promise<RunningOidcProvider> {
  const { Provider, createMemoryAdapter, errors } = await loadProvider()
  const { tls } = options
  const alias = tls !== undefined && options.mtlsAlias === true
  const signing = await es256('oidc-provider-es256')

  let handler: RequestListener = (_req, res) => res.writeHead(503).end()
  const requests: string[] = []
  const listener: RequestListener = (req, res) => {
    const socket = req.socket as Partial<TLSSocket>
    const certificate = typeof socket.getPeerCertificate === 'function' && socket.getPeerCertificate()?.raw !== undefined
    requests.push(
      `${req.method} ${socket.encrypted ? 'https' : 'http'}://127.0.0.1:${req.socket.localPort}${req.url}${certificate ? ' (client certificate)' : ''}`,
    )
    handler(req, res)
  }
  const servers: HttpServer[] = []
  const tlsServer = (requestCert: boolean): HttpServer =>
    createHttpsServer({ key: tls!.key, cert: tls!.cert, ca: [tls!.ca], requestCert, rejectUnauthorized: false }, listener) as unknown as HttpServer
  servers.push(tls ? tlsServer(!alias) : createHttpServer(listener))
  if (alias) servers.push(tlsServer(true))
  const ports = await Promise.all(servers.map(listen))
  const scheme = tls ? 'https' : 'http'
  const issuer = `${scheme}://127.0.0.1:${ports[0]}`
  const mtlsOrigin = alias ? `https://127.0.0.1:${ports[1]}` : undefined

  const jwtFormat = { accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } }
  const resourceServers: Record<string, Record<string, unknown>> = {
    [RESOURCE.orders]: { audience: AUDIENCE, scope: SCOPES, accessTokenTTL: 300, ...jwtFormat },
    [RESOURCE.ordersOpaque]: { audience: AUDIENCE, scope: SCOPES, accessTokenTTL: 300, accessTokenFormat: 'opaque' },
    [RESOURCE.billing]: { audience: RESOURCE.billing, scope: SCOPES, accessTokenTTL: 300, ...jwtFormat },
    [RESOURCE.billingOpaque]: { audience: RESOURCE.billing, scope: SCOPES, accessTokenTTL: 300, accessTokenFormat: 'opaque' },
  }

  /** Claims of exchanged tokens, by the request (koa context) that asked for them. */
  const exchanged = new WeakMap<object, { sub: string; act: Record<string, unknown> }>()

  const provider = new Provider(issuer, {
    adapter: createMemoryAdapter(),
    clients: options.clients,
    jwks: { keys: [signing.privateJwk] },
    cookies: { keys: ['interop-cookie-key-not-secret'] },
    scopes: ['openid', ...SCOPES.split(' ')],
    clientDefaults: {
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      id_token_signed_response_alg: 'ES256',
      introspection_signed_response_alg: 'ES256',
    },
    // HS256 (keyed with the client secret) only so that a test can show Callsign refusing such answers.
    enabledJWA: { introspectionSigningAlgValues: ['ES256', 'HS256'] },
    clientAuthMethods: ['client_secret_basic', 'private_key_jwt', ...(tls ? ['tls_client_auth'] : [])],
    ttl: { AccessToken: 300, ClientCredentials: 300 },
    ...(options.tokenExchange
      ? {
          formats: {
            customizers: {
              jwt: async (ctx: object, _token: unknown, jwt: { payload: Record<string, unknown> }) => {
                const claims = exchanged.get(ctx)
                if (claims) Object.assign(jwt.payload, claims)
              },
            },
          },
        }
      : {}),
    // No CORS: only server-side clients here.
    clientBasedCORS: () => false,
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      // The resource server introspects tokens issued to other clients (its callers).
      introspection: { enabled: true, allowedPolicy: async () => true },
      jwtIntrospection: { enabled: true },
      revocation: {
        enabled: true,
        allowedPolicy: async (_ctx: unknown, client: { clientId: string }, token: { clientId: string }) => client.clientId === token.clientId,
      },
      dPoP: options.dpopNonce ? { enabled: true, nonceSecret: randomBytes(32), requireNonce: () => true } : { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async () => undefined,
        useGrantedResource: async () => false,
        getResourceServerInfo: async (_ctx: unknown, resource: string) => {
          const info = resourceServers[resource]
          if (!info) throw new Error(`unknown resource ${resource}`)
          return info
        },
      },
      ...(tls
        ? {
            mTLS: {
              enabled: true,
              certificateBoundAccessTokens: true,
              tlsClientAuth: true,
              getCertificate: peerCertificate,
              certificateAuthorized: (ctx: { req: IncomingMessage }) => (ctx.req.socket as TLSSocket).authorized === true,
              /** `tls_client_auth_san_uri` (RFC 8705 §2.1.2): one URI SAN equals the registered value. */
              certificateSubjectMatches: (ctx: { req: IncomingMessage }, property: string, expected: string) => {
                if (property !== 'tls_client_auth_san_uri') return false
                const cert = peerCertificate(ctx)
                return cert?.subjectAltName?.split(', ').includes(`URI:${expected}`) === true
              },
            },
          }
        : {}),
    },
    ...(mtlsOrigin
      ? {
          discovery: {
            mtls_endpoint_aliases: {
              token_endpoint: `${mtlsOrigin}/token`,
              introspection_endpoint: `${mtlsOrigin}/token/introspection`,
              revocation_endpoint: `${mtlsOrigin}/token/revocation`,
            },
          },
        }
      : {}),
  })
  const serverErrors: Error[] = []
  provider.on('server_error', (_ctx, error) => serverErrors.push(error))
  const refusals: string[] = []
  for (const event of ['grant.error', 'introspection.error', 'revocation.error', 'discovery.error', 'jwks.error']) {
    provider.on(event, (_ctx, error) =>
      refusals.push(`${event}: ${error.message} (${(error as Error & { error_detail?: string }).error_detail ?? error.cause ?? ''})`),
    )
  }
  if (options.tokenExchange) await registerTokenExchange(provider, { issuer, signing, errors, exchanged })
  handler = provider.callback()

  const trust = tls ? new Agent({ connect: { ca: tls.ca } }) : undefined
  const fetch = fetchVia(trust)
  const issuerUrl = new URL(issuer)
  const insecure = { [oauth.allowInsecureRequests]: !tls }

  let metadata: Promise<oauth.AuthorizationServer> | undefined
  const discover = (): Promise<oauth.AuthorizationServer> =>
    (metadata ??= oauth
      .discoveryRequest(issuerUrl, { ...insecure, [oauth.customFetch]: asCustomFetch(fetch) })
      .then((res) => oauth.processDiscoveryResponse(issuerUrl, res)))

  /** Client authentication and the transport it needs: a fresh TLS connection with the client certificate for `tls_client_auth`. */
  const clientAuth = (client: ClientAuthentication): { auth: oauth.ClientAuth; fetch: typeof globalThis.fetch; close: () => Promise<void>; mtls: boolean } => {
    if ('cert' in client) {
      if (!tls) throw new Error('tls_client_auth needs the provider served over https')
      const agent = new Agent({ connect: { ca: tls.ca, cert: client.cert.certPem, key: client.cert.keyPem } })
      return { auth: oauth.TlsClientAuth(), fetch: fetchVia(agent), close: () => agent.close(), mtls: true }
    }
    const auth = 'secret' in client ? oauth.ClientSecretBasic(client.secret) : oauth.PrivateKeyJwt(client.privateKey)
    return { auth, fetch, close: async () => {}, mtls: false }
  }

  return {
    issuer,
    mtlsOrigin,
    fetch,
    serverErrors,
    requests,
    refusals,
    tokenRequests: () => requests.filter((line) => /^POST https?:\/\/[^/]+\/token(?: |$)/.test(line)).length,
    metadata: discover,
    async clientCredentials(client, request = {}) {
      const as = await discover()
      const { auth, fetch: send, close, mtls } = clientAuth(client)
      const oauthClient: oauth.Client = { client_id: client.clientId, use_mtls_endpoint_aliases: mtls }
      try {
        const parameters = new URLSearchParams({ scope: request.scope ?? SCOPES })
        if (request.resource !== undefined) parameters.set('resource', request.resource)
        const dpop = request.dpop ? oauth.DPoP(oauthClient, request.dpop) : undefined
        const requestOptions = { ...insecure, [oauth.customFetch]: asCustomFetch(send), ...(dpop ? { DPoP: dpop } : {}) }
        const response = await oauth.clientCredentialsGrantRequest(as, oauthClient, auth, parameters, requestOptions)
        return await oauth.processClientCredentialsResponse(as, oauthClient, response)
      } catch (error) {
        throw explained(error, refusals)
      } finally {
        await close()
      }
    },
    async revoke(client, token) {
      const as = await discover()
      const { auth, fetch: send, close, mtls } = clientAuth(client)
      const oauthClient: oauth.Client = { client_id: client.clientId, use_mtls_endpoint_aliases: mtls }
      try {
        const response = await oauth.revocationRequest(as, oauthClient, auth, token, { ...insecure, [oauth.customFetch]: asCustomFetch(send) })
        await oauth.processRevocationResponse(response)
      } catch (error) {
        throw explained(error, refusals)
      } finally {
        await close()
      }
    },
    async close() {
      await Promise.all(
        servers.map(
          (server) =>
            new Promise<void>((resolve) => {
              server.close(() => resolve())
              server.closeAllConnections()
            }),
        ),
      )
      await trust?.close()
    },
  }
}

/**
 * RFC 8693 token exchange as an oidc-provider custom grant: the subject token is verified here
 * (a JWT access token of this provider, not expired), then oidc-provider's own client credentials
 * handler does the rest (client authentication already done, resource, scope, DPoP and mTLS
 * binding, the token response); the JWT customizer gives the token the subject's `sub` and `act`.
 */
async function registerTokenExchange(
  provider: ProviderInstance,
  settings: {
    issuer: string
    signing: { publicKey: webcrypto.CryptoKey }
    errors: ProviderErrors
    exchanged: WeakMap<object, { sub: string; act: Record<string, unknown> }>
  },
): Promise<void> {
  const CLIENT_CREDENTIALS: string = 'oidc-provider/lib/actions/grants/client_credentials.js'
  const GRANT_HELPERS: string = 'oidc-provider/lib/helpers/grants.js'
  type BuiltinHandler = (provider: ProviderInstance, helpers: Record<string, unknown>, ctx: unknown) => Promise<void>
  const [{ handler: clientCredentials }, helpers] = (await Promise.all([import(CLIENT_CREDENTIALS), import(GRANT_HELPERS)])) as [
    { handler: BuiltinHandler },
    Record<string, (...args: unknown[]) => unknown>,
  ]
  // As oidc-provider binds its helpers for its own grants (lib/helpers/initialize_app.js).
  const bound = Object.fromEntries(Object.entries(helpers).map(([name, helper]) => [name, helper.bind(undefined, provider)]))
  const { errors, exchanged } = settings
  const handler: GrantHandler = async (ctx) => {
    const { params, client } = (ctx as OidcContext).oidc
    if (params.subject_token_type !== 'urn:ietf:params:oauth:token-type:access_token') throw new errors.InvalidRequest('unsupported subject_token_type')
    if (params.requested_token_type !== undefined && params.requested_token_type !== 'urn:ietf:params:oauth:token-type:access_token') {
      throw new errors.InvalidRequest('unsupported requested_token_type')
    }
    let subject: JWTPayload
    try {
      ;({ payload: subject } = await jwtVerify(params.subject_token ?? '', settings.signing.publicKey, {
        issuer: settings.issuer,
        typ: 'at+jwt',
        requiredClaims: ['exp', 'sub'],
      }))
    } catch {
      throw new errors.InvalidGrant('subject_token is invalid')
    }
    const act = { sub: client.clientId, ...(subject.act ? { act: subject.act } : {}) }
    exchanged.set(ctx as object, { sub: subject.sub!, act })
    await clientCredentials(provider, bound, ctx)
  }
  ;(provider as unknown as ProviderInternals).registerGrantType(
    TOKEN_EXCHANGE_GRANT,
    handler,
    ['scope', 'resource', 'subject_token', 'subject_token_type', 'requested_token_type'],
    ['resource'],
  )
}
