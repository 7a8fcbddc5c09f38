import { Server as TlsServer } from 'node:tls'
import type { EnvironmentConfig, Logger } from './environment.js'
import { AuthError } from './errors.js'
import { addressTrusted, compileCidrs, ForwardedPeers, parseAnchors, type ForwardedFormat, type ResolvedForwarded } from './forwarded-certificate.js'
import { checkKeys, fail, isFileOption, isPlainObject, oneOf, optionalBoolean, optionKeys, positive, readFileOption, stringList } from './internal/validate.js'
import { readPeerCertificate, spiffeIdHost, type PeerCertificate } from './peer-certificate.js'
import { headerValues, type AuthRequest } from './request.js'
import { compileCallerPattern, isTrustDomainName, parseSpiffeId, type CallerPattern } from './spiffe.js'
import { TrustBundles, type PeerTrustBundles, type TrustBundleSource, type TrustBundleSpec } from './trust-bundles.js'

/** `'required'`: every request must come over TLS with a client certificate the socket authorized. `'optional'` (default): used when present. */
export type MtlsMode = 'required' | 'optional'

export interface MtlsOptions {
  mode?: MtlsMode
  /**
   * SPIFFE trust domains accepted from peer certificates; a peer outside them is refused. Also
   * requires peers to carry a SPIFFE ID.
   * - `['example.org', ...]`: the domains, whichever trusted CA issued the certificate.
   * - `{ 'example.org': bundle, 'partner.org': bundle }` (SPIFFE federation): each domain with its
   *   CA bundle ({@link TrustBundleSource}: PEM, PEM[], Buffer, or `{ path, pollSeconds? }`
   *   re-read when it changes, default every 5 s). A SPIFFE ID of domain D is then accepted only
   *   if the certificate chains to D's bundle ("client certificate does not chain to its trust
   *   domain's bundle" otherwise), on the TLS socket (with the chain the client sent) and for
   *   forwarded certificates. `mtls.forwarded.ca` defaults to all the bundles, and
   *   `mtls.forwarded.trustedProxies.spiffeIds` must name domains of the map. Pass the same object
   *   as `createServerTlsOptions({ trustDomains })` so the TLS stack trusts exactly these CAs.
   *   Not checked: proxy assertions without a certificate (`trustProxyAssertions`).
   * @example
   * mtls: { mode: 'required', trustDomains: { 'example.org': { path: 'ours.pem' }, 'partner.org': { path: 'partner.pem' } } }
   */
  trustDomains?: string[] | Readonly<Record<string, TrustBundleSource>>
  /** Client certificates forwarded by a TLS-terminating proxy (Envoy/Istio sidecar, ingress, nginx). */
  forwarded?: ForwardedOptions
}

/**
 * Accept the client certificate from a header, only when the immediate peer is a trusted proxy.
 * From anyone else the header is ignored: it can never raise privileges.
 *
 * @example
 * // Istio/Envoy sidecar on the same host, forward_client_cert_details: SANITIZE_SET, set_current_client_cert_details: { cert: true, chain: true }
 * mtls: { mode: 'required', forwarded: { trustedProxies: { cidrs: ['127.0.0.1/32', '::1/128'] }, ca: trustBundlePem } }
 */
