// execbox playground: plain JavaScript, no dependencies, served by execbox itself.
// It uses only the public API, with the API key entered on the page (x-api-key), like any client.
// Everything a model or a sandbox produced is put in the page as text (textContent), never as HTML.
"use strict";

const $ = (sel) => document.querySelector(sel);
const KEY_STORAGE = "execbox.apiKey";
const IMAGE_TYPES = ["image/png", "image/jpeg", "image/svg+xml", "image/gif"];

// ---------- HTTP ----------------------------------------------------------------------------
function apiKey() { return localStorage.getItem(KEY_STORAGE) || ""; }

function headers(extra) {
  const h = Object.assign({"anthropic-version": "2023-06-01"}, extra || {});
  if (apiKey()) h["x-api-key"] = apiKey();
  return h;
}

class ApiError extends Error {
  constructor(status, type, message) { super(`${status} ${type}: ${message}`); this.status = status; this.type = type; this.detail = message; }
}

async function errorOf(response) {
  let type = "api_error", message = `HTTP ${response.status}`;
  try {
    const body = await response.json();
    if (body && body.error) { type = body.error.type || type; message = body.error.message || message; }
  } catch (e) { /* not JSON */ }
  return new ApiError(response.status, type, message);
}

async function api(method, path, body, extraHeaders) {
  const init = {method, headers: headers(extraHeaders)};
  if (body instanceof FormData || body instanceof Blob || body instanceof File) init.body = body;
  else if (body !== undefined) { init.body = JSON.stringify(body); init.headers["content-type"] = "application/json"; }
  const response = await fetch(path, init);
  if (!response.ok) throw await errorOf(response);
  return response;
}
const getJson = async (path) => (await api("GET", path)).json();

// ---------- small DOM helpers -----------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

function formatSize(n) {
  if (n == null) return "–";
  for (const [unit, f] of [["GiB", 1 << 30], ["MiB", 1 << 20], ["KiB", 1 << 10]]) if (n >= f) return `${(n / f).toFixed(1)} ${unit}`;
  return `${n} B`;
}
function formatTime(iso) {
  if (!iso) return "–";
  const minutes = Math.round((new Date(iso) - Date.now()) / 60000);
  if (minutes === 0) return "now";
  if (Math.abs(minutes) < 60 * 24) return minutes >= 0 ? `in ${minutes} min` : `${-minutes} min ago`;
  return new Date(iso).toLocaleString();
}

// Keep the transcript at its end while output arrives, unless the reader scrolled up.
let stickToEnd = true;
function scrollDown(force) {
  const t = $("#transcript");
  if (force || stickToEnd) t.scrollTop = t.scrollHeight;
}


// ---------- syntax highlighting (Python and bash; tokens become spans, text stays text) ------
const PY_KW = new Set("False None True and as assert async await break class continue def del elif else except finally for from global if import in is lambda nonlocal not or pass raise return try while with yield print".split(" "));
const SH_KW = new Set("if then else elif fi for while do done case esac in function return export local echo cd cat ls grep sed awk python3 pip set".split(" "));

function highlight(code, language) {
  const keywords = language === "bash" ? SH_KW : PY_KW;
  const pre = el("pre", {class: "code"});
  const pattern = /(#[^\n]*)|("""[\s\S]*?"""|'''[\s\S]*?'''|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')|(\b\d+(?:\.\d+)?\b)|([A-Za-z_][A-Za-z0-9_]*)/g;
  let last = 0, match;
  while ((match = pattern.exec(code)) !== null) {
    if (match.index > last) pre.append(code.slice(last, match.index));
    const [token, comment, string, number, word] = match;
    let cls = null;
    if (comment) cls = "tok-com";
    else if (string) cls = "tok-str";
    else if (number) cls = "tok-num";
    else if (word && keywords.has(word)) cls = "tok-kw";
    else if (word && code[pattern.lastIndex] === "(") cls = "tok-fn";
    pre.append(cls ? el("span", {class: cls, text: token}) : token);
    last = pattern.lastIndex;
  }
  pre.append(code.slice(last));
  return pre;
}

// ---------- files: metadata, inline images, CSV tables, downloads -------------------------------
function parseCsv(text, maxRows) {
  const rows = []; let row = [], field = "", quoted = false;
  for (let i = 0; i < text.length && rows.length < maxRows; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; }
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { row.push(field); field = ""; }
    else if (c === "\n") { row.push(field.replace(/\r$/, "")); rows.push(row); row = []; field = ""; }
    else field += c;
  }
  if ((field || row.length) && rows.length < maxRows) { row.push(field); rows.push(row); }
  return rows;
}

