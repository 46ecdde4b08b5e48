// What every view uses: the JSON calls under /ui/api, element building and the confirm dialog.

export class Unauthorized extends Error {}

const hooks = { unauthorized: () => {} };

// Called with a message when a call comes back 401 (the app shows the login).
export function onUnauthorized(fn) {
  hooks.unauthorized = fn;
}

// One JSON call under /ui/api (the console's cookie goes with it). A 401 shows the login.
export async function api(path, options = {}) {
  const res = await fetch(`/ui/api${path}`, {
    credentials: "same-origin", ...options,
    headers: { "content-type": "application/json", accept: "application/json", ...(options.headers || {}) },
  });
  if (res.status === 401) {
    hooks.unauthorized("Your session has ended: sign in again.");
    throw new Unauthorized("unauthorized");
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const error = new Error(body.error ? `${body.error.code}: ${body.error.message}` : `${res.status} ${res.statusText}`);
    error.status = res.status;
    error.body = body;
    throw error;
  }
  return body;
}

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function confirmAction(text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "cancel";
    dialog.showModal();
    document.getElementById("confirm-ok").focus();
  });
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleTimeString([], { hour12: false }) + "." + String(new Date(iso).getMilliseconds()).padStart(3, "0") : "";
}