export interface ForwardedOptions {
  /** `'xfcc'` (default): Envoy's `x-forwarded-client-cert`. `'nginx'`: a URL-encoded PEM, as `$ssl_client_escaped_cert`. */
  format?: ForwardedFormat
  /** Header name. Default `x-forwarded-client-cert` for `'xfcc'`, `x-ssl-client-cert` for `'nginx'`. */
  header?: string
  /** Who may set the header: an immediate peer whose authorized TLS certificate matches `spiffeIds`, or whose address is in `cidrs`. At least one is required. */
  trustedProxies: TrustedProxies
  /**
   * PEM CA bundle a forwarded certificate must chain to (Callsign verifies it itself). Required
   * unless `trustProxyAssertions`, or `mtls.trustDomains` maps domains to bundles (then all of them by default).
   */
  ca?: string | string[]
  /** Accept XFCC elements with only `Hash`/`URI`/`DNS` (no `Cert`), trusting the proxy's word. Default false. */
  trustProxyAssertions?: boolean
  /** Largest header accepted (400 above). Default 12288. */
  maxHeaderBytes?: number
  /**
   * XFCC elements: `'last'` (default) takes the element the trusted proxy appended (Envoy
   * `APPEND_FORWARD` chains); `'single'` requires exactly one (Envoy `SANITIZE_SET`, the usual
   * sidecar setting) and refuses more with 400, which also defeats element injection through
   * unquoted `URI=` values when the proxy is configured to forward `uri`.
   */
  elements?: ResolvedForwarded['elements']
}

/** The proxies trusted to forward a client certificate: by SPIFFE ID pattern and/or source address. */
export interface TrustedProxies {
  spiffeIds?: string[]
  cidrs?: string[]
}

export interface ResolvedMtls {
  mode: MtlsMode
  trustDomains: ReadonlySet<string> | undefined
  /** Each trust domain's CA bundle, when `trustDomains` was given as a map. */
  trustBundles: PeerTrustBundles | undefined
  forwarded: ResolvedForwarded | undefined
}

const MTLS_KEYS = optionKeys<MtlsOptions>()(['mode', 'trustDomains', 'forwarded'])
const FORWARDED_KEYS = optionKeys<ForwardedOptions>()(['format', 'header', 'trustedProxies', 'ca', 'trustProxyAssertions', 'maxHeaderBytes', 'elements'])
const PROXY_KEYS = optionKeys<TrustedProxies>()(['spiffeIds', 'cidrs'])
const MTLS_MODES: readonly MtlsMode[] = ['required', 'optional']

const invalidDomain = (domain: string): string => `contains an invalid trust domain ${JSON.stringify(domain)} (lower-case letters, digits, ".", "-", "_")`

/** The `mtls` option: a mode, or `{ mode, trustDomains, forwarded }`. Bundle files that change later are reported to `logger`. */
export function resolveMtls(value: unknown, logger: Logger): ResolvedMtls {
  if (typeof value === 'string' || value === undefined) {
    return Object.freeze({ mode: oneOf(value, 'mtls', MTLS_MODES, 'optional'), trustDomains: undefined, trustBundles: undefined, forwarded: undefined })
  }
  if (!isPlainObject(value)) return fail('mtls', "must be 'required', 'optional' or { mode, trustDomains }")
  checkKeys(value, MTLS_KEYS, 'mtls')
  const domains = value.trustDomains
  const trustBundles =
    isPlainObject(domains) && !Buffer.isBuffer(domains)
      ? new TrustBundles(resolveTrustBundles(domains), (message, details) => logger.warn(message, details))
      : undefined
  const forwarded = value.forwarded === undefined ? undefined : resolveForwarded(value.forwarded, trustBundles)
  const mode = oneOf(value.mode, 'mtls.mode', MTLS_MODES, 'optional')
  let trustDomains: Set<string> | undefined
  if (trustBundles) {
    trustDomains = new Set(trustBundles.domains())
  } else if (domains !== undefined) {
    trustDomains = new Set(stringList(domains, 'mtls.trustDomains'))
    for (const domain of trustDomains) if (!isTrustDomainName(domain)) fail('mtls.trustDomains', invalidDomain(domain))
  }
  return Object.freeze({ mode, trustDomains, trustBundles, forwarded })
}

