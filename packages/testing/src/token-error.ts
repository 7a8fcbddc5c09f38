/**
 * A refusal of the token endpoint: an RFC 6749 §5.2 error response (`error`, a short fixed
 * `error_description`, status and extra headers such as `WWW-Authenticate`).
 *
 * @example
 * ```ts
 * throw new TokenError(400, 'invalid_scope', 'scope not allowed for this client')
 * ```
 * @internal
 */
export class TokenError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly description: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(`${error}: ${description}`)
    this.name = 'TokenError'
  }
}
