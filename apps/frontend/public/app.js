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

/** Counts this visit and shows the total. */
async function countVisit() {
  const visits = byId("visits");
  try {
    const response = await fetch("/api/visits", {
      method: "POST",
      headers: { Accept: "application/json" },
    });
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
