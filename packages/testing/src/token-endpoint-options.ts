import { importJWK, type CryptoKey, type JWK, type KeyObject } from 'jose'
import { checkOptions, optionNames } from './options.js'

/**
 * How a {@link TestClient} authenticates at the token endpoint.
 *
 * - `'client_secret_basic'`: `Authorization: Basic` with the RFC 6749 §2.3.1 form-urlencoded id and secret.
 * - `'private_key_jwt'`: an RFC 7523 client assertion signed by a key of {@link TestClient.jwks}.
 * - `'tls_client_auth'`: RFC 8705 §2.1.2, a client certificate that chains to `tls.clientCa` and
 *   carries {@link TestClient.spiffeId} as a URI SAN.
 *
 * @example
 * ```ts
 * const auth: TestClientAuth = 'tls_client_auth';
 * ```
 */
export type TestClientAuth = 'tls_client_auth' | 'private_key_jwt' | 'client_secret_basic'

/**
 * A client registered at the test issuer's token endpoint.
 *
 * @example
 * ```ts
 * const frontend: TestClient = { clientId: 'spiffe://example.org/ns/web/sa/frontend', auth: 'tls_client_auth', scopes: ['orders:read'] };
 * const batch: TestClient = { clientId: 'batch', auth: 'client_secret_basic', clientSecret: 's3cret' };
 * const signer: TestClient = { clientId: 'signer', auth: 'private_key_jwt', jwks: { keys: [publicJwk] } };
 * ```
 */
export interface TestClient {
  /** The `client_id`. */
  clientId: string
  /** Client authentication method; see {@link TestClientAuth}. */
  auth: TestClientAuth
  /** The secret, for (and required by) `client_secret_basic`. */
  clientSecret?: string
  /** The client's public keys, for (and required by) `private_key_jwt`. Private members are refused. */
  jwks?: { keys: JWK[] }
  /**
   * `tls_client_auth` only: the URI SAN the client certificate must carry (RFC 8705 §2.1.2
   * `tls_client_auth_san_uri`); also the client's identity in `sub` and `act.sub`. Default: `clientId`.
   */
  spiffeId?: string
  /** Scopes the client may be given; asking for another is `invalid_scope`. Default: any asked for. */
  scopes?: string[]
  /** RFC 8707 resource indicators (and RFC 8693 `audience` values) the client may ask for; another is `invalid_target`. Default: any. */
  resources?: string[]
}

/**
 * The `tokenEndpoint` option of {@link startTestIssuer}: a real OAuth token endpoint at
 * `<issuer>/token`.
 *
 * @example
 * ```ts
 * const options: TokenEndpointOptions = { clients: [{ clientId: 'batch', auth: 'client_secret_basic', clientSecret: 's3cret' }], requireDpopNonce: true };
 * ```
 */
export interface TokenEndpointOptions {
  /** Registered clients (unique `clientId`s). */
  clients: TestClient[]
  /** Lifetime of issued access tokens in seconds (an exchanged token never outlives its subject token). Default `300`. */
  accessTokenTtl?: number
  /**
   * Require a server nonce (RFC 9449 §8) in DPoP proofs: a proof without the current nonce is
   * answered `400 use_dpop_nonce` with a `DPoP-Nonce` header. Default `false`.
   */
  requireDpopNonce?: boolean
  /** Accept RFC 8693 token exchange. Default `true`. */
  exchange?: boolean
}

/** A registered client, checked and with its keys imported. @internal */
export interface ResolvedClient {
  clientId: string
  auth: TestClientAuth
  /** `sub` of its client-credentials tokens and `act.sub` of its exchanges: the SPIFFE ID for `tls_client_auth`, else the client ID. */
  identity: string
  clientSecret: string | undefined
  keys: Array<{ jwk: JWK; key: CryptoKey | KeyObject | Uint8Array }>
  scopes: ReadonlySet<string> | undefined
  resources: ReadonlySet<string> | undefined
}

/** The checked `tokenEndpoint` option. @internal */
export interface ResolvedTokenEndpoint {
  clients: ReadonlyMap<string, ResolvedClient>
  accessTokenTtl: number
  requireDpopNonce: boolean
  exchange: boolean
}

const ENDPOINT_OPTIONS = optionNames<TokenEndpointOptions>()(['clients', 'accessTokenTtl', 'requireDpopNonce', 'exchange'])
const CLIENT_OPTIONS = optionNames<TestClient>()(['clientId', 'auth', 'clientSecret', 'jwks', 'spiffeId', 'scopes', 'resources'])
const AUTH_METHODS: readonly TestClientAuth[] = ['tls_client_auth', 'private_key_jwt', 'client_secret_basic']
/** Private or secret JWK members: a client's registered keys are public. */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k']