/** `mtls.trustDomains` as a map: each domain's bundle read (files too) but not parsed yet. */
function resolveTrustBundles(value: Record<string, unknown>): TrustBundleSpec[] {
  const entries = Object.entries(value)
  if (entries.length === 0) fail('mtls.trustDomains', 'must name at least one trust domain')
  return entries.map(([domain, source]) => {
    const option = `mtls.trustDomains[${JSON.stringify(domain)}]`
    if (!isTrustDomainName(domain)) fail('mtls.trustDomains', invalidDomain(domain))
    const inline = (text: string): TrustBundleSpec => ({ domain, option, text, path: undefined, pollSeconds: 0 })
    if (typeof source === 'string') return inline(source)
    if (Buffer.isBuffer(source)) return inline(source.toString('utf8'))
    if (Array.isArray(source)) return inline(stringList(source, option).join('\n'))
    if (isFileOption(source) && source.path !== '') {
      const { text, path, pollSeconds } = readFileOption(source, option)
      return { domain, option: `${option}.path`, text, path, pollSeconds }
    }
    return fail(option, 'must be the PEM CA bundle of the trust domain: a string, an array of strings, a Buffer or { path, pollSeconds? }')
  })
}

function resolveForwarded(value: unknown, trustBundles: TrustBundles | undefined): ResolvedForwarded {
  if (!isPlainObject(value)) return fail('mtls.forwarded', 'must be an object { trustedProxies, ca, format?, header? }')
  checkKeys(value, FORWARDED_KEYS, 'mtls.forwarded')
  const format = oneOf(value.format, 'mtls.forwarded.format', ['xfcc', 'nginx'] as const, 'xfcc')
  const header = (value.header ?? (format === 'xfcc' ? 'x-forwarded-client-cert' : 'x-ssl-client-cert')) as string
  if (typeof header !== 'string' || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(header) || ['authorization', 'dpop', 'host'].includes(header.toLowerCase())) {
    fail('mtls.forwarded.header', `must be a header name other than Authorization, DPoP and Host (got ${JSON.stringify(header)})`)
  }
  const { proxySpiffeIds, proxyAddresses } = resolveTrustedProxies(value.trustedProxies)
  const trustProxyAssertions = optionalBoolean(value.trustProxyAssertions, 'mtls.forwarded.trustProxyAssertions') === true
  // With trust-domain bundles, forwarded certificates chain to those by default.
  if (value.ca === undefined && !trustProxyAssertions && !trustBundles) {
    fail(
      'mtls.forwarded.ca',
      'is required: the PEM CA bundle forwarded certificates must chain to (or set trustProxyAssertions: true to trust the proxy blindly)',
    )
  }
  if (format === 'nginx' && value.ca === undefined && !trustBundles) fail('mtls.forwarded.ca', 'is required with the nginx format')
  if (trustBundles && proxySpiffeIds) checkProxyDomains(proxySpiffeIds, trustBundles)
  const anchors =
    value.ca === undefined ? [] : parseAnchors(typeof value.ca === 'string' ? value.ca : stringList(value.ca, 'mtls.forwarded.ca'), 'mtls.forwarded.ca')
  return Object.freeze({
    header: header.toLowerCase(),
    format,
    proxySpiffeIds: proxySpiffeIds && Object.freeze(proxySpiffeIds),
    proxyAddresses,
    anchors: Object.freeze(anchors),
    trustProxyAssertions,
    maxHeaderBytes: positive(value.maxHeaderBytes, 'mtls.forwarded.maxHeaderBytes', 12_288, { integer: true, max: 65_536 }),
    elements: oneOf(value.elements, 'mtls.forwarded.elements', ['last', 'single'] as const, 'last'),
  })
}

