/**
 * Builds the nested RFC 8693 `act` (actor) claim of a delegation
 * (on-behalf-of) token from a list of actor subjects, nearest first: the
 * first actor is the current one, each following actor acted before it.
 *
 * @param actors - Actor `sub` values, current actor first.
 * @returns The value for the token's `act` claim, or `undefined` for no actor
 *   (an `undefined` claim is left out of the signed token).
 * @throws TypeError when an actor is not a non-empty string.
 * @example
 * ```ts
 * import { actorChain } from '@callsign/testing';
 *
 * actorChain('spiffe://example.org/ns/web/sa/frontend', 'spiffe://example.org/ns/edge/sa/gateway');
 * // { sub: 'spiffe://example.org/ns/web/sa/frontend', act: { sub: 'spiffe://example.org/ns/edge/sa/gateway' } }
 *
 * const obo = await issuer.signAccessToken({ sub: 'user:alice', act: actorChain(frontend, gateway) });
 * ```
 */
export function actorChain(...actors: string[]): Record<string, unknown> | undefined {
  let chain: Record<string, unknown> | undefined
  for (let i = actors.length - 1; i >= 0; i--) {
    const sub = actors[i]
    if (typeof sub !== 'string' || sub === '') {
      throw new TypeError(`actorChain: actor ${i} must be a non-empty string`)
    }
    chain = chain === undefined ? { sub } : { sub, act: chain }
  }
  return chain
}
