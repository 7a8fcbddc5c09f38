// The AuthError a refused call produced: the assertion helpers every core test file shares.
import { expect } from 'vitest'
import { AuthError } from '../src/errors.js'

/** The `AuthError` `promise` rejects with; fails the test if it resolves or rejects with anything else. */
export async function refusal(promise: Promise<unknown>): Promise<AuthError> {
  try {
    await promise
  } catch (error) {
    expect(error).toBeInstanceOf(AuthError)
    return error as AuthError
  }
  throw new Error('expected an AuthError refusal')
}

/** The `AuthError` `run` throws; fails the test if it returns or throws anything else. */
export function refusalOf(run: () => unknown): AuthError {
  try {
    run()
  } catch (error) {
    expect(error).toBeInstanceOf(AuthError)
    return error as AuthError
  }
  throw new Error('expected an AuthError refusal')
}
