import { fetchJson, FetchFailure, type FetchJsonOptions } from './internal/fetch-json.js'
import { parseSecureUrl } from './options.js'

/**
 * Metadata locations for an issuer, in the order tried:
 * RFC 8414 §3.1 (well-known suffix inserted between host and path), then OpenID Connect
 * Discovery §4 (suffix appended to the issuer).
 */
export function metadataUrls(issuer: string): URL[] {
  const url = new URL(issuer)
  const path = url.pathname === '/' ? '' : url.pathname.replace(/\/$/, '')
  return [
    new URL(`${url.origin}/.well-known/oauth-authorization-server${path}`),
    new URL(`${url.origin}${path}/.well-known/openid-configuration`),
  ]
}

/**
 * Discover an issuer's `jwks_uri`. The document's `issuer` must equal the configured issuer
 * exactly (RFC 8414 §3.3), and `jwks_uri` must be https (or loopback http).
 * A 404 on the RFC 8414 location falls through to OpenID; any other failure is reported.
 */
export async function discoverJwksUri(issuer: string, fetchFn: typeof globalThis.fetch, options: FetchJsonOptions): Promise<URL> {
  const failures: string[] = []
  for (const url of metadataUrls(issuer)) {
    let document: unknown
    try {
      document = await fetchJson(fetchFn, url, options)
    } catch (error) {
      failures.push((error as Error).message)
      if (error instanceof FetchFailure && error.status !== undefined && error.status >= 400 && error.status < 500) continue
      throw new FetchFailure(`metadata discovery failed: ${failures.join('; ')}`)
    }
    if (typeof document !== 'object' || document === null || Array.isArray(document)) {
      throw new FetchFailure(`${url.href}: metadata is not a JSON object`)
    }
    const metadata = document as Record<string, unknown>
    if (metadata.issuer !== issuer) {
      throw new FetchFailure(`${url.href}: metadata "issuer" ${JSON.stringify(metadata.issuer)} does not equal the configured issuer`)
    }
    try {
      return parseSecureUrl(metadata.jwks_uri, `${url.href} jwks_uri`)
    } catch (error) {
      throw new FetchFailure((error as Error).message)
    }
  }
  throw new FetchFailure(`metadata discovery failed: ${failures.join('; ')}`)
}
