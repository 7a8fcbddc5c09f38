import { ASSERTION_ALGORITHMS } from './token-client-auth.js'
import { DPOP_ALGORITHMS } from './token-dpop.js'

/**
 * Which well-known metadata documents a {@link TestIssuer} serves:
 * `'oauth'` (RFC 8414 `/.well-known/oauth-authorization-server`),
 * `'openid'` (OpenID Connect Discovery `/.well-known/openid-configuration`),
 * `'both'` or `'none'`.
 *
 * @example
 * ```ts
 * const discovery: DiscoveryMode = 'both';
 * ```
 */
export type DiscoveryMode = 'oauth' | 'openid' | 'both' | 'none'

/**
 * Normalises an issuer path: leading slash, no trailing slash, `''` for the root.
 *
 * @param path - Raw path, e.g. `'tenant-a/'`; default `''`.
 * @returns The normalised path, e.g. `'/tenant-a'`.
 * @example
 * ```ts
 * normalizePath('tenant-a/'); // '/tenant-a'
 * ```
 * @internal
 */
export function normalizePath(path = ''): string {
  const trimmed = path.replace(/\/+$/, '')
  if (trimmed === '') return ''
  return trimmed.startsWith('/') ? trimmed : `/${trimmed}`
}

/**
 * Path of the RFC 8414 metadata document, using path insertion:
 * `/.well-known/oauth-authorization-server` + issuer path.
 *
 * @param issuerPath - Normalised issuer path, e.g. `'/tenant-a'`.
 * @returns The path, e.g. `'/.well-known/oauth-authorization-server/tenant-a'`.
 * @example
 * ```ts
 * oauthMetadataPath('/tenant-a');
 * ```
 * @internal
 */
export function oauthMetadataPath(issuerPath: string): string {
  return `/.well-known/oauth-authorization-server${issuerPath}`
}

/**
 * Path of the OpenID Connect Discovery document: issuer path +
 * `/.well-known/openid-configuration`.
 *
 * @param issuerPath - Normalised issuer path, e.g. `'/tenant-a'`.
 * @returns The path, e.g. `'/tenant-a/.well-known/openid-configuration'`.
 * @example
 * ```ts
 * openidMetadataPath('/tenant-a');
 * ```
 * @internal
 */
export function openidMetadataPath(issuerPath: string): string {
  return `${issuerPath}/.well-known/openid-configuration`
}

/**
 * Builds an authorization-server metadata document.
 *
 * @param input - Issuer, JWKS URI, algorithms, whether the OpenID members are
 *   added, the token endpoint's features when it is served, and overrides merged
 *   last (an `undefined` value removes a member).
 * @returns The document.
 * @example
 * ```ts
 * buildMetadata({ issuer, jwksUri, algorithms: ['ES256'], openid: false, overrides: {} });
 * ```
 * @internal
 */
export function buildMetadata(input: {
  issuer: string
  jwksUri: string
  algorithms: readonly string[]
  openid: boolean
  /** Set when the token endpoint answers: its members then say exactly what it does. */
  tokenEndpoint?: TokenEndpointFeatures
  overrides: Record<string, unknown>
}): Record<string, unknown> {
  const { issuer, jwksUri, algorithms, openid, overrides } = input
  const document: Record<string, unknown> = {
    issuer,
    jwks_uri: jwksUri,
    token_endpoint: `${issuer}/token`,
    authorization_endpoint: `${issuer}/authorize`,
    response_types_supported: ['code'],
    grant_types_supported: ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange'],
    token_endpoint_auth_methods_supported: ['tls_client_auth', 'self_signed_tls_client_auth', 'private_key_jwt'],
    tls_client_certificate_bound_access_tokens: true,
  }
  if (input.tokenEndpoint) Object.assign(document, tokenEndpointMetadata(issuer, input.tokenEndpoint))
  if (openid) {
    document['subject_types_supported'] = ['public']
    document['id_token_signing_alg_values_supported'] = [...algorithms]
  }
  return { ...document, ...overrides }
}

/**
 * What the served token endpoint does, for its metadata members.
 *
 * @internal
 */
export interface TokenEndpointFeatures {
  /** RFC 8693 token exchange is accepted. */
  exchange: boolean
  /** HTTPS with `tls.clientCa`: client certificates are verified (RFC 8705). */
  mtls: boolean
}

function tokenEndpointMetadata(issuer: string, features: TokenEndpointFeatures): Record<string, unknown> {
  const tokenEndpoint = `${issuer}/token`
  return {
    token_endpoint: tokenEndpoint,
    grant_types_supported: ['client_credentials', ...(features.exchange ? ['urn:ietf:params:oauth:grant-type:token-exchange'] : [])],
    token_endpoint_auth_methods_supported: [...(features.mtls ? ['tls_client_auth'] : []), 'private_key_jwt', 'client_secret_basic'],
    token_endpoint_auth_signing_alg_values_supported: [...ASSERTION_ALGORITHMS],
    dpop_signing_alg_values_supported: [...DPOP_ALGORITHMS],
    // Binding needs a verified client certificate, so only with `tls.clientCa`.
    tls_client_certificate_bound_access_tokens: features.mtls,
    // RFC 8705 §5: the same server asks every connection for a certificate, so the alias is the endpoint itself.
    ...(features.mtls ? { mtls_endpoint_aliases: { token_endpoint: tokenEndpoint } } : {}),
  }
}
