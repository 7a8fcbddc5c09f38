/** A fetch that failed; `retryable` is false for answers that will not change soon (4xx). */
export class FetchFailure extends Error {
  constructor(message: string, readonly status?: number) {
    super(message)
  }
}

export interface FetchJsonOptions {
  timeoutSeconds: number
  maxBytes: number
}

/**
 * GET a JSON document with a timeout that covers the body too, a hard size limit (checked on
 * `content-length` and while streaming) and no redirects. Throws `FetchFailure`.
 */
export async function fetchJson(fetchFn: typeof globalThis.fetch, url: URL, options: FetchJsonOptions): Promise<unknown> {
  const signal = AbortSignal.timeout(options.timeoutSeconds * 1000)
  let response: Response
  try {
    response = await fetchFn(url.href, { signal, redirect: 'error', headers: { accept: 'application/json' } })
  } catch (error) {
    throw new FetchFailure(`${url.href}: ${signal.aborted ? 'timed out' : (error as Error).message}`)
  }
  try {
    if (!response.ok) throw new FetchFailure(`${url.href}: HTTP ${response.status}`, response.status)
    const length = Number(response.headers.get('content-length'))
    if (length > options.maxBytes) throw new FetchFailure(`${url.href}: document larger than ${options.maxBytes} bytes`)
    const chunks: Uint8Array[] = []
    let size = 0
    if (response.body) {
      const reader = response.body.getReader()
      for (;;) {
        const { done, value } = await reader.read()
        if (done) break
        size += value.byteLength
        if (size > options.maxBytes) {
          await reader.cancel().catch(() => {})
          throw new FetchFailure(`${url.href}: document larger than ${options.maxBytes} bytes`)
        }
        chunks.push(value)
      }
    }
    try {
      return JSON.parse(Buffer.concat(chunks).toString('utf8'))
    } catch {
      throw new FetchFailure(`${url.href}: not a JSON document`)
    }
  } catch (error) {
    if (error instanceof FetchFailure) throw error
    throw new FetchFailure(`${url.href}: ${signal.aborted ? 'timed out' : (error as Error).message}`)
  } finally {
    if (!response.bodyUsed) response.body?.cancel().catch(() => {})
  }
}