function csvTable(text) {
  const rows = parseCsv(text, 21);
  const table = el("table", {class: "preview", "data-testid": "csv-preview"});
  rows.forEach((cells, i) => {
    const tr = el("tr");
    for (const cell of cells) tr.append(el(i === 0 ? "th" : "td", {text: cell}));
    table.append(tr);
  });
  return table;
}

function isCsv(name, mime) { return (mime || "").startsWith("text/csv") || /\.csv$/i.test(name); }
function isImage(name, mime) { return IMAGE_TYPES.some((t) => (mime || "").startsWith(t)) || /\.(png|jpe?g|svg|gif)$/i.test(name); }

// A file's bytes fetched with the API key, shown as a blob: URL (links cannot carry headers).
async function fileCard(fetchPath, name, size, mime) {
  const card = el("div", {class: "file-card", "data-testid": "file-card"});
  const response = await api("GET", fetchPath);
  const blob = await response.blob();
  const type = mime || blob.type;
  const url = URL.createObjectURL(type && blob.type !== type ? new Blob([blob], {type}) : blob);
  card.append(el("div", {}, el("a", {href: url, download: name.split("/").pop(), text: name, class: "download"}),
    el("span", {class: "muted", text: `  ${formatSize(size ?? blob.size)}`})));
  if (isImage(name, type)) card.append(el("img", {src: url, alt: name, class: "output-image", onload: () => scrollDown(false)}));
  else if (isCsv(name, type)) card.append(csvTable(await blob.slice(0, 256 * 1024).text()));
  return card;
}

// Output files in their order, each filled in when its bytes arrive.
function showOutputFiles(holder, fileIds) {
  for (const fileId of fileIds) {
    const slot = el("div", {class: "muted", text: `loading ${fileId}…`});
    holder.append(slot);
    outputFileCard(fileId).then((card) => slot.replaceWith(card));
  }
}

async function outputFileCard(fileId) {
  try {
    const meta = await getJson(`/v1/files/${encodeURIComponent(fileId)}`);
    return await fileCard(`/v1/files/${encodeURIComponent(fileId)}/content`, meta.filename, meta.size_bytes, meta.mime_type);
  } catch (e) {
    return el("div", {class: "error-banner", text: `${fileId}: ${e.message}`});
  }
}

// ---------- chat -------------------------------------------------------------------------------
const chat = {
  messages: [],        // the conversation as sent to /v1/messages
  container: null,     // container id, reused across turns
  attachments: [],     // File objects waiting to be sent
  busy: false,
};

function chatParams() {
  const params = {
    model: $("#model").value,
    max_tokens: parseInt($("#max-tokens").value, 10) || 4096,
    messages: chat.messages,
    stream: true,
    tools: [{type: $("#tool-version").value, name: "code_execution"}],
  };
  const system = $("#system").value.trim();
  if (system) params.system = system;
  const clientTools = $("#client-tools").value.trim();
  if (clientTools) params.tools.push(...JSON.parse(clientTools));
  if (chat.container) params.container = chat.container;
  return params;
}

function setStatus(text) { $("#status").textContent = text || ""; }

function showError(where, error) {
  where.append(el("div", {class: "error-banner", "data-testid": "error", text: error.message || String(error)}));
}

function addUserMessage(content) {
  const texts = typeof content === "string" ? [content] : content.filter((b) => b.type === "text").map((b) => b.text);
  const uploads = typeof content === "string" ? [] : content.filter((b) => b.type === "container_upload");
  const node = el("div", {class: "msg user"}, texts.join("\n"));
  if (uploads.length) node.append(el("div", {class: "muted", text: `attached: ${uploads.map((b) => b.filename || b.file_id).join(", ")}`}));
  $("#transcript").append(node);
  scrollDown(true);
}

