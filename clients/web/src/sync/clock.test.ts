import { describe, expect, it } from "vitest";
import { nextStamp } from "./clock";

describe("nextStamp", () => {
  const at = (iso: string) => new Date(iso);

  it("is now when the clock moved on since the last stamp", () => {
    expect(nextStamp(at("2026-01-01T00:00:01.000Z"), "2026-01-01T00:00:00.000Z")).toBe("2026-01-01T00:00:01.000Z");
    expect(nextStamp(at("2026-01-01T00:00:01.000Z"), null)).toBe("2026-01-01T00:00:01.000Z");
  });

  it("is the last stamp + 1 ms within the same millisecond or when the clock went back", () => {
    expect(nextStamp(at("2026-01-01T00:00:00.000Z"), "2026-01-01T00:00:00.000Z")).toBe("2026-01-01T00:00:00.001Z");
    expect(nextStamp(at("2026-01-01T00:00:05.000Z"), "2026-01-01T00:00:10.000Z")).toBe("2026-01-01T00:00:10.001Z");
  });

  it("ignores a stored stamp it cannot read", () => {
    expect(nextStamp(at("2026-01-01T00:00:00.000Z"), "garbage")).toBe("2026-01-01T00:00:00.000Z");
  });
});
