import "fake-indexeddb/auto";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Gateway } from "../api/http";
import type { ChangeFeedPage, MovementPage, Operation, SnapshotPage, SyncResponse } from "../api/types";
import { DexieStore, LocalDb } from "./db";
import { SyncEngine, type SyncNotice, type SyncStatus, type Timers } from "./engine";
import { Listeners } from "./listeners";
import { LocalActions } from "./local";
import { TabSync, type Channel, type Leadership, type Locks } from "./tabs";

/** Web Locks as the browser grants them: one holder per name, the others wait in line. */
class FakeLocks implements Locks {
  private readonly held = new Set<string>();
  private readonly waiting = new Map<string, (() => void)[]>();

  request(name: string, callback: () => Promise<void>): Promise<unknown> {
    return new Promise((resolve) => {
      const run = () => {
        this.held.add(name);
        void callback().finally(() => {
          this.held.delete(name);
          this.waiting.get(name)?.shift()?.();
          resolve(undefined);
        });
      };
      if (this.held.has(name)) this.waiting.set(name, [...(this.waiting.get(name) ?? []), run]);
      else run();
    });
  }
}

/** BroadcastChannel: a message reaches every other channel of the name, later, as a copy. */
class FakeChannels {
  private readonly open = new Map<string, Set<FakeChannel>>();

  make(name: string): Channel {
    const channel = new FakeChannel(name, this);
    this.open.set(name, new Set([...(this.open.get(name) ?? []), channel]));
    return channel;
  }

  post(from: FakeChannel, message: unknown): void {
    for (const channel of this.open.get(from.name) ?? []) {
      if (channel !== from) setTimeout(() => channel.deliver(JSON.parse(JSON.stringify(message))), 0);
    }
  }

  close(channel: FakeChannel): void {
    this.open.get(channel.name)?.delete(channel);
  }
}

class FakeChannel implements Channel {
  private readonly listeners: ((event: MessageEvent) => void)[] = [];

  constructor(
    readonly name: string,
    private readonly hub: FakeChannels,
  ) {}

  postMessage(message: unknown): void {
    this.hub.post(this, message);
  }

  addEventListener(_type: "message", listener: (event: MessageEvent) => void): void {
    this.listeners.push(listener);
  }

  deliver(data: unknown): void {
    for (const listener of this.listeners) listener({ data } as MessageEvent);
  }

  close(): void {
    this.hub.close(this);
  }
}

const STATUS: SyncStatus = { state: "syncing", queued: 0, failed: 0, lastSyncAt: null, lastError: null, uploading: false, downloading: false, progress: null };

/** A leadership the test drives: records what the tab asked of it. */
class FakeLeadership implements Leadership {
  readonly calls: string[] = [];
  private status = STATUS;
  private readonly statusListeners = new Listeners<SyncStatus>();
  private readonly noticeListeners = new Listeners<SyncNotice>();

  onStatus(listener: (status: SyncStatus) => void): () => void {
    listener(this.status);
    return this.statusListeners.add(listener);
  }

  onNotice(listener: (notice: SyncNotice) => void): () => void {
    return this.noticeListeners.add(listener);
  }

  start(): void {
    this.calls.push("start");
  }

  changed(): void {
    this.calls.push("changed");
  }

  setOnline(online: boolean): void {
    this.calls.push(`online:${online}`);
  }

  async stop(): Promise<void> {
    this.calls.push("stop");
  }

  say(status: Partial<SyncStatus>): void {
    this.status = { ...this.status, ...status };
    this.statusListeners.tell(this.status);
  }

  tell(notice: SyncNotice): void {
    this.noticeListeners.tell(notice);
  }
}

interface Tab {
  sync: TabSync;
  leaderships: FakeLeadership[];
  statuses: SyncStatus[];
  notices: SyncNotice[];
}

function openTab(locks: Locks | undefined, channels: FakeChannels, name = "db"): Tab {
  const leaderships: FakeLeadership[] = [];
  const sync = new TabSync({
    name,
    locks,
    channel: (channelName) => channels.make(channelName),
    lead: () => {
      const leadership = new FakeLeadership();
      leaderships.push(leadership);
      return leadership;
    },
    provisional: async () => ({ ...STATUS, queued: 7 }),
  });
  const tab: Tab = { sync, leaderships, statuses: [], notices: [] };
  sync.onStatus((status) => tab.statuses.push(status));
  sync.onNotice((notice) => tab.notices.push(notice));
  sync.start();
  return tab;
}

const opened: TabSync[] = [];
afterEach(async () => {
  for (const sync of opened.splice(0)) await sync.stop();
});

