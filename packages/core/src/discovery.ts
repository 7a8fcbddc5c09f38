import { fetchJson, FetchFailure, type FetchJsonOptions } from './internal/fetch-json.js'
import { isPlainObject, parseSecureUrl } from './internal/validate.js'

/**
 * Metadata locations for an issuer, in the order tried:
 * RFC 8414 §3.1 (well-known suffix inserted between host and path), then OpenID Connect
 * Discovery §4 (suffix appended to the issuer).
 */
export function metadataUrls(issuer: string): URL[] {
  const url = new URL(issuer)
  const path = url.pathname === '/' ? '' : url.pathname.replace(/\/$/, '')
  return [new URL(`${url.origin}/.well-known/oauth-authorization-server${path}`), new URL(`${url.origin}${path}/.well-known/openid-configuration`)]
}

/**
 * An issuer's metadata document (RFC 8414 location, then OpenID), and where it was found. The
 * document's `issuer` must equal the configured issuer exactly (RFC 8414 §3.3). A 4xx on the first
 * location falls through to the next; any other failure is reported. Throws `FetchFailure`.
 */
export async function fetchIssuerMetadata(
  issuer: string,
  fetchFn: typeof globalThis.fetch,
  options: FetchJsonOptions,
): Promise<{ url: URL; metadata: Record<string, unknown> }> {
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
    if (!isPlainObject(document)) {
      throw new FetchFailure(`${url.href}: metadata is not a JSON object`)
    }
    const metadata = document
    if (metadata.issuer !== issuer) {
      throw new FetchFailure(`${url.href}: metadata "issuer" ${JSON.stringify(metadata.issuer)} does not equal the configured issuer`)
    }
    return { url, metadata }
  }
  throw new FetchFailure(`metadata discovery failed: ${failures.join('; ')}`)
}

/**
 * Discover an issuer's `jwks_uri` from its metadata ({@link fetchIssuerMetadata}); it must be
 * https (or loopback http). Throws `FetchFailure`.
 */
export async function discoverJwksUri(issuer: string, fetchFn: typeof globalThis.fetch, options: FetchJsonOptions): Promise<URL> {
  const { url, metadata } = await fetchIssuerMetadata(issuer, fetchFn, options)
  try {
    return parseSecureUrl(metadata.jwks_uri, `${url.href} jwks_uri`)
  } catch (error) {
    throw new FetchFailure((error as Error).message)
  }
}