function codeOf(block) {
  const input = block.input || {};
  if (block.name === "code_execution") return {language: "python", code: input.code || ""};
  if (block.name === "bash_code_execution") return {language: "bash", code: input.command || ""};
  if (block.name === "text_editor_code_execution") {
    const head = `${input.command || ""} ${input.path || ""}`;
    const body = input.file_text ?? (input.old_str != null ? `${input.old_str}\n=====\n${input.new_str ?? ""}` : "");
    return {language: "text", code: body ? `${head}\n${body}` : head};
  }
  return {language: "text", code: JSON.stringify(input, null, 2)};
}

// One assistant response, built from stream events into blocks (kept for the next request).
class ResponseView {
  constructor() {
    this.node = el("div", {class: "msg assistant"});
    $("#transcript").append(this.node);
    this.blocks = [];       // content blocks, as the API has them
    this.views = [];        // per block: {node, ...}
    this.cells = {};        // server_tool_use id -> cell node
    this.partial = [];      // partial JSON input per block index
  }

  start(index, block) {
    const copy = JSON.parse(JSON.stringify(block));
    this.blocks[index] = copy;
    if (copy.type === "text") {
      const node = el("div", {class: "text"}, copy.text || "");
      this.node.append(node); this.views[index] = node;
    } else if (copy.type === "server_tool_use" || copy.type === "tool_use") {
      this.partial[index] = "";
      const label = copy.type === "tool_use" ? `client tool call: ${copy.name}` : copy.name;
      const code = el("pre", {class: "code"});
      const cell = el("div", {class: "cell", "data-testid": "code-cell"},
        el("div", {class: "cell-head"}, el("span", {text: label}), el("span", {class: "state", text: "writing…"})), code);
      this.node.append(cell); this.views[index] = cell; this.cells[copy.id] = cell;
    } else if (copy.type.endsWith("_tool_result")) {
      this.result(copy);
    }
  }

  delta(index, delta) {
    const block = this.blocks[index];
    if (delta.type === "text_delta") { block.text += delta.text; this.views[index].textContent = block.text; }
    else if (delta.type === "input_json_delta") {
      this.partial[index] += delta.partial_json;
      this.views[index].querySelector("pre").textContent = this.partial[index];
    }
  }

  stop(index) {
    const block = this.blocks[index];
    if (!block || (block.type !== "server_tool_use" && block.type !== "tool_use")) return;
    try { block.input = this.partial[index] ? JSON.parse(this.partial[index]) : {}; } catch (e) { block.input = {}; }
    const cell = this.views[index];
    const {language, code} = block.type === "tool_use" ? {language: "text", code: JSON.stringify(block.input, null, 2)} : codeOf(block);
    cell.querySelector("pre").replaceWith(highlight(code, language));
    cell.querySelector(".state").textContent = block.type === "tool_use" ? "waiting for your answer" : "running…";
  }

  result(block) {
    const cell = this.cells[block.tool_use_id] || this.node.appendChild(el("div", {class: "cell"}));
    cell.querySelector(".state") && (cell.querySelector(".state").textContent = "done");
    const content = block.content || {};
    if (content.type && content.type.endsWith("_tool_result_error")) {
      cell.append(el("div", {class: "tool-error", "data-testid": "tool-error",
        text: `tool error: ${content.error_code}${content.error_message ? " — " + content.error_message : ""}`}));
      return;
    }
    if (content.stdout) cell.append(el("pre", {class: "out stdout", "data-testid": "stdout", text: content.stdout}));
    if (content.stderr) cell.append(el("pre", {class: "out stderr", "data-testid": "stderr", text: content.stderr}));
    if (content.return_code !== undefined) {
      cell.append(el("div", {class: `rc ${content.return_code === 0 ? "ok" : "bad"}`, "data-testid": "return-code",
        text: `return code ${content.return_code}`}));
    }
    if (content.type === "text_editor_code_execution_view_result") cell.append(el("pre", {class: "out", text: content.content || ""}));
    if (content.type === "text_editor_code_execution_create_result") cell.append(el("div", {class: "rc ok", text: content.is_file_update ? "file updated" : "file created"}));
    if (content.type === "text_editor_code_execution_str_replace_result") cell.append(el("pre", {class: "out", text: (content.lines || []).join("\n")}));
    const outputs = (content.content || []).filter((o) => o.file_id);
    if (outputs.length) {
      const files = el("div", {class: "files"});
      cell.append(files);
      showOutputFiles(files, outputs.map((o) => o.file_id));
    }
  }
}

