/*
 * The B特派 agent console: plain JavaScript, no build step.
 *
 * The server renders every page; this script keeps it live. A WebSocket (/agent/ws) says "the
 * queue changed" or "chat N changed"; the page then re-reads the JSON it shows
 * (/agent/api/queue or /agent/api/chats/N) and rebuilds those parts, the same way the server
 * drew them. Forms marked data-api are sent with fetch and answered in JSON, so acting never
 * reloads the page. Without this script the forms still work as plain posts.
 *
 * Security: text from the server goes into the page with textContent and createElement only,
 * never as HTML; images only as PNG data URIs. Every POST carries the session's CSRF token.
 */
(function () {
  "use strict";

  var STRINGS = JSON.parse(document.getElementById("strings").textContent);
  var body = document.body;
  var PAGE = body.dataset.page;
  var CSRF = body.dataset.csrf || "";
  var CONVERSATION = Number(body.dataset.conversation || 0);
  var PNG = /^data:image\/png;base64,[A-Za-z0-9+/]+={0,2}$/;
  var RECONNECT_MAX = 30000;
  var QUEUE_REFRESH_EVERY = 30000;
  var FLASH_FOR = 10000;
  var SECTIONS = ["waiting", "mine", "others", "tickets"];

  var state = {
    refreshing: null,
    again: false,
    socket: null,
    attempts: 0,
    lost: false,
    gone: false,
    flashTimer: null,
    lastMessageId: 0,
  };

  // ---- small helpers -------------------------------------------------------------------------

  function has(table, key) {
    return typeof key === "string" && Object.prototype.hasOwnProperty.call(table, key);
  }

  function t(key) {
    return has(STRINGS, key) ? STRINGS[key] : key;
  }

  /** A label from the strings by prefix ("ch_" + "webchat"), or the raw value. */
  function label(prefix, value) {
    var key = prefix + String(value);
    return has(STRINGS, key) ? STRINGS[key] : String(value);
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function badge(text, modifier) {
    return el("span", "badge" + (modifier ? " badge--" + modifier : ""), text);
  }

  /** A class-name-safe form of a value from the server. */
  function token(value) {
    return String(value).replace(/[^a-z0-9_-]/gi, "");
  }

  function duration(seconds) {
    var s = Math.max(0, Math.floor(Number(seconds) || 0));
    if (s < 60) return t("d_seconds").replace("{s}", s);
    if (s < 3600) return t("d_minutes").replace("{m}", Math.floor(s / 60)).replace("{s}", s % 60);
    return t("d_hours")
      .replace("{h}", Math.floor(s / 3600))
      .replace("{m}", Math.floor((s % 3600) / 60));
  }

  function flash(message) {
    var node = document.getElementById("flash");
    if (!node) return;
    node.textContent = message || "";
    node.hidden = !message;
    window.clearTimeout(state.flashTimer);
    if (message) {
      state.flashTimer = window.setTimeout(function () {
        flash("");
      }, FLASH_FOR);
    }
  }

  function showLive(ok) {
    var node = document.getElementById("live");
    if (node) node.hidden = ok;
  }

  // ---- HTTP ----------------------------------------------------------------------------------

  function parse(response) {
    return response
      .json()
      .catch(function () {
        return null;
      })
      .then(function (data) {
        return { status: response.status, data: data };
      });
  }

  function getJson(path) {
    return window
      .fetch(path, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        cache: "no-store",
      })
      .then(parse);
  }

  function post(form) {
    return window
      .fetch(form.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
        headers: { Accept: "application/json", "X-CSRF-Token": CSRF },
        credentials: "same-origin",
        cache: "no-store",
      })
      .then(parse);
  }

  function errorText(result) {
    if (result.status === 401) {
      window.location.assign("/agent/login");
      return t("err_unauthorized");
    }
    var error = result.data && result.data.error;
    var key = error && typeof error.code === "string" ? "err_" + error.code : "";
    return has(STRINGS, key) ? STRINGS[key] : t("err_other");
  }

  // ---- forms ---------------------------------------------------------------------------------

  function setBusy(form, busy) {
    Array.prototype.forEach.call(form.querySelectorAll("button"), function (button) {
      if (busy) {
        button.dataset.wasDisabled = button.disabled ? "1" : "";
        button.disabled = true;
      } else {
        button.disabled = button.dataset.wasDisabled === "1";
      }
    });
  }

  function submitApi(form) {
    if (form.dataset.busy) return;
    form.dataset.busy = "1";
    setBusy(form, true);
    var output = form.querySelector("output");
    if (output) output.textContent = "";
    post(form)
      .then(
        function (result) {
          if (result.status < 200 || result.status >= 300 || !result.data || !result.data.ok) {
            flash(errorText(result));
            return;
          }
          flash("");
          if (form.dataset.next) {
            window.location.assign(form.dataset.next);
            return;
          }
          if (output && form.dataset.result) {
            var detail = typeof result.data.result === "string" ? result.data.result : "";
            output.textContent = t(form.dataset.result) + detail;
          }
          if (form.dataset.after === "reset" || form.dataset.result) form.reset();
          refresh();
        },
        function () {
          flash(t("err_network"));
        }
      )
      .finally(function () {
        delete form.dataset.busy;
        setBusy(form, false);
      });
  }

  function bindForms() {
    document.addEventListener("submit", function (event) {
      var form = event.target;
      if (!(form instanceof HTMLFormElement)) return;
      if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
        event.preventDefault();
        return;
      }
      if (!form.hasAttribute("data-api")) return;
      event.preventDefault();
      submitApi(form);
    });
    document.addEventListener("keydown", function (event) {
      var target = event.target;
      if (!(target instanceof HTMLTextAreaElement) || event.key !== "Enter") return;
      if (!(event.ctrlKey || event.metaKey) || event.isComposing) return;
      var form = target.form;
      if (form && form.hasAttribute("data-api")) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    document.addEventListener("click", function (event) {
      var target =
        event.target instanceof Element ? event.target.closest("[data-canned], [data-draft]") : null;
      if (!target) return;
      var input = document.getElementById("reply-text");
      if (!input) return;
      // A canned reply or a suggested answer becomes a draft the agent edits before sending.
      input.value = (has(target.dataset, "draft") ? target.dataset.draft : target.dataset.canned) || "";
      input.focus();
    });
  }

  // ---- the queue page ------------------------------------------------------------------------

  function hiddenInput(name, value) {
    var input = el("input");
    input.type = "hidden";
    input.name = name;
    input.value = value;
    return input;
  }

  function entryNode(entry, section) {
    var item = el("li", "entry" + (entry.priority ? " entry--priority" : ""));
    item.dataset.conversation = String(entry.conversation_id);
    item.dataset.handoff = String(entry.handoff_id);

    var meta = el("div", "entry__meta");
    if (entry.priority) meta.appendChild(badge(t("priority"), "priority"));
    meta.appendChild(badge(label("ch_", entry.channel), "channel"));
    meta.appendChild(badge(label("lang_name_", entry.language)));
    meta.appendChild(el("span", "entry__reason", label("reason_", entry.reason)));
    meta.appendChild(el("span", "entry__wait", t("waited") + " " + duration(entry.waiting_seconds)));
    if (section === "others" && entry.agent) {
      meta.appendChild(el("span", "entry__agent", t("handled_by") + ": " + entry.agent));
    }
    item.appendChild(meta);
    item.appendChild(el("p", "entry__preview", entry.preview || ""));

    var actions = el("div", "entry__actions");
    var chatUrl = "/agent/chats/" + Number(entry.conversation_id);
    if (section === "waiting") {
      var form = el("form", "inline");
      form.method = "post";
      form.action = "/agent/api/handoffs/" + Number(entry.handoff_id) + "/claim";
      form.setAttribute("data-api", "");
      form.dataset.next = chatUrl;
      form.appendChild(hiddenInput("csrf", CSRF));
      form.appendChild(hiddenInput("next", chatUrl));
      var claim = el("button", "button button--primary button--small", t("claim"));
      claim.type = "submit";
      form.appendChild(claim);
      actions.appendChild(form);
    }
    var open = el("a", "button button--small", section === "tickets" ? t("answer") : t("open"));
    open.href = chatUrl;
    actions.appendChild(open);
    item.appendChild(actions);
    return item;
  }

  function renderQueue(data) {
    SECTIONS.forEach(function (name) {
      var list = document.getElementById("list-" + name);
      if (!list) return;
      var entries = Array.isArray(data[name]) ? data[name] : [];
      var nodes = entries.map(function (entry) {
        return entryNode(entry, name);
      });
      if (!nodes.length) nodes.push(el("li", "entries__empty", t("empty")));
      list.replaceChildren.apply(list, nodes);
      var count = document.getElementById("count-" + name);
      if (count) count.textContent = String(entries.length);
    });
    renderPresence(Boolean(data.online), Number(data.capacity) > 0);
  }

  function renderPresence(online, hasRoom) {
    var section = document.getElementById("presence");
    if (!section) return;
    section.classList.toggle("presence--online", online);
    document.getElementById("presence-state").textContent = online ? t("online") : t("offline");
    var text = "presence_offline";
    if (online) text = hasRoom ? "presence_online" : "presence_no_capacity";
    document.getElementById("presence-text").textContent = t(text);
    var value = document.getElementById("presence-value");
    value.value = online ? "0" : "1";
    value.defaultValue = value.value;
    var toggle = document.getElementById("presence-toggle");
    toggle.textContent = online ? t("go_offline") : t("go_online");
    toggle.classList.toggle("button--primary", !online);
  }

  // ---- the conversation page -----------------------------------------------------------------

  function lineNode(message) {
    var sender = has({ user: 1, bot: 1, agent: 1, system: 1 }, message.sender) ? message.sender : "bot";
    var item = el("li", "line line--" + sender);
    item.dataset.id = String(message.id);
    var head = el("div", "line__head");
    head.appendChild(el("span", "line__who", label("sender_", sender)));
    head.appendChild(el("time", "line__time", message.time || ""));
    item.appendChild(head);
    if (message.text) item.appendChild(el("p", "line__text", message.text));
    if (message.action && !message.text) {
      var action = el("p", "line__action", t("pressed") + ": ");
      action.appendChild(el("span", "line__pressed", message.pressed || t("pressed_unknown")));
      item.appendChild(action);
    }
    if (typeof message.image === "string" && PNG.test(message.image)) {
      var image = el("img", "line__image");
      image.alt = t("image");
      image.src = message.image;
      item.appendChild(image);
    }
    var buttons = Array.isArray(message.buttons) ? message.buttons : [];
    if (buttons.length) {
      var list = el("ul", "line__buttons");
      buttons.forEach(function (text) {
        list.appendChild(el("li", "chip", text));
      });
      item.appendChild(list);
    }
    return item;
  }

  function renderTranscript(messages) {
    var list = document.getElementById("transcript");
    if (!list) return;
    var stick = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    var added = 0;
    messages.forEach(function (message) {
      if (typeof message.id !== "number" || message.id <= state.lastMessageId) return;
      list.appendChild(lineNode(message));
      state.lastMessageId = message.id;
      added += 1;
    });
    if (added && stick) list.scrollTop = list.scrollHeight;
  }

  function renderFacts(chat) {
    var facts = document.getElementById("chat-facts");
    if (!facts) return;
    var c = chat.conversation;
    var h = chat.handoff;
    var nodes = [badge(label("ch_", c.channel), "channel"), badge(label("lang_name_", c.language))];
    var status = h ? h.status : "none";
    var statusBadge = badge(label("st_", status), "status badge--st-" + token(status));
    statusBadge.id = "handoff-status";
    nodes.push(statusBadge);
    if (h && h.priority) nodes.push(badge(t("priority"), "priority"));
    if (h) nodes.push(el("span", "muted", label("reason_", h.reason) + " · " + (h.since || "")));
    if (h && h.agent) nodes.push(el("span", "muted", t("handled_by") + ": " + h.agent));
    if (h && h.rating) {
      nodes.push(badge(t("rating") + " " + "★".repeat(Math.max(0, Math.min(5, h.rating))), "rating"));
    }
    facts.replaceChildren.apply(facts, nodes);
  }

  function renderContext(ctx) {
    var box = document.getElementById("context");
    if (!box || !ctx) return;
    var nodes = [];
    var who = el("div", "context__who");
    if (ctx.merchant) {
      who.appendChild(el("span", "context__label", t("merchant")));
      who.appendChild(el("strong", "context__merchant", ctx.merchant.name));
      who.appendChild(el("span", "muted", ctx.merchant.id));
      who.appendChild(badge(label("m_", ctx.merchant.status), "m-" + token(ctx.merchant.status)));
    } else if (ctx.kind === "merchant") {
      who.appendChild(el("span", "context__label", t("merchant")));
      who.appendChild(el("span", null, t("merchant_unknown") + " (" + (ctx.merchant_id || "") + ")"));
    } else {
      who.appendChild(el("span", "context__label", t("customer")));
      who.appendChild(el("span", null, t("anonymous")));
    }
    nodes.push(who);

    (Array.isArray(ctx.incidents) ? ctx.incidents : []).forEach(function (line) {
      var incident = el("p", "context__incident");
      incident.setAttribute("role", "alert");
      incident.appendChild(el("strong", null, t("inc_title") + ": "));
      incident.appendChild(document.createTextNode(String(line)));
      nodes.push(incident);
    });
    if (ctx.summary) {
      var summary = el("p", "context__summary");
      summary.id = "context-summary";
      summary.appendChild(el("span", "visually-hidden", t("summary") + ": "));
      summary.appendChild(document.createTextNode(String(ctx.summary)));
      nodes.push(summary);
    }
    nodes.push(el("h3", "subtitle", t("findings")));
    var findings = Array.isArray(ctx.findings) ? ctx.findings : [];
    if (findings.length) {
      var facts = el("dl", "facts");
      findings.forEach(function (pair) {
        facts.appendChild(el("dt", null, pair[0]));
        facts.appendChild(el("dd", null, pair[1]));
      });
      nodes.push(facts);
    } else {
      nodes.push(el("p", "muted", t("no_findings")));
    }

    nodes.push(el("h3", "subtitle", t("orders")));
    var orders = Array.isArray(ctx.orders) ? ctx.orders : [];
    if (orders.length) {
      var list = el("ul", "orders");
      orders.forEach(function (order) {
        var item = el("li", "order");
        item.dataset.order = order.order_no;
        item.appendChild(el("span", "order__no", order.order_no));
        if (order.visible) {
          item.appendChild(
            el("span", "badge badge--o-" + token(order.status) + " order__status", label("o_", order.status))
          );
          item.appendChild(el("span", "order__amount", "¥" + order.amount));
          item.appendChild(el("span", "muted", order.created));
          if (order.failure) {
            item.appendChild(el("span", "order__detail", t("last_failure") + ": " + order.failure));
          }
          if (!order.in_sync) {
            item.appendChild(
              el(
                "span",
                "order__detail order__detail--warn",
                t("out_of_sync") + " (" + t("channel_status") + ": " + label("o_", order.channel_status) + ")"
              )
            );
          }
        } else {
          item.appendChild(el("span", "muted", t("order_hidden")));
        }
        list.appendChild(item);
      });
      nodes.push(list);
    } else {
      nodes.push(el("p", "muted", t("no_orders")));
    }
    box.replaceChildren.apply(box, nodes);
  }

  /** The suggested answers for the user's latest message; the reply box is left alone. */
  function renderAssist(assist) {
    var box = document.getElementById("assist");
    if (!box || !assist) return;
    box.dataset.message = assist.message_id ? String(assist.message_id) : "";
    var suggestions = Array.isArray(assist.suggestions) ? assist.suggestions : [];
    var nodes = suggestions.map(function (s) {
      var kind = token(s.kind);
      var item = el("button", "chip chip--button assist__item assist__item--" + kind);
      item.type = "button";
      item.dataset.draft = String(s.text || "");
      item.dataset.kind = kind;
      item.title = String(s.text || "");
      if (s.kind === "incident") {
        item.textContent = t("assist_incident");
      } else {
        item.dataset.entry = String(s.entry_id || "");
        item.dataset.score = String(s.score);
        item.appendChild(document.createTextNode(String(s.title || "") + " "));
        item.appendChild(el("span", "assist__meta", s.entry_id + " · " + t("assist_score") + " " + s.score));
      }
      return item;
    });
    if (!nodes.length) nodes.push(el("span", "muted assist__none", t("assist_none")));
    box.replaceChildren.apply(box, nodes);
  }

  function renderNotes(notes) {
    var list = document.getElementById("notes");
    if (!list) return;
    var nodes = notes.map(function (note) {
      var item = el("li", "note");
      var head = el("div", "note__head");
      head.appendChild(el("span", "note__who", note.agent));
      head.appendChild(el("time", null, note.time));
      item.appendChild(head);
      item.appendChild(el("p", "note__text", note.text));
      return item;
    });
    if (!nodes.length) nodes.push(el("li", "notes__empty muted", t("no_notes")));
    list.replaceChildren.apply(list, nodes);
  }

  function showWhen(flags) {
    Array.prototype.forEach.call(document.querySelectorAll("[data-when]"), function (node) {
      node.hidden = !flags[node.dataset.when];
    });
  }

  function renderChat(chat) {
    var can = chat.can || {};
    var h = chat.handoff;
    renderFacts(chat);
    renderTranscript(Array.isArray(chat.messages) ? chat.messages : []);
    renderContext(chat.context);
    renderNotes(Array.isArray(chat.notes) ? chat.notes : []);
    renderAssist(chat.assist);
    if (h) {
      Array.prototype.forEach.call(document.querySelectorAll("form[data-handoff-action]"), function (form) {
        form.action = "/agent/api/handoffs/" + Number(h.id) + "/" + form.dataset.handoffAction;
      });
    }
    var ticket = document.getElementById("ticket-text");
    if (ticket) ticket.textContent = (h && h.ticket_text) || "";
    showWhen({
      claim: Boolean(can.claim),
      act: Boolean(can.act),
      answer: Boolean(can.answer),
      readonly: !can.act && !can.answer,
    });
  }

  function chatGone() {
    state.gone = true;
    showWhen({ claim: false, act: false, answer: false, readonly: false });
    Array.prototype.forEach.call(document.querySelectorAll("form[data-api]"), function (form) {
      setBusy(form, true);
    });
    flash(t("gone"));
  }

  // ---- refreshing ----------------------------------------------------------------------------

  function refreshOnce() {
    if (PAGE === "queue") {
      return getJson("/agent/api/queue").then(function (result) {
        if (result.status === 200 && result.data) renderQueue(result.data);
        else if (result.status === 401) window.location.assign("/agent/login");
      });
    }
    if (PAGE === "chat" && !state.gone) {
      return getJson("/agent/api/chats/" + CONVERSATION).then(function (result) {
        if (result.status === 200 && result.data) renderChat(result.data);
        else if (result.status === 401) window.location.assign("/agent/login");
        else if (result.status === 404 || result.status === 403) chatGone();
      });
    }
    return Promise.resolve();
  }

  /** Re-read what the page shows; calls during a refresh fold into one more. */
  function refresh() {
    if (state.refreshing) {
      state.again = true;
      return state.refreshing;
    }
    state.refreshing = (async function () {
      do {
        state.again = false;
        try {
          await refreshOnce();
        } catch (err) {
          showLive(false);
        }
      } while (state.again);
    })().finally(function () {
      state.refreshing = null;
    });
    return state.refreshing;
  }

  // ---- the live socket -----------------------------------------------------------------------

  function onEvent(event) {
    if (!event || typeof event.type !== "string") return;
    if (PAGE === "queue" && (event.type === "queue" || event.type === "chat")) refresh();
    if (PAGE === "chat") {
      // Claims, transfers and answered tickets change this page too; they come as "queue".
      if (event.type === "queue" || event.conversation_id === CONVERSATION) refresh();
    }
  }

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + "/agent/ws");
    state.socket = socket;
    socket.addEventListener("open", function () {
      state.attempts = 0;
      showLive(true);
      if (state.lost) refresh(); // what changed while the socket was down
      state.lost = false;
    });
    socket.addEventListener("message", function (message) {
      var event;
      try {
        event = JSON.parse(message.data);
      } catch (err) {
        return;
      }
      onEvent(event);
    });
    socket.addEventListener("close", function (event) {
      state.socket = null;
      if (event.code === 4401) {
        window.location.assign("/agent/login");
        return;
      }
      state.lost = true;
      showLive(false);
      var wait = Math.min(RECONNECT_MAX, 1000 * Math.pow(2, state.attempts));
      state.attempts += 1;
      window.setTimeout(connect, wait);
    });
  }

  // ---- start ---------------------------------------------------------------------------------

  function start() {
    bindForms();
    if (PAGE === "chat") {
      var lines = document.querySelectorAll("#transcript > li[data-id]");
      Array.prototype.forEach.call(lines, function (line) {
        state.lastMessageId = Math.max(state.lastMessageId, Number(line.dataset.id) || 0);
      });
      var transcript = document.getElementById("transcript");
      if (transcript) transcript.scrollTop = transcript.scrollHeight;
    }
    if (PAGE === "queue") window.setInterval(refresh, QUEUE_REFRESH_EVERY);
    if (PAGE === "queue" || PAGE === "chat" || PAGE === "supervisor") connect();
  }

  start();
})();
