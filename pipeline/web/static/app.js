// facepipe web UI: forms with class "api" call the JSON API (/api) with fetch, then
// show the result and reload the page. The session cookie authenticates the calls.
"use strict";

function show(text, bad) {
  const box = document.getElementById("message");
  if (!box) return;
  box.textContent = text;
  box.className = bad ? "message bad" : "message";
  box.hidden = false;
}

async function callApi(form) {
  const method = form.dataset.method || "POST";
  const init = { method, credentials: "same-origin", headers: {} };
  if (form.enctype === "multipart/form-data") {
    init.body = new FormData(form);
  } else if (method !== "DELETE" && method !== "GET") {
    init.headers["Content-Type"] = "application/json";
    let fields = [...new FormData(form)];
    if (form.dataset.skipEmpty) fields = fields.filter(([, v]) => v !== ""); // optional keys
    init.body = JSON.stringify(Object.fromEntries(fields));
  }
  const answer = await fetch(form.dataset.url, init);
  let data = {};
  try { data = await answer.json(); } catch (e) { /* not JSON */ }
  if (!answer.ok) throw new Error(data.detail || `${answer.status} ${answer.statusText}`);
  return data;
}

document.addEventListener("submit", async (event) => {
  const form = event.target;
  if (!form.classList || !form.classList.contains("api")) return;
  event.preventDefault();
  if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
  const buttons = form.querySelectorAll("button");
  buttons.forEach((b) => { b.disabled = true; });
  try {
    const data = await callApi(form);
    show(data.result || "done", false);
    document.body.dataset.lastResult = data.result || "done";
    setTimeout(() => window.location.reload(), 600);
  } catch (err) {
    show(err.message, true);
    buttons.forEach((b) => { b.disabled = false; });
  }
});

// the overview's pictures (one JPEG per stream) are fetched again every second, each
// after the previous one arrived; a live view whose stream ended reconnects
function refresh(img) {
  if (img.refreshing) return; // one chain of requests per picture
  img.refreshing = true;
  setTimeout(() => {
    img.refreshing = false;
    img.src = img.src.split("?")[0] + "?t=" + Date.now();
  }, 1000);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("img.live-still").forEach((img) => {
    img.addEventListener("load", () => refresh(img));
    img.addEventListener("error", () => refresh(img));
    if (img.complete) refresh(img); // it arrived before this script ran
  });
  document.querySelectorAll("img.live").forEach((img) => {
    img.addEventListener("error", () => {
      setTimeout(() => { img.src = img.src.split("?")[0] + "?t=" + Date.now(); }, 2000);
    });
  });
});
