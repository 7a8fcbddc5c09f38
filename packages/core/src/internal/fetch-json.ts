/** A fetch that failed; `retryable` is false for answers that will not change soon (4xx). */
export class FetchFailure extends Error {
  constructor(
    message: string,
    readonly status?: number,
  ) {
    super(message)
  }
}

export interface FetchJsonOptions {
  timeoutSeconds: number
  maxBytes: number
  /** A POST instead of a GET (token introspection): extra headers and a form body. */
  post?: { headers: Record<string, string>; body: string }
}

/**
 * GET (or, with `post`, POST) a JSON document with a timeout that covers the body too, a hard size limit (checked on
 * `content-length` and while streaming) and no redirects. Throws `FetchFailure`.
 */
export async function fetchJson(fetchFn: typeof globalThis.fetch, url: URL, options: FetchJsonOptions): Promise<unknown> {
  return parseJson((await fetchBody(fetchFn, url, options)).text, url)
}

/** `text` as JSON; throws `FetchFailure` when it is not. */
export function parseJson(text: string, url: URL): unknown {
  try {
    return JSON.parse(text)
  } catch {
    throw new FetchFailure(`${url.href}: not a JSON document`)
  }
}

/** {@link fetchJson}'s request and bounded read, giving the body as text with its media type. */
export async function fetchBody(fetchFn: typeof globalThis.fetch, url: URL, options: FetchJsonOptions): Promise<{ text: string; contentType: string | null }> {
  const signal = AbortSignal.timeout(options.timeoutSeconds * 1000)
  const deadline = startDeadline(url, options.timeoutSeconds)
  let response: Response
  try {
    response = await Promise.race([fetchFn(url.href, requestInit(signal, options.post)), deadline.expired])
  } catch (error) {
    deadline.clear()
    throw new FetchFailure(`${url.href}: ${signal.aborted || error instanceof FetchFailure ? 'timed out' : (error as Error).message}`)
  }
  let reader: ReadableStreamDefaultReader<Uint8Array> | undefined
  try {
    if (!response.ok) throw new FetchFailure(`${url.href}: HTTP ${response.status}`, response.status)
    const length = Number(response.headers.get('content-length'))
    if (length > options.maxBytes) throw new FetchFailure(`${url.href}: document larger than ${options.maxBytes} bytes`)
    const chunks = response.body ? await readChunks((reader = response.body.getReader()), deadline.expired, url, options.maxBytes) : []
    return { text: Buffer.concat(chunks).toString('utf8'), contentType: response.headers.get('content-type') }
  } catch (error) {
    if (error instanceof FetchFailure) throw error
    throw new FetchFailure(`${url.href}: ${signal.aborted ? 'timed out' : (error as Error).message}`)
  } finally {
    deadline.clear()
    if (reader) reader.cancel().catch(() => {})
    else if (!response.bodyUsed) response.body?.cancel().catch(() => {})
  }
}

/**
 * A promise rejected with `timed out` after `seconds`. The fetch's signal alone does not bound the
 * body: once undici's Request is garbage-collected (with `redirect: 'error'`), its abort no longer
 * reaches the body stream and a read of a body the server stopped sending never settles. So every
 * await also races this strong timer.
 */
function startDeadline(url: URL, seconds: number): { expired: Promise<never>; clear(): void } {
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new FetchFailure(`${url.href}: timed out`)), seconds * 1000)
  })
  expired.catch(() => {})
  return { expired, clear: () => clearTimeout(timer) }
}

/** A GET, or with `post` a POST of its form; JSON accepted, no redirects. */
function requestInit(signal: AbortSignal, post: FetchJsonOptions['post']): RequestInit {
  return post
    ? { method: 'POST', signal, redirect: 'error', headers: { accept: 'application/json', ...post.headers }, body: post.body }
    : { signal, redirect: 'error', headers: { accept: 'application/json' } }
}

/** The body's chunks, each read racing `expired`; refuses a body larger than `maxBytes` (cancelling the read). */
async function readChunks(reader: ReadableStreamDefaultReader<Uint8Array>, expired: Promise<never>, url: URL, maxBytes: number): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { done, value } = await Promise.race([reader.read(), expired])
    if (done) return chunks
    size += value.byteLength
    if (size > maxBytes) {
      await reader.cancel().catch(() => {})
      throw new FetchFailure(`${url.href}: document larger than ${maxBytes} bytes`)
    }
    chunks.push(value)
  }
}
