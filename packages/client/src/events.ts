/**
 * What the client reports (option `onEvent`), in the style of core's decision events: one flat
 * object per event, no token, no key material.
 */

/** The kinds of {@link ClientEvent}. */
export type ClientEventType =
  | 'token_request' // a request to the token endpoint was answered with a token
  | 'token_refresh' // the same, made in the background ahead of expiry
  | 'token_failure' // a token request failed (refused, unreachable, timed out, garbage)
  | 'retry' // a call or token request sent once more (use_dpop_nonce, invalid_token)
  | 'identity_reload' // the workload certificate was replaced by a rotated one
  | 'identity_reload_failure' // rotated certificate files were refused; the previous pair stays

/** One event. */
export interface ClientEvent {
  readonly type: ClientEventType
  /** When it happened (ms since the epoch). */
  readonly time: number
  /** The service (its name in `services`), when the event is about one. */
  readonly service?: string
  /** `client_credentials` or `token_exchange`, for token events. */
  readonly grant?: 'client_credentials' | 'token_exchange'
  /** The binding of the token: `dpop`, `mtls` or `bearer`. */
  readonly binding?: 'dpop' | 'mtls' | 'bearer'
  /** How long the request took (ms), for token events. */
  readonly durationMs?: number
  /** For `retry`: why (`use_dpop_nonce`, `invalid_token`). */
  readonly reason?: string
  /** For failures: the error's code (`authorization_server_refused`, ...) and the server's `error` if any. */
  readonly code?: string
  readonly error?: string
  /** For token events: the token's lifetime left (seconds) when issued. */
  readonly expiresIn?: number
}

/** Receives events. Must not throw (a throwing hook is caught and ignored). */
export type ClientEventHook = (event: ClientEvent) => void