/**
 * Checks the `tokenEndpoint` option and imports the clients' keys.
 *
 * @param options - The option as given.
 * @param clientCa - Whether `tls.clientCa` is set (needed by `tls_client_auth` clients).
 * @returns The resolved option.
 * @throws TypeError naming the option, e.g. `startTestIssuer: "tokenEndpoint.clients[0].clientSecret" must be a non-empty string`.
 * @internal
 */
export async function resolveTokenEndpoint(options: unknown, clientCa: boolean): Promise<ResolvedTokenEndpoint> {
  checkOptions('startTestIssuer: tokenEndpoint', options, ENDPOINT_OPTIONS)
  if (options === undefined) fail('tokenEndpoint', 'must be an object')
  const given = options as TokenEndpointOptions
  if (!Array.isArray(given.clients)) fail('tokenEndpoint.clients', 'must be an array of clients')
  const accessTokenTtl = given.accessTokenTtl ?? 300
  if (!Number.isInteger(accessTokenTtl) || accessTokenTtl <= 0) fail('tokenEndpoint.accessTokenTtl', 'must be a positive integer (seconds)')
  for (const name of ['requireDpopNonce', 'exchange'] as const) {
    if (given[name] !== undefined && typeof given[name] !== 'boolean') fail(`tokenEndpoint.${name}`, 'must be a boolean')
  }
  const clients = new Map<string, ResolvedClient>()
  for (const [index, client] of given.clients.entries()) {
    const resolved = await resolveClient(client, `tokenEndpoint.clients[${index}]`, clientCa)
    if (clients.has(resolved.clientId)) fail(`tokenEndpoint.clients[${index}].clientId`, 'is registered twice')
    clients.set(resolved.clientId, resolved)
  }
  return { clients, accessTokenTtl, requireDpopNonce: given.requireDpopNonce ?? false, exchange: given.exchange ?? true }
}

async function resolveClient(client: TestClient, name: string, clientCa: boolean): Promise<ResolvedClient> {
  checkOptions(`startTestIssuer: ${name}`, client, CLIENT_OPTIONS)
  if (client === undefined) fail(name, 'must be an object')
  if (!nonEmptyString(client.clientId)) fail(`${name}.clientId`, 'must be a non-empty string')
  if (!AUTH_METHODS.includes(client.auth)) fail(`${name}.auth`, `must be one of ${AUTH_METHODS.join(', ')}`)
  if (client.auth === 'client_secret_basic' && !nonEmptyString(client.clientSecret)) fail(`${name}.clientSecret`, 'must be a non-empty string')
  if (client.auth === 'tls_client_auth' && !clientCa) fail(`${name}.auth`, 'tls_client_auth needs the "tls.clientCa" option')
  if (client.spiffeId !== undefined && !nonEmptyString(client.spiffeId)) fail(`${name}.spiffeId`, 'must be a non-empty string')
  const keys: ResolvedClient['keys'] = []
  if (client.auth === 'private_key_jwt') {
    const jwks = client.jwks
    if (typeof jwks !== 'object' || jwks === null || !Array.isArray(jwks.keys) || jwks.keys.length === 0)
      fail(`${name}.jwks`, 'must be { keys: [public JWK, ...] }')
    for (const [i, jwk] of jwks.keys.entries()) {
      if (typeof jwk !== 'object' || jwk === null || PRIVATE_MEMBERS.some((member) => member in jwk)) fail(`${name}.jwks.keys[${i}]`, 'must be a public JWK')
      if (typeof jwk.alg !== 'string') fail(`${name}.jwks.keys[${i}].alg`, 'must name the signing algorithm')
      try {
        keys.push({ jwk, key: await importJWK(jwk, jwk.alg) })
      } catch {
        fail(`${name}.jwks.keys[${i}]`, 'is not a usable public JWK')
      }
    }
  }
  return {
    clientId: client.clientId,
    auth: client.auth,
    identity: client.auth === 'tls_client_auth' ? (client.spiffeId ?? client.clientId) : client.clientId,
    clientSecret: client.clientSecret,
    keys,
    scopes: stringSet(client.scopes, `${name}.scopes`),
    resources: stringSet(client.resources, `${name}.resources`),
  }
}

function stringSet(values: unknown, name: string): ReadonlySet<string> | undefined {
  if (values === undefined) return undefined
  if (!Array.isArray(values) || !values.every(nonEmptyString)) fail(name, 'must be an array of non-empty strings')
  return new Set(values as string[])
}

function nonEmptyString(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0
}

function fail(name: string, problem: string): never {
  throw new TypeError(`startTestIssuer: "${name}" ${problem}`)
}
