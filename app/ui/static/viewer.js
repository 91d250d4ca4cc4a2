// The RPS viewer: fills the page shells from the JSON API of this same origin.
// Hand-written, no libraries. The API key (when auth is on) lives in sessionStorage: this tab only.
"use strict";

const KEY_STORE = "rps-api-key";
const PAGE_SIZE = 24;
const POLL_MS = 1000;
const REVIEW_PATH = "/models/{model_id}/reviews/{train_id}";

// -- plumbing ------------------------------------------------------------------------------

class AuthNeeded extends Error {}

class Problem extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.title)) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

function storedKey() {
  return sessionStorage.getItem(KEY_STORE);
}

async function api(path, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  const key = storedKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    askForKey(key ? "That key was refused. Enter another API key." : null);
    throw new AuthNeeded();
  }
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (!response.ok) throw new Problem(response.status, body);
  return body;
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, String(value));
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function $(id) {
  return document.getElementById(id);
}

function formatNumber(value) {
  if (typeof value !== "number") return String(value);
  if (value === 0) return "0";
  const magnitude = Math.abs(value);
  if (magnitude >= 1e-3 && magnitude < 1e6) return String(Number(value.toPrecision(4)));
  return value.toExponential(3);
}

// A number shown rounded, with the exact value in data-value (the browser tests read both).
function numberSpan(value, name) {
  return el("span", { class: "number", "data-value": value, "data-name": name, title: String(value) }, formatNumber(value));
}

function className(model, index) {
  if (index === null || index === undefined) return "–";
  const names = model.class_names;
  return names && names[index] !== undefined ? `${names[index]} (${index})` : String(index);
}

function showProblem(error) {
  const box = $("problem");
  box.replaceChildren();
  if (error instanceof AuthNeeded) return;
  const body = error instanceof Problem ? error.body : { title: "Error", detail: String(error) };
  box.append(el("strong", {}, body.title || "Error"), " ", body.detail || "");
  for (const item of body.errors || []) {
    box.append(el("div", { class: "field-error" }, `${item.field} (${item.location}): ${item.message}`));
  }
  box.hidden = false;
}

function clearProblem() {
  $("problem").hidden = true;
}

function askForKey(message) {
  const form = $("key-form");
  if (message) $("key-message").textContent = message;
  form.hidden = false;
  $("key-input").focus();
}

function setUpKeyForm(render) {
  const form = $("key-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY_STORE, $("key-input").value.trim());
    $("key-input").value = "";
    form.hidden = true;
    showKeyState();
    render();
  });
  $("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    window.location.reload();
  });
  showKeyState();
}

function showKeyState() {
  const key = storedKey();
  $("key-status").textContent = key ? "key set for this tab" : "";
  $("forget-key").hidden = !key;
}

function query() {
  return new URLSearchParams(window.location.search);
}

function setQuery(changes) {
  const params = query();
  for (const [name, value] of Object.entries(changes)) {
    if (value === null || value === undefined || value === "") params.delete(name);
    else params.set(name, value);
  }
  history.replaceState(null, "", `${window.location.pathname}?${params}`);
}

// -- records -------------------------------------------------------------------------------

const IMAGE_URL = /^data:image\/(png|jpeg|gif|webp|bmp);base64,[A-Za-z0-9+/=]+$/;

function isImage(value) {
  return typeof value === "string" && IMAGE_URL.test(value);
}

function isScalar(value) {
  return value === null || ["string", "number", "boolean"].includes(typeof value);
}

