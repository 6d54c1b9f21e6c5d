// @vitest-environment jsdom
import "fake-indexeddb/auto";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { DexieStore, LocalDb, deleteLocalDb } from "../sync/db";
import { LocalActions } from "../sync/local";
import { signOutScreen, type SignOutOptions } from "./signout";

const TENANT = "00000000-0000-4000-8000-000000000001";

let db: LocalDb;
let main: HTMLElement;
let undo: (() => void) | null;
let options: SignOutOptions & { keep: ReturnType<typeof vi.fn>; clear: ReturnType<typeof vi.fn> };

beforeEach(() => {
  db = new LocalDb(`test-${crypto.randomUUID()}`);
  main = document.createElement("main");
  document.body.replaceChildren(main);
  options = { db, userId: "ana", keep: vi.fn(async () => undefined), clear: vi.fn(async () => undefined), cancel: vi.fn() };
  undo = null;
});

afterEach(async () => {
  undo?.();
  await db.delete();
});

const button = (start: string) => [...main.querySelectorAll("button")].find((b) => b.textContent?.startsWith(start)) as HTMLButtonElement;
const warning = () => main.querySelector<HTMLElement>("#sign-out-warning")!;

async function queue(count: number): Promise<void> {
  const actions = new LocalActions(new DexieStore(db), { changed: () => undefined }, TENANT);
  for (let i = 0; i < count; i++) await actions.createProduct({ name: `Item ${i}` });
}

describe("sign-out screen", () => {
  it("clears at once when nothing is queued", async () => {
    undo = signOutScreen(main, options);
    await vi.waitFor(() => expect(button("Clear")).toBeDefined());
    expect(warning().hidden).toBe(true);
    button("Clear this device's data").click();
    expect(options.clear).toHaveBeenCalledTimes(1);
    expect(options.keep).not.toHaveBeenCalled();
    expect(main.querySelector("#sign-out-progress")?.textContent).toBe("Clearing this device's data…");
    expect(button("Keep").disabled).toBe(true);
  });

  it("warns that queued changes would be lost, and clears them only on a second click", async () => {
    await queue(2);
    undo = signOutScreen(main, options);
    await vi.waitFor(() => expect(warning().hidden).toBe(false));
    expect(warning().textContent).toContain("2 changes made on this device are not synced yet");
    expect(warning().textContent).toContain("clearing it loses them");
    button("Clear this device's data").click();
    expect(options.clear).not.toHaveBeenCalled();
    expect(button("Confirm").textContent).toBe("Confirm: clear and lose 2 changes");
    button("Confirm").click();
    expect(options.clear).toHaveBeenCalledTimes(1);
  });

  it("keeps the data when asked, queued changes and all", async () => {
    await queue(1);
    undo = signOutScreen(main, options);
    await vi.waitFor(() => expect(warning().textContent).toContain("1 change made on this device is not synced yet"));
    button("Keep data").click();
    expect(options.keep).toHaveBeenCalledTimes(1);
    expect(options.clear).not.toHaveBeenCalled();
    expect(await db.outbox.count()).toBe(1);
  });

  it("the warning goes when the queued changes are synced meanwhile", async () => {
    await queue(1);
    undo = signOutScreen(main, options);
    await vi.waitFor(() => expect(warning().hidden).toBe(false));
    await db.outbox.clear(); // the leading tab's sync settled them
    await vi.waitFor(() => expect(warning().hidden).toBe(true));
    button("Clear this device's data").click();
    expect(options.clear).toHaveBeenCalledTimes(1);
  });

  it("cancel goes back without signing out", async () => {
    undo = signOutScreen(main, options);
    button("Cancel").click();
    expect(options.cancel).toHaveBeenCalledTimes(1);
    expect(options.keep).not.toHaveBeenCalled();
  });
});

describe("deleteLocalDb", () => {
  it("deletes the tenant's database from the device, and nothing here opens it again", async () => {
    await queue(1);
    const names = async () => (await indexedDB.databases()).map((info) => info.name);
    expect(await names()).toContain(db.name);
    await deleteLocalDb(db);
    expect(await names()).not.toContain(db.name);
    await expect(db.outbox.count()).rejects.toThrow();
    expect(await names()).not.toContain(db.name);
  });
});
