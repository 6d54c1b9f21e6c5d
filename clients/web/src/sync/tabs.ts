/**
 * One sync per browser. Every tab of one database asks for the same Web Lock; the tab that holds it
 * leads: it syncs, listens to the live stream, and tells the other tabs its status and notices over a
 * BroadcastChannel. Every tab queues changes itself (IndexedDB is shared) and pokes the leader over the
 * channel. The lock is held while the leading tab lives: when it closes, the browser releases it and
 * the next tab in line takes it, and starts by syncing whatever is queued, so nothing is lost and no
 * two tabs ever push the same outbox entry.
 *
 * Where ``navigator.locks`` is missing (a page served over plain HTTP from another host than localhost
 * is not a secure context, and gets no Web Locks), each tab syncs alone, as before: the server still
 * applies each change once (same ids), but two tabs may send the same entry.
 */
import type { SyncNotice, SyncStatus } from "./engine";
import { Listeners } from "./listeners";

/** What the leading tab runs: the sync engine and the live stream. */
export interface Leadership {
  onStatus(listener: (status: SyncStatus) => void): () => void;
  onNotice(listener: (notice: SyncNotice) => void): () => void;
  /** Start syncing (and listening when online). */
  start(): void;
  changed(): void;
  setOnline(online: boolean): void;
  stop(): Promise<void>;
}

export type TabRole = "leader" | "follower" | "alone";

type TabMessage =
  | { type: "status"; status: SyncStatus }
  | { type: "notice"; notice: SyncNotice }
  /** A follower queued a change: the leader pushes it. */
  | { type: "changed" }
  /** A tab opened: the leader says where things stand. */
  | { type: "hello" };

/** The parts of ``navigator.locks`` and ``BroadcastChannel`` used here (tests give fakes). */
export interface Locks {
  request(name: string, callback: () => Promise<void>): Promise<unknown>;
}
export interface Channel {
  postMessage(message: TabMessage): void;
  addEventListener(type: "message", listener: (event: MessageEvent<TabMessage>) => void): void;
  close(): void;
}

export interface TabSyncOptions {
  /** The lock's and the channel's name: one per database. */
  name: string;
  /** ``navigator.locks`` where the browser has it. */
  locks: Locks | undefined;
  channel: (name: string) => Channel;
  /** What this tab runs when it leads (or syncs alone). */
  lead: () => Leadership;
  /** What a follower shows until the leader has spoken (the counts from the database). */
  provisional: () => Promise<SyncStatus>;
}

export class TabSync {
  private role: TabRole = "follower";
  private leadership: Leadership | null = null;
  private channel: Channel | null = null;
  private status: SyncStatus | null = null;
  private heard = false;
  private resign: (() => void) | null = null;
  private readonly statusListeners = new Listeners<SyncStatus>();
  private readonly noticeListeners = new Listeners<SyncNotice>();
  private readonly roleListeners = new Listeners<TabRole>();

  constructor(private readonly options: TabSyncOptions) {}

  get currentRole(): TabRole {
    return this.role;
  }

  /** Sync alone (no Web Locks), or follow until this tab gets the lock, then lead. */
  start(): void {
    const { locks, name } = this.options;
    if (!locks) {
      this.lead("alone");
      return;
    }
    const channel = this.options.channel(`stockzen-sync:${name}`);
    this.channel = channel;
    channel.addEventListener("message", (event) => this.heardFrom(event.data));
    this.setRole("follower");
    channel.postMessage({ type: "hello" });
    void this.options.provisional().then((status) => {
      if (!this.heard && this.role === "follower") this.show(status);
    });
    const released = new Promise<void>((resolve) => (this.resign = resolve));
    // Held until this tab closes (or stop()): the browser then hands the lock to the next tab in line.
    void locks.request(`stockzen-sync:${name}`, async () => {
      if (this.resign === null) return; // stopped while waiting
      this.lead("leader");
      await released;
    });
  }

  /** Stop leading or following (sign-out); the next tab in line takes over. */
  async stop(): Promise<void> {
    const leadership = this.leadership;
    this.leadership = null;
    await leadership?.stop();
    this.resign?.();
    this.resign = null;
    this.channel?.close();
    this.channel = null;
  }

  /** A change was queued in this tab. */
  changed(): void {
    if (this.leadership) this.leadership.changed();
    else this.channel?.postMessage({ type: "changed" });
  }

  /** The platform's connectivity changed (every tab hears it; the leader acts on it). */
  setOnline(online: boolean): void {
    this.leadership?.setOnline(online);
  }

  onStatus(listener: (status: SyncStatus) => void): () => void {
    if (this.status) listener(this.status);
    return this.statusListeners.add(listener);
  }

  onNotice(listener: (notice: SyncNotice) => void): () => void {
    return this.noticeListeners.add(listener);
  }

  onRole(listener: (role: TabRole) => void): () => void {
    listener(this.role);
    return this.roleListeners.add(listener);
  }

  private lead(role: "leader" | "alone"): void {
    const leadership = this.options.lead();
    this.leadership = leadership;
    this.setRole(role);
    leadership.onStatus((status) => {
      this.show(status);
      this.channel?.postMessage({ type: "status", status });
    });
    leadership.onNotice((notice) => {
      this.tell(notice);
      this.channel?.postMessage({ type: "notice", notice });
    });
    leadership.start();
  }

  private heardFrom(message: TabMessage): void {
    if (this.leadership) {
      if (message.type === "changed") this.leadership.changed();
      else if (message.type === "hello" && this.status) this.channel?.postMessage({ type: "status", status: this.status });
      return;
    }
    if (message.type === "status") {
      this.heard = true;
      this.show(message.status);
    } else if (message.type === "notice") {
      this.tell(message.notice);
    }
  }

  private setRole(role: TabRole): void {
    this.role = role;
    this.roleListeners.tell(role);
  }

  private show(status: SyncStatus): void {
    this.status = status;
    this.statusListeners.tell(status);
  }

  private tell(notice: SyncNotice): void {
    this.noticeListeners.tell(notice);
  }
}