function words(text) {
  return new Set((text.toLowerCase().match(/[\p{L}\p{N}']+/gu) || []).filter((word) => word.length > 2));
}

function imageNode(url) {
  return el("img", { class: "thumb", src: url, alt: "record image", onclick: () => enlarge(url) });
}

function enlarge(url) {
  $("overlay-image").src = url;
  $("overlay").hidden = false;
}

function textNode(text, reference) {
  const node = el("p", { class: "record-text" });
  const shared = typeof reference === "string" ? words(reference) : new Set();
  for (const piece of text.split(/([\p{L}\p{N}']+)/u)) {
    if (shared.has(piece.toLowerCase()) && piece.length > 2) node.append(el("mark", { class: "shared" }, piece));
    else node.append(piece);
  }
  return node;
}

// Numbers differ when they are more than 10% apart (relative to the larger); others when unequal.
const RELATIVE_DIFFERENCE = 0.1;

function differs(value, reference) {
  if (typeof value === "number" && typeof reference === "number") {
    return Math.abs(value - reference) > RELATIVE_DIFFERENCE * Math.max(Math.abs(value), Math.abs(reference));
  }
  return JSON.stringify(value) !== JSON.stringify(reference);
}

function tableNode(record, reference) {
  const table = el("table", { class: "record-table" });
  const compare = reference && typeof reference === "object" && !Array.isArray(reference);
  for (const [name, value] of Object.entries(record)) {
    const marked = compare && differs(value, reference[name]);
    const cell = isImage(value) ? imageNode(value) : String(value);
    const title = marked ? `test point: ${JSON.stringify(reference[name])}` : null;
    table.append(el("tr", { class: marked ? "differs" : null, title }, el("th", {}, name), el("td", {}, cell)));
  }
  return table;
}

// A record shown by its kind: an image, text (words shared with the reference marked),
// a row of named scalars (values differing from the reference marked), or formatted JSON.
function recordNode(record, reference) {
  const box = el("div", { class: "record" });
  if (isImage(record)) box.append(imageNode(record));
  else if (typeof record === "string") box.append(textNode(record, reference));
  else if (record && typeof record === "object" && !Array.isArray(record) && Object.values(record).every(isScalar)) {
    box.append(tableNode(record, reference));
  } else if (record === null || record === undefined) box.append(el("p", { class: "hint" }, "no record"));
  else box.append(el("pre", { class: "record-json" }, JSON.stringify(record, null, 2)));
  return box;
}

// -- models --------------------------------------------------------------------------------

function statusNode(model) {
  const badge = el("span", { class: `status status-${model.status}` }, model.status);
  if (model.status === "queued" || model.status === "running") {
    const percent = Math.round(100 * (model.progress || 0));
    return el("span", {}, badge, " ", el("progress", { max: 100, value: percent }), ` ${percent}%`);
  }
  if (model.status === "failed" && model.error) {
    const error = model.error;
    return el(
      "div",
      { class: "failure" },
      badge,
      " ",
      el("strong", {}, error.title || "failed"),
      el("p", { class: "failure-detail" }, error.detail || ""),
      ...(error.errors || []).map((item) => el("p", { class: "field-error" }, `${item.field}: ${item.message}`)),
    );
  }
  return badge;
}

let shownModels = null;

async function renderModels() {
  const body = await api("/models?limit=1000");
  const seen = JSON.stringify(body.items);
  if (seen === shownModels) return true; // nothing changed: keep the DOM (and any open details)
  shownModels = seen;
  const rows = body.items.map((model) =>
    el(
      "tr",
      { "data-model-id": model.id, "data-status": model.status },
      el("td", {}, el("a", { href: `/ui/models/${encodeURIComponent(model.id)}` }, model.name)),
      el("td", {}, model.kind),
      el("td", {}, statusNode(model)),
      el("td", {}, model.num_classes),
      el("td", {}, model.n_train),
      el("td", {}, model.n_test),
      el("td", {}, model.methods.join(", ")),
      el("td", {}, new Date(model.created_at).toLocaleString()),
    ),
  );
  document.querySelector("#models tbody").replaceChildren(...rows);
  $("models-empty").hidden = rows.length > 0;
  return true; // keep polling: new models and progress appear without a reload
}

// -- one model -----------------------------------------------------------------------------

function summaryNode(model) {
  const diagnostics = Object.entries(model.diagnostics || {}).map(([name, value]) =>
    el("div", {}, el("dt", {}, name), el("dd", {}, numberSpan(value, name))),
  );
  const classes = Array.from({ length: model.num_classes }, (_, index) => el("li", {}, className(model, index)));
  return el(
    "div",
    {},
    el("p", {}, statusNode(model), ` ${model.kind} · ${model.n_train} training points · ${model.n_test} test points · version ${model.version}`),
    el("h2", {}, "Methods"),
    el("p", { id: "methods" }, model.methods.join(", ")),
    el("h2", {}, "Classes"),
    el("ul", { id: "classes", class: "inline" }, classes),
    el("h2", {}, "Diagnostics"),
    el("dl", { id: "diagnostics", class: "numbers" }, diagnostics),
  );
}

function fillLabelFilter(select, model, selected) {
  select.replaceChildren(el("option", { value: "" }, "any"));
  for (let index = 0; index < model.num_classes; index += 1) {
    select.append(el("option", { value: index, selected: String(index) === selected }, className(model, index)));
  }
}

function pagerState(total, offset, count) {
  $("page-info").textContent = total ? `${offset + 1}–${offset + count} of ${total}` : "none";
  $("prev-page").disabled = offset <= 0;
  $("next-page").disabled = offset + count >= total;
}

async function renderModelPage(modelId) {
  const model = await api(`/models/${encodeURIComponent(modelId)}`);
  $("page-title").textContent = model.name;
  $("model-summary").replaceChildren(summaryNode(model));
  if (model.status !== "ready") return true; // poll until ready
  const params = query();
  fillLabelFilter($("filter-label"), model, params.get("label") || "");
  $("filter-correct").value = params.get("correct") || "";
  const offset = Number(params.get("offset") || 0);
  const search = new URLSearchParams({ limit: PAGE_SIZE, offset });
  if (params.get("label")) search.set("label", params.get("label"));
  if (params.get("correct")) search.set("correct", params.get("correct"));
  const page = await api(`/models/${encodeURIComponent(modelId)}/test-points?${search}`);
  const cards = page.items.map((point) => {
    const href = `/ui/models/${encodeURIComponent(modelId)}/explain?test_id=${encodeURIComponent(point.test_id)}`;
    const wrong = point.label !== null && point.predicted_class !== null && point.label !== point.predicted_class;
    return el(
      "a",
      { class: `card test-point${wrong ? " wrong" : ""}`, href, "data-test-id": point.test_id },
      recordNode(point.record, null),
      el("div", { class: "caption" }, el("strong", {}, point.test_id)),
      el("div", { class: "caption" }, "label ", el("span", { class: "label" }, className(model, point.label))),
      el("div", { class: "caption" }, "predicted ", el("span", { class: "predicted" }, className(model, point.predicted_class))),
    );
  });
  $("test-points").replaceChildren(...cards);
  pagerState(page.total, offset, page.items.length);
  return false;
}

function setUpModelControls(rerender) {
  $("filter-label").addEventListener("change", () => {
    setQuery({ label: $("filter-label").value, offset: null });
    rerender();
  });
  $("filter-correct").addEventListener("change", () => {
    setQuery({ correct: $("filter-correct").value, offset: null });
    rerender();
  });
  setUpPager(rerender);
}

function setUpPager(rerender) {
  $("prev-page").addEventListener("click", () => {
    setQuery({ offset: Math.max(0, Number(query().get("offset") || 0) - PAGE_SIZE) || null });
    rerender();
  });
  $("next-page").addEventListener("click", () => {
    setQuery({ offset: Number(query().get("offset") || 0) + PAGE_SIZE });
    rerender();
  });
}

// -- explanation ---------------------------------------------------------------------------

function fillSelect(select, options, selected) {
  select.replaceChildren(...options.map(([value, text]) => el("option", { value, selected: String(value) === String(selected) }, text)));
}

function chartNode(explanation) {
  const points = [...explanation.positive, ...explanation.negative].sort((a, b) => b.contribution - a.contribution);
  const largest = Math.max(1e-300, ...points.map((point) => Math.abs(point.contribution)));
  const rowHeight = 20;
  const width = 640;
  const labelWidth = 170;
  const half = (width - labelWidth) / 2;
  const middle = labelWidth + half;
  const chart = svg("svg", { width, height: rowHeight * points.length + 10, role: "img", class: "chart", "aria-label": "contributions" });
  chart.append(svg("line", { x1: middle, x2: middle, y1: 0, y2: rowHeight * points.length + 10, class: "axis" }));
  points.forEach((point, row) => {
    const length = (Math.abs(point.contribution) / largest) * (half - 50);
    const y = row * rowHeight + 5;
    const positive = point.contribution >= 0;
    chart.append(
      svg("text", { x: labelWidth - 6, y: y + 13, "text-anchor": "end", class: "bar-label" }, point.train_id.slice(0, 22)),
      svg("rect", {
        x: positive ? middle : middle - length,
        y,
        width: Math.max(length, 1),
        height: rowHeight - 6,
        class: positive ? "bar positive" : "bar negative",
        "data-train-id": point.train_id,
        "data-value": point.contribution,
      }),
      svg("text", { x: positive ? middle + length + 4 : middle - length - 4, y: y + 12, "text-anchor": positive ? "start" : "end", class: "bar-value" }, formatNumber(point.contribution)),
    );
  });
  return chart;
}

function pointCard(model, point, testRecord, side) {
  return el(
    "div",
    { class: `card ${side}`, "data-train-id": point.train_id, "data-rank": point.rank },
    recordNode(point.record, testRecord),
    el("div", { class: "caption" }, el("strong", {}, point.train_id)),
    el("div", { class: "caption" }, "label ", el("span", { class: "label" }, className(model, point.label))),
    el("div", { class: "caption" }, "contribution ", numberSpan(point.contribution, "contribution")),
  );
}

async function renderExplanation(modelId) {
  const params = query();
  const model = await api(`/models/${encodeURIComponent(modelId)}`);
  const testId = params.get("test_id") || "";
  const method = params.get("method") || model.methods[0];
  const target = params.get("target") || "predicted";
  const k = params.get("k") || "5";
  fillSelect($("switch-method"), model.methods.map((name) => [name, name]), method);
  const targets = [["predicted", "predicted class"], ["label", "its label"]];
  for (let index = 0; index < model.num_classes; index += 1) targets.push([String(index), className(model, index)]);
  fillSelect($("switch-target"), targets, target);
  $("switch-k").value = k;
  $("page-title").textContent = `Explanation of ${testId} (${model.name})`;
  const pointPage = await api(`/models/${encodeURIComponent(modelId)}/test-points?${new URLSearchParams({ test_id: testId, limit: 1 })}`);
  const point = pointPage.items[0] || { record: null, label: null };
  const search = new URLSearchParams({ model_id: modelId, test_id: testId, method, target, k });
  const explanation = await api(`/explain?${search}`);
  $("test-record").replaceChildren(
    el("h2", {}, "Test point"),
    recordNode(point.record, null),
    el("p", {}, "label ", el("span", { id: "test-label" }, className(model, point.label))),
  );
  const prediction = explanation.prediction;
  const probabilities = prediction.probabilities.length === 1 ? [1 - prediction.probabilities[0], prediction.probabilities[0]] : prediction.probabilities;
  $("prediction").replaceChildren(
    el("p", {}, "predicted ", el("strong", { id: "predicted-class", "data-value": prediction.predicted_class }, className(model, prediction.predicted_class)), " · explained class ", el("strong", { id: "target-class", "data-value": explanation.target_class }, className(model, explanation.target_class))),
    el(
      "table",
      { id: "probabilities", class: "probabilities" },
      probabilities.map((probability, index) =>
        el("tr", {}, el("th", {}, className(model, index)), el("td", {}, el("span", { class: "prob-bar", style: null }, el("meter", { min: 0, max: 1, value: probability }))), el("td", {}, numberSpan(probability, `probability-${index}`))),
      ),
    ),
  );
  const decomposition = explanation.decomposition;
  $("decomposition").replaceChildren(
    ...[
      ["sum_of_contributions", "sum of contributions"],
      ["model_output", "model output"],
      ["residual", "residual"],
    ].map(([name, text]) => el("div", {}, el("dt", {}, text), el("dd", { id: `decomposition-${name}` }, numberSpan(decomposition[name], name)))),
  );
  $("chart").replaceChildren(chartNode(explanation));
  $("supporters").replaceChildren(...explanation.positive.map((item) => pointCard(model, item, point.record, "positive")));
  $("opposers").replaceChildren(...explanation.negative.map((item) => pointCard(model, item, point.record, "negative")));
  document.body.dataset.loaded = `${method}/${target}/${k}`;
}

function setUpSwitches(rerender) {
  $("switch-method").addEventListener("change", () => {
    setQuery({ method: $("switch-method").value });
    rerender();
  });
  $("switch-target").addEventListener("change", () => {
    setQuery({ target: $("switch-target").value });
    rerender();
  });
  const applyK = () => {
    const k = Math.min(50, Math.max(1, Math.round(Number($("switch-k").value)) || 5));
    setQuery({ k });
    rerender();
  };
  $("switch-k").addEventListener("change", applyK);
  $("switches").addEventListener("submit", (event) => {
    event.preventDefault(); // Enter in the k field: apply it, do not reload the page
    applyK();
  });
}

// -- suspicious labels ---------------------------------------------------------------------

let reviewAvailable = null;

async function reviewsSupported() {
  if (reviewAvailable === null) {
    try {
      const schema = await api("/openapi.json");
      const path = (schema.paths || {})[REVIEW_PATH];
      reviewAvailable = Boolean(path && path.put);
    } catch (error) {
      if (error instanceof AuthNeeded) throw error;
      reviewAvailable = false;
    }
  }
  return reviewAvailable;
}

function showReview(card, model, review) {
  card.dataset.review = review.decision;
  const relabelled = review.decision === "relabel" ? ` → ${className(model, review.new_label)}` : "";
  card.querySelector(".review-state").textContent = `reviewed: ${review.decision}${relabelled}`;
  card.classList.add("reviewed");
}

async function review(modelId, model, item, body, card) {
  const path = REVIEW_PATH.replace("{model_id}", encodeURIComponent(modelId)).replace("{train_id}", encodeURIComponent(item.train_id));
  try {
    const answer = await api(path, { method: "PUT", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    showReview(card, model, answer);
    clearProblem();
  } catch (error) {
    showProblem(error);
  }
}

async function reviewsByTrainId(modelId) {
  const body = await api(`/models/${encodeURIComponent(modelId)}/reviews`);
  return new Map(body.items.map((item) => [item.train_id, item]));
}

function reviewButtons(modelId, item, card, model) {
  const relabelTo = item.suggested_label ?? item.predicted_class;
  return el(
    "div",
    { class: "review" },
    el("button", { type: "button", class: "review-keep", onclick: () => review(modelId, model, item, { decision: "keep" }, card) }, "keep"),
    relabelTo === item.label
      ? null
      : el("button", { type: "button", class: "review-relabel", onclick: () => review(modelId, model, item, { decision: "relabel", label: relabelTo }, card) }, `relabel → ${className(model, relabelTo)}`),
    el("button", { type: "button", class: "review-remove", onclick: () => review(modelId, model, item, { decision: "remove" }, card) }, "remove"),
    el("span", { class: "review-state" }),
  );
}

let lastRanking = null;

async function renderSuspicious(modelId) {
  const params = query();
  const model = await api(`/models/${encodeURIComponent(modelId)}`);
  $("page-title").textContent = `Suspicious labels of ${model.name}`;
  const method = params.get("method") || "";
  const labelRankings = Object.entries(model.rankings || {})
    .filter(([, state]) => state && state.status === "ready")
    .map(([name]) => name);
  const rankings = [...new Set([...model.methods, ...labelRankings])];
  const options = [["", "default"], ...rankings.map((name) => [name, name])];
  fillSelect($("filter-method"), options, method);
  fillLabelFilter($("filter-label"), model, params.get("label") || "");
  $("filter-disagree").checked = params.get("disagree") === "1";
  const offset = Number(params.get("offset") || 0);
  const search = new URLSearchParams({ model_id: modelId, limit: PAGE_SIZE, offset });
  if (method) search.set("method", method);
  const page = await api(`/debug/suspicious?${search}`);
  lastRanking = page;
  const withReviews = await reviewsSupported();
  const reviews = withReviews ? await reviewsByTrainId(modelId) : new Map();
  $("review-note").textContent = withReviews ? "" : "Review actions (keep / relabel / remove) appear once this service offers PUT " + REVIEW_PATH + ".";
  const label = params.get("label");
  const shown = page.items.filter(
    (item) => (!label || String(item.label) === label) && (params.get("disagree") !== "1" || item.predicted_class !== item.label),
  );
  const cards = shown.map((item) => {
    const card = el(
      "div",
      { class: "card suspicious", "data-train-id": item.train_id, "data-rank": item.rank },
      recordNode(item.record, null),
      el("div", { class: "caption" }, el("strong", {}, `#${item.rank} ${item.train_id}`)),
      el("div", { class: "caption" }, "label ", el("span", { class: "label" }, className(model, item.label))),
      el("div", { class: "caption" }, "predicted ", el("span", { class: "predicted" }, className(model, item.predicted_class))),
      item.suggested_label !== undefined && item.suggested_label !== null
        ? el("div", { class: "caption" }, "suggested ", el("span", { class: "suggested" }, className(model, item.suggested_label)))
        : null,
      el("div", { class: "caption" }, "score ", numberSpan(item.score, "score")),
      item.label_error_probability !== undefined && item.label_error_probability !== null
        ? el("div", { class: "caption" }, "P(label wrong) ", numberSpan(item.label_error_probability, "label_error_probability"))
        : null,
    );
    if (withReviews) {
      card.append(reviewButtons(modelId, item, card, model));
      if (reviews.has(item.train_id)) showReview(card, model, reviews.get(item.train_id));
    }
    return card;
  });
  $("suspicious").replaceChildren(...cards);
  pagerState(page.total, offset, page.items.length);
  document.body.dataset.loaded = `${page.method}/${offset}`;
}

function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = el("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function csvCell(value) {
  const text = value === null || value === undefined ? "" : typeof value === "object" ? JSON.stringify(value) : String(value);
  return /[",\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

function setUpSuspiciousControls(modelId, rerender) {
  for (const [id, name] of [["filter-method", "method"], ["filter-label", "label"]]) {
    $(id).addEventListener("change", () => {
      setQuery({ [name]: $(id).value, ...(name === "method" ? { offset: null } : {}) });
      rerender();
    });
  }
  $("filter-disagree").addEventListener("change", () => {
    setQuery({ disagree: $("filter-disagree").checked ? "1" : null });
    rerender();
  });
  $("export-json").addEventListener("click", () => {
    if (lastRanking) download(`suspicious-${modelId}.json`, "application/json", JSON.stringify(lastRanking, null, 2));
  });
  $("export-csv").addEventListener("click", () => {
    if (!lastRanking) return;
    const columns = ["rank", "train_id", "train_index", "label", "predicted_class", "suggested_label", "label_error_probability", "score", "record"];
    const lines = [columns.join(","), ...lastRanking.items.map((item) => columns.map((name) => csvCell(item[name])).join(","))];
    download(`suspicious-${modelId}.csv`, "text/csv", lines.join("\n") + "\n");
  });
  setUpPager(rerender);
}

// -- start ---------------------------------------------------------------------------------

function start() {
  const page = document.body.dataset.page;
  const modelId = document.body.dataset.modelId;
  $("overlay").addEventListener("click", () => {
    $("overlay").hidden = true;
  });
  let timer = null;
  const renderers = {
    models: () => renderModels(),
    model: () => renderModelPage(modelId),
    explain: () => renderExplanation(modelId),
    suspicious: () => renderSuspicious(modelId),
  };
  const render = async () => {
    clearTimeout(timer);
    document.body.dataset.state = "loading";
    try {
      const again = await renderers[page]();
      clearProblem();
      document.body.dataset.state = "ready";
      if (again) timer = setTimeout(render, POLL_MS);
    } catch (error) {
      document.body.dataset.state = error instanceof AuthNeeded ? "needs-key" : "problem";
      showProblem(error);
    }
  };
  setUpKeyForm(render);
  if (page === "model") setUpModelControls(render);
  if (page === "explain") setUpSwitches(render);
  if (page === "suspicious") setUpSuspiciousControls(modelId, render);
  render();
}

document.addEventListener("DOMContentLoaded", start);
