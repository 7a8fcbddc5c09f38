import type { CryptoKey, JWK } from 'jose'
import { IssuerKeyRing, type TestIssuerAlgorithm } from './issuer-keys.js'
import { buildMetadata, normalizePath, type DiscoveryMode } from './issuer-metadata.js'
import type { OutageMode } from './issuer-outage.js'
import { createIssuerServer, documentRoute, issuerHandler, type IssuerSite, type RecordedRequest } from './issuer-server.js'
import { listenOnLoopback } from './listen.js'
import { checkOptions, optionNames } from './options.js'
import { signAccessToken, type SignOptions } from './sign-access-token.js'
import { TokenEndpoint, type TokenRequestRecord } from './token-endpoint.js'
import { resolveTokenEndpoint, type ResolvedTokenEndpoint, type TokenEndpointOptions } from './token-endpoint-options.js'

export type { RecordedRequest } from './issuer-server.js'

/**
 * Options for {@link startTestIssuer}.
 *
 * @example
 * ```ts
 * const options: TestIssuerOptions = { path: '/tenant-a', discovery: 'both', algorithms: ['ES256', 'RS256'] };
 * ```
 */
export interface TestIssuerOptions {
  /** Which well-known metadata documents are served. Default `'oauth'`. */
  discovery?: DiscoveryMode
  /**
   * Issuer path, e.g. `'/tenant-a'` gives issuer `http://127.0.0.1:PORT/tenant-a`,
   * RFC 8414 metadata at `/.well-known/oauth-authorization-server/tenant-a` and
   * OpenID metadata at `/tenant-a/.well-known/openid-configuration`. Default `''`.
   */
  path?: string
  /** One signing key is created per algorithm; the first is the current key. Default `['ES256']`. */
  algorithms?: TestIssuerAlgorithm[]
  /** Overrides the `issuer` member of the metadata (to test a mismatch). Default: the issuer. */
  metadataIssuer?: string
  /** JWKS path under the issuer path. Default `'/jwks.json'`. */
  jwksPath?: string
  /**
   * Extra or replacing metadata members, merged last (an `undefined` value
   * removes a member), e.g. `{ jwks_uri: 'https://elsewhere.example/jwks' }`. Default: none.
   */
  metadata?: Record<string, unknown>
  /** `cache-control` header of the JWKS response; `null` omits it. Default `'max-age=300'`. */
  jwksCacheControl?: string | null
  /** Minimum body size in bytes in the `'huge'` outage mode. Default 5 MiB. */
  hugeBodyBytes?: number
  /**
   * Serve over HTTPS with this certificate (e.g. `await ca.issueServerCertificate()`), to test
   * issuers behind a private CA (`NODE_EXTRA_CA_CERTS`, an injected `fetch`). Default: plain HTTP.
   * With `clientCa` (PEM, e.g. `ca.certPem`) the server asks every connection for a client
   * certificate (without refusing the handshake) and accepts those that chain to it: for
   * `tls_client_auth` and certificate-bound tokens (RFC 8705) at the token endpoint.
   */
  tls?: { certPem: string; keyPem: string; clientCa?: string }
  /**
   * Serve a real token endpoint at `<issuer>/token`: client credentials (RFC 6749 §4.4) and
   * token exchange (RFC 8693) with RFC 8707 resource indicators, client authentication
   * `client_secret_basic`, `private_key_jwt` (RFC 7523) and `tls_client_auth` (RFC 8705), and
   * DPoP-bound (RFC 9449) or certificate-bound tokens. See {@link TokenEndpointOptions}.
   * Default: none (`/token` answers 404).
   */
  tokenEndpoint?: TokenEndpointOptions
}

/**
 * A running loopback authorization-server stand-in: serves metadata and a
 * JWKS over plain HTTP on `127.0.0.1`, signs access tokens, rotates keys and
 * simulates outages. Always {@link TestIssuer.close | close} it.
 *
 * @example
 * ```ts
 * const issuer = await startTestIssuer();
 * try {
 *   const token = await issuer.signAccessToken({ sub: 'spiffe://example.org/ns/web/sa/frontend' });
 * } finally {
 *   await issuer.close();
 * }
 * ```
 */
