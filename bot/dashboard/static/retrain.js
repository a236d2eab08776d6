// Models page, enhanced: while a retrain runs, its progress comes from the small JSON
// document retrain/status (polled every second); when it ends the page reloads to show
// the new model. Without this script the page refreshes itself while a retrain runs.
"use strict";
(function () {
  const section = document.getElementById("retrain");
  if (!section || !window.fetch) return;
  const live = document.getElementById("retrain-live");
  const bar = document.getElementById("retrain-bar");
  const text = document.getElementById("retrain-text");
  const button = document.getElementById("retrain-button");
  let wasRunning = section.dataset.running === "yes";

  async function poll() {
    let state;
    try {
      const response = await fetch(section.dataset.statusUrl, {
        credentials: "same-origin", headers: { "Accept": "application/json" },
      });
      if (!response.ok) return;
      state = await response.json();
    } catch (err) {
      return;
    }
    if (state.running) {
      wasRunning = true;
      live.hidden = false;
      if (button) button.disabled = true;
      if (state.fraction === null) bar.removeAttribute("value"); else bar.value = state.fraction;
      const count = state.total ? " " + state.done + "/" + state.total : "";
      const took = state.elapsed_s === null ? "" : " (" + Math.round(state.elapsed_s) + " s)";
      text.textContent = "Retraining: " + state.stage + count + "…" + took;
    } else if (wasRunning) {
      wasRunning = false;
      const last = state.last;
      text.textContent = last && last.outcome === "failed"
        ? "Retraining failed: " + last.detail
        : "Retraining finished: model " + (state.model_id || "?") + ".";
      window.setTimeout(() => window.location.reload(), 1200);
    }
  }
  window.setInterval(poll, 1000);
  if (wasRunning) poll();
})();