async function* sseEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const {value, done} = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, {stream: true});
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const chunk = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
      const data = chunk.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      if (data) yield JSON.parse(data);
    }
  }
}

async function runTurn() {
  chat.busy = true; $("#send").disabled = true; $("#actions").replaceChildren();
  setStatus("waiting for the model…");
  const view = new ResponseView();
  let stopReason = null;
  try {
    const response = await api("POST", "/v1/messages", chatParams());
    for await (const event of sseEvents(response)) {
      if (event.type === "content_block_start") view.start(event.index, event.content_block);
      else if (event.type === "content_block_delta") view.delta(event.index, event.delta);
      else if (event.type === "content_block_stop") view.stop(event.index);
      else if (event.type === "message_delta") {
        stopReason = event.delta.stop_reason;
        if (event.delta.container) { chat.container = event.delta.container.id; $("#chat-container").textContent = chat.container; }
      } else if (event.type === "error") throw new ApiError(0, event.error.type, event.error.message);
      else if (event.type === "ping") setStatus("running code…");
    }
  } catch (error) {
    showError(view.node, error);
  } finally {
    chat.busy = false; $("#send").disabled = false; setStatus(stopReason ? `stop_reason: ${stopReason}` : "");
  }
  const content = view.blocks.filter(Boolean);
  if (!stopReason) return;  // failed: the conversation stays as it was, the user may send again
  if (content.length) {
    const last = chat.messages[chat.messages.length - 1];
    if (last && last.role === "assistant") last.content = last.content.concat(content);  // a continuation
    else chat.messages.push({role: "assistant", content});
  }
  if (stopReason === "pause_turn") offerContinue();
  if (stopReason === "tool_use") offerToolAnswers(content.filter((b) => b.type === "tool_use"));
}

function offerContinue() {
  const button = el("button", {class: "primary", "data-testid": "continue", text: "Continue (pause_turn)",
    onclick: () => { $("#actions").replaceChildren(); runTurn(); }});
  $("#actions").append(el("div", {class: "row"}, el("span", {class: "muted", text: "The model paused its turn."}), button));
}

function offerToolAnswers(calls) {
  const answers = calls.map((call) => {
    const box = el("textarea", {rows: "3", "data-testid": "tool-answer", placeholder: `result of ${call.name}`});
    const error = el("input", {type: "checkbox"});
    $("#actions").append(el("div", {class: "tool-answer"},
      el("strong", {text: `Answer ${call.name}(${JSON.stringify(call.input)})`}), box,
      el("label", {class: "muted"}, error, " is an error")));
    return {call, box, error};
  });
  $("#actions").append(el("button", {class: "primary", "data-testid": "send-tool-results", text: "Send tool results",
    onclick: () => {
      const content = answers.map(({call, box, error}) => ({type: "tool_result", tool_use_id: call.id, content: box.value, is_error: error.checked}));
      chat.messages.push({role: "user", content});
      $("#transcript").append(el("div", {class: "msg user", text: answers.map((a) => `${a.call.name} → ${a.box.value}`).join("\n")}));
      runTurn();
    }}));
}