export interface TestIssuer {
  /** Issuer identifier (`iss`), e.g. `http://127.0.0.1:41234/tenant-a`. */
  readonly issuer: string
  /** Absolute URL of the JWKS. */
  readonly jwksUri: string
  /** `http://127.0.0.1:PORT`. */
  readonly origin: string
  /** `kid` of the current default signing key. */
  readonly currentKid: string
  /** Absolute URL of the token endpoint (`<issuer>/token`); it answers only with the `tokenEndpoint` option. */
  readonly tokenEndpoint: string
  /**
   * Signs an access token. Defaults: `iss` (the issuer), `iat` (now), `exp`
   * (`iat` + 300), `jti` (random UUID), header `typ: 'at+jwt'`; `claims` override them.
   * `options.dpopJkt` / `options.x5tS256` add a `cnf` confirmation claim (DPoP- or certificate-bound token).
   *
   * @param claims - Claims merged over the defaults. Default `{}`.
   * @param options - See {@link SignOptions}.
   * @returns The compact JWS.
   * @example
   * ```ts
   * const token = await issuer.signAccessToken({ sub: 'alice', scope: 'read' }, { audience: 'https://api.example' });
   * ```
   */
  signAccessToken(claims?: Record<string, unknown>, options?: SignOptions): Promise<string>
  /**
   * Creates a new signing key and makes it the current default.
   *
   * @param options - `alg`: algorithm of the new key (default: the current
   *   key's); `keepPrevious` (default `true`): when `false`, the previous
   *   current key and all other keys of `alg` are removed from the JWKS.
   * @returns The new key's `kid`.
   * @example
   * ```ts
   * const kid = await issuer.rotateKeys({ keepPrevious: false });
   * ```
   */
  rotateKeys(options?: { alg?: TestIssuerAlgorithm; keepPrevious?: boolean }): Promise<string>
  /**
   * Switches the simulated outage mode; applies to every later request.
   *
   * @param mode - See {@link OutageMode}; `'none'` restores normal operation.
   * @example
   * ```ts
   * issuer.setOutage('hang');
   * ```
   */
  setOutage(mode: OutageMode): void
  /**
   * Delays every response (including outage responses) by `ms` milliseconds.
   *
   * @param ms - Delay; default state is `0`.
   * @example
   * ```ts
   * issuer.setLatency(200); // e.g. to test that concurrent JWKS fetches are coalesced
   * ```
   */
  setLatency(ms: number): void
  /** Every request received, in order (live array). */
  readonly requests: RecordedRequest[]
  /** Every request the token endpoint answered (outages aside), in order (live array). */
  readonly tokenRequests: TokenRequestRecord[]
  /**
   * Replaces the DPoP nonce of the token endpoint (`requireDpopNonce`): the next proof with the
   * old nonce is answered `use_dpop_nonce` with the new one.
   *
   * @returns The new nonce.
   * @example
   * ```ts
   * issuer.rotateDpopNonce();
   * ```
   */
  rotateDpopNonce(): string
  /**
   * Counts received requests.
   *
   * @param pathSuffix - Only count requests whose path ends with this. Default: count all.
   * @returns The count.
   * @example
   * ```ts
   * expect(issuer.requestCount('/jwks.json')).toBe(1);
   * ```
   */
  requestCount(pathSuffix?: string): number
  /**
   * Forgets the recorded requests (and token requests).
   *
   * @example
   * ```ts
   * issuer.clearRequests();
   * ```
   */
  clearRequests(): void
  /**
   * The JWK Set served at {@link TestIssuer.jwksUri}: public keys with `kid`, `alg` and `use: 'sig'`.
   *
   * @returns A copy of the set.
   * @example
   * ```ts
   * const jwks = createLocalJWKSet(issuer.publicJwks());
   * ```
   */
  publicJwks(): { keys: JWK[] }
  /**
   * A private signing key, usable with jose's `SignJWT` to mint custom tokens.
   *
   * @param kid - Key ID. Default: the current key.
   * @returns The private `CryptoKey`.
   * @example
   * ```ts
   * const jwt = await new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: issuer.currentKid, typ: 'JWT' }).sign(issuer.privateKey());
   * ```
   */
  privateKey(kid?: string): CryptoKey
  /**
   * A public verification key.
   *
   * @param kid - Key ID. Default: the current key.
   * @returns The public `CryptoKey`.
   * @example
   * ```ts
   * await jwtVerify(token, issuer.publicKey());
   * ```
   */
  publicKey(kid?: string): CryptoKey
  /**
   * Stops the server, destroying open (keep-alive or hanging) connections. Idempotent.
   *
   * @returns Resolves once the server is closed.
   * @example
   * ```ts
   * afterEach(() => issuer.close());
   * ```
   */
  close(): Promise<void>
}

