import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('../..', import.meta.url))

describe('pnpm demo', () => {
  it('runs end to end over mTLS, exits 0 and prints the expected decisions, both ends of a call included', () => {
    const result = spawnSync(process.execPath, ['examples/demo/demo.js'], { cwd: root, encoding: 'utf8', timeout: 15_000 })
    expect(result.stderr).toBe('')
    expect(result.status).toBe(0)
    const rows = result.stdout
      .split('\n')
      .map((line) => /^\s*(\d+)\s{2}.*?\s{2}(\d{3}|---)\s{2,}(allowed|refused)(?:: (\S+))?$/.exec(line))
      .filter((match) => match !== null)
      .map(([, n, status, outcome, code]) => [Number(n), status === '---' ? '---' : Number(status), outcome, code ?? '-'])
    expect(rows).toEqual([
      [1, 200, 'allowed', '-'],
      [2, 201, 'allowed', '-'],
      [3, 200, 'allowed', '-'],
      [4, 403, 'refused', 'caller_scope_exceeded'],
      [5, 403, 'refused', 'caller_forbidden'],
      [6, 403, 'refused', 'insufficient_scope'],
      [7, 403, 'refused', 'insufficient_scope'],
      [8, 401, 'refused', 'mtls_required'],
      [9, 401, 'refused', 'peer_unauthorized'],
      [10, 401, 'refused', 'invalid_token'],
      [11, 401, 'refused', 'invalid_token'],
      [12, 401, 'refused', 'invalid_token'],
      [13, 401, 'refused', 'invalid_token'],
      [14, 401, 'refused', 'invalid_token'],
      [15, 200, 'allowed', '-'],
      [16, 401, 'refused', 'invalid_dpop_proof'],
      [17, 401, 'refused', 'invalid_dpop_proof'],
      [18, 401, 'refused', 'invalid_token'],
      [19, 401, 'refused', 'invalid_token'],
      [20, 200, 'allowed', '-'],
      [21, 401, 'refused', 'credentials_missing'],
      [22, 403, 'refused', 'insufficient_scope'],
      // Both ends of a call: @callsign/client between three Callsign-protected services.
      [23, 200, 'allowed', '-'],
      [24, 200, 'allowed', '-'],
      [25, 200, 'allowed', '-'],
      [26, 403, 'refused', 'caller_forbidden'],
      [27, '---', 'refused', 'server_identity_mismatch'],
    ])
    expect(result.stdout).toContain('caller report, no user, certificate only, no token')
    expect(result.stdout).toContain('DPoP proof has already been used')
    expect(result.stdout).toContain('(user side)')
    expect(result.stdout).toContain('(caller side)')
    expect(result.stdout).toContain('every decision as expected')
    // What each service saw: the caller, the user, the binding and the act chain (nearest actor first).
    expect(result.stdout).toContain("caller gateway, user alice, cert-bound token, act: none (alice's own token)")
    expect(result.stdout).toContain('caller frontend, user alice, DPoP-bound token, act: alice via frontend')
    expect(result.stdout).toContain('caller orders, user alice, cert-bound token, act: alice via orders <- frontend')
    expect(result.stdout).toContain('ServiceRefusedError (service_refused)')
    expect(result.stdout).toMatch(/ServerIdentityError: service "payments" answered as spiffe:\/\/example\.org\/ns\/shop\/sa\/orders/)
    expect(result.stdout).toContain('5 hops, every decision as expected (3 allowed, 2 refused); 4 token exchanges')
    expect(result.stdout).not.toContain('UNEXPECTED')
    // It fits a 120-column terminal.
    expect(Math.max(...result.stdout.split('\n').map((line) => line.length))).toBeLessThanOrEqual(120)
  })
})
