/*
 * The B特派 web chat page: plain JavaScript, no build step.
 *
 * The server's history (GET /api/chat/history) is the source of truth: every message there has
 * an id, a direction and a sender. A reply to a POST, or a frame pushed over the WebSocket, is
 * a signal to read the history after the last id seen, so nothing is shown twice and nothing
 * pushed while the socket was down is lost. Only a reply the server did not record (a message
 * that was too long) is shown straight from the POST answer.
 *
 * Security: text from the server or the user goes into the page with textContent and
 * createElement only, never as HTML; images only as PNG data URIs; links only http(s).
 */
(function () {
  "use strict";

  var SESSION_KEY = "btp.webchat.session";
  var LABELS_KEY = "btp.webchat.labels";
  var MAX_LENGTH = 4000;
  var COUNTER_FROM = 3800;
  var SEND_ATTEMPTS = 4;
  var PING_EVERY = 25000;
  var PONG_WITHIN = 10000;
  var RECONNECT_MAX = 30000;
  var MAX_CACHED_LABELS = 200;
  var PNG_DATA_URI = /^data:image\/png;base64,[A-Za-z0-9+/]+={0,2}$/;
  var LINK = /https?:\/\/[^\s<>"'\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]+/g;

  var STRINGS = JSON.parse(document.getElementById("strings").textContent);
  var DEFAULT_LANGUAGE = known(STRINGS, document.documentElement.dataset.defaultLanguage)
    ? document.documentElement.dataset.defaultLanguage
    : "zh";

  var els = {
    conversation: document.getElementById("conversation"),
    messages: document.getElementById("messages"),
    welcome: document.getElementById("welcome"),
    typing: document.getElementById("typing"),
    status: document.getElementById("status"),
    form: document.getElementById("composer"),
    input: document.getElementById("input"),
    send: document.getElementById("send"),
    counter: document.getElementById("counter"),
    toggles: Array.prototype.slice.call(document.querySelectorAll("[data-lang]")),
  };

  var state = {
    session: null,
    language: DEFAULT_LANGUAGE,
    languageVersion: 0,
    languageHold: 0, // "/lang" messages not yet answered: the history's language is stale
    statusKey: "",
    lastId: 0,
    seen: new Set(),
    pending: [], // the user's bubbles not yet matched to a message id in the history
    outsIngested: 0,
    labels: readJson(LABELS_KEY) || {},
    queue: Promise.resolve(),
    waiting: 0,
    syncing: null,
    syncAgain: false,
    renewing: null,
    socket: null,
    socketEverOpen: false,
    reconnectAttempts: 0,
    reconnectTimer: null,
    pingTimer: null,
    pongTimer: null,
  };

  // ---- small helpers -------------------------------------------------------------------------

  /** An own key of `table` (a value from the server is never "__proto__" or "constructor"). */
  function known(table, key) {
    return typeof key === "string" && Object.prototype.hasOwnProperty.call(table, key);
  }

  function t(key) {
    var table = STRINGS[state.language] || STRINGS[DEFAULT_LANGUAGE];
    return table[key] !== undefined ? table[key] : STRINGS.zh[key];
  }

  function readJson(key) {
    try {
      var raw = window.localStorage.getItem(key);
      return raw ? JSON.parse(raw) : null;
    } catch (err) {
      return null;
    }
  }

  function writeJson(key, value) {
    try {
      if (value === null) window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, JSON.stringify(value));
    } catch (err) {
      /* storage full or disabled: the page still works, it only forgets on reload */
    }
  }

  function uuid() {
    if (window.crypto && typeof window.crypto.randomUUID === "function") {
      return window.crypto.randomUUID();
    }
    // crypto.randomUUID needs a secure context; plain http on a LAN address falls back here.
    var bytes = window.crypto.getRandomValues(new Uint8Array(16));
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    var hex = Array.prototype.map
      .call(bytes, function (b) {
        return (b + 0x100).toString(16).slice(1);
      })
      .join("");
    return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join("-");
  }

  function delay(ms) {
    return new Promise(function (resolve) {
      window.setTimeout(resolve, ms);
    });
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  // ---- the HTTP API ----------------------------------------------------------------------------

  function NetworkError() {}

  /** The server asked to wait (429): `seconds` from Retry-After, 0 when it said nothing. */
  function Limited(seconds) {
    this.seconds = seconds;
  }

  /** fetch with the bearer token; resolves {status, data}; rejects with NetworkError. */
  function api(method, path, body) {
    var headers = { Accept: "application/json" };
    if (state.session) headers.Authorization = "Bearer " + state.session.token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return window
      .fetch(path, {
        method: method,
        headers: headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: "same-origin",
        cache: "no-store",
      })
      .then(
        function (response) {
          return response
            .json()
            .catch(function () {
              return null;
            })
            .then(function (data) {
              var wait = parseInt(response.headers.get("Retry-After") || "", 10);
              return { status: response.status, data: data, retryAfter: wait > 0 ? wait : 0 };
            });
        },
        function () {
          throw new NetworkError();
        }
      );
  }

  function openSession() {
    return api("POST", "/api/chat/sessions").then(function (result) {
      var data = result.data;
      if (result.status === 429) throw new Limited(result.retryAfter);
      if (result.status !== 201 || !data || typeof data.token !== "string") {
        throw new NetworkError();
      }
      state.session = { session_id: data.session_id, token: data.token };
      writeJson(SESSION_KEY, state.session);
    });
  }

  /** Open a session, trying again with a growing pause, or as long as the server asked. */
  async function openSessionUntilDone() {
    for (var attempt = 0; ; attempt++) {
      try {
        await openSession();
        break;
      } catch (err) {
        var pause = Math.min(RECONNECT_MAX, 1000 * Math.pow(2, attempt));
        if (err instanceof Limited) {
          showStatus("error_limited");
          pause = Math.max(pause, 1000 * err.seconds);
        } else {
          showStatus("error_start");
        }
        await delay(pause);
      }
    }
    showStatus("");
  }

  /** A 401: the session is gone (expired, or storage from another deployment). Start afresh. */
  function renewSession() {
    if (state.renewing) return state.renewing;
    state.renewing = (async function () {
      writeJson(SESSION_KEY, null);
      writeJson(LABELS_KEY, null);
      state.session = null;
      state.labels = {};
      state.lastId = 0;
      state.seen.clear();
      els.messages.replaceChildren();
      closeSocket();
      await openSessionUntilDone();
      appendNotice(t("session_renewed"));
      // What the user sent and the new session has not seen yet is sent there, after the notice.
      state.pending.forEach(function (bubble) {
        els.messages.appendChild(bubble.node);
      });
      connect();
    })().finally(function () {
      state.renewing = null;
    });
    return state.renewing;
  }

  // ---- history: the source of truth --------------------------------------------------------

  /** Read the history after the last id seen; resolves true when it was read. */
  function sync() {
    if (state.syncing) {
      state.syncAgain = true;
      return state.syncing;
    }
    state.syncing = (async function () {
      var ok = true;
      do {
        state.syncAgain = false;
        ok = await syncOnce();
      } while (ok && state.syncAgain);
      return ok;
    })().finally(function () {
      state.syncing = null;
    });
    return state.syncing;
  }

  async function syncOnce() {
    var renewed = false;
    for (;;) {
      var version = state.languageVersion;
      var result;
      try {
        result = await api("GET", "/api/chat/history?after=" + state.lastId);
      } catch (err) {
        return false;
      }
      if (result.status === 401 && !renewed) {
        renewed = true;
        await renewSession();
        continue;
      }
      if (result.status !== 200 || !result.data || !Array.isArray(result.data.messages)) {
        return false;
      }
      var data = result.data;
      var current = version === state.languageVersion && state.languageHold === 0;
      if (known(STRINGS, data.language) && current) {
        setLanguage(data.language);
      }
      var stick = nearBottom();
      data.messages.forEach(ingest);
      if (data.messages.length) scrollDown(stick);
      if (data.messages.length < 500) return true; // the server sends at most 500 at a time
    }
  }

  function ingest(message) {
    if (!message || typeof message.id !== "number" || state.seen.has(message.id)) return;
    state.seen.add(message.id);
    state.lastId = Math.max(state.lastId, message.id);
    if (message.direction === "in") {
      confirmOrRenderUser(message);
    } else {
      state.outsIngested += 1;
      appendMessage(message);
    }
  }

  /** Match a stored user message to the bubble shown when it was sent, or show it. */
  function confirmOrRenderUser(message) {
    var isAction = !message.text;
    var index = state.pending.findIndex(function (bubble) {
      return bubble.isAction === isAction;
    });
    if (index >= 0) {
      var bubble = state.pending.splice(index, 1)[0];
      if (bubble.silent) {
        bubble.node.remove();
        return;
      }
      bubble.node.dataset.id = String(message.id);
      if (isAction && !bubble.silent) rememberLabel(message.id, bubble.text);
      return;
    }
    var label = isAction ? state.labels[message.id] : message.text;
    if (label) appendMessage({ id: message.id, direction: "in", sender: "user", text: label });
  }

  function rememberLabel(id, label) {
    state.labels[id] = label;
    var ids = Object.keys(state.labels);
    if (ids.length > MAX_CACHED_LABELS) {
      ids
        .map(Number)
        .sort(function (a, b) {
          return a - b;
        })
        .slice(0, ids.length - MAX_CACHED_LABELS)
        .forEach(function (old) {
          delete state.labels[old];
        });
    }
    writeJson(LABELS_KEY, state.labels);
  }

  // ---- rendering -----------------------------------------------------------------------------

  var SENDER_CLASS = { user: "msg--user", bot: "msg--bot", agent: "msg--agent", system: "msg--system" };

  function appendMessage(message) {
    var sender = message.direction === "in" ? "user" : known(SENDER_CLASS, message.sender) ? message.sender : "bot";
    var item = el("li", "msg " + SENDER_CLASS[sender]);
    if (typeof message.id === "number") item.dataset.id = String(message.id);

    var who = el("span", "visually-hidden");
    who.dataset.i18n = "sender_" + sender;
    who.textContent = t("sender_" + sender) + ": ";
    item.appendChild(who);

    if (sender === "agent") {
      var badge = el("span", "msg__label", t("agent"));
      badge.dataset.i18n = "agent";
      badge.setAttribute("aria-hidden", "true");
      item.appendChild(badge);
    }

    var bubble = el("div", "msg__bubble");
    appendText(bubble, typeof message.text === "string" ? message.text : "");
    if (typeof message.image === "string" && PNG_DATA_URI.test(message.image)) {
      var image = el("img", "msg__image");
      image.alt = t("image");
      image.dataset.i18nAlt = "image";
      image.decoding = "async";
      image.addEventListener("load", function () {
        scrollDown(true);
      });
      image.src = message.image;
      bubble.appendChild(image);
    }
    item.appendChild(bubble);

    var buttons = Array.isArray(message.buttons) ? message.buttons : [];
    if (buttons.length && sender !== "user") item.appendChild(renderButtons(buttons));

    els.messages.appendChild(item);
    els.welcome.hidden = true;
    return item;
  }

  /** Text with line breaks kept (CSS pre-wrap) and http(s) addresses made into links. */
  function appendText(parent, text) {
    var text_ = el("p", "msg__text");
    var start = 0;
    var match;
    LINK.lastIndex = 0;
    while ((match = LINK.exec(text)) !== null) {
      var url = match[0].replace(/[.,;:!?)\]]+$/, "");
      if (match.index > start) text_.appendChild(document.createTextNode(text.slice(start, match.index)));
      var link = el("a", "msg__link", url);
      link.href = url;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      text_.appendChild(link);
      start = match.index + url.length;
      LINK.lastIndex = start;
    }
    if (start < text.length) text_.appendChild(document.createTextNode(text.slice(start)));
    if (text) parent.appendChild(text_);
  }

  function renderButtons(buttons) {
    var group = el("div", "msg__buttons");
    group.setAttribute("role", "group");
    buttons.forEach(function (button) {
      if (!button || typeof button.action !== "string" || typeof button.label !== "string") return;
      var node = el("button", "reply-button", button.label);
      node.type = "button";
      node.addEventListener("click", function () {
        Array.prototype.forEach.call(group.querySelectorAll("button"), function (other) {
          other.disabled = true;
        });
        node.classList.add("reply-button--chosen");
        send({ action: button.action }, button.label);
      });
      group.appendChild(node);
    });
    return group;
  }

  function appendUserBubble(text) {
    return appendMessage({ direction: "in", sender: "user", text: text });
  }

  function appendNotice(text) {
    var item = el("li", "msg msg--system msg--local");
    var bubble = el("div", "msg__bubble");
    appendText(bubble, text);
    item.appendChild(bubble);
    els.messages.appendChild(item);
    scrollDown(true);
    return item;
  }

  function markFailed(bubble, message, retry) {
    clearFailed(bubble);
    var note = el("div", "msg__failed");
    note.setAttribute("role", "alert");
    note.appendChild(el("span", "msg__failed-text", message));
    if (retry) {
      var again = el("button", "msg__retry", t("retry"));
      again.type = "button";
      again.addEventListener("click", function () {
        clearFailed(bubble);
        retry();
      });
      note.appendChild(again);
    }
    bubble.node.hidden = false;
    bubble.node.classList.add("msg--failed");
    bubble.node.appendChild(note);
    scrollDown(true);
  }

  function clearFailed(bubble) {
    bubble.node.classList.remove("msg--failed");
    var note = bubble.node.querySelector(".msg__failed");
    if (note) note.remove();
  }

  function nearBottom() {
    var c = els.conversation;
    return c.scrollHeight - c.scrollTop - c.clientHeight < 120;
  }

  function scrollDown(force) {
    if (force) els.conversation.scrollTop = els.conversation.scrollHeight;
  }

  function setTyping(on) {
    state.waiting += on ? 1 : -1;
    var show = state.waiting > 0;
    var stick = nearBottom();
    els.typing.hidden = !show;
    if (show) scrollDown(stick);
  }

  function showStatus(key) {
    state.statusKey = key;
    els.status.textContent = key ? t(key) : "";
    els.status.hidden = !key;
  }

  // ---- language ------------------------------------------------------------------------------

  function setLanguage(language) {
    if (!known(STRINGS, language)) return;
    state.language = language;
    document.documentElement.lang = t("html_lang");
    document.querySelectorAll("[data-i18n]").forEach(function (node) {
      var key = node.dataset.i18n;
      node.textContent = key.indexOf("sender_") === 0 ? t(key) + ": " : t(key);
    });
    document.querySelectorAll("[data-i18n-placeholder]").forEach(function (node) {
      node.placeholder = t(node.dataset.i18nPlaceholder);
    });
    document.querySelectorAll("[data-i18n-aria-label]").forEach(function (node) {
      node.setAttribute("aria-label", t(node.dataset.i18nAriaLabel));
    });
    document.querySelectorAll("[data-i18n-alt]").forEach(function (node) {
      node.alt = t(node.dataset.i18nAlt);
    });
    els.toggles.forEach(function (button) {
      button.setAttribute("aria-pressed", String(button.dataset.lang === language));
    });
    showStatus(state.statusKey);
    updateComposer();
  }

  function chooseLanguage(language) {
    if (language === state.language || !known(STRINGS, language) || !state.session) return;
    state.languageVersion += 1;
    state.languageHold += 1;
    setLanguage(language);
    // A button press, not typed text: no "/lang en" bubble now, and none in the history later.
    send({ action: "lang:" + language }, t("lang_" + language), function () {
      state.languageHold -= 1;
    }, true);
  }

  // ---- sending -------------------------------------------------------------------------------

  /** Show the user's bubble now; POST in turn (one at a time, so the order is the user's). */
  function send(body, shown, onPosted, silent) {
    var bubble = { node: appendUserBubble(shown), text: shown, isAction: body.action !== undefined, silent: !!silent };
    bubble.node.hidden = bubble.silent;
    state.pending.push(bubble);
    scrollDown(true);
    body.client_message_id = uuid();
    enqueue(bubble, body, onPosted);
  }

  function enqueue(bubble, body, onPosted) {
    state.queue = state.queue.then(function () {
      return deliver(bubble, body, onPosted);
    });
  }

  async function deliver(bubble, body, onPosted) {
    setTyping(true);
    var outsBefore = state.outsIngested;
    try {
      var result;
      try {
        result = await postWithRetry(body);
      } finally {
        if (onPosted) onPosted();
      }
      if (result === null) {
        forget(bubble);
        markFailed(bubble, t("error_network"), function () {
          state.pending.push(bubble);
          enqueue(bubble, body);
        });
        return;
      }
      if (result.status !== 200 || !result.data || !Array.isArray(result.data.replies)) {
        forget(bubble);
        markFailed(bubble, t("error_rejected"), null);
        return;
      }
      var synced = false;
      for (var attempt = 0; attempt < 3 && !synced; attempt++) {
        if (attempt) await delay(500 * attempt);
        synced = await sync();
      }
      // Once the history is read, this message is in it, or was never recorded: stop matching.
      forget(bubble);
      // A reply the server did not record (a message that was too long) is only in the answer.
      var replies = result.data.replies;
      var recorded = state.outsIngested - outsBefore;
      if (recorded < replies.length) {
        var stick = nearBottom();
        replies.slice(recorded).forEach(function (reply) {
          appendMessage({
            direction: "out",
            sender: "bot",
            text: reply.text,
            buttons: reply.buttons,
            image: reply.image,
          });
        });
        scrollDown(stick);
      }
    } finally {
      setTyping(false);
    }
  }

  function forget(bubble) {
    var index = state.pending.indexOf(bubble);
    if (index >= 0) state.pending.splice(index, 1);
  }

  /** POST with the same client_message_id until it gets through; null if it never did. */
  async function postWithRetry(body) {
    var renewed = false;
    for (var attempt = 0; attempt < SEND_ATTEMPTS; attempt++) {
      if (attempt) await delay(500 * Math.pow(2, attempt - 1));
      var result;
      try {
        result = await api("POST", "/api/chat/messages", body);
      } catch (err) {
        continue;
      }
      if (result.status === 401 && !renewed) {
        renewed = true;
        await renewSession();
        attempt -= 1; // a new session is not a failed attempt
        continue;
      }
      if (result.status >= 500 || result.status === 429 || result.status === 408) continue;
      return result;
    }
    return null;
  }

  function updateComposer() {
    var length = els.input.value.length;
    els.send.disabled = !state.session || els.input.value.trim() === "" || length > MAX_LENGTH;
    if (length >= COUNTER_FROM) {
      els.counter.hidden = false;
      els.counter.textContent = t("chars_left").replace("{n}", String(Math.max(0, MAX_LENGTH - length)));
    } else {
      els.counter.hidden = true;
    }
  }

  function submit() {
    var text = els.input.value;
    if (!state.session || text.trim() === "") return;
    if (text.length > MAX_LENGTH) {
      els.counter.hidden = false;
      els.counter.textContent = t("too_long");
      return;
    }
    els.input.value = "";
    updateComposer();
    send({ text: text }, text);
    els.input.focus();
  }

  // ---- the WebSocket -------------------------------------------------------------------------

  function connect() {
    if (!state.session) return;
    window.clearTimeout(state.reconnectTimer);
    closeSocket();
    var url = new URL("/api/chat/ws", window.location.href);
    url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
    var socket;
    try {
      // The token travels as a subprotocol, not in the URL (URLs end up in access logs).
      socket = new WebSocket(url.toString(), ["btp.chat", "btp.token." + state.session.token]);
    } catch (err) {
      scheduleReconnect();
      return;
    }
    state.socket = socket;
    socket.addEventListener("open", function () {
      if (state.socket !== socket) return;
      state.socketEverOpen = true;
      state.reconnectAttempts = 0;
      showStatus("");
      startPing(socket);
      sync(); // whatever was pushed while the socket was down
    });
    socket.addEventListener("message", function (event) {
      if (state.socket !== socket) return;
      var frame;
      try {
        frame = JSON.parse(event.data);
      } catch (err) {
        return;
      }
      if (frame && frame.type === "pong") {
        window.clearTimeout(state.pongTimer);
      } else if (frame && frame.type === "message" && frame.message) {
        pushed(frame.message);
      }
    });
    socket.addEventListener("close", function () {
      if (state.socket !== socket) return;
      state.socket = null;
      stopPing();
      showStatus(state.socketEverOpen ? "reconnecting" : "connecting");
      scheduleReconnect();
    });
  }

  function closeSocket() {
    var socket = state.socket;
    state.socket = null;
    stopPing();
    if (socket) socket.close();
  }

  function scheduleReconnect() {
    window.clearTimeout(state.reconnectTimer);
    var base = Math.min(RECONNECT_MAX, 1000 * Math.pow(2, state.reconnectAttempts));
    state.reconnectAttempts += 1;
    state.reconnectTimer = window.setTimeout(reconnectNow, base / 2 + Math.random() * (base / 2));
  }

  function reconnectNow() {
    window.clearTimeout(state.reconnectTimer);
    if (state.socket) return;
    // A refused handshake looks like any closed socket; the history call tells a lost session
    // (401, renewed inside sync) from a network that is down.
    sync().then(function () {
      if (!state.socket && !state.renewing) connect();
    });
  }

  /** A pushed message: read the history (which knows the sender), or show the frame itself. */
  function pushed(message) {
    if (typeof message.message_id === "number" && state.seen.has(message.message_id)) return;
    sync().then(function (ok) {
      if (ok || typeof message.message_id !== "number" || state.seen.has(message.message_id)) return;
      state.seen.add(message.message_id);
      var stick = nearBottom();
      appendMessage({
        id: message.message_id,
        direction: "out",
        sender: "bot",
        text: message.text,
        buttons: message.buttons,
        image: message.image,
      });
      scrollDown(stick);
    });
  }

  function startPing(socket) {
    stopPing();
    state.pingTimer = window.setInterval(function () {
      if (socket.readyState !== WebSocket.OPEN) return;
      socket.send("ping");
      window.clearTimeout(state.pongTimer);
      state.pongTimer = window.setTimeout(function () {
        socket.close(); // no answer: the connection is dead even if the browser has not noticed
      }, PONG_WITHIN);
    }, PING_EVERY);
  }

  function stopPing() {
    window.clearInterval(state.pingTimer);
    window.clearTimeout(state.pongTimer);
  }

  // ---- start ---------------------------------------------------------------------------------

  function bindEvents() {
    els.form.addEventListener("submit", function (event) {
      event.preventDefault();
      submit();
    });
    els.input.addEventListener("keydown", function (event) {
      // Enter sends; Shift+Enter is a new line; Enter that ends an IME composition (pinyin) is not.
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
        event.preventDefault();
        submit();
      }
    });
    els.input.addEventListener("input", updateComposer);
    els.toggles.forEach(function (button) {
      button.addEventListener("click", function () {
        chooseLanguage(button.dataset.lang);
      });
    });
    window.addEventListener("online", function () {
      if (!state.socket) reconnectNow();
    });
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible" && !state.socket && state.session) reconnectNow();
    });
  }

  async function start() {
    bindEvents();
    setLanguage(DEFAULT_LANGUAGE);
    var stored = readJson(SESSION_KEY);
    if (stored && typeof stored.token === "string") state.session = stored;
    if (!state.session) await openSessionUntilDone();
    els.input.disabled = false;
    updateComposer();
    await sync();
    scrollDown(true);
    if (!state.socket && !state.renewing) connect();
    // On a phone, focusing would open the keyboard over the conversation: only with a mouse.
    if (window.matchMedia("(pointer: fine)").matches) els.input.focus({ preventScroll: true });
  }

  start();
})();
