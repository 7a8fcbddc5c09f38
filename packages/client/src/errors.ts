/**
 * Typed errors of the calling side, each with a stable `code`. Messages name the service, the
 * authorization server's `error` and the HTTP status, never a token or key material.
 */

/** The stable codes of {@link ClientError}. */
export type ClientErrorCode =
  | 'authorization_server_refused'
  | 'authorization_server_unavailable'
  | 'service_refused'
  | 'service_unavailable'
  | 'server_identity_mismatch'
  | 'not_exchangeable'
  | 'identity_unavailable'

/** Base class: every error `@callsign/client` throws on a call is one of these. */
export class ClientError extends Error {
  readonly code: ClientErrorCode
  /** The service the call was for (its name in `services`), when there is one. */
  readonly service: string | undefined
  constructor(code: ClientErrorCode, message: string, options: { service?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = new.target.name
    this.code = code
    this.service = options.service
  }
}

/** The authorization server answered with an RFC 6749 §5.2 error (`invalid_client`, `invalid_scope`, ...). */
export class AuthorizationServerError extends ClientError {
  /** Its `error` member. */
  readonly error: string
  /** Its `error_description`, when given. */
  readonly errorDescription: string | undefined
  /** The HTTP status of its answer. */
  readonly status: number
  constructor(details: { error: string; errorDescription?: string; status: number; service?: string; cause?: unknown }) {
    const description = details.errorDescription ? ` (${details.errorDescription})` : ''
    super('authorization_server_refused', `the authorization server refused the token request: ${details.error}${description}, HTTP ${details.status}`, details)
    this.error = details.error
    this.errorDescription = details.errorDescription
    this.status = details.status
  }
}

/** The authorization server could not be reached, timed out, or answered something that is not a token response. */
export class AuthorizationServerUnavailableError extends ClientError {
  /** Why: `'timeout'`, `'network'`, `'http_status'` (5xx and other non-OAuth answers) or `'invalid_response'`. */
  readonly reason: 'timeout' | 'network' | 'http_status' | 'invalid_response'
  /** The HTTP status when there was an answer. */
  readonly status: number | undefined
  constructor(details: { reason: AuthorizationServerUnavailableError['reason']; status?: number; service?: string; cause?: unknown; message?: string }) {
    super(
      'authorization_server_unavailable',
      details.message ?? `the authorization server is unavailable (${details.reason}${details.status ? `, HTTP ${details.status}` : ''})`,
      details,
    )
    this.reason = details.reason
    this.status = details.status
  }
}

/** One parsed `WWW-Authenticate` challenge (RFC 9110 §11.6.1): its scheme and parameters (`error`, `scope`, ...). */
export interface Challenge {
  readonly scheme: string
  readonly parameters: Readonly<Record<string, string>>
}

/** The service refused the call (401, or 403 with a challenge or a problem document), after any retry. */
export class ServiceRefusedError extends ClientError {
  /** HTTP status of the service's answer. */
  readonly status: number
  /** Its `WWW-Authenticate` challenges, parsed. */
  readonly challenges: readonly Challenge[]
  /** Its `application/problem+json` body (RFC 9457), when it sent one. */
  readonly problem: Readonly<Record<string, unknown>> | undefined
  constructor(details: { service: string; status: number; challenges: readonly Challenge[]; problem?: Record<string, unknown> }) {
    // A problem document's `code` is the precise reason (a 403's challenge says insufficient_scope for every refusal); else the challenge's error.
    const code = typeof details.problem?.code === 'string' && /^[\w.:-]{1,64}$/.test(details.problem.code) ? details.problem.code : undefined
    const error = code ?? details.challenges.find((challenge) => challenge.parameters.error)?.parameters.error
    super('service_refused', `service "${details.service}" refused the call: HTTP ${details.status}${error ? ` ${error}` : ''}`, details)
    this.status = details.status
    this.challenges = details.challenges
    this.problem = details.problem
  }
}

/**
 * A call to the service failed below HTTP, so the service never answered: the connection was
 * refused, reset or timed out (`reason: 'network'`), or TLS refused the server (`'tls'`: its
 * certificate does not name the host, chains to no trusted CA, has expired, or the handshake
 * failed). `cause` is the original error (its `code` says which).
 */
export class ServiceUnavailableError extends ClientError {
  /** `'tls'` when the cause is a certificate or TLS error, else `'network'`. */
  readonly reason: 'network' | 'tls'
  constructor(details: { service: string; reason: ServiceUnavailableError['reason']; code?: string; cause: unknown }) {
    const what = details.reason === 'tls' ? 'TLS refused the connection' : 'no connection'
    super('service_unavailable', `service "${details.service}" could not be reached: ${what}${details.code ? ` (${details.code})` : ''}`, details)
    this.reason = details.reason
  }
}

/** The server that answered is not the configured service: its certificate's SPIFFE ID does not match `spiffeId`. */
export class ServerIdentityError extends ClientError {
  /** The configured pattern. */
  readonly expected: string
  /** The SPIFFE ID the server's certificate carries, if any. */
  readonly actual: string | undefined
  constructor(details: { service: string; expected: string; actual: string | undefined }) {
    super(
      'server_identity_mismatch',
      `service "${details.service}" answered as ${details.actual ?? 'a certificate without a SPIFFE ID'}, expected ${details.expected}`,
      details,
    )
    this.expected = details.expected
    this.actual = details.actual
  }
}
