// taiwa web chat: talks to the REST channel on the same origin; no dependencies.
// The conversation (sender id, transcript, unsent messages) lives in localStorage, so a reload
// keeps it. Every message has a message_id that its retries reuse, so the server runs it once.
(() => {
  "use strict";

  const STORE_KEY = "taiwa.webchat.v1";
  const ENDPOINT = new URL("webhooks/rest/webhook", document.baseURI).href;
  const KEEP = 200; // transcript entries kept
  const TIMEOUT_MS = 30000; // one request
  const MAX_BACKOFF_MS = 30000;

  const $ = (id) => document.getElementById(id);
  const log = $("log");
  const empty = $("empty");
  const typing = $("typing");
  const statusBox = $("status");
  const statusText = $("status-text");
  const retryButton = $("retry");
  const form = $("composer");
  const input = $("message");
  const restartButton = $("restart");

  const randomId = () =>
    Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
  const fresh = () => ({ sender: "web-" + randomId(), transcript: [], outbox: [] });

  function load() {
    try {
      const s = JSON.parse(localStorage.getItem(STORE_KEY));
      if (s && typeof s.sender === "string" && Array.isArray(s.transcript) && Array.isArray(s.outbox)) return s;
    } catch (_) {
      // unreadable: start afresh
    }
    return fresh();
  }

  function save() {
    state.transcript = state.transcript.slice(-KEEP);
    try {
      localStorage.setItem(STORE_KEY, JSON.stringify(state));
    } catch (_) {
      // storage full or blocked: the chat still works, it just won't survive a reload
    }
  }

  let state = load();
  const nodes = new Map(); // entry id -> element

  // ---------------------------------------------------------------- rendering

  const URL_RE = /\bhttps?:\/\/[^\s<>"']*[^\s<>"'.,;:!?)\]]/g;

  function appendText(parent, text) {
    let last = 0;
    for (const m of text.matchAll(URL_RE)) {
      parent.append(text.slice(last, m.index));
      const a = document.createElement("a");
      a.href = m[0];
      a.textContent = m[0];
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      parent.append(a);
      last = m.index + m[0].length;
    }
    parent.append(text.slice(last));
  }

  function note(item, text) {
    const p = document.createElement("p");
    p.className = "note failed";
    p.textContent = text;
    item.append(p);
  }

  function render(entry) {
    const item = document.createElement("div");
    item.className = "msg " + entry.who;
    const who = document.createElement("span");
    who.className = "sr-only";
    who.textContent = entry.who === "user" ? "You:" : "Assistant:";
    item.append(who);
    if (entry.text) {
      const p = document.createElement("p");
      p.className = "bubble";
      appendText(p, entry.text);
      item.append(p);
    }
    if (entry.image) {
      const img = document.createElement("img");
      img.src = entry.image;
      img.alt = entry.text ? "" : "Image from the assistant";
      img.addEventListener("load", scrollDown);
      item.append(img);
    }
    if (entry.buttons && entry.buttons.length) {
      const group = document.createElement("div");
      group.className = "buttons";
      group.setAttribute("role", "group");
      group.setAttribute("aria-label", "Suggested replies");
      entry.buttons.forEach((b, i) => {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = b.title;
        button.disabled = Boolean(entry.closed);
        button.classList.toggle("chosen", entry.chosen === i);
        button.addEventListener("click", () => choose(entry, i));
        group.append(button);
      });
      item.append(group);
    }
    if (entry.failed) note(item, "Not delivered: " + entry.failed);
    return item;
  }

  function scrollDown() {
    log.scrollTop = log.scrollHeight;
  }

  function show(entry) {
    const item = render(entry);
    nodes.set(entry.id, item);
    log.append(item);
    empty.hidden = true;
    scrollDown();
  }

  function add(entry) {
    state.transcript.push(entry);
    show(entry);
  }

  function botEntry(m) {
    const options = [m.buttons, m.quick_replies].flatMap((list) => (Array.isArray(list) ? list : []));
    const buttons = options
      .filter((b) => b && typeof b.title === "string" && typeof b.payload === "string")
      .map((b) => ({ title: b.title, payload: b.payload }));
    const text = typeof m.text === "string" && m.text ? m.text : null;
    let image = null;
    if (typeof m.image === "string") {
      try {
        const url = new URL(m.image, document.baseURI);
        if (["http:", "https:", "data:"].includes(url.protocol)) image = url.href;
      } catch (_) {
        // not a URL: no image
      }
    }
    if (!text && !image && !buttons.length) return null;
    return { id: randomId(), who: "bot", text, image, buttons };
  }

  function closeButtons() {
    for (const entry of state.transcript) {
      if (entry.buttons && entry.buttons.length && !entry.closed) {
        entry.closed = true;
        nodes.get(entry.id)?.querySelectorAll(".buttons button").forEach((b) => (b.disabled = true));
      }
    }
  }

  function setStatus(text) {
    if (!text && document.activeElement === retryButton) input.focus();
    statusText.textContent = text;
    statusBox.classList.toggle("active", Boolean(text));
    retryButton.hidden = !text;
  }

  // ---------------------------------------------------------------- sending

  function send(shown, message) {
    closeButtons();
    const id = randomId();
    add({ id, who: "user", text: shown });
    state.outbox.push({ id, message });
    save();
    pump();
  }

  function choose(entry, i) {
    if (entry.closed) return;
    entry.chosen = i;
    nodes.get(entry.id)?.querySelectorAll(".buttons button")[i]?.classList.add("chosen");
    send(entry.buttons[i].title, entry.buttons[i].payload);
    input.focus();
  }

  const retryable = (afterMs) => ({ retry: true, afterMs });
  const refused = (message) => ({ retry: false, message });

  async function post(item) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
    try {
      let res;
      try {
        res = await fetch(ENDPOINT, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ sender: state.sender, message: item.message, message_id: item.id }),
          signal: controller.signal,
        });
      } catch (_) {
        throw retryable();
      }
      if (res.ok) {
        const body = await res.json().catch(() => []);
        return Array.isArray(body) ? body : [];
      }
      if (res.status === 408 || res.status === 429 || res.status >= 500) {
        const after = Number(res.headers.get("Retry-After"));
        throw retryable(after > 0 ? after * 1000 : undefined);
      }
      const body = await res.json().catch(() => null);
      throw refused(body?.error?.message || `the server refused it (HTTP ${res.status}).`);
    } finally {
      clearTimeout(timer);
    }
  }

  let inFlight = false;
  let failures = 0;
  let retryTimer = 0;

  function backoff(n) {
    const base = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** (n - 1));
    return base * (0.75 + Math.random() * 0.5);
  }

  async function pump() {
    if (inFlight || !state.outbox.length) return;
    clearTimeout(retryTimer);
    inFlight = true;
    typing.hidden = false;
    const session = state;
    const item = session.outbox[0];
    let retryIn = 0;
    try {
      const replies = await post(item);
      if (state === session) {
        session.outbox.shift();
        failures = 0;
        setStatus("");
        for (const m of replies) {
          const entry = botEntry(m);
          if (entry) add(entry);
        }
      }
    } catch (err) {
      if (err && err.retry) {
        failures += 1;
        retryIn = err.afterMs || backoff(failures);
      } else {
        session.outbox.shift();
        const entry = session.transcript.find((e) => e.id === item.id);
        if (entry && state === session) {
          entry.failed = (err && err.message) || "unexpected error.";
          note(nodes.get(entry.id), "Not delivered: " + entry.failed);
        }
      }
    } finally {
      inFlight = false;
    }
    if (state !== session) return void pump();
    save();
    if (retryIn) {
      typing.hidden = true;
      setStatus("Can't reach the server. Reconnecting…");
      retryTimer = setTimeout(pump, retryIn);
    } else if (state.outbox.length) {
      pump();
    } else {
      typing.hidden = true;
    }
  }

  // ---------------------------------------------------------------- events

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value.trim();
    input.value = "";
    input.focus();
    if (text) send(text, text);
  });

  retryButton.addEventListener("click", () => {
    input.focus();
    pump();
  });

  window.addEventListener("online", () => {
    if (failures) pump();
  });

  restartButton.addEventListener("click", () => {
    clearTimeout(retryTimer);
    state = fresh();
    save();
    nodes.clear();
    log.replaceChildren(empty);
    empty.hidden = false;
    failures = 0;
    typing.hidden = true;
    setStatus("");
    input.focus();
  });

  for (const entry of state.transcript) show(entry);
  input.focus();
  pump(); // messages a reload interrupted are sent again, with the same message_id
})();
