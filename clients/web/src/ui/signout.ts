/**
 * Signing out: keep this device's copy of the tenant's data for the next sign-in, or clear it (a
 * shared or borrowed device). Changes not yet synced are named first: clearing loses them, so the
 * clear button then asks for a second click. Inline, like every confirmation here: nothing blocks.
 */
import { liveQuery } from "dexie";
import type { LocalDb } from "../sync/db";
import { formatCount, h, replace } from "./dom";

export interface SignOutOptions {
  db: LocalDb;
  userId: string;
  /** Sign out and leave this device's data for the next sign-in of this user. */
  keep: () => Promise<void>;
  /** Sign out and delete this device's data; ``blocked`` is called while another tab still holds it open. */
  clear: (blocked: () => void) => Promise<void>;
  /** Back to where the user was. */
  cancel: () => void;
}

function changes(count: number): string {
  return count === 1 ? "1 change" : `${formatCount(count)} changes`;
}

/** Draws the sign-out choice into ``main``; returns what to undo when another screen replaces it. */
export function signOutScreen(main: HTMLElement, options: SignOutOptions): () => void {
  let queued = 0;
  let confirming = false;
  const warning = h("p", { id: "sign-out-warning", class: "low", hidden: true });
  // Where the steps of a sign-out are said (and a clear that waits for other tabs).
  const progress = h("p", { id: "sign-out-progress", role: "status" });
  const keep = h("button", { type: "button", class: "primary" }, "Keep data and sign out") as HTMLButtonElement;
  const clear = h("button", { type: "button", class: "danger" }, "Clear this device's data and sign out") as HTMLButtonElement;
  const cancel = h("button", { type: "button" }, "Cancel") as HTMLButtonElement;
  const buttons = [keep, clear, cancel];

  const draw = () => {
    warning.hidden = queued === 0;
    warning.textContent =
      queued === 0
        ? ""
        : `${changes(queued)} made on this device ${queued === 1 ? "is" : "are"} not synced yet. ` +
          "Keeping the data sends them when you sign in here again; clearing it loses them.";
    if (queued === 0) confirming = false;
    clear.textContent = confirming ? `Confirm: clear and lose ${changes(queued)}` : "Clear this device's data and sign out";
  };
  const subscription = liveQuery(() => options.db.outbox.where("status").equals("queued").count()).subscribe((count) => {
    queued = count;
    draw();
  });
  const stop = () => {
    subscription.unsubscribe();
    for (const button of buttons) button.disabled = true;
  };

  keep.addEventListener("click", () => {
    stop();
    progress.textContent = "Signing out…";
    void options.keep();
  });
  clear.addEventListener("click", () => {
    // Queued changes would be lost: a second click confirms.
    if (queued > 0 && !confirming) {
      confirming = true;
      draw();
      return;
    }
    stop();
    progress.textContent = "Clearing this device's data…";
    options
      .clear(() => {
        progress.textContent = "Clearing this device's data: waiting for the app's other tabs to let go of it…";
      })
      .catch((error: unknown) => {
        progress.textContent = `This device's data could not be cleared: ${error instanceof Error ? error.message : String(error)}`;
      });
  });
  cancel.addEventListener("click", () => options.cancel());

  replace(
    main,
    h("h1", {}, "Sign out"),
    h(
      "p",
      {},
      `This device keeps a copy of the products and stock movements, and the changes made here. Keep it to work from it ` +
        `again when you sign in here as ${options.userId}; clear it on a device others use.`,
    ),
    warning,
    h("p", { class: "row" }, keep, clear, cancel),
    progress,
  );
  draw();
  return () => subscription.unsubscribe();
}