const DEFAULT_HUGE_BYTES = 5 * 1024 * 1024

const ISSUER_OPTIONS = optionNames<TestIssuerOptions>()([
  'discovery',
  'path',
  'algorithms',
  'metadataIssuer',
  'jwksPath',
  'metadata',
  'jwksCacheControl',
  'hugeBodyBytes',
  'tls',
  'tokenEndpoint',
])
// An `IssuedCertificate` may be passed as it is (its other members are ignored).
const TLS_OPTIONS = [
  ...optionNames<NonNullable<TestIssuerOptions['tls']>>()(['certPem', 'keyPem', 'clientCa']),
  'chainPem',
  'x5tS256',
  'spiffeId',
  'serialNumber',
]

/** The checked options of {@link startTestIssuer}, defaults applied. */
interface IssuerSettings {
  discovery: DiscoveryMode
  /** Normalised issuer path, e.g. `'/tenant-a'`. */
  issuerPath: string
  /** JWKS path, the issuer path included. */
  jwksPath: string
  hugeBytes: number
  cacheControl: string | null
  clientCa: string | undefined
  tokenOptions: ResolvedTokenEndpoint | undefined
}

/** The issuer's URLs, known once its server listens. */
interface IssuerUrls {
  origin: string
  issuer: string
  jwksUri: string
}

/** A started issuer's parts, behind its {@link TestIssuer} API. */
interface IssuerParts {
  urls: IssuerUrls
  keys: IssuerKeyRing
  site: IssuerSite
  tokenRequests: TokenRequestRecord[]
  tokenEndpoint: TokenEndpoint | undefined
  server: ReturnType<typeof createIssuerServer>
}

/**
 * Starts a loopback authorization-server stand-in on `127.0.0.1` (random port)
 * that serves RFC 8414 / OpenID metadata and a JWKS, and signs access tokens.
 * Unknown paths get 404; methods other than GET/HEAD on known paths get 405.
 *
 * @param options - See {@link TestIssuerOptions}; defaults: discovery `'oauth'`,
 *   path `''`, algorithms `['ES256']`, jwksPath `'/jwks.json'`.
 * @returns The running issuer; call `close()` when done.
 * @example
 * ```ts
 * import { startTestIssuer } from '@callsign/testing';
 * import { createRemoteJWKSet, jwtVerify } from 'jose';
 *
 * const issuer = await startTestIssuer({ path: '/tenant-a' });
 * const token = await issuer.signAccessToken({ sub: 'spiffe://example.org/ns/web/sa/frontend' }, { audience: 'api' });
 * await jwtVerify(token, createRemoteJWKSet(new URL(issuer.jwksUri)), { issuer: issuer.issuer, audience: 'api' });
 * await issuer.close();
 * ```
 */
export async function startTestIssuer(options: TestIssuerOptions = {}): Promise<TestIssuer> {
  const settings = await resolveIssuerOptions(options)
  const keys = await IssuerKeyRing.create(options.algorithms ?? ['ES256'])
  const urls: IssuerUrls = { origin: '', issuer: '', jwksUri: '' }
  const tokenRequests: TokenRequestRecord[] = []
  const tokenEndpoint =
    settings.tokenOptions &&
    new TokenEndpoint({ options: settings.tokenOptions, keys, issuer: () => urls.issuer, endpoint: () => urls.issuer + '/token', records: tokenRequests })
  const { discovery, issuerPath, jwksPath, cacheControl } = settings
  const metadata = (openid: boolean): Record<string, unknown> => issuerMetadata({ options, settings, keys, urls, openid })
  const site: IssuerSite = {
    route: documentRoute({ discovery, issuerPath, jwksPath, cacheControl, keys, metadata }),
    tokenPath: `${issuerPath}/token`,
    tokenEndpoint,
    hugeBytes: settings.hugeBytes,
    requests: [],
    outage: 'none',
    latencyMs: 0,
  }
  const server = createIssuerServer(options.tls, issuerHandler(site))
  const port = await listenOnLoopback(server)
  urls.origin = `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`
  urls.issuer = urls.origin + issuerPath
  urls.jwksUri = urls.origin + jwksPath
  return testIssuerApi({ urls, keys, site, tokenRequests, tokenEndpoint, server })
}

