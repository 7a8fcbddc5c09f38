import { describe, expect, it } from 'vitest'
import { ServiceRefusedError } from '@callsign/client'

describe('ServiceRefusedError message', () => {
  const insufficientScope = [{ scheme: 'DPoP', parameters: { error: 'insufficient_scope' } }]

  it('names the problem code when the service sent one: a 403 challenge says insufficient_scope for every refusal', () => {
    const error = new ServiceRefusedError({ service: 'orders', status: 403, challenges: insufficientScope, problem: { code: 'on_behalf_of_required' } })
    expect(error.message).toBe('service "orders" refused the call: HTTP 403 on_behalf_of_required')
    expect(error.code).toBe('service_refused')
  })

  it("falls back to the challenge's error, and ignores a problem code that is not a short token", () => {
    expect(new ServiceRefusedError({ service: 'orders', status: 403, challenges: insufficientScope }).message).toBe(
      'service "orders" refused the call: HTTP 403 insufficient_scope',
    )
    const odd = new ServiceRefusedError({ service: 'orders', status: 403, challenges: insufficientScope, problem: { code: 'x'.repeat(65) } })
    expect(odd.message).toBe('service "orders" refused the call: HTTP 403 insufficient_scope')
    expect(new ServiceRefusedError({ service: 'orders', status: 401, challenges: [] }).message).toBe('service "orders" refused the call: HTTP 401')
  })
})
