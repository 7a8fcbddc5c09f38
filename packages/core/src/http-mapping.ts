import { HTTP_TABLE, type AuthError, type AuthErrorCode } from './errors.js'

/** What an adapter writes back for a refused request. */
export interface HttpErrorResponse {
  status: number
  headers: Record<string, string>
  /** Serialized RFC 9457 problem document. */
  body: string
}

/** The RFC 9457 problem document Callsign sends. `type` is stable per `code`. */
export interface ProblemDocument {
  type: string
  title: string
  status: number
  detail: string
  code: AuthErrorCode
  side?: 'caller' | 'user'
  scope?: string
}

/** Problem `type` URI for a code: `urn:callsign:problem:<code>`. */
export const problemType = (code: AuthErrorCode): string => `urn:callsign:problem:${code}`

// RFC 6750 §3: error_description and scope use a restricted character set; never a quote or backslash.
const quoted = (value: string): string => `"${value.replace(/[^\x20\x21\x23-\x5b\x5d-\x7e]/g, '?')}"`

/** What a guard knows when it writes a challenge. */
export interface ChallengeContext {
  realm: string
  /** `algs` of the `DPoP` challenge (RFC 9449 §7.1); `undefined` when DPoP is off. */
  dpopAlgs?: string | undefined
  /** Whether the `Bearer` scheme is accepted (not with `dpop.mode: 'required'`). Default true. */
  bearer?: boolean
  /** The scheme the request used, if it got that far: the error goes in that scheme's challenge. */
  scheme?: 'bearer' | 'dpop' | undefined
  /** A fresh server nonce, sent as `DPoP-Nonce` with `use_dpop_nonce` (RFC 9449 §8). */
  dpopNonce?: string | undefined
  /** URL of the RFC 9728 metadata document, sent as `resource_metadata` in every challenge (§5.1). */
  resourceMetadata?: string | undefined
}

/**
 * Fill in the `WWW-Authenticate` (RFC 6750 §3, RFC 9449 §7.1) and `Retry-After` headers of an
 * error. Every 400, 401 and 403 carries one challenge per accepted scheme (`Bearer`, then `DPoP`
 * with `algs`); the error code goes in the challenge of the scheme the request used, or in the
 * `DPoP` one for proof errors. A 503 carries `Retry-After`.
 */
export function applyChallenge(error: AuthError, context: ChallengeContext | string): AuthError {
  const ctx: ChallengeContext = typeof context === 'string' ? { realm: context } : context
  const headers: Record<string, string> = {}
  if (error.status === 503) {
    headers['retry-after'] = String(Math.max(1, Math.ceil(error.retryAfterSeconds ?? 30)))
    error.headers = headers
    return error
  }
  const bearer = ctx.bearer !== false || ctx.dpopAlgs === undefined
  const code = HTTP_TABLE[error.code].challenge
  let errorScheme: 'bearer' | 'dpop' = 'bearer'
  if (ctx.dpopAlgs !== undefined && (error.code === 'invalid_dpop_proof' || error.code === 'use_dpop_nonce' || ctx.scheme === 'dpop' || !bearer)) {
    errorScheme = 'dpop'
  }
  const errorParams: string[] = []
  if (code !== undefined) {
    errorParams.push(`error=${quoted(code)}`, `error_description=${quoted(error.message)}`)
    if (code === 'insufficient_scope' && error.scope && error.scope.length > 0) errorParams.push(`scope=${quoted(error.scope.join(' '))}`)
  }
  const metadata = ctx.resourceMetadata === undefined ? [] : [`resource_metadata=${quoted(ctx.resourceMetadata)}`]
  const challenges: string[] = []
  if (bearer) {
    challenges.push(['Bearer ' + `realm=${quoted(ctx.realm)}`, ...metadata, ...(errorScheme === 'bearer' ? errorParams : [])].join(', '))
  }
  if (ctx.dpopAlgs !== undefined) {
    challenges.push(
      ['DPoP ' + `realm=${quoted(ctx.realm)}`, `algs=${quoted(ctx.dpopAlgs)}`, ...metadata, ...(errorScheme === 'dpop' ? errorParams : [])].join(', '),
    )
  }
  headers['www-authenticate'] = challenges.join(', ')
  if (error.code === 'use_dpop_nonce' && ctx.dpopNonce) headers['dpop-nonce'] = ctx.dpopNonce
  error.headers = headers
  return error
}

/** The problem document of an error (RFC 9457). */
export function toProblem(error: AuthError): ProblemDocument {
  const problem: ProblemDocument = {
    type: problemType(error.code),
    title: HTTP_TABLE[error.code].title,
    status: error.status,
    detail: error.message,
    code: error.code,
  }
  if (error.side) problem.side = error.side
  if (error.scope && error.scope.length > 0) problem.scope = error.scope.join(' ')
  return problem
}

/**
 * The whole HTTP answer for a refused request: status, headers (challenge, `Retry-After`,
 * `content-type: application/problem+json`, `cache-control: no-store`) and body.
 * Adapters write exactly this; it is the same in every framework.
 */
export function toHttpResponse(error: AuthError, realm = 'api'): HttpErrorResponse {
  if (!error.headers['www-authenticate'] && !error.headers['retry-after']) applyChallenge(error, realm)
  return {
    status: error.status,
    headers: {
      ...error.headers,
      'content-type': 'application/problem+json',
      'cache-control': 'no-store',
    },
    body: JSON.stringify(toProblem(error)),
  }
}
