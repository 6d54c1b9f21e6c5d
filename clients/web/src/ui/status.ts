/** The sync status indicator shown on every screen: icon and text, never colour alone. */
import type { SyncState, SyncStatus } from "../sync/engine";
import { formatTime, h, replace } from "./dom";

const LOOK: Record<SyncState, { icon: string; text: string }> = {
  offline: { icon: "⊘", text: "Offline — changes kept here" },
  syncing: { icon: "⟳", text: "Syncing" },
  upToDate: { icon: "✓", text: "Up to date" },
  error: { icon: "⚠", text: "Sync problem — retrying" },
};

/**
 * Renders into the ``role="status"`` region. It is rewritten only when what it says changes, so a
 * screen reader announces each change once (and not every sync while nothing changes); the last
 * sync time sits outside the region for the same reason.
 */
export class StatusIndicator {
  private said = "";

  constructor(
    private readonly region: HTMLElement,
    private readonly lastSync: HTMLElement,
  ) {}

  /** Say nothing: before sign-in there is no local data and no sync to report on. */
  clear(): void {
    this.said = "";
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
    const said = [status.state, look.text, ...counts, status.state === "error" ? status.lastError : ""].join("|");
    if (said === this.said) return;
    this.said = said;
    this.region.dataset.state = status.state;
    replace(
      this.region,
      h("span", { class: "icon", "aria-hidden": "true" }, look.icon),
      h("span", { class: "text", "data-testid": "status-text" }, look.text),
      counts.length ? h("span", { class: "counts" }, `· ${counts.join(", ")}`) : null,
      status.failed > 0 ? h("a", { href: "#/failed" }, "See failed") : null,
      status.state === "error" && status.lastError ? h("span", { class: "reason" }, `(${status.lastError})`) : null,
    );
  }
}
