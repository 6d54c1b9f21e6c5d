/** The app: sign in, open the tenant's local database, sync (one tab leads, see sync/tabs.ts), route between screens. */
import { HttpGateway } from "./api/http";
import { loadSession, onSessionChange, saveSession, sessionFromToken, type Session } from "./session";
import { DexieStore, LAST_SYNC_KEY, LocalDb, deleteLocalDb, localDbName, type SyncStore } from "./sync/db";
import { SyncEngine, type SyncNotice, type SyncStatus } from "./sync/engine";
import { LiveUpdates } from "./sync/live";
import { LocalActions } from "./sync/local";
import { STUCK_AFTER } from "./sync/states";
import { TabSync, type Leadership } from "./sync/tabs";
import { h, replace } from "./ui/dom";
import { failedScreen, productScreen, productsScreen, type Screen, type ScreenContext } from "./ui/screens";
import { signOutScreen } from "./ui/signout";
import { StatusIndicator } from "./ui/status";
import "./styles.css";

const main = document.getElementById("main") as HTMLElement;
const account = document.getElementById("account") as HTMLElement;
const notices = document.getElementById("notices") as HTMLElement;
const indicator = new StatusIndicator(
  document.getElementById("status") as HTMLElement,
  document.getElementById("last-sync") as HTMLElement,
);
const isOnline = () => navigator.onLine;

function notify(notice: SyncNotice): void {
  // Brief and non-blocking: it goes away by itself and never takes the focus.
  const text = notice.kind === "conflict" ? "Updated from another device" : `A change was refused and undone here: ${notice.message}`;
  const element = h("div", { class: "notice", "data-kind": notice.kind }, text);
  notices.append(element);
  setTimeout(() => element.remove(), 6000);
}

function signIn(): void {
  const field = h("textarea", { id: "token", rows: 4, cols: 60, required: true, spellcheck: "false", autocomplete: "off" }) as HTMLTextAreaElement;
  const problem = h("p", { id: "sign-in-problem", class: "low", role: "alert" });
  const form = h(
    "form",
    { "aria-labelledby": "sign-in-title" },
    h("h1", { id: "sign-in-title" }, "Sign in"),
    h("p", {}, "Paste your access token (development: the output of ", h("code", {}, "make token"), ")."),
    h("label", {}, "Access token", field),
    problem,
    h("p", {}, h("button", { type: "submit", class: "primary" }, "Sign in")),
  ) as HTMLFormElement;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    try {
      const session = sessionFromToken(field.value);
      saveSession(session);
      start(session);
    } catch (error) {
      problem.textContent = error instanceof Error ? error.message : String(error);
    }
  });
  replace(account);
  indicator.clear();
  replace(main, form);
}

/** What the leading tab runs: the engine, and the live stream while online. */
function leadership(store: SyncStore, gateway: HttpGateway): Leadership {
  const engine = new SyncEngine({ store, gateway, isOnline });
  const live = new LiveUpdates(
    gateway,
    () => engine.requestSync(),
    () => engine.serverAnswered(),
  );
  return {
    onStatus: (listener) => engine.onStatus(listener),
    onNotice: (listener) => engine.onNotice(listener),
    start: () => {
      void engine.start();
      if (isOnline()) live.start();
    },
    changed: () => engine.changed(),
    setOnline: (online) => {
      engine.setOnline(online);
      if (online) live.start();
      else live.stop();
    },
    stop: async () => {
      live.stop();
      await engine.stop();
    },
  };
}

/** What a tab shows until the leading tab has said where things stand. */
async function provisionalStatus(store: SyncStore): Promise<SyncStatus> {
  const [counts, lastSyncAt] = await Promise.all([store.outboxCounts(STUCK_AFTER), store.getMeta(LAST_SYNC_KEY)]);
  const state = isOnline() ? "syncing" : "offline";
  return { state, queued: counts.queued, failed: counts.failed, lastSyncAt, lastError: null, uploading: false, downloading: false, progress: null };
}

