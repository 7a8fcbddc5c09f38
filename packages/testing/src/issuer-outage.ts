import type { IncomingMessage, ServerResponse } from 'node:http'

/**
 * How a {@link TestIssuer} misbehaves, applied to every request it receives:
 *
 * - `'none'`: normal operation (default).
 * - `'down'`: every request is answered `503 Service Unavailable`.
 * - `'reset'`: the connection is reset (TCP RST) without a response; over TLS it is closed without one.
 * - `'hang'`: the request is never answered (until the issuer is closed).
 * - `'garbage'`: `200` with `content-type: application/json` and a non-JSON body.
 * - `'huge'`: `200` with a valid JSON body of several MiB (the real document
 *   plus a `padding` member), to test response-size limits.
 *
 * @example
 * ```ts
 * issuer.setOutage('down');
 * ```
 */
export type OutageMode = 'none' | 'down' | 'reset' | 'hang' | 'garbage' | 'huge'

/**
 * Body served in the `'garbage'` outage mode: HTML with a JSON-looking fragment.
 *
 * @example
 * ```ts
 * res.end(GARBAGE_BODY);
 * ```
 * @internal
 */
export const GARBAGE_BODY = '<html><body>502 Bad Gateway: this is not JSON {"keys": [</body></html>'

/**
 * Applies an outage mode that needs no document to a request.
 *
 * @param mode - The active mode.
 * @param req - The request.
 * @param res - The response.
 * @returns `true` when the request has been dealt with (or deliberately left
 *   unanswered), `false` when normal routing (or `'huge'` padding) applies.
 * @example
 * ```ts
 * if (applyOutage(mode, req, res)) return;
 * ```
 * @internal
 */
export function applyOutage(mode: OutageMode, req: IncomingMessage, res: ServerResponse): boolean {
  switch (mode) {
    case 'down':
      res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' })
      res.end(JSON.stringify({ error: 'temporarily_unavailable' }))
      return true
    case 'reset':
      // A TCP RST needs the TCP handle, which a TLS socket wraps: over TLS the connection is closed without an answer instead.
      if ('encrypted' in req.socket) req.socket.destroy()
      else req.socket.resetAndDestroy()
      return true
    case 'hang':
      return true
    case 'garbage':
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(GARBAGE_BODY)
      return true
    case 'none':
    case 'huge':
      return false
    default:
      throw new TypeError(`test issuer: unknown outage mode "${String(mode)}"`)
  }
}

/**
 * Serialises `document` padded to at least `bytes` bytes with a `padding`
 * string member, so the result is still valid JSON.
 *
 * @param document - The JSON object to pad; default `{}`.
 * @param bytes - Minimum size of the result in bytes.
 * @returns The padded JSON text.
 * @example
 * ```ts
 * const body = padJson({ keys: [] }, 5 * 1024 * 1024);
 * ```
 * @internal
 */
export function padJson(document: Record<string, unknown>, bytes: number): string {
  const base = Buffer.byteLength(JSON.stringify({ ...document, padding: '' }))
  return JSON.stringify({ ...document, padding: 'x'.repeat(Math.max(0, bytes - base)) })
}