/** `mtls.forwarded.trustedProxies`: SPIFFE ID patterns (never a client id) and/or CIDRs, at least one. */
function resolveTrustedProxies(value: unknown): Pick<ResolvedForwarded, 'proxyAddresses'> & { proxySpiffeIds: CallerPattern[] | undefined } {
  if (!isPlainObject(value)) return fail('mtls.forwarded.trustedProxies', 'must be { spiffeIds?, cidrs? }')
  checkKeys(value, PROXY_KEYS, 'mtls.forwarded.trustedProxies')
  if (value.spiffeIds === undefined && value.cidrs === undefined) {
    fail('mtls.forwarded.trustedProxies', 'must name the proxies by SPIFFE ID pattern (spiffeIds) and/or source address (cidrs)')
  }
  const proxySpiffeIds =
    value.spiffeIds === undefined
      ? undefined
      : stringList(value.spiffeIds, 'mtls.forwarded.trustedProxies.spiffeIds').map((pattern, i) => {
          if (!pattern.startsWith('spiffe://')) fail(`mtls.forwarded.trustedProxies.spiffeIds[${i}]`, 'must be a SPIFFE ID or prefix ending in "/*"')
          return compileCallerPattern(pattern, `mtls.forwarded.trustedProxies.spiffeIds[${i}]`)
        })
  const proxyAddresses =
    value.cidrs === undefined ? undefined : compileCidrs(stringList(value.cidrs, 'mtls.forwarded.trustedProxies.cidrs'), 'mtls.forwarded.trustedProxies.cidrs')
  return { proxySpiffeIds, proxyAddresses }
}

/** With trust-domain bundles, a proxy's SPIFFE ID is proven by its domain's bundle: that domain must have one. */
function checkProxyDomains(patterns: readonly CallerPattern[], trustBundles: TrustBundles): void {
  patterns.forEach((pattern, i) => {
    const domain = parseSpiffeId(pattern.source.replace(/\/\*$/, ''))?.trustDomain
    if (domain === undefined || trustBundles.anchorsOf(domain) === undefined) {
      fail(
        `mtls.forwarded.trustedProxies.spiffeIds[${i}]`,
        `names the trust domain ${JSON.stringify(domain)}, which has no bundle in "mtls.trustDomains": a proxy's SPIFFE ID is proven by its domain's bundle`,
      )
    }
  })
}

/** What peer resolution reads: the `mtls` option, the clock and the logger (for misconfigurations it can see). */
export type PeerConfig = { mtls: ResolvedMtls } & Pick<EnvironmentConfig, 'now' | 'logger'>

const CERTIFICATE_REQUIRED = 'a trusted client certificate is required'
const NOT_REQUESTED = 'the server is not requesting client certificates (requestCert)'
const NOT_TLS = 'the request did not arrive over TLS'
const UNTRUSTED_FORWARDER = 'a forwarded client certificate came from a peer that is not a trusted proxy'
const MISCONFIGURED: Readonly<Record<string, string>> = {
  [NOT_REQUESTED]:
    'Callsign: mtls.mode is "required" but the TLS server does not request client certificates, so every request is refused: create it with requestCert: true (createServerTlsOptions does), or configure mtls.forwarded behind a TLS-terminating proxy',
  [NOT_TLS]:
    'Callsign: mtls.mode is "required" but requests arrive over plain HTTP, so no client certificate can be seen: serve HTTPS with requestCert: true (createServerTlsOptions does), or configure mtls.forwarded behind a TLS-terminating proxy',
}
/** Guards (by their `mtls` slice) that already logged a server misconfiguration: it is logged once. */
const toldMisconfigured = new WeakSet<ResolvedMtls>()
/** Untrusted forwarders logged per guard, at most this many addresses each. */
const MAX_TOLD_FORWARDERS = 64

function tellMisconfigured(mtls: ResolvedMtls, logger: Logger, detail: string): void {
  if (toldMisconfigured.has(mtls)) return
  toldMisconfigured.add(mtls)
  logger.warn(MISCONFIGURED[detail]!)
}

/**
 * Whether a TLS socket's server asked for a client certificate: `false` only when it definitely did
 * not. Node keeps the handshake's choice on the socket (`_requestCert`, set from the server's
 * `requestCert`) and on its `tls.Server` (`requestCert`); neither is documented, so anything else
 * (another socket implementation) is `undefined` and never reported as a misconfiguration.
 */
