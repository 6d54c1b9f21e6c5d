/** The listeners of one kind of event, told in the order they were added. */
export class Listeners<T> {
  private readonly listeners = new Set<(value: T) => void>();

  /** Add ``listener``; the function returned removes it. */
  add(listener: (value: T) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Tell every listener. */
  tell(value: T): void {
    for (const listener of this.listeners) listener(value);
  }
}
