// Page behaviour. Served as a same-origin module: the CSP (default-src 'self') forbids
// inline scripts. Server data is only ever written with textContent, never as HTML.

const byId = (id) => document.getElementById(id);

/** Reads the `{error}` message of a JSON error response, or describes the status. */
async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && typeof body.error === "string") return body.error;
  } catch {
    // Not JSON: fall through to the status line.
  }
  return `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}`;
}

/**
 * A random key for this visit. crypto.randomUUID() exists only on secure origins
 * (https, localhost); getRandomValues also works on a plain-http address.
 */
function newVisitKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * POST /api/visits, retried when no answer came within 5 s (network error, timeout) or
 * the proxy found no service (502/503/504). Every attempt carries the same
 * Idempotency-Key, so a visit that was counted before its answer got lost is answered
 * with its number, not counted again.
 */
async function postVisit() {
  const key = newVisitKey();
  for (let attempt = 1; ; attempt++) {
    const response = await fetch("/api/visits", {
      method: "POST",
      headers: { Accept: "application/json", "Idempotency-Key": key },
      signal: AbortSignal.timeout(5_000),
    }).catch(() => undefined);
    const retry = response === undefined || [502, 503, 504].includes(response.status);
    if (!retry || attempt === 4) {
      if (response === undefined) throw new Error("network error");
      return response;
    }
    await sleep(250 * 2 ** (attempt - 1)); // 0.25, 0.5, 1 s
  }
}

/** Counts this visit and shows the total. */
async function countVisit() {
  const visits = byId("visits");
  try {
    const response = await postVisit();
    if (!response.ok) throw new Error(await errorMessage(response));
    const { count } = await response.json();
    if (!Number.isInteger(count)) throw new Error("Unexpected response");
    // Always "times": the wording is part of the page's contract with the e2e tests.
    visits.textContent = `This page has been visited ${count} times`;
  } catch (error) {
    console.error("Visit counter unavailable:", error);
    visits.textContent = "Visit counter unavailable. Please try again later.";
  }
}

/** Fetches /api/data and shows message, timestamp and host, or the error. */
async function fetchData(button) {
  const data = byId("data");
  const errorBox = byId("data-error");
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    const response = await fetch("/api/data", {
      headers: { Accept: "application/json" },
      cache: "no-store",
    }).catch(() => {
      // fetch rejects only when no response arrived at all.
      throw new Error("network error");
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    const { message, timestamp, servedByHost } = await response.json();

    byId("data-message").textContent = String(message ?? "");
    const time = byId("data-timestamp");
    time.textContent = String(timestamp ?? "");
    time.dateTime = String(timestamp ?? "");
    byId("data-host").textContent = String(servedByHost ?? "");

    errorBox.hidden = true;
    errorBox.textContent = "";
    data.hidden = false;
  } catch (error) {
    data.hidden = true;
    errorBox.textContent = `Could not fetch data from the backend: ${error.message}`;
    errorBox.hidden = false;
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

// Module scripts run after the document is parsed, so the elements exist.
const button = byId("fetch-data");
button.addEventListener("click", () => fetchData(button));
countVisit();