function requestsCertificates(socket: object): boolean | undefined {
  const own = (socket as { _requestCert?: unknown })._requestCert
  if (typeof own === 'boolean') return own
  const server = (socket as { server?: { requestCert?: unknown } | null }).server
  return typeof server?.requestCert === 'boolean' ? server.requestCert : undefined
}

/**
 * Why a request that needs a certificate has none, when Callsign can see the cause in the setup
 * (the server or the proxy trust), not the client: one of the fixed details, else `undefined`.
 * Runs on the refusal path only.
 */
function misconfiguration(request: AuthRequest, forwarded: ResolvedForwarded | undefined, fromProxy: boolean): string | undefined {
  const socket = request.socket as { encrypted?: unknown } | null | undefined
  if (forwarded) {
    if (fromProxy) return undefined
    // Not from a proxy and no peer: the socket carried no certificate.
    if (headerValues(request, forwarded.header).length > 0) return UNTRUSTED_FORWARDER
  }
  if (!socket) return undefined
  if (socket.encrypted === true) return requestsCertificates(socket) === false ? NOT_REQUESTED : undefined
  // Behind a proxy (`mtls.forwarded`), plain HTTP is the usual setup.
  return forwarded ? undefined : NOT_TLS
}

/**
 * At startup, where an adapter sees its server (Fastify after `ready`): with `mtls.mode`
 * `'required'` and no `mtls.forwarded`, logs once per guard (the same warning a first request
 * would log) when `server` is a plain HTTP server, or a TLS server created without
 * `requestCert: true`. Any other object is left alone. Reads Node's `tls.Server#requestCert`.
 *
 * @example
 * fastify.addHook('onReady', async () => checkServerMtls(guard.config, fastify.server))
 */
export function checkServerMtls(config: PeerConfig, server: unknown): void {
  const { mode, forwarded } = config.mtls
  if (mode !== 'required' || forwarded || typeof server !== 'object' || server === null) return
  if (server instanceof TlsServer) {
    if ((server as { requestCert?: unknown }).requestCert === false) tellMisconfigured(config.mtls, config.logger, NOT_REQUESTED)
  } else if (typeof (server as { listen?: unknown }).listen === 'function' && !('requestCert' in server)) {
    tellMisconfigured(config.mtls, config.logger, NOT_TLS)
  }
}

/**
 * The client certificate that identifies each request's caller, per `mtls`: the socket's
 * authorized certificate, or, when the immediate peer is a trusted proxy (by its certificate's
 * SPIFFE ID or its address), the certificate it forwarded (none if it forwarded none); anyone
 * else's header is ignored. Then the policy: a certificate when `mode` is `'required'`
 * (`mtls_required`), a SPIFFE ID of an accepted trust domain when `trustDomains` is set
 * (`peer_unauthorized`). Starts watching the trust-bundle files, if any.
 *
 * A refusal the setup explains says so in its detail, and is logged: a server that does not request
 * certificates or a plain HTTP one (once per guard), or a forwarded certificate from a peer that is
 * not a trusted proxy (once per address, for the first 64 addresses).
 */
export function createPeerResolver(config: PeerConfig): (request: AuthRequest) => PeerCertificate | undefined {
  const { mode, trustDomains, trustBundles, forwarded } = config.mtls
  trustBundles?.watch()
  const forwardedPeers = forwarded ? new ForwardedPeers(forwarded, trustBundles) : undefined
  const certificateRequired = createCertificateRequired(config)
  return (request) => {
    const peer = presentedPeer(request, config, forwardedPeers)
    if (!peer && mode === 'required') throw certificateRequired(request)
    if (peer && trustDomains) checkTrustDomain(peer, trustDomains)
    return peer
  }
}

const remoteAddress = (request: AuthRequest): string | undefined => (request.socket as { remoteAddress?: string } | null | undefined)?.remoteAddress

