import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import type { IssuerKeyRing } from './issuer-keys.js'
import { oauthMetadataPath, openidMetadataPath, type DiscoveryMode } from './issuer-metadata.js'
import { applyOutage, padJson, type OutageMode } from './issuer-outage.js'
import { MAX_TOKEN_BODY_BYTES, readBody, type TokenEndpoint } from './token-endpoint.js'

/**
 * One request received by a {@link TestIssuer}.
 *
 * @example
 * ```ts
 * const first: RecordedRequest = issuer.requests[0]!; // { method: 'GET', path: '/jwks.json' }
 * ```
 */
export interface RecordedRequest {
  /** HTTP method. */
  method: string
  /** URL path without the query string. */
  path: string
}

/** A JSON document a test issuer serves, with the headers of its answer. @internal */
export interface ServedDocument {
  document: Record<string, unknown>
  headers: Record<string, string>
}

/** Where a test issuer serves its JWKS and metadata, and how they are made. @internal */
export interface DocumentRoutes {
  discovery: DiscoveryMode
  /** Normalised issuer path, e.g. `'/tenant-a'`. */
  issuerPath: string
  /** JWKS path, the issuer path included. */
  jwksPath: string
  /** `cache-control` of the JWKS answer; `null` omits it. */
  cacheControl: string | null
  keys: IssuerKeyRing
  /** The metadata document, with the OpenID members or without. */
  metadata: (openid: boolean) => Record<string, unknown>
}

/**
 * What a test issuer's HTTP handler serves, and its switches (read on every request).
 *
 * @internal
 */
export interface IssuerSite {
  /** The document served at a path, if any. */
  route: (path: string) => ServedDocument | undefined
  /** Path of the token endpoint: its requests' bodies are read for it. */
  tokenPath: string
  tokenEndpoint: TokenEndpoint | undefined
  /** Minimum body size in bytes in the `'huge'` outage mode. */
  hugeBytes: number
  /** Every request received, in order. */
  requests: RecordedRequest[]
  outage: OutageMode
  /** Delay of every answer in milliseconds. */
  latencyMs: number
}

/** One request being answered, its body being read when it is for the token endpoint. */
interface Exchange {
  req: IncomingMessage
  res: ServerResponse
  path: string
  body: Promise<Buffer | undefined> | undefined
}

/**
 * Routes paths to the JWKS and the metadata documents the discovery mode serves.
 *
 * @param routes - The paths and the documents' makers.
 * @returns The route: the document at a path, or `undefined`.
 * @internal
 */
export function documentRoute(routes: DocumentRoutes): (path: string) => ServedDocument | undefined {
  const { discovery, issuerPath, jwksPath, cacheControl, keys, metadata } = routes
  return (path) => {
    if (path === jwksPath) {
      return {
        document: keys.publicJwks(),
        headers: cacheControl === null ? {} : { 'cache-control': cacheControl },
      }
    }
    if ((discovery === 'oauth' || discovery === 'both') && path === oauthMetadataPath(issuerPath)) {
      return { document: metadata(false), headers: {} }
    }
    if ((discovery === 'openid' || discovery === 'both') && path === openidMetadataPath(issuerPath)) {
      return { document: metadata(true), headers: {} }
    }
    return undefined
  }
}

/**
 * The request handler of a test issuer: records the request, starts reading a token request's
 * body, and answers after the site's latency.
 *
 * @param site - What is served; its outage mode and latency are read per request.
 * @returns The handler.
 * @internal
 */
export function issuerHandler(site: IssuerSite): RequestListener {
  return (req, res) => {
    const path = new URL(req.url ?? '/', 'http://127.0.0.1').pathname
    site.requests.push({ method: req.method ?? 'GET', path })
    const body = site.tokenEndpoint && path === site.tokenPath ? readBody(req, MAX_TOKEN_BODY_BYTES) : undefined
    if (!body) req.resume()
    const exchange: Exchange = { req, res, path, body }
    if (site.latencyMs > 0) {
      const timer = setTimeout(() => respond(site, exchange), site.latencyMs)
      res.on('close', () => clearTimeout(timer))
    } else {
      respond(site, exchange)
    }
  }
}

/**
 * The issuer's server: plain HTTP, or HTTPS with `tls` (asking for a client certificate with `tls.clientCa`).
 *
 * @internal
 */
export function createIssuerServer(tls: { certPem: string; keyPem: string; clientCa?: string } | undefined, handler: RequestListener): Server | HttpsServer {
  if (!tls) return createServer(handler)
  const clientCa = tls.clientCa
  return createHttpsServer(
    {
      cert: tls.certPem,
      key: tls.keyPem,
      // Asked, not required: a missing or foreign certificate gets an OAuth error, not a failed handshake.
      ...(clientCa === undefined ? {} : { ca: clientCa, requestCert: true, rejectUnauthorized: false }),
    },
    handler,
  )
}

/** The outage first, then the token endpoint, the padded `'huge'` document, or the routed document. */
function respond(site: IssuerSite, { req, res, path, body }: Exchange): void {
  const mode = site.outage
  if (applyOutage(mode, req, res)) return
  const found = site.route(path)
  if (site.tokenEndpoint && body && mode !== 'huge') {
    void site.tokenEndpoint.handle(req, res, body)
    return
  }
  if (mode === 'huge') {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(padJson(found?.document ?? {}, site.hugeBytes))
    return
  }
  answerDocument(req, res, found)
}

/** 404 for an unknown path, 405 for a method other than GET and HEAD, else the document. */
function answerDocument(req: IncomingMessage, res: ServerResponse, found: ServedDocument | undefined): void {
  if (!found) {
    res.writeHead(404, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ error: 'not_found' }))
    return
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { 'content-type': 'application/json', allow: 'GET, HEAD' })
    res.end(JSON.stringify({ error: 'method_not_allowed' }))
    return
  }
  res.writeHead(200, { 'content-type': 'application/json', ...found.headers })
  res.end(JSON.stringify(found.document))
}