async function sendMessage(event) {
  event && event.preventDefault();
  if (chat.busy) return;
  const text = $("#prompt").value;
  if (!text.trim() && !chat.attachments.length) return;
  try { chatParams(); } catch (e) { showError($("#transcript"), new Error(`Client tools: ${e.message}`)); return; }
  const content = [];
  setStatus("uploading…");
  try {
    for (const file of chat.attachments) {
      const form = new FormData(); form.append("file", file, file.name);
      const uploaded = await (await api("POST", "/v1/files", form)).json();
      content.push({type: "container_upload", file_id: uploaded.id});
    }
  } catch (error) { showError($("#transcript"), error); setStatus(""); return; }
  if (text.trim()) content.push({type: "text", text});
  addUserMessage(content.map((b, i) => b.type === "container_upload" ? {...b, filename: chat.attachments[i].name} : b));
  chat.messages.push({role: "user", content});
  chat.attachments = []; renderAttachments(); $("#prompt").value = "";
  await runTurn();
}

function renderAttachments() {
  $("#attachments").replaceChildren(...chat.attachments.map((f) => el("span", {class: "chip", "data-testid": "attachment", text: `${f.name} (${formatSize(f.size)})`})));
}

function newChat() {
  Object.assign(chat, {messages: [], container: null, attachments: []});
  $("#transcript").replaceChildren(); $("#actions").replaceChildren(); renderAttachments();
  $("#chat-container").textContent = "new on first message";
}

async function loadModels() {
  const select = $("#model");
  try {
    const models = (await getJson("/v1/models?limit=1000")).data;
    select.replaceChildren(...models.map((m) => el("option", {value: m.id, text: `${m.display_name} (${m.id})`})));
    setKeyState("");
  } catch (error) {
    setKeyState(error.status === 401 ? "key refused" : error.message);
  }
}

// ---------- containers --------------------------------------------------------------------------
const boxes = {selected: null, caps: {stream: true, session: true}, after: null};

async function loadContainers(more) {
  const tbody = $("#container-table tbody");
  if (!more) { tbody.replaceChildren(); boxes.after = null; }
  const query = new URLSearchParams({limit: "50"});
  if (boxes.after) query.set("after_id", boxes.after);
  try {
    const page = await getJson(`/v1/containers?${query}`);
    for (const c of page.data) {
      const kernel = c.kernel_live == null ? "–" : (c.kernel_live ? "live" : "none");
      const row = el("tr", {"data-id": c.id, "data-testid": "container-row"},
        el("td", {text: c.id.replace(/^container_/, ""), title: `open ${c.id}`, onclick: () => openContainer(c.id)}),
        el("td", {text: formatTime(c.created_at)}), el("td", {text: formatTime(c.expires_at)}),
        el("td", {text: formatSize(c.disk_used_bytes)}), el("td", {text: kernel}),
        el("td", {}, el("button", {class: "small", text: "delete", onclick: () => deleteContainer(c.id)})));
      if (c.id === boxes.selected) row.classList.add("selected");
      tbody.append(row);
    }
    boxes.after = page.has_more ? page.last_id : null;
    $("#containers-more").replaceChildren(page.has_more ? el("button", {class: "small", text: "More", onclick: () => loadContainers(true)}) : "");
  } catch (error) { showError($("#containers-more"), error); }
}

async function deleteContainer(id) {
  if (!confirm(`Delete ${id}?`)) return;
  try { await api("DELETE", `/v1/containers/${encodeURIComponent(id)}`); } catch (error) { alert(error.message); }
  if (boxes.selected === id) { boxes.selected = null; $("#container-panel").classList.add("hidden"); $("#no-container").classList.remove("hidden"); }
  loadContainers();
}

async function newContainer() {
  try {
    const created = await (await api("POST", "/v1/containers")).json();
    await loadContainers();
    openContainer(created.id);
  } catch (error) { showError($("#containers-more"), error); }
}

function openContainer(id) {
  boxes.selected = id;
  for (const row of document.querySelectorAll("#container-table tbody tr")) row.classList.toggle("selected", row.dataset.id === id);
  $("#no-container").classList.add("hidden"); $("#container-panel").classList.remove("hidden");
  $("#container-id").textContent = id;
  $("#cells").replaceChildren(); addCell();
  $("#file-preview").replaceChildren();
  updateKernelNote();
  loadFiles();
}