/** Whether the immediate peer is a proxy trusted to forward a certificate: by its certificate's SPIFFE ID, or its address. */
function fromTrustedProxy(forwarded: ResolvedForwarded, request: AuthRequest, socketPeer: PeerCertificate | undefined): boolean {
  const proxySpiffeId = socketPeer?.spiffeId
  return (
    (proxySpiffeId !== undefined && forwarded.proxySpiffeIds?.some((pattern) => pattern.matches(proxySpiffeId)) === true) ||
    addressTrusted(forwarded.proxyAddresses, remoteAddress(request))
  )
}

/** The certificate the request presents: the socket's, or the one a trusted proxy forwarded. */
function presentedPeer(request: AuthRequest, config: PeerConfig, forwardedPeers: ForwardedPeers | undefined): PeerCertificate | undefined {
  const { trustBundles, forwarded } = config.mtls
  const state = readPeerCertificate(request.socket)
  if (state.kind === 'rejected') throw new AuthError('peer_unauthorized', state.reason, { cause: state.cause, check: 'client certificate' })
  const socketPeer = state.kind === 'authorized' ? state.peer : undefined
  // Federation: the socket's SPIFFE ID (a caller's or a proxy's) is proven only by its own domain's bundle.
  if (trustBundles && state.kind === 'authorized' && state.peer.spiffeId !== undefined) {
    trustBundles.checkConnection(request.socket!, state.peer.spiffeId, state.chain ?? [], config.now())
  }
  if (!forwarded || !forwardedPeers) return socketPeer
  if (!fromTrustedProxy(forwarded, request, socketPeer)) return socketPeer
  return forwardedPeers.read(headerValues(request, forwarded.header), config.now())
}

/** `mtls.trustDomains`: the peer's SPIFFE ID must name an accepted trust domain. */
function checkTrustDomain(peer: PeerCertificate, trustDomains: ReadonlySet<string>): void {
  if (peer.spiffeId === undefined) throw new AuthError('peer_unauthorized', 'client certificate has no SPIFFE ID', { check: 'client certificate' })
  if (!trustDomains.has(spiffeIdHost(peer.spiffeId))) {
    throw new AuthError('peer_unauthorized', 'client certificate is not from an accepted trust domain', { check: 'client certificate' })
  }
}

/** The `mtls_required` refusal of one guard, with the setup's cause when Callsign can see it (and logged). */
function createCertificateRequired(config: PeerConfig): (request: AuthRequest) => AuthError {
  const { forwarded } = config.mtls
  const toldForwarders = new Set<string>()
  return (request) => {
    const state = readPeerCertificate(request.socket)
    const fromProxy = forwarded !== undefined && fromTrustedProxy(forwarded, request, state.kind === 'authorized' ? state.peer : undefined)
    const detail = misconfiguration(request, forwarded, fromProxy)
    if (detail === undefined) return new AuthError('mtls_required', CERTIFICATE_REQUIRED, { check: 'client certificate' })
    if (detail === UNTRUSTED_FORWARDER) tellUntrustedForwarder(config, toldForwarders, remoteAddress(request) ?? 'unknown')
    else tellMisconfigured(config.mtls, config.logger, detail)
    return new AuthError('mtls_required', detail, { check: 'client certificate' })
  }
}

/** Log a forwarded certificate from a peer that is not a trusted proxy: once per address, for the first addresses. */
function tellUntrustedForwarder(config: PeerConfig, told: Set<string>, address: string): void {
  if (told.has(address) || told.size >= MAX_TOLD_FORWARDERS) return
  told.add(address)
  config.logger.warn(
    `Callsign: a forwarded client certificate (${config.mtls.forwarded!.header}) came from a peer that is not a trusted proxy and was ignored: if this peer is your proxy, add its address or SPIFFE ID to mtls.forwarded.trustedProxies`,
    { address },
  )
}
