// Siskin dashboard: the action buttons and the reload. Actions are POSTs with the
// X-Siskin-Request header, which a page on another site cannot send (CSRF).
"use strict";
(function () {
  const result = document.getElementById("result");
  const actions = document.getElementById("actions");
  const every = Number(document.body.dataset.refresh || "0");
  let busy = false;
  if (actions) {
    for (const button of actions.querySelectorAll("button[data-action]")) {
      button.addEventListener("click", async () => {
        const action = button.dataset.action;
        const body = new URLSearchParams();
        const reason = document.getElementById("reason");
        if (action === "pause" && reason) body.set("reason", reason.value);
        busy = true;
        for (const b of actions.querySelectorAll("button")) b.disabled = true;
        try {
          const r = await fetch(actions.dataset.path + "/" + action, {
            method: "POST",
            credentials: "same-origin",
            headers: { "X-Siskin-Request": "1" },
            body,
          });
          const text = await r.text();
          result.textContent = text;
          result.className = r.ok ? "ok" : "fail";
          result.dataset.status = String(r.status);
          // Done: show the new state soon (a refusal stays on screen until reloaded).
          if (r.ok && every > 0) setTimeout(() => location.reload(), 1500);
        } catch (e) {
          result.textContent = "the dashboard did not answer: " + e;
          result.className = "fail";
          result.dataset.status = "0";
        } finally {
          for (const b of actions.querySelectorAll("button")) b.disabled = false;
          busy = false;
        }
      });
    }
  }
  if (every > 0) {
    setInterval(() => {
      const typing = document.activeElement && document.activeElement.tagName === "INPUT";
      const refused = result && result.className === "fail";
      if (!busy && !typing && !refused) location.reload();
    }, every * 1000);
  }
})();
