// What the queue threads share about one image: a lock that serialises every metadata change
// (allocation, discard), a generation number bumped after each change so that the other threads
// drop their cached tables, and where the allocator looks for a free cluster next. All of it lives
// in one SharedArrayBuffer that open() puts in the target state.

const LOCK = 0;
const GENERATION = 1;

export function createShared(): SharedArrayBuffer {
  return new SharedArrayBuffer(16);
}

export class SharedMeta {
  private readonly words: Int32Array;
  /** Cluster index where the allocator starts looking for a free cluster. */
  private readonly hint: Float64Array;

  constructor(sab: SharedArrayBuffer) {
    this.words = new Int32Array(sab, 0, 2);
    this.hint = new Float64Array(sab, 8, 1);
  }

  /**
   * A futex-style mutex (0 free, 1 held, 2 held with waiters). Queue threads are workers, where
   * Atomics.wait is allowed; a waiter sleeps, it does not spin.
   */
  acquire(): void {
    const w = this.words;
    let c = Atomics.compareExchange(w, LOCK, 0, 1);
    if (c === 0) return;
    if (c !== 2) c = Atomics.exchange(w, LOCK, 2);
    while (c !== 0) {
      Atomics.wait(w, LOCK, 2);
      c = Atomics.exchange(w, LOCK, 2);
    }
  }

  release(): void {
    if (Atomics.sub(this.words, LOCK, 1) !== 1) {
      Atomics.store(this.words, LOCK, 0);
      Atomics.notify(this.words, LOCK, 1);
    }
  }

  get generation(): number {
    return Atomics.load(this.words, GENERATION);
  }

  /** Called with the lock held after changing metadata; returns the new generation. */
  bump(): number {
    return Atomics.add(this.words, GENERATION, 1) + 1;
  }

  get freeHint(): number {
    return this.hint[0];
  }

  set freeHint(cluster: number) {
    this.hint[0] = cluster;
  }
}
