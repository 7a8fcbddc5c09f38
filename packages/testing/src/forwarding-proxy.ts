import { X509Certificate } from 'node:crypto'
import {
  request as httpRequest,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type RequestListener,
  type RequestOptions,
  type ServerResponse,
} from 'node:http'
import { createServer, request as httpsRequest, type Server } from 'node:https'
import type { TLSSocket } from 'node:tls'
import { listenOnLoopback } from './listen.js'
import { checkOptions, optionNames } from './options.js'
import { x509 } from './x509-provider.js'
import { certificateHash, nginxEscapedCert, xfccElement, type XfccElementOptions } from './xfcc.js'

/**
 * Options for {@link startForwardingProxy}.
 *
 * @example
 * ```ts
 * const options: ForwardingProxyOptions = {
 *   target: app.url, targetCa: ca.certPem, clientCert: ingressSvid,
 *   tls: { certPem: server.certPem, keyPem: server.keyPem, caPem: ca.certPem },
 *   format: 'xfcc',
 * };
 * ```
 */
export interface ForwardingProxyOptions {
  /** The app: `https://127.0.0.1:<port>` (or `http://...` for a plain-HTTP hop, as to a sidecar's app). */
  target: string
  /** CA(s) the app's server certificate must chain to (https targets). Default: Node's bundled CAs. */
  targetCa?: string | string[]
  /** The proxy's own certificate towards the app (mTLS to the app). Default: none. */
  clientCert?: { certPem: string; keyPem: string }
  /**
   * Downstream TLS: the proxy's server certificate and key, and the CA(s) a
   * client certificate must chain to (the proxy verifies it, as Envoy does).
   */
  tls: { certPem: string; keyPem: string; caPem: string | string[] }
  /** `'xfcc'`: Envoy's `x-forwarded-client-cert`. `'nginx'`: `$ssl_client_escaped_cert` (URL-encoded PEM). */
  format: 'xfcc' | 'nginx'
  /** Header name. Default `x-forwarded-client-cert` (`'xfcc'`), `x-ssl-client-cert` (`'nginx'`). */
  header?: string
  /**
   * Envoy's `forward_client_cert_details` for `'xfcc'`. `'sanitize-set'`
   * (default): any incoming header is removed and one element is set for the
   * verified client certificate. `'append-forward'`: the element is appended
   * to the incoming header (so the proxy's element is the last one). In both
   * modes the header is removed when the client presented no certificate (as
   * Envoy does). With `'nginx'` the header is always replaced
   * (`proxy_set_header`).
   */
  mode?: 'sanitize-set' | 'append-forward'
  /**
   * `'required'` (default): a handshake without a trusted client certificate
   * fails (`requestCert`, `rejectUnauthorized: true`). `'optional'`: a client
   * may present none (it is then forwarded without one); a certificate that
   * is presented must still be trusted, or the connection is closed.
   */
  clientCertificate?: 'required' | 'optional'
  /**
   * Envoy's `set_current_client_cert_details` (XFCC only; `Hash` and `By` are
   * always written). `chain` writes the leaf and the intermediates of its path
   * to `tls.caPem` (Node does not expose the chain the client sent, so put
   * intermediates in `tls.caPem`). Default `{ cert: true, chain: false, subject: true, uri: true, dns: true }`.
   * `{ cert: false }` gives an assertion-only element (Istio's default shape).
   */
  details?: { cert?: boolean; chain?: boolean; subject?: boolean; uri?: boolean; dns?: boolean }
}

/** What the proxy sent upstream for one request. */
export interface ForwardedRequest {
  method: string
  path: string
  /** The client certificate header as forwarded; `undefined` when none was sent. */
  header: string | undefined
}

/** A running {@link startForwardingProxy}. */
export interface ForwardingProxy {
  /** `https://127.0.0.1:<port>` */
  url: string
  /** Every request forwarded so far, in order. */
  requests: ForwardedRequest[]
  /** Stops listening and closes every open connection. Idempotent. */
  close(): Promise<void>
}

// RFC 9110 §7.6.1 connection-specific fields, never forwarded.
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'trailer'])

const PROXY_OPTIONS = optionNames<ForwardingProxyOptions>()([
  'target',
  'targetCa',
  'clientCert',
  'tls',
  'format',
  'header',
  'mode',
  'clientCertificate',
  'details',
])

/** A proxy's settings, its options with the defaults applied, and its record of forwarded requests. */
interface ProxySetup {
  options: ForwardingProxyOptions
  target: URL
  /** Name of the client certificate header, lower case. */
  header: string
  mode: NonNullable<ForwardingProxyOptions['mode']>
  details: Required<NonNullable<ForwardingProxyOptions['details']>>
  /** The proxy's own URI SANs (XFCC `By`). */
  by: string[]
  /** The certificates of `tls.caPem`, to rebuild a client certificate's path from. */
  anchors: X509Certificate[]
  requests: ForwardedRequest[]
}

