// @vitest-environment jsdom
import { describe, expect, it } from "vitest";
import type { SyncStatus } from "../sync/engine";
import { StatusIndicator } from "./status";

const base: SyncStatus = {
  state: "syncing",
  queued: 0,
  failed: 0,
  lastSyncAt: null,
  lastError: null,
  uploading: false,
  downloading: true,
  progress: null,
};

describe("StatusIndicator", () => {
  it("shows download progress while syncing, rewriting the numbers at most once a second", () => {
    const region = document.createElement("div");
    let now = 0;
    const indicator = new StatusIndicator(region, document.createElement("span"), () => now);
    const text = () => region.querySelector("[data-testid=status-text]")?.textContent;
    indicator.show(base);
    expect(text()).toBe("Syncing");
    indicator.show({ ...base, progress: { done: 1200, total: 2000 } });
    expect(text()).toBe("Syncing 1,200 of 2,000");
    now = 500;
    indicator.show({ ...base, progress: { done: 1700, total: 2000 } });
    expect(text()).toBe("Syncing 1,200 of 2,000"); // too soon for the numbers alone
    now = 1200;
    indicator.show({ ...base, progress: { done: 1700, total: 2000 } });
    expect(text()).toBe("Syncing 1,700 of 2,000");
    now = 1300;
    indicator.show({ ...base, state: "upToDate", downloading: false, progress: null });
    expect(text()).toBe("Up to date");
    expect(region.dataset.state).toBe("upToDate");
  });

  it("shows no progress outside syncing", () => {
    const region = document.createElement("div");
    const indicator = new StatusIndicator(region, document.createElement("span"));
    indicator.show({ ...base, state: "offline", queued: 1, progress: { done: 5, total: 9 } });
    expect(region.textContent).toBe("⊘Offline — changes kept here· 1 queued");
  });
});
