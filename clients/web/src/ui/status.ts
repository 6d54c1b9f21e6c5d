/** The sync status indicator shown on every screen: icon and text, never colour alone. */
import type { SyncState, SyncStatus } from "../sync/engine";
import { formatCount, formatTime, h, replace } from "./dom";

const LOOK: Record<SyncState, { icon: string; text: string }> = {
  offline: { icon: "⊘", text: "Offline — changes kept here" },
  syncing: { icon: "⟳", text: "Syncing" },
  upToDate: { icon: "✓", text: "Up to date" },
  error: { icon: "⚠", text: "Sync problem — retrying" },
};

/** While progress alone changes, the region is rewritten at most this often (a screen reader reads each). */
const PROGRESS_EVERY_MS = 1000;

/**
 * Renders into the ``role="status"`` region. It is rewritten only when what it says changes, so a
 * screen reader announces each change once (and not every sync while nothing changes); the last
 * sync time sits outside the region for the same reason. Download progress ("Syncing 1,200 of
 * 2,000") is rewritten at most once a second.
 */
export class StatusIndicator {
  private saidWithoutProgress = "";
  private saidProgress = "";
  private progressAt = -Infinity;

  constructor(
    private readonly region: HTMLElement,
    private readonly lastSync: HTMLElement,
    private readonly now: () => number = () => Date.now(),
  ) {}

  /** Say nothing: before sign-in there is no local data and no sync to report on. */
  clear(): void {
    this.saidWithoutProgress = "";
    this.saidProgress = "";
    this.lastSync.textContent = "";
    delete this.region.dataset.state;
    replace(this.region);
  }

  show(status: SyncStatus): void {
    this.lastSync.textContent = status.lastSyncAt ? `Last sync ${formatTime(status.lastSyncAt)}` : "";
    const look = LOOK[status.state];
    const counts = [
      status.queued > 0 ? `${status.queued} queued` : "",
      status.failed > 0 ? `${status.failed} failed` : "",
    ].filter(Boolean);
    const progress =
      status.state === "syncing" && status.progress ? ` ${formatCount(status.progress.done)} of ${formatCount(status.progress.total)}` : "";
    const saidWithoutProgress = [status.state, look.text, ...counts, status.state === "error" ? status.lastError : ""].join("|");
    if (saidWithoutProgress === this.saidWithoutProgress && progress === this.saidProgress) return;
    // Only the numbers moved on: not more than once a second.
    const numbersOnly = saidWithoutProgress === this.saidWithoutProgress && progress !== "" && this.saidProgress !== "";
    if (numbersOnly && this.now() - this.progressAt < PROGRESS_EVERY_MS) return;
    if (progress !== "") this.progressAt = this.now();
    this.saidWithoutProgress = saidWithoutProgress;
    this.saidProgress = progress;
    this.region.dataset.state = status.state;
    replace(
      this.region,
      h("span", { class: "icon", "aria-hidden": "true" }, look.icon),
      h("span", { class: "text", "data-testid": "status-text" }, look.text + progress),
      counts.length ? h("span", { class: "counts" }, `· ${counts.join(", ")}`) : null,
      status.failed > 0 ? h("a", { href: "#/failed" }, "See failed") : null,
      status.state === "error" && status.lastError ? h("span", { class: "reason" }, `(${status.lastError})`) : null,
    );
  }
}