/**
 * Starts a small TLS-terminating reverse proxy on `127.0.0.1`, standing in
 * for Envoy/Istio or nginx in front of an app: it terminates the client's
 * mTLS (verifying the client certificate against `tls.caPem`), forwards each
 * request to `target` (over mTLS with `clientCert` when given) and passes the
 * client certificate in a header, as Envoy's XFCC (`SANITIZE_SET` or
 * `APPEND_FORWARD`) or nginx's `$ssl_client_escaped_cert`.
 *
 * XFCC elements carry `By` (the proxy's URI SAN, if any), `Hash`, then per
 * {@link ForwardingProxyOptions.details}: `Cert`, `Chain` (the leaf and the
 * intermediates of its path to `tls.caPem`, not the root), `Subject` (RFC 2253
 * style), `URI`, `DNS`. The `Host` header is forwarded unchanged.
 *
 * @param options - See {@link ForwardingProxyOptions}.
 * @returns The running proxy.
 * @example
 * ```ts
 * const proxy = await startForwardingProxy({
 *   target: app.url, targetCa: ca.certPem, clientCert: ingressSvid,
 *   tls: { certPem: server.certPem, keyPem: server.keyPem, caPem: ca.certPem }, format: 'xfcc',
 * });
 * // call proxy.url with a client certificate; the app sees x-forwarded-client-cert
 * await proxy.close();
 * ```
 */
export async function startForwardingProxy(options: ForwardingProxyOptions): Promise<ForwardingProxy> {
  checkOptions('startForwardingProxy', options, PROXY_OPTIONS)
  const setup = proxySetup(options)
  const server = createProxyServer(options, (req, res) => forward(setup, req, res))
  const port = await listenOnLoopback(server)
  let closing: Promise<void> | undefined
  return {
    url: `https://127.0.0.1:${port}`,
    requests: setup.requests,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
      return closing
    },
  }
}

/** Checks the target and applies the defaults; reads the proxy's certificate and `tls.caPem`. */
function proxySetup(options: ForwardingProxyOptions): ProxySetup {
  const target = new URL(options.target)
  if (target.protocol !== 'https:' && target.protocol !== 'http:') throw new TypeError(`startForwardingProxy: target must be http(s): ${options.target}`)
  const header = (options.header ?? (options.format === 'xfcc' ? 'x-forwarded-client-cert' : 'x-ssl-client-cert')).toLowerCase()
  const mode = options.mode ?? 'sanitize-set'
  const details = { cert: true, chain: false, subject: true, uri: true, dns: true, ...options.details }
  const by = sans(options.tls.certPem).uris
  const anchors = (Array.isArray(options.tls.caPem) ? options.tls.caPem : [options.tls.caPem])
    .flatMap((pem) => pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [])
    .map((pem) => new X509Certificate(pem))
  return { options, target, header, mode, details, by, anchors, requests: [] }
}

/** The downstream TLS server: asks every client for a certificate, and with `'optional'` lets one come without. */
function createProxyServer(options: ForwardingProxyOptions, handler: RequestListener): Server {
  const optional = options.clientCertificate === 'optional'
  const server = createServer(
    {
      cert: options.tls.certPem,
      key: options.tls.keyPem,
      ca: options.tls.caPem,
      requestCert: true,
      rejectUnauthorized: !optional,
    },
    handler,
  )
  server.on('secureConnection', (socket: TLSSocket) => {
    // 'optional': no certificate is fine, an untrusted one is not.
    if (optional && socket.getPeerX509Certificate() !== undefined && !socket.authorized) socket.destroy()
  })
  return server
}

/** Forwards one request upstream with the client certificate header, and its answer back (502 when upstream fails). */
function forward(setup: ProxySetup, req: IncomingMessage, res: ServerResponse): void {
  const connectionTokens = new Set((req.headersDistinct.connection ?? []).flatMap((v) => v.split(',')).map((v) => v.trim().toLowerCase()))
  const headers = endToEndHeaders(req.headersDistinct, (name) => connectionTokens.has(name) || name === setup.header)
  const value = clientCertificateHeader(setup, req)
  if (value !== undefined) headers[setup.header] = value
  setup.requests.push({ method: req.method ?? 'GET', path: req.url ?? '/', header: value })

  const request = setup.target.protocol === 'https:' ? httpsRequest : httpRequest
  const upstream = request(upstreamOptions(setup, req, headers), (upstreamRes) => {
    res.writeHead(
      upstreamRes.statusCode ?? 502,
      endToEndHeaders(upstreamRes.headersDistinct, () => false),
    )
    upstreamRes.pipe(res)
  })
  upstream.on('error', () => {
    if (!res.headersSent) {
      res.writeHead(502, { 'content-type': 'text/plain' })
      res.end('bad gateway')
    } else {
      res.destroy()
    }
  })
  req.pipe(upstream)
}

