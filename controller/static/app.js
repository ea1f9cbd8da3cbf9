// MLQ dashboard: live regions and confirmations. No framework, no build step.
"use strict";

(function () {
  const status = () => document.getElementById("live-status");

  // Every form with data-confirm asks first (requeue, purge). Delegated from the
  // document because live refreshes replace the forms.
  document.addEventListener("submit", (event) => {
    const message = event.target.dataset && event.target.dataset.confirm;
    if (message && !window.confirm(message)) event.preventDefault();
  });

  // The element with data-live="<ms>" is refreshed by fetching this very page and
  // swapping in its new version: the server renders the numbers once, in one
  // template, for the first load and for every refresh.
  function start() {
    const region = document.querySelector("[data-live]");
    if (!region) return;
    const every = Math.max(Number(region.dataset.live) || 2000, 500);
    let failures = 0;

    async function tick() {
      const current = document.getElementById(region.id);
      if (!current || !current.hasAttribute("data-live")) return; // finished (a done job)
      if (document.hidden) return setTimeout(tick, every);
      try {
        const response = await fetch(location.href, {
          credentials: "same-origin", cache: "no-store", headers: { "X-Requested-With": "mlq-live" },
        });
        if (response.redirected && new URL(response.url).pathname === "/ui/login") {
          location.reload(); // the session ended: let the server ask for the token
          return;
        }
        if (!response.ok) throw new Error("HTTP " + response.status);
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.getElementById(region.id);
        if (fresh) swap(current, fresh);
        failures = 0;
        if (status()) status().textContent = "Live · updated " + new Date().toLocaleTimeString();
      } catch (error) {
        failures += 1;
        if (status()) status().textContent = "Not updating (" + error.message + "); retrying…";
      }
      setTimeout(tick, every * Math.min(1 + failures, 5));
    }
    setTimeout(tick, every);
  }

  // Replace `old` by `fresh`, flashing the numbers that changed (data-key cells).
  function swap(old, fresh) {
    const before = new Map();
    old.querySelectorAll("[data-key]").forEach((el) => before.set(el.dataset.key, el.textContent));
    fresh.querySelectorAll("[data-key]").forEach((el) => {
      const was = before.get(el.dataset.key);
      if (was !== undefined && was !== el.textContent) el.classList.add("changed");
    });
    // keep open <details> (a traceback being read) open across the swap
    const open = new Set(Array.from(old.querySelectorAll("details[open]"),
                                    (d) => d.closest("[id]") && d.closest("[id]").id));
    fresh.querySelectorAll("details").forEach((d) => {
      const owner = d.closest("[id]");
      if (owner && owner.id !== fresh.id && open.has(owner.id)) d.open = true;
    });
    old.replaceWith(document.importNode(fresh, true));
  }

  // A job's streamed output (a generator listener's chunks), appended as each
  // arrives; the browser resumes after the last one by itself if the connection drops.
  function streamChunks() {
    const panel = document.getElementById("chunks");
    if (!panel || !window.EventSource) return;
    const text = document.getElementById("chunk-text");
    const count = document.getElementById("chunk-count");
    let received = 0;
    const source = new EventSource(panel.dataset.stream);
    source.addEventListener("chunk", (event) => {
      const chunk = JSON.parse(event.data);
      received += 1;
      panel.hidden = false;
      if (typeof chunk === "string") text.textContent += chunk;
      else if (chunk && typeof chunk.base64 === "string") text.textContent += "[" + atob(chunk.base64).length + " bytes]\n";
      else text.textContent += JSON.stringify(chunk) + "\n";
      count.textContent = "(" + received + " chunk" + (received === 1 ? "" : "s") + ")";
    });
    ["completed", "failed", "cancelled", "expired"].forEach((end) =>
      source.addEventListener(end, () => source.close()));
  }

  function startAll() {
    start();
    streamChunks();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", startAll);
  else startAll();
})();
