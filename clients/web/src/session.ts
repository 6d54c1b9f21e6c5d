/**
 * Who is signed in. Development: a pasted token (``make token``). A real identity provider would
 * hand the app a short-lived access token (OIDC authorization code + PKCE) and this module would
 * hold and refresh it instead; nothing else in the app changes.
 */
export interface Session {
  token: string;
  tenantId: string;
  userId: string;
}

const STORAGE_KEY = "stockzen.session";

/** The tenant and user a JWT names (read only to pick the local database: the gateway verifies it). */
export function sessionFromToken(token: string, checkExpiry = true): Session {
  const part = token.trim().split(".")[1];
  if (!part) throw new Error("that is not a token: paste the output of `make token`");
  let claims: { sub?: unknown; tenant_id?: unknown; exp?: unknown };
  try {
    claims = JSON.parse(atob(part.replace(/-/g, "+").replace(/_/g, "/"))) as typeof claims;
  } catch {
    throw new Error("that is not a token: paste the output of `make token`");
  }
  if (typeof claims.tenant_id !== "string" || typeof claims.sub !== "string") {
    throw new Error("the token names no tenant or user");
  }
  if (checkExpiry && typeof claims.exp === "number" && claims.exp * 1000 < Date.now()) throw new Error("the token has expired");
  return { token: token.trim(), tenantId: claims.tenant_id, userId: claims.sub };
}

export function loadSession(): Session | null {
  const token = localStorage.getItem(STORAGE_KEY);
  if (!token) return null;
  try {
    // An expired token still opens the local data (offline); the gateway's 401 then asks for a new one.
    return sessionFromToken(token, false);
  } catch {
    return null;
  }
}

export function saveSession(session: Session | null): void {
  if (session) localStorage.setItem(STORAGE_KEY, session.token);
  else localStorage.removeItem(STORAGE_KEY);
}

/**
 * Calls ``listener`` when another tab of the app signs in or out (the session in storage changed;
 * a tab never hears its own change). Returns what stops listening.
 */
export function onSessionChange(listener: () => void): () => void {
  const heard = (event: StorageEvent) => {
    if (event.storageArea === localStorage && (event.key === STORAGE_KEY || event.key === null)) listener();
  };
  window.addEventListener("storage", heard);
  return () => window.removeEventListener("storage", heard);
}
