import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'

/** One read of a file: its text, or why it could not be read. `hash` tells two reads apart. */
export type FileRead = { text: string; hash: string } | { error: NodeJS.ErrnoException; hash: string }

/** The watched files as read at one moment, by path. */
export type FileSnapshot = ReadonlyMap<string, FileRead>

/**
 * Where the watched content stands after the last read:
 * - `applied`: the files hold the content in use;
 * - `seen-once`: they hold new content, read once; it is applied if the next read agrees (a
 *   rotation may be half done, a file half written);
 * - `refused`: they hold new content that was refused and reported; it is not tried again until
 *   the files change. The previous content stays in use.
 */
export type ReloadState = 'applied' | 'seen-once' | 'refused'

/**
 * When new content is applied:
 * - `'two-reads'` (polling): once two consecutive reads agree;
 * - `'first-read'`: at the first read that finds it, for a check made right before the material
 *   is used (waiting for a second read would use stale material once more).
 */
export type ConfirmRule = 'two-reads' | 'first-read'

export interface WatchedFilesOptions {
  /** The files, each once. */
  paths: readonly string[]
  /** The content in use at the start, as it was read for it. */
  initial: FileSnapshot
  /**
   * Check the new content and swap it in; throw to refuse it (nothing may have changed then).
   * `changed`: the paths whose content differs from the content in use.
   */
  apply: (snapshot: FileSnapshot, changed: string[]) => void
  /** New content was refused: once per distinct content by checks, at every refused {@link WatchedFiles.reload}. */
  onRefused: (error: unknown, snapshot: FileSnapshot) => void
  /** A check found the content in use. */
  onUnchanged?: () => void
  /** Default `'two-reads'`. */
  confirm?: ConfirmRule
}

const hashOf = (text: string): string => createHash('sha256').update(text).digest('hex')

/** The read of a text already in hand (read by whoever resolved the options). */
export const readOfText = (text: string): FileRead => ({ text, hash: hashOf(text) })

const readOfError = (error: unknown): FileRead => ({
  error: error as NodeJS.ErrnoException,
  hash: `unreadable:${(error as NodeJS.ErrnoException).code ?? ''}`,
})

/** Read every file now, synchronously: the start fails on a bad file rather than the first use. */
export function readFilesSync(paths: readonly string[]): FileSnapshot {
  const snapshot = new Map<string, FileRead>()
  for (const path of paths) {
    try {
      snapshot.set(path, readOfText(readFileSync(path, 'utf8')))
    } catch (error) {
      snapshot.set(path, readOfError(error))
    }
  }
  return snapshot
}

async function readFiles(paths: readonly string[]): Promise<FileSnapshot> {
  const reads = await Promise.all(paths.map((path) => readFile(path, 'utf8').then(readOfText, readOfError)))
  return new Map(paths.map((path, i) => [path, reads[i]!]))
}

/** The text of `path` in `snapshot`; throws the error that made it unreadable. */
export function textOf(snapshot: FileSnapshot, path: string): string {
  const read = snapshot.get(path)
  if (!read) throw new Error(`${path}: not read`)
  if ('error' in read) throw read.error
  return read.text
}

/**
 * Files followed by content (SHA-256 of each), which also sees atomic renames and Kubernetes
 * `..data` symlink swaps that `fs.watch` misses. One set of rules for every reloaded file:
 * content is compared with the content in use, applied by its {@link ConfirmRule}, and a refused
 * content keeps the previous one and is reported once (see {@link ReloadState}). Reads run one at
 * a time. Polling timers do not keep the process alive.
 */
export class WatchedFiles {
  readonly #options: WatchedFilesOptions
  readonly #paths: readonly string[]
  #inUse: FileSnapshot
  #seen: string | undefined
  #refused: string | undefined
  #state: ReloadState = 'applied'
  #queue: Promise<unknown> = Promise.resolve()
  #intervalMs = 0
  #polling = false
  #timer: NodeJS.Timeout | undefined
  #closed = false

  constructor(options: WatchedFilesOptions) {
    this.#options = options
    this.#paths = [...new Set(options.paths)]
    this.#inUse = options.initial
  }

  get state(): ReloadState {
    return this.#state
  }

  /** Read the files and act on what changed, by the rules. Does nothing once closed. */
  check(): Promise<void> {
    return this.#enqueue(async () => {
      const snapshot = await readFiles(this.#paths)
      if (this.#closed) return
      const signature = this.#signatureOf(snapshot)
      if (signature === this.#signatureOf(this.#inUse)) {
        this.#seen = undefined
        this.#state = 'applied'
        this.#options.onUnchanged?.()
      } else if (this.#options.confirm !== 'first-read' && signature !== this.#seen) {
        this.#seen = signature
        this.#state = 'seen-once'
      } else if (signature === this.#refused) {
        this.#state = 'refused'
      } else {
        this.#apply(snapshot, signature)
      }
    })
  }

  /**
   * Read the files and apply what changed now, without waiting for a second read (an explicit
   * reload). True when the content in use is the files' (changed and applied, or unchanged); a
   * refusal is reported every time.
   */
  reload(): Promise<boolean> {
    return this.#enqueue(async () => {
      const snapshot = await readFiles(this.#paths)
      const signature = this.#signatureOf(snapshot)
      return signature === this.#signatureOf(this.#inUse) || this.#apply(snapshot, signature)
    })
  }

  /** Check every `intervalMs` until {@link stop}; one read at a time. Idempotent. */
  start(intervalMs: number): void {
    if (this.#closed || this.#polling) return
    this.#polling = true
    this.#intervalMs = intervalMs
    this.#schedule()
  }

  stop(): void {
    this.#polling = false
    clearTimeout(this.#timer)
    this.#timer = undefined
  }

  /** Stop for good: no more polling, and a read in flight is not acted on. {@link reload} still works. Idempotent. */
  close(): void {
    this.#closed = true
    this.stop()
  }

  #signatureOf(snapshot: FileSnapshot): string {
    return this.#paths.map((path) => snapshot.get(path)?.hash ?? 'missing').join(',')
  }

  #apply(snapshot: FileSnapshot, signature: string): boolean {
    const changed = this.#paths.filter((path) => this.#inUse.get(path)?.hash !== snapshot.get(path)?.hash)
    try {
      this.#options.apply(snapshot, changed)
    } catch (error) {
      this.#refused = signature
      this.#state = 'refused'
      this.#options.onRefused(error, snapshot)
      return false
    }
    this.#inUse = snapshot
    this.#refused = undefined
    this.#state = 'applied'
    return true
  }

  #enqueue<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(task, task)
    this.#queue = run.catch(() => undefined)
    return run
  }

  #schedule(): void {
    if (!this.#polling || this.#timer !== undefined) return
    const mine = setTimeout(() => {
      // A callback that throws (a logger) must not stop the polling.
      void this.check()
        .catch(() => undefined)
        .finally(() => {
          // A stop + start during the read may have started another timer: keep only one.
          if (this.#timer === mine) this.#timer = undefined
          this.#schedule()
        })
    }, this.#intervalMs)
    mine.unref()
    this.#timer = mine
  }
}