function updateKernelNote() {
  $("#kernel-note").textContent = boxes.caps.session
    ? "Cells run in the container's live Python kernel where the server keeps one: variables persist between cells; files in /workspace always do."
    : "This server runs each cell in a fresh process: files in /workspace persist between cells, variables do not.";
}

function addCell() {
  const source = el("textarea", {rows: "4", "data-testid": "cell-source", placeholder: "Python (Ctrl+Enter runs)"});
  const language = el("select", {"data-testid": "cell-language"}, el("option", {value: "python", text: "Python"}), el("option", {value: "bash", text: "bash"}));
  const output = el("div", {class: "cell-output"});
  const state = el("span", {class: "muted"});
  const run = el("button", {class: "primary small", "data-testid": "run-cell", text: "Run"});
  const cell = el("div", {class: "nb-cell", "data-testid": "nb-cell"}, source, el("div", {class: "nb-bar"}, run, language, state), output);
  const go = () => runCell(source.value, language.value, output, state, run);
  run.addEventListener("click", go);
  source.addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); go(); } });
  $("#cells").append(cell);
  source.focus();
  return cell;
}

async function execInContainer(body, onPiece) {
  const path = `/v1/containers/${encodeURIComponent(boxes.selected)}/exec`;
  for (;;) {
    const sent = Object.assign({}, body);
    if (boxes.caps.stream) sent.stream = true;
    if (boxes.caps.session && body.code !== undefined) sent.session = true;
    const response = await fetch(path, {method: "POST", headers: headers({"content-type": "application/json"}), body: JSON.stringify(sent)});
    if (response.status === 400) {
      const error = await errorOf(response);
      // An older server refuses fields it does not know: ask again without them.
      const refused = (name) => sent[name] && error.detail.includes(`${name}:`) && /xtra/.test(error.detail);
      if (refused("stream") || refused("session")) {
        if (refused("stream")) boxes.caps.stream = false;
        if (refused("session")) boxes.caps.session = false;
        updateKernelNote();
        continue;
      }
      throw error;
    }
    if (!response.ok) throw await errorOf(response);
    if (!(response.headers.get("content-type") || "").includes("ndjson")) {
      const result = await response.json();
      if (result.stdout) onPiece("stdout", result.stdout);
      if (result.stderr) onPiece("stderr", result.stderr);
      return result;
    }
    const reader = response.body.getReader(); const decoder = new TextDecoder();
    let buffer = "", result = null;
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buffer.indexOf("\n")) >= 0) {
        const line = buffer.slice(0, cut).trim(); buffer = buffer.slice(cut + 1);
        if (!line) continue;
        const event = JSON.parse(line);
        if (event.type === "stdout" || event.type === "stderr") onPiece(event.type, event.text);
        else if (event.type === "result") result = event;
        else if (event.type === "error") throw new ApiError(0, event.error.type, event.error.message);
      }
    }
    if (!result) throw new Error("the output stream ended without a result");
    return result;
  }
}

async function runCell(source, language, output, state, run) {
  if (!boxes.selected) return;
  output.replaceChildren(); run.disabled = true; state.textContent = "running…";
  const streams = {};
  const piece = (kind, text) => {
    if (!streams[kind]) { streams[kind] = el("pre", {class: `out ${kind}`, "data-testid": `cell-${kind}`}); output.append(streams[kind]); }
    streams[kind].textContent += text;
  };
  try {
    const result = await execInContainer(language === "python" ? {code: source} : {command: source}, piece);
    output.append(el("div", {class: `rc ${result.return_code === 0 ? "ok" : "bad"}`, "data-testid": "cell-return-code",
      text: `return code ${result.return_code}${result.error_code ? " · " + result.error_code : ""} · ${result.duration_ms} ms${result.runtime ? " · " + result.runtime : ""}`}));
    const files = (result.files || []).filter((f) => f.file_id);
    if (files.length) {
      const holder = el("div", {class: "files"}); output.append(holder);
      showOutputFiles(holder, files.map((f) => f.file_id));
    }
    state.textContent = "";
    loadFiles();
  } catch (error) {
    showError(output, error); state.textContent = "";
  } finally { run.disabled = false; }
  const cells = document.querySelectorAll("#cells .nb-cell");
  if (cells[cells.length - 1].contains(output)) addCell();
}

