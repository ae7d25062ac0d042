// An interruptible sleep: wait(ms) resolves after ms or at the next wake(),
// whichever comes first. A wake() while nobody waits is remembered once.
export class Waker {
  #resolve: (() => void) | null = null;
  #pending = false;

  wait(ms: number): Promise<void> {
    if (this.#pending) {
      this.#pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#resolve = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#resolve = done;
    });
  }

  wake(): void {
    if (this.#resolve) this.#resolve();
    else this.#pending = true;
  }
}