function start(session: Session): void {
  const name = localDbName(session.tenantId, session.userId);
  const db = new LocalDb(name);
  const store = new DexieStore(db);
  const gateway = new HttpGateway(location.origin, () => session.token);
  const sync = new TabSync({
    name,
    // Web Locks exist in secure contexts only (https, localhost): elsewhere each tab syncs alone.
    locks: (navigator as Partial<Navigator>).locks,
    channel: (channelName) => new BroadcastChannel(channelName),
    lead: () => leadership(store, gateway),
    provisional: () => provisionalStatus(store),
  });
  const actions = new LocalActions(store, sync, session.tenantId);
  const syncedListeners = new Set<() => void>();
  let lastSync: string | null = null;
  sync.onStatus((status: SyncStatus) => {
    indicator.show(status);
    if (status.lastSyncAt !== lastSync) {
      lastSync = status.lastSyncAt;
      for (const listener of syncedListeners) listener();
    }
  });
  sync.onNotice(notify);
  sync.onRole((role) => {
    // Which tab syncs (for people debugging it, and for the browser tests).
    document.documentElement.dataset.syncRole = role;
  });
  const context: ScreenContext = {
    db,
    actions,
    gateway,
    isOnline,
    onSynced: (listener) => {
      syncedListeners.add(listener);
      return () => syncedListeners.delete(listener);
    },
  };

  /** Leave: every tab of the app hears it (onSessionChange) and goes back to the sign-in form. */
  const leave = async (clear: ((blocked: () => void) => Promise<void>) | null, blocked: () => void = () => undefined) => {
    saveSession(null);
    await sync.stop();
    if (clear) await clear(blocked);
    location.hash = "#/";
    location.reload();
  };
  const signOut: Screen = (screenMain) =>
    signOutScreen(screenMain, {
      db,
      userId: session.userId,
      keep: () => leave(null),
      clear: (blocked) => leave((onBlocked) => deleteLocalDb(db, onBlocked), blocked),
      cancel: () => {
        location.hash = returnTo;
      },
    });
  // Where Cancel goes back to: the screen the user left for the sign-out choice.
  let returnTo = "#/";
  const signOutButton = h("button", { type: "button" }, "Sign out");
  signOutButton.addEventListener("click", () => {
    if (location.hash === "#/sign-out") return;
    returnTo = location.hash || "#/";
    location.hash = "#/sign-out";
  });
  replace(account, h("span", { class: "muted" }, session.userId), signOutButton);
  onSessionChange(() => {
    if (loadSession()?.token === session.token) return;
    // Another tab signed out (maybe clearing this data) or in as someone else: let go of the database first.
    void sync.stop().finally(() => {
      db.close({ disableAutoOpen: true });
      location.hash = "#/";
      location.reload();
    });
  });

  let undo: (() => void) | null = null;
  const route = () => {
    undo?.();
    const hash = location.hash.replace(/^#/, "") || "/";
    const product = /^\/products\/([0-9a-f-]{36})$/.exec(hash);
    const screen: Screen = product?.[1]
      ? productScreen(product[1])
      : hash === "/failed"
        ? failedScreen
        : hash === "/sign-out"
          ? signOut
          : productsScreen;
    undo = screen(main, context);
  };
  window.addEventListener("hashchange", () => {
    route();
    // A new screen: move focus to it, as a page load would, so keyboard and screen-reader users follow.
    main.focus();
  });
  window.addEventListener("online", () => sync.setOnline(true));
  window.addEventListener("offline", () => sync.setOnline(false));
  route();
  sync.start();
}

if ("serviceWorker" in navigator) {
  // The app shell for offline loads; the app works without it (first visit, private windows).
  navigator.serviceWorker.register(new URL("sw.js", document.baseURI), { scope: "./" }).catch(() => undefined);
}

const session = loadSession();
if (session) start(session);
else {
  signIn();
  // Signed in in another tab: this one opens signed in too.
  onSessionChange(() => {
    if (loadSession()) location.reload();
  });
}
