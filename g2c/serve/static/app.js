// g2c chat — the web page of `g2c serve`. Vanilla JS, no build step, no third-party code.
//
// Talks to this server only: GET /v1/models, POST /v1/chat/completions (stream: true,
// server-sent events; extension fields: conversation_id in the request, "g2c" on the chunks:
// tool_result, citations, notice, turn) and /api/conversations (the stored conversations).
//
// Safety: model text and stored text are only ever put into the page as text nodes
// (textContent / createTextNode) inside elements made with createElement; links are kept only
// for http(s) URLs. innerHTML is never used.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SETTINGS = ["temperature", "top_p", "max_tokens", "system"];
  const state = {
    conversations: [],
    current: null, // id of the open conversation
    history: [], // [{role, content}] of the open conversation (user / assistant)
    models: [],
    assistant: null, // id of the assistant model, when the server runs one
    controller: null, // AbortController of the answer being streamed
  };

  // -- small DOM helpers -----------------------------------------------------------------
  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function setStatus(text, isError) {
    const s = $("status");
    s.textContent = text || "";
    s.classList.toggle("error", !!isError);
  }

  // -- Markdown, the safe subset ---------------------------------------------------------
  // paragraphs, **bold**, `code`, ``` fenced code ```, - / 1. lists, # headings,
  // [text](http(s)://...) links. Everything else stays literal text.
  function safeUrl(raw) {
    try {
      const url = new URL(raw);
      return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
    } catch (e) {
      return null;
    }
  }

  function renderInline(text, parent) {
    const re = /(`[^`\n]+`)|(\*\*[^*\n]+?\*\*)|(\[[^\]\n]+\]\([^)\s]+\))/g;
    let last = 0;
    let m;
    while ((m = re.exec(text)) !== null) {
      if (m.index > last) parent.appendChild(document.createTextNode(text.slice(last, m.index)));
      const tok = m[0];
      if (m[1]) {
        parent.appendChild(el("code", null, tok.slice(1, -1)));
      } else if (m[2]) {
        const strong = el("strong");
        renderInline(tok.slice(2, -2), strong);
        parent.appendChild(strong);
      } else {
        const close = tok.indexOf("](");
        const label = tok.slice(1, close);
        const href = safeUrl(tok.slice(close + 2, -1));
        if (href) {
          const a = el("a", null, label);
          a.href = href;
          a.target = "_blank";
          a.rel = "noopener noreferrer";
          parent.appendChild(a);
        } else {
          parent.appendChild(document.createTextNode(tok));
        }
      }
      last = m.index + tok.length;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  const FENCE = /^\s*```\s*([\w+#.-]*)\s*$/;
  const ITEM = /^\s*([-*+]|\d+[.)])\s+(.*)$/;
  const HEADING = /^(#{1,6})\s+(.*)$/;

  function renderMarkdown(text, container) {
    container.replaceChildren();
    const lines = text.replace(/\r\n?/g, "\n").split("\n");
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      const fence = line.match(FENCE);
      if (fence) {
        const code = [];
        i++;
        while (i < lines.length && !/^\s*```\s*$/.test(lines[i])) code.push(lines[i++]);
        i++; // the closing fence (or the end of a still-streaming block)
        const pre = el("pre");
        const c = el("code", null, code.join("\n"));
        if (fence[1]) c.dataset.lang = fence[1];
        pre.appendChild(c);
        container.appendChild(pre);
        continue;
      }
      if (!line.trim()) {
        i++;
        continue;
      }
      const heading = line.match(HEADING);
      if (heading) {
        const h = el("h" + Math.min(6, heading[1].length + 2));
        renderInline(heading[2], h);
        container.appendChild(h);
        i++;
        continue;
      }
      const item = line.match(ITEM);
      if (item) {
        const ordered = /\d/.test(item[1]);
        const list = el(ordered ? "ol" : "ul");
        while (i < lines.length) {
          const it = lines[i].match(ITEM);
          if (!it || /\d/.test(it[1]) !== ordered) break;
          const li = el("li");
          renderInline(it[2], li);
          list.appendChild(li);
          i++;
        }
        container.appendChild(list);
        continue;
      }
      const para = [];
      while (i < lines.length && lines[i].trim() && !FENCE.test(lines[i]) &&
             !ITEM.test(lines[i]) && !HEADING.test(lines[i])) {
        para.push(lines[i++]);
      }
      const p = el("p");
      renderInline(para.join("\n"), p);
      container.appendChild(p);
    }
  }

  // -- HTTP ------------------------------------------------------------------------------
  function headers() {
    const h = { "Content-Type": "application/json" };
    const key = localStorage.getItem("g2c.apiKey");
    if (key) h.Authorization = "Bearer " + key;
    return h;
  }

  async function api(path, options) {
    const opts = Object.assign({}, options || {});
    opts.headers = headers();
    let res = await fetch(path, opts);
    if (res.status === 401) {
      const key = window.prompt("This server needs its API key (sent as 'Authorization: Bearer KEY'):");
      if (key) {
        localStorage.setItem("g2c.apiKey", key.trim());
        opts.headers = headers();
        res = await fetch(path, opts);
      }
    }
    return res;
  }

  async function errorText(res) {
    try {
      const body = await res.json();
      const e = body.error;
      return (e && e.message) || (typeof e === "string" ? e : JSON.stringify(body));
    } catch (e) {
      return res.status + " " + res.statusText;
    }
  }

  async function apiJSON(path, options) {
    const res = await api(path, options);
    if (!res.ok) throw new Error(await errorText(res));
    return res.json();
  }

  // -- settings --------------------------------------------------------------------------
  function loadSettings() {
    const saved = JSON.parse(localStorage.getItem("g2c.settings") || "{}");
    for (const name of SETTINGS) if (saved[name] !== undefined) $(name).value = saved[name];
  }

  function saveSettings() {
    const saved = {};
    for (const name of SETTINGS) saved[name] = $(name).value;
    localStorage.setItem("g2c.settings", JSON.stringify(saved));
    localStorage.setItem("g2c.model", $("model").value);
  }

  function sampling() {
    const out = {};
    for (const name of ["temperature", "top_p", "max_tokens"]) {
      const v = $(name).value.trim();
      if (v !== "") out[name] = name === "max_tokens" ? parseInt(v, 10) : parseFloat(v);
    }
    return out;
  }

  async function loadModels() {
    const body = await apiJSON("/v1/models");
    state.models = body.data || [];
    const select = $("model");
    select.replaceChildren();
    for (const m of state.models) {
      const isAssistant = !!(m.g2c && m.g2c.assistant);
      if (isAssistant) state.assistant = m.id;
      const opt = el("option", null, isAssistant ? m.id + " (tools" + (m.g2c.rag ? ", RAG" : "") + ")" : m.id);
      opt.value = m.id;
      select.appendChild(opt);
    }
    const saved = localStorage.getItem("g2c.model");
    const ids = state.models.map((m) => m.id);
    select.value = ids.includes(saved) ? saved : state.assistant || ids[0] || "";
    const plain = state.models.find((m) => !(m.g2c && m.g2c.assistant));
    $("server-info").textContent = plain ? "serving " + plain.id + ", context " + plain.context_length : "";
  }

  // -- messages --------------------------------------------------------------------------
  function toolCallBox(call) {
    const d = el("details", "tool-call");
    d.dataset.callId = call.call_id || "";
    const args = typeof call.arguments === "string" ? call.arguments : JSON.stringify(call.arguments || {});
    d.appendChild(el("summary", null, "tool: " + call.name + "(" + args + ")"));
    const body = el("div", "body");
    body.appendChild(el("div", "label", "arguments"));
    body.appendChild(el("pre", "arguments", args));
    body.appendChild(el("div", "label", "output"));
    body.appendChild(el("pre", "output", ""));
    d.appendChild(body);
    if (call.output !== undefined) setToolOutput(d, call.output, call.is_error);
    else d.classList.add("running");
    return d;
  }

  function setToolOutput(box, output, isError) {
    box.classList.remove("running");
    box.classList.toggle("failed", !!isError);
    box.querySelector("pre.output").textContent = String(output);
  }

  function citationsBox(citations) {
    const d = el("details", "citations");
    d.appendChild(el("summary", null, "sources (" + citations.length + ")"));
    const body = el("div", "body");
    const ol = el("ol");
    for (const c of citations) {
      const li = el("li");
      if (c.n !== undefined) li.value = c.n;
      let where = String(c.source || "");
      if (c.start_line !== undefined && c.start_line !== null) where += ", lines " + c.start_line + "–" + c.end_line;
      li.appendChild(el("div", "source", where));
      if (c.text) li.appendChild(el("blockquote", null, c.text));
      ol.appendChild(li);
    }
    body.appendChild(ol);
    d.appendChild(body);
    return d;
  }

  function addMessage(role, label) {
    $("empty").hidden = true;
    const box = el("div", "msg " + role);
    box.appendChild(el("div", "role", label));
    const extras = el("div", "extras");
    box.appendChild(extras);
    const content = el("div", "content");
    box.appendChild(content);
    $("messages").appendChild(box);
    return { box, extras, content };
  }

  function roleLabel(role, model) {
    if (role === "user") return "You";
    if (role === "assistant") return model ? "Assistant · " + model : "Assistant";
    if (role === "system") return "System prompt";
    return role;
  }

  function showStored(m) {
    const meta = m.metadata || {};
    const view = addMessage(m.role, roleLabel(m.role, meta.model));
    if (m.role === "assistant" || m.role === "user") renderMarkdown(m.content, view.content);
    else view.content.appendChild(el("pre", null, m.content));
    for (const call of m.tool_calls || []) view.extras.appendChild(toolCallBox(call));
    if ((m.citations || []).length) view.box.appendChild(citationsBox(m.citations));
    if (meta.stopped) view.box.appendChild(el("div", "stopped", "(stopped)"));
    return view;
  }

  function scrollDown() {
    const box = $("messages");
    box.scrollTop = box.scrollHeight;
  }

  function clearMessages() {
    for (const node of Array.from($("messages").children)) if (node.id !== "empty") node.remove();
    $("empty").hidden = false;
  }

  // -- conversations ---------------------------------------------------------------------
  function when(t) {
    const d = new Date(t * 1000);
    return d.toLocaleDateString() + " " + d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function renderList() {
    const ul = $("conversations");
    ul.replaceChildren();
    for (const c of state.conversations) {
      const li = el("li");
      li.dataset.id = c.id;
      li.classList.toggle("active", c.id === state.current);
      const open = el("button", "open");
      open.type = "button";
      open.appendChild(el("span", "title", c.title || "New chat"));
      open.appendChild(el("span", "sub", (c.model ? c.model + " · " : "") + when(c.updated_at)));
      open.addEventListener("click", () => openConversation(c.id));
      const rename = el("button", "act rename", "✎");
      rename.type = "button";
      rename.title = "Rename";
      rename.addEventListener("click", () => renameConversation(c));
      const del = el("button", "act delete", "✕");
      del.type = "button";
      del.title = "Delete";
      del.addEventListener("click", () => deleteConversation(c));
      li.append(open, rename, del);
      ul.appendChild(li);
    }
  }

  async function refreshList() {
    try {
      const body = await apiJSON("/api/conversations");
      state.conversations = body.conversations || [];
      renderList();
      const cur = state.conversations.find((c) => c.id === state.current);
      $("conversation-title").textContent = cur ? cur.title || "" : "";
    } catch (e) {
      setStatus("conversations: " + e.message, true);
    }
  }

  async function openConversation(id) {
    if (state.controller) return;
    try {
      const conv = await apiJSON("/api/conversations/" + encodeURIComponent(id));
      state.current = conv.id;
      state.history = [];
      clearMessages();
      for (const m of conv.messages) {
        if (m.role === "system") continue;
        showStored(m);
        if (m.role === "user" || m.role === "assistant") state.history.push({ role: m.role, content: m.content });
      }
      if (conv.model && state.models.some((m) => m.id === conv.model)) $("model").value = conv.model;
      window.history.replaceState(null, "", "#c=" + conv.id);
      renderList();
      $("conversation-title").textContent = conv.title || "";
      setStatus("");
      scrollDown();
    } catch (e) {
      setStatus(e.message, true);
    }
  }

  function newChat() {
    if (state.controller) return;
    state.current = null;
    state.history = [];
    clearMessages();
    window.history.replaceState(null, "", "#");
    $("conversation-title").textContent = "";
    renderList();
    $("input").focus();
  }

  async function renameConversation(c) {
    const title = window.prompt("Rename the conversation:", c.title || "");
    if (!title || !title.trim()) return;
    try {
      await apiJSON("/api/conversations/" + encodeURIComponent(c.id), {
        method: "PATCH", body: JSON.stringify({ title: title.trim() }) });
      await refreshList();
    } catch (e) {
      setStatus(e.message, true);
    }
  }

  async function deleteConversation(c) {
    if (!window.confirm("Delete \"" + (c.title || "New chat") + "\"?")) return;
    try {
      await apiJSON("/api/conversations/" + encodeURIComponent(c.id), { method: "DELETE" });
      if (c.id === state.current) newChat();
      await refreshList();
    } catch (e) {
      setStatus(e.message, true);
    }
  }

  // -- sending and streaming -------------------------------------------------------------
  async function readEvents(res, onChunk) {
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        for (const line of event.split("\n")) {
          if (!line.startsWith("data:")) continue;
          const data = line.slice(5).trim();
          if (data === "[DONE]") return;
          const obj = JSON.parse(data);
          if (obj.error) throw new Error(obj.error.message || String(obj.error));
          onChunk(obj);
        }
      }
    }
  }

  function setBusy(busy) {
    $("send").disabled = busy;
    $("send").hidden = busy;
    $("stop").hidden = !busy;
    $("new-chat").disabled = busy;
  }

  async function send(text) {
    const model = $("model").value;
    saveSettings();
    setStatus("");
    if (!state.current) {
      try {
        const info = await apiJSON("/api/conversations", { method: "POST", body: JSON.stringify({ model }) });
        state.current = info.id;
        window.history.replaceState(null, "", "#c=" + info.id);
      } catch (e) {
        setStatus(e.message, true);
        return;
      }
    }
    const user = addMessage("user", "You");
    renderMarkdown(text, user.content);
    state.history.push({ role: "user", content: text });

    const view = addMessage("assistant", roleLabel("assistant", model));
    view.box.classList.add("streaming");
    scrollDown();
    const messages = [];
    const system = $("system").value.trim();
    if (system) messages.push({ role: "system", content: system });
    messages.push(...state.history);
    const body = Object.assign({ model, messages, stream: true, conversation_id: state.current,
                                 stream_options: { include_usage: true } }, sampling());

    const controller = new AbortController();
    state.controller = controller;
    setBusy(true);
    let answer = "";
    let pending = false;
    const calls = {};
    let tokens = 0;
    const paint = () => {
      pending = false;
      renderMarkdown(answer, view.content);
      scrollDown();
    };
    const onChunk = (chunk) => {
      const ext = chunk.g2c || {};
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
      for (const choice of chunk.choices || []) {
        const delta = choice.delta || {};
        if (delta.content) {
          answer += delta.content;
          if (!pending) {
            pending = true;
            requestAnimationFrame(paint);
          }
        }
        for (const tc of delta.tool_calls || []) {
          const fn = tc.function || {};
          const box = toolCallBox({ call_id: tc.id, name: fn.name, arguments: fn.arguments });
          calls[tc.id] = box;
          view.extras.appendChild(box);
        }
      }
      if (ext.tool_result) {
        const r = ext.tool_result;
        const box = calls[r.call_id] || toolCallBox({ call_id: r.call_id, name: r.name, arguments: {} });
        if (!calls[r.call_id]) view.extras.appendChild(box);
        setToolOutput(box, r.output, r.is_error);
      }
      if (ext.citations && ext.citations.length) view.box.appendChild(citationsBox(ext.citations));
      if (ext.notice) view.extras.appendChild(el("div", "notice", ext.notice));
      setStatus("generating…" + (answer ? " " + answer.length + " characters" : ""));
    };
    let stopped = false;
    try {
      const res = await api("/v1/chat/completions", { method: "POST", body: JSON.stringify(body),
                                                      signal: controller.signal });
      if (!res.ok) throw new Error(await errorText(res));
      await readEvents(res, onChunk);
      setStatus(tokens ? tokens + " tokens" : "");
    } catch (e) {
      if (e.name === "AbortError") {
        stopped = true;
        setStatus("stopped");
      } else {
        view.box.appendChild(el("div", "error", e.message));
        setStatus("error", true);
      }
    } finally {
      paint();
      view.box.classList.remove("streaming");
      if (stopped) view.box.appendChild(el("div", "stopped", "(stopped)"));
      state.history.push({ role: "assistant", content: answer });
      state.controller = null;
      setBusy(false);
      $("input").focus();
      refreshList();
    }
  }

  // -- wiring ----------------------------------------------------------------------------
  function init() {
    loadSettings();
    $("composer").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const text = $("input").value;
      if (!text.trim() || state.controller) return;
      $("input").value = "";
      send(text);
    });
    $("input").addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        $("composer").requestSubmit();
      }
    });
    $("stop").addEventListener("click", () => {
      if (state.controller) state.controller.abort();
    });
    $("new-chat").addEventListener("click", newChat);
    $("model").addEventListener("change", saveSettings);
    for (const name of SETTINGS) $(name).addEventListener("change", saveSettings);
    loadModels()
      .catch((e) => setStatus("models: " + e.message, true))
      .then(refreshList)
      .then(() => {
        const m = location.hash.match(/^#c=([0-9a-f]+)$/);
        if (m && state.conversations.some((c) => c.id === m[1])) openConversation(m[1]);
        document.body.dataset.ready = "1";
      });
  }

  init();
})();