describe("TabSync", () => {
  it("lets one tab lead; the others show its status and notices and poke it when they queue a change", async () => {
    const [locks, channels] = [new FakeLocks(), new FakeChannels()];
    const first = openTab(locks, channels);
    const second = openTab(locks, channels);
    opened.push(first.sync, second.sync);
    expect([first.sync.currentRole, second.sync.currentRole]).toEqual(["leader", "follower"]);
    expect(first.leaderships).toHaveLength(1);
    expect(second.leaderships).toHaveLength(0);
    // The newcomer said hello: the leader answered with its status.
    await vi.waitFor(() => expect(second.statuses.at(-1)).toEqual(STATUS));

    const leader = first.leaderships[0]!;
    leader.say({ state: "upToDate", queued: 0, lastSyncAt: "2026-01-01T00:00:00.000Z" });
    await vi.waitFor(() => expect(second.statuses.at(-1)).toMatchObject({ state: "upToDate", lastSyncAt: "2026-01-01T00:00:00.000Z" }));
    leader.tell({ kind: "rejected", productId: "p", message: "VALIDATION_ERROR: no" });
    await vi.waitFor(() => expect(second.notices).toEqual([{ kind: "rejected", productId: "p", message: "VALIDATION_ERROR: no" }]));
    expect(first.notices).toHaveLength(1);

    second.sync.changed();
    await vi.waitFor(() => expect(leader.calls).toContain("changed"));
    second.sync.setOnline(true); // a follower leaves connectivity to the leader
    first.sync.setOnline(false);
    expect(leader.calls).toEqual(["start", "changed", "online:false"]);
  });

  it("hands over when the leader goes: the next tab leads and starts syncing", async () => {
    const [locks, channels] = [new FakeLocks(), new FakeChannels()];
    const first = openTab(locks, channels);
    const second = openTab(locks, channels);
    const third = openTab(locks, channels);
    opened.push(second.sync, third.sync);
    await first.sync.stop(); // the tab closes: the browser releases its lock
    await vi.waitFor(() => expect(second.sync.currentRole).toBe("leader"));
    expect(first.leaderships[0]!.calls).toEqual(["start", "stop"]);
    expect(second.leaderships[0]!.calls).toEqual(["start"]);
    expect(third.sync.currentRole).toBe("follower");
    second.leaderships[0]!.say({ state: "upToDate" });
    await vi.waitFor(() => expect(third.statuses.at(-1)).toMatchObject({ state: "upToDate" }));
  });

  it("shows the database's counts until the leader has spoken", async () => {
    const channels = new FakeChannels();
    const blocker = new FakeLocks();
    void blocker.request("stockzen-sync:db", () => new Promise(() => undefined)); // a leader that never speaks
    const follower = openTab(blocker, channels);
    opened.push(follower.sync);
    await vi.waitFor(() => expect(follower.statuses.at(-1)).toMatchObject({ state: "syncing", queued: 7 }));
  });

  it("syncs alone in every tab where the browser has no Web Locks", () => {
    const channels = new FakeChannels();
    const first = openTab(undefined, channels);
    const second = openTab(undefined, channels);
    opened.push(first.sync, second.sync);
    expect([first.sync.currentRole, second.sync.currentRole]).toEqual(["alone", "alone"]);
    expect([first.leaderships.length, second.leaderships.length]).toEqual([1, 1]);
  });
});

/** One server for every tab: counts each operation id it is sent. */
class CountingGateway implements Gateway {
  readonly sent = new Map<string, number>();

  async sync(_checkpoint: string | null, operations: Operation[]): Promise<SyncResponse> {
    for (const op of operations) this.sent.set(op.operationId, (this.sent.get(op.operationId) ?? 0) + 1);
    return { checkpoint: "1", serverTime: new Date().toISOString(), results: operations.map((op) => ({ operationId: op.operationId, status: "applied" })) };
  }

  async changes(checkpoint: string | null): Promise<ChangeFeedPage> {
    return { checkpoint: checkpoint ?? "1", hasMore: false, changes: [] };
  }

  async snapshot(): Promise<SnapshotPage> {
    return { checkpoint: "1", items: [], nextCursor: null, totalProducts: 0 };
  }

  async movements(): Promise<MovementPage> {
    return { items: [], nextCursor: null };
  }
}

describe("two tabs on one database", () => {
  it("push each outbox entry once: only the leader sends, the follower's changes included", async () => {
    const name = `tabs-${crypto.randomUUID()}`;
    const [locks, channels, gateway] = [new FakeLocks(), new FakeChannels(), new CountingGateway()];
    const engines: SyncEngine[] = [];
    const timers: Timers = { set: () => null, clear: () => undefined };
    const tabs = [0, 1].map(() => {
      const db = new LocalDb(name);
      const store = new DexieStore(db);
      const sync = new TabSync({
        name,
        locks,
        channel: (channelName) => channels.make(channelName),
        lead: () => {
          const engine = new SyncEngine({ store, gateway, isOnline: () => true, timers });
          engines.push(engine);
          return {
            onStatus: (listener) => engine.onStatus(listener),
            onNotice: (listener) => engine.onNotice(listener),
            start: () => void engine.start(),
            changed: () => engine.changed(),
            setOnline: (online) => engine.setOnline(online),
            stop: () => engine.stop(),
          };
        },
        provisional: async () => STATUS,
      });
      sync.start();
      return { db, sync, actions: new LocalActions(store, sync, "00000000-0000-4000-8000-000000000001") };
    });
    const made: string[] = [];
    for (let i = 0; i < 5; i++) {
      for (const tab of tabs) made.push(await tab.actions.createProduct({ name: `p${i}` }));
    }
    await vi.waitFor(async () => expect(await tabs[0]!.db.outbox.count()).toBe(0));
    for (const engine of engines) await engine.idle();
    expect(engines).toHaveLength(1);
    expect(gateway.sent.size).toBe(made.length);
    expect([...gateway.sent.values()].every((times) => times === 1)).toBe(true);
    for (const tab of tabs) await tab.sync.stop();
    for (const tab of tabs) tab.db.close();
    await tabs[0]!.db.delete();
  });
});