async function loadFiles() {
  if (!boxes.selected) return;
  const tbody = $("#file-table tbody");
  try {
    const listing = await getJson(`/v1/containers/${encodeURIComponent(boxes.selected)}/files`);
    tbody.replaceChildren(...listing.data.map((f) => el("tr", {"data-testid": "container-file"},
      el("td", {text: f.path}), el("td", {text: formatSize(f.size_bytes)}),
      el("td", {}, el("button", {class: "small", text: "open", onclick: () => previewFile(f)})))));
  } catch (error) { tbody.replaceChildren(el("tr", {}, el("td", {colspan: "3", text: error.message}))); }
}

async function previewFile(file) {
  const path = `/v1/containers/${encodeURIComponent(boxes.selected)}/files/${file.path.split("/").map(encodeURIComponent).join("/")}`;
  const preview = $("#file-preview");
  preview.replaceChildren();
  try {
    const card = await fileCard(path, file.path, file.size_bytes, null);
    const mimeless = !isImage(file.path) && !isCsv(file.path) && file.size_bytes < 64 * 1024;
    if (mimeless) {
      const text = await (await api("GET", path)).text();
      if (!/[\x00-\x08]/.test(text)) card.append(el("pre", {class: "out", text}));
    }
    preview.append(card);
  } catch (error) { showError(preview, error); }
}

async function uploadToContainer(event) {
  for (const file of event.target.files) {
    try { await api("PUT", `/v1/containers/${encodeURIComponent(boxes.selected)}/files/${encodeURIComponent(file.name)}`, file); }
    catch (error) { showError($("#file-preview"), error); }
  }
  event.target.value = "";
  loadFiles();
}

// ---------- wiring ---------------------------------------------------------------------------------
function setKeyState(text) { $("#key-state").textContent = text; }

function showView(name) {
  for (const tab of document.querySelectorAll("button.tab")) tab.classList.toggle("active", tab.dataset.view === name);
  $("#view-chat").classList.toggle("hidden", name !== "chat");
  $("#view-containers").classList.toggle("hidden", name !== "containers");
  if (name === "containers") loadContainers();
}

document.addEventListener("DOMContentLoaded", () => {
  $("#api-key").value = apiKey();
  $("#key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    localStorage.setItem(KEY_STORAGE, $("#api-key").value.trim());
    setKeyState("saved"); loadModels();
  });
  for (const tab of document.querySelectorAll("button.tab")) tab.addEventListener("click", () => showView(tab.dataset.view));
  $("#composer").addEventListener("submit", sendMessage);
  $("#prompt").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) sendMessage(e); });
  $("#attach").addEventListener("change", (e) => { chat.attachments.push(...e.target.files); e.target.value = ""; renderAttachments(); });
  $("#new-chat").addEventListener("click", newChat);
  new MutationObserver(() => scrollDown(false)).observe($("#transcript"), {childList: true, subtree: true, characterData: true});
  // Only the reader's own scrolling decides: scrolling up unsticks, reaching the end sticks again.
  const transcript = $("#transcript");
  transcript.addEventListener("wheel", (e) => { if (e.deltaY < 0) stickToEnd = false; });
  transcript.addEventListener("keydown", (e) => { if (["ArrowUp", "PageUp", "Home"].includes(e.key)) stickToEnd = false; });
  transcript.addEventListener("scroll", () => {
    if (transcript.scrollHeight - transcript.scrollTop - transcript.clientHeight < 40) stickToEnd = true;
  });
  $("#new-container").addEventListener("click", newContainer);
  $("#refresh-containers").addEventListener("click", () => loadContainers());
  $("#add-cell").addEventListener("click", addCell);
  $("#refresh-files").addEventListener("click", loadFiles);
  $("#container-upload").addEventListener("change", uploadToContainer);
  loadModels();
});
