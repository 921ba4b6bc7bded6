/** A tiny typed event emitter. */
export class Emitter<Events extends { [K in keyof Events]: (...args: any[]) => void }> {
  private listeners = new Map<keyof Events, Set<Events[keyof Events]>>();

  on<K extends keyof Events>(event: K, cb: Events[K]): () => void {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(cb);
    return () => this.off(event, cb);
  }

  off<K extends keyof Events>(event: K, cb: Events[K]): void {
    this.listeners.get(event)?.delete(cb);
  }

  protected emit<K extends keyof Events>(event: K, ...args: Parameters<Events[K]>): void {
    const set = this.listeners.get(event);
    if (!set) return;
    for (const cb of [...set]) {
      try {
        (cb as (...a: Parameters<Events[K]>) => void)(...args);
      } catch (err) {
        // A listener's bug must not break the client.
        console.error('[herald] listener for', String(event), 'threw', err);
      }
    }
  }
}
