/**
 * Progress of the CLI's long phases on stderr ("running forward on cpu... call 2/4, 12.3 s"),
 * only when stderr is a terminal: a CPU forward at S = 100000 runs for most of a minute with
 * no other output. The line is rewritten in place and erased when the phase ends, so what
 * stays on the terminal is the report on stdout.
 * @module
 */

const encoder = new TextEncoder();

/** Where the progress line goes: stderr, or a test's collector. */
export type ProgressSink = (text: string) => void;

function writeStderr(text: string): void {
  const bytes = encoder.encode(text);
  for (let done = 0; done < bytes.length;) done += Deno.stderr.writeSync(bytes.subarray(done));
}

/** One progress line, shown while a phase runs. */
export class Progress {
  readonly #sink: ProgressSink | undefined;
  #label = "";
  #started = 0;
  #written = 0;
  #shown = false;

  /** Progress on `sink`; by default stderr when it is a terminal, else none. */
  constructor(sink?: ProgressSink | null) {
    this.#sink = sink === undefined
      ? (Deno.stderr.isTerminal() ? writeStderr : undefined)
      : sink ?? undefined;
  }

  /** Starts a phase: shows "`label`..." at once (the calls that follow block the thread). */
  start(label: string): void {
    this.#label = label;
    this.#started = this.#written = performance.now();
    this.#draw("");
  }

  /** Shows `detail` and the phase's elapsed time, at most four times a second. */
  update(detail: string): void {
    const now = performance.now();
    if (this.#sink === undefined || !this.#shown || now - this.#written < 250) return;
    this.#written = now;
    this.#draw(` ${detail}, ${((now - this.#started) / 1000).toFixed(1)} s`);
  }

  /** Prints `line` on stdout without mixing it into the progress line. */
  log(line: string): void {
    const shown = this.#shown;
    this.#erase();
    console.log(line);
    if (shown) this.#draw("");
  }

  /** Ends the phase: erases the line. */
  end(): void {
    this.#erase();
  }

  #draw(detail: string): void {
    if (this.#sink === undefined) return;
    this.#sink(`\r\x1b[K${this.#label}...${detail}`);
    this.#shown = true;
  }

  #erase(): void {
    if (this.#sink === undefined || !this.#shown) return;
    this.#sink("\r\x1b[K");
    this.#shown = false;
  }
}

/**
 * `call` wrapped for timing: after the first call returns, `first` runs (the problem line,
 * printed once the library has accepted the arguments); after every call, the progress
 * line shows the count out of `calls`.
 */
export function trackCalls(
  call: () => void,
  calls: number,
  progress: Progress,
  first: () => void,
): () => void {
  let done = 0;
  return () => {
    call();
    if (++done === 1) first();
    progress.update(`call ${done}/${calls}`);
  };
}