/** Checks the options (and the token endpoint's) and applies the defaults. */
async function resolveIssuerOptions(options: TestIssuerOptions): Promise<IssuerSettings> {
  checkOptions('startTestIssuer', options, ISSUER_OPTIONS)
  const discovery = options.discovery ?? 'oauth'
  if (!['oauth', 'openid', 'both', 'none'].includes(discovery)) {
    throw new TypeError(`startTestIssuer: unknown discovery mode "${String(discovery)}"`)
  }
  const issuerPath = normalizePath(options.path)
  const jwksPath = issuerPath + (normalizePath(options.jwksPath ?? '/jwks.json') || '/jwks.json')
  const hugeBytes = options.hugeBodyBytes ?? DEFAULT_HUGE_BYTES
  const cacheControl = options.jwksCacheControl === undefined ? 'max-age=300' : options.jwksCacheControl
  checkOptions('startTestIssuer: tls', options.tls, TLS_OPTIONS)
  const clientCa = options.tls?.clientCa
  if (clientCa !== undefined && (typeof clientCa !== 'string' || !clientCa.includes('-----BEGIN CERTIFICATE-----'))) {
    throw new TypeError('startTestIssuer: "tls.clientCa" must be a PEM certificate')
  }
  const tokenOptions = options.tokenEndpoint === undefined ? undefined : await resolveTokenEndpoint(options.tokenEndpoint, clientCa !== undefined)
  return { discovery, issuerPath, jwksPath, hugeBytes, cacheControl, clientCa, tokenOptions }
}

/** The metadata document as served now: the keys' current algorithms, the overrides merged last. */
function issuerMetadata(input: {
  options: TestIssuerOptions
  settings: IssuerSettings
  keys: IssuerKeyRing
  urls: IssuerUrls
  openid: boolean
}): Record<string, unknown> {
  const { options, settings, keys, urls, openid } = input
  const { tokenOptions, clientCa } = settings
  return buildMetadata({
    issuer: urls.issuer,
    jwksUri: urls.jwksUri,
    algorithms: keys.algorithms(),
    openid,
    ...(tokenOptions ? { tokenEndpoint: { exchange: tokenOptions.exchange, mtls: clientCa !== undefined } } : {}),
    overrides: {
      ...(options.metadataIssuer !== undefined ? { issuer: options.metadataIssuer } : {}),
      ...options.metadata,
    },
  })
}

/** The {@link TestIssuer} API over a started issuer's parts. */
function testIssuerApi(parts: IssuerParts): TestIssuer {
  const { urls, keys, site, tokenRequests, tokenEndpoint, server } = parts
  const { issuer, jwksUri, origin } = urls
  const requests = site.requests
  let closing: Promise<void> | undefined
  return {
    issuer,
    jwksUri,
    origin,
    get currentKid() {
      return keys.currentKid
    },
    tokenEndpoint: issuer + '/token',
    requests,
    tokenRequests,
    rotateDpopNonce: () => {
      if (!tokenEndpoint) throw new TypeError('test issuer: rotateDpopNonce needs the "tokenEndpoint" option')
      return tokenEndpoint.dpop.rotateNonce()
    },
    signAccessToken: async (claims = {}, signOptions = {}) =>
      signAccessToken(keys.select({ kid: signOptions.kid, alg: signOptions.alg }), issuer, claims, signOptions),
    rotateKeys: async (rotateOptions = {}) => keys.rotate(rotateOptions.alg ?? keys.select().alg, rotateOptions.keepPrevious ?? true),
    setOutage: (mode) => {
      if (!['none', 'down', 'reset', 'hang', 'garbage', 'huge'].includes(mode)) {
        throw new TypeError(`test issuer: unknown outage mode "${String(mode)}"`)
      }
      site.outage = mode
    },
    setLatency: (ms) => {
      site.latencyMs = Math.max(0, ms)
    },
    requestCount: (pathSuffix) => (pathSuffix === undefined ? requests.length : requests.filter((r) => r.path.endsWith(pathSuffix)).length),
    clearRequests: () => {
      requests.length = 0
      tokenRequests.length = 0
    },
    publicJwks: () => keys.publicJwks(),
    privateKey: (kid) => keys.select({ kid }).privateKey,
    publicKey: (kid) => keys.select({ kid }).publicKey,
    close: () => {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()))
        server.closeAllConnections()
      })
      return closing
    },
  }
}