/** The upstream request to `target`: the same method and path, over TLS with `targetCa` and `clientCert` when given. */
function upstreamOptions(setup: ProxySetup, req: IncomingMessage, headers: OutgoingHttpHeaders): RequestOptions {
  const { target, options } = setup
  const tlsTarget = target.protocol === 'https:'
  return {
    protocol: target.protocol,
    host: target.hostname.replace(/^\[|\]$/g, ''),
    port: target.port,
    method: req.method,
    path: req.url,
    headers,
    agent: false,
    ...(tlsTarget && options.targetCa !== undefined ? { ca: options.targetCa } : {}),
    ...(tlsTarget && options.clientCert ? { cert: options.clientCert.certPem, key: options.clientCert.keyPem } : {}),
  }
}

/** The headers to pass on: not hop-by-hop nor `dropped`; a header received once is sent as one value. */
function endToEndHeaders(received: IncomingMessage['headersDistinct'], dropped: (name: string) => boolean): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {}
  for (const [name, values] of Object.entries(received)) {
    if (!values || HOP_BY_HOP.has(name) || dropped(name)) continue
    headers[name] = values.length === 1 ? values[0]! : values
  }
  return headers
}

/** The header for the verified client certificate (`undefined` without one): nginx's escaped PEM, or this proxy's XFCC element, after the incoming ones with `'append-forward'`. */
function clientCertificateHeader(setup: ProxySetup, req: IncomingMessage): string | undefined {
  const socket = req.socket as TLSSocket
  const leaf = socket.authorized ? socket.getPeerX509Certificate() : undefined
  const incoming = req.headersDistinct[setup.header]
  if (!leaf) return undefined // no client certificate: any incoming header is dropped
  const leafPem = leaf.toString()
  if (setup.options.format === 'nginx') return nginxEscapedCert(leafPem)
  const mine = xfccElement(xfccElementOptions(setup, leaf, leafPem))
  if (setup.mode === 'append-forward' && incoming && incoming.length > 0) return [...incoming, mine].join(',')
  return mine
}

/** This proxy's XFCC element for a client certificate: `By` and `Hash`, then the `details` asked for. */
function xfccElementOptions(setup: ProxySetup, leaf: X509Certificate, leafPem: string): XfccElementOptions {
  const { by, details } = setup
  const names = sans(leafPem)
  const element: XfccElementOptions = { hash: certificateHash(leafPem) }
  if (by.length > 0) element.by = by[0]!
  if (details.cert) element.cert = leafPem
  if (details.chain) element.chain = [leafPem, ...intermediates(leaf, setup.anchors)]
  if (details.subject) element.subject = rfc2253(leaf)
  if (details.uri) element.uri = names.uris.length > 0 ? names.uris : ['']
  if (details.dns && names.dns.length > 0) element.dns = names.dns
  return element
}

/** URI and DNS SANs of a PEM certificate, read with a real ASN.1 parser. */
function sans(pem: string): { uris: string[]; dns: string[] } {
  const cert = new x509.X509Certificate(pem)
  const ext = cert.getExtension(x509.SubjectAlternativeNameExtension)
  const items = ext?.names.items ?? []
  return {
    uris: items.filter((item) => item.type === 'url').map((item) => item.value),
    dns: items.filter((item) => item.type === 'dns').map((item) => item.value),
  }
}

/**
 * The intermediates of the path from `leaf` to a root of `pool` (the proxy's `tls.caPem`), as PEM:
 * Node does not expose the chain a client sent on the server side, so the path is rebuilt.
 */
function intermediates(leaf: X509Certificate, pool: readonly X509Certificate[]): string[] {
  const out: string[] = []
  let current = leaf
  for (let depth = 0; depth < 10; depth++) {
    const issuer = pool.find((candidate) => candidate !== current && current.checkIssued(candidate) && current.verify(candidate.publicKey))
    if (!issuer || issuer.checkIssued(issuer)) break // unknown, or a self-signed root (not sent)
    out.push(issuer.toString())
    current = issuer
  }
  return out
}

/** Subject in RFC 2253 order (most specific first, `,`-separated), as Envoy prints it. */
function rfc2253(cert: X509Certificate): string {
  return cert.subject
    .split('\n')
    .filter((line) => line.length > 0)
    .reverse()
    .map((line) => line.replace(/([,+"\\<>;])/g, '\\$1'))
    .join(',')
}
