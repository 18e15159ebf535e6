/* Script of the rnncli inspect page (inlined by rnncli/cli/page.py): the text coloured by surprise or by one unit,
   drawn block by block as it nears the view; tooltips, LSTMVis's match on a selected span, and #selftest. */
"use strict";
const ERRORS = [];
addEventListener("error", (e) => ERRORS.push(String(e.message || e.error || e)));
addEventListener("unhandledrejection", (e) => ERRORS.push("unhandled rejection: " + String(e.reason)));

const $ = (id) => document.getElementById(id);
const BLOCK_MIN = 1000, BLOCK_MAX = 2000; // tokens per block; a block ends at a line end when it can
const HOT = 6, LISTED = 20; // nats at full colour; match results listed
const S = { view: "surprise", key: null, unit: null, table: null, hits: null, query: null, picked: 0, matches: [], ready: null };
const stored = new Map(); // "layer:state:unit" -> {b64, lo, hi}: its bytes, not decoded yet
const decoded = new Map(); // "layer:state:unit" -> {q: Uint8Array, lo, step}
let M, N, K, loss, topIds, topP, blocks, observer;

function bytes(b64) {
  if (Uint8Array.fromBase64) return Uint8Array.fromBase64(b64);
  const bin = atob(b64), out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
const NAMED = { "\n": "\u23ce", " ": "\u2423", "\t": "\u21e5", "\r": "\u240d" };
function shown(tok) { // a token with its whitespace made visible
  if (tok === "") return "\u2205";
  return tok.replace(/[\x00-\x20\x7f]/g, (ch) => NAMED[ch] || "\\x" + ch.charCodeAt(0).toString(16).padStart(2, "0"));
}
const ENT = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" };
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ENT[c]);
const say = (text) => { $("msg").textContent = text; };

// ---- colours
const HEAT = Array.from({ length: 65 }, (_, k) => (k ? `rgba(235,90,20,${(0.85 * k / 64).toFixed(3)})` : ""));
const heat = (i) => (loss[i] > 0 ? HEAT[Math.min(64, Math.round((64 * loss[i]) / HOT))] : "");
function diverging(u) { // the colour of each byte value of unit u: blue below 0, clear at 0, red above
  const m = Math.max(Math.abs(u.lo), Math.abs(u.lo + 255 * u.step)) || 1;
  return Array.from({ length: 256 }, (_, q) => {
    const v = u.lo + q * u.step, a = Math.min(1, Math.abs(v) / m) * 0.85;
    return a < 0.01 ? "" : v > 0 ? `rgba(215,35,25,${a.toFixed(3)})` : `rgba(25,85,215,${a.toFixed(3)})`;
  });
}
function colour(i) {
  if (S.view === "surprise") return heat(i);
  return S.unit ? S.table[S.unit.q[i]] : "";
}
function classes(i, tok) {
  const c = [];
  if (tok.endsWith("\n") && tok.trim() === "") c.push("nl");
  const h = S.hits ? S.hits[i] : 0;
  if (h) c.push(h === 2 ? "sel" : "hit");
  return c.join(" ");
}

// ---- units: decoded from base64 the first time they are used
function unitData(key) {
  if (decoded.has(key)) return decoded.get(key);
  const raw = stored.get(key);
  if (!raw) return null;
  const u = { key, q: bytes(raw.b64), lo: raw.lo, step: (raw.hi - raw.lo) / 255 };
  raw.b64 = null;
  decoded.set(key, u);
  return u;
}
const value = (u, i) => u.lo + u.q[i] * u.step;
function qThreshold(u, t) { // the least byte whose value is >= t; 256 when none is
  if (!(u.step > 0)) return u.lo >= t ? 0 : 256;
  let q = Math.max(0, Math.min(256, Math.ceil((t - u.lo) / u.step)));
  while (q > 0 && u.lo + (q - 1) * u.step >= t) q--;
  while (q < 256 && u.lo + q * u.step < t) q++;
  return q;
}

// ---- the text, in blocks filled when they come near the view
function planBlocks() {
  const out = [];
  for (let a = 0, i = 0; i < N; i++) {
    const len = i + 1 - a;
    if ((len >= BLOCK_MIN && M.tokens[i].endsWith("\n")) || len >= BLOCK_MAX || i === N - 1) { out.push([a, i + 1]); a = i + 1; }
  }
  return out;
}
function layoutBlocks() {
  const text = $("text"), probe = document.createElement("span");
  probe.textContent = "0".repeat(50);
  text.append(probe);
  const cw = probe.getBoundingClientRect().width / 50 || 8, lh = parseFloat(getComputedStyle(text).lineHeight) || 19;
  probe.remove();
  const cols = Math.max(20, Math.floor(text.clientWidth / cw));
  blocks = planBlocks().map(([a, b], n) => {
    let rows = 1, col = 0;
    for (let i = a; i < b; i++) for (const ch of M.tokens[i]) if (ch === "\n" || ++col >= cols) { rows++; col = 0; }
    if (M.tokens[b - 1].endsWith("\n")) rows--;
    const el = document.createElement("div");
    el.className = "blk";
    el.dataset.b = n;
    el.style.minHeight = `${Math.max(rows, 1) * lh}px`;
    return { a, b, el, filled: false };
  });
  text.append(...blocks.map((k) => k.el));
  observer = new IntersectionObserver((seen) => {
    for (const e of seen) if (e.isIntersecting) fill(blocks[+e.target.dataset.b]);
  }, { rootMargin: "1500px 0px" });
  for (const k of blocks) observer.observe(k.el);
}
function fill(k) {
  if (k.filled) return;
  k.filled = true;
  const parts = [];
  for (let i = k.a; i < k.b; i++) {
    const tok = M.tokens[i];
    if (tok === "") continue; // a byte that continues a character
    const c = colour(i), cl = classes(i, tok);
    parts.push(`<span data-i="${i}"${cl ? ` class="${cl}"` : ""}${c ? ` style="background:${c}"` : ""}>${esc(tok)}</span>`);
  }
  k.el.innerHTML = parts.join("");
  k.el.style.minHeight = "";
  observer.unobserve(k.el);
}
function paint() { // recolour the blocks drawn so far; the others colour themselves when filled
  for (const k of blocks) {
    if (!k.filled) continue;
    for (const s of k.el.children) {
      const i = +s.dataset.i;
      s.style.background = colour(i);
      s.className = classes(i, M.tokens[i]);
    }
  }
}
function blockOf(i) {
  let lo = 0, hi = blocks.length - 1;
  while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (blocks[mid].a <= i) lo = mid; else hi = mid - 1; }
  return blocks[lo];
}
function goTo(i) {
  const k = blockOf(i);
  fill(k);
  const s = [...k.el.children].find((el) => +el.dataset.i >= i) || k.el;
  s.scrollIntoView({ block: "center" });
}

// ---- controls
function options(select, items, keep) {
  select.innerHTML = items.map(([v, label]) => `<option value="${esc(v)}">${esc(label)}</option>`).join("");
  if (items.some(([v]) => String(v) === String(keep))) select.value = keep;
}
function fillStates() {
  const l = $("layer").value;
  options($("state"), ["h", "c"].filter((s) => `${l}:${s}` in M.states).map((s) => [s, s]), $("state").value);
  fillUnits();
}
function fillUnits() {
  const key = `${$("layer").value}:${$("state").value}`, H = M.states[key] || 0, items = [];
  for (let u = 0; u < H; u++) items.push([u, stored.has(`${key}:${u}`) ? `${u}` : `${u} (not stored)`]);
  options($("unit"), items, $("unit").value);
}
function chooseUnit(show = true) { // the unit the selectors name; shown unless `show` is false
  S.key = `${$("layer").value}:${$("state").value}:${$("unit").value}`;
  S.unit = S.table = null; // decoded when first shown
  if (show) setView("activation");
}
function pick(layer, state, unit, show = true) {
  $("layer").value = layer;
  fillStates();
  $("state").value = state;
  fillUnits();
  $("unit").value = unit;
  chooseUnit(show);
}
const firstUnit = () => M.found.map((f) => `${f.layer}:${f.state}:${f.unit}`).find((k) => stored.has(k)) || [...stored.keys()][0];
const unitName = (key) => { const [l, s, u] = key.split(":"); return `L${l}:${u} ${s}`; };
function setView(view) {
  S.view = $("view").value = view;
  if (view === "activation" && S.key && !S.unit && stored.has(S.key)) {
    S.unit = unitData(S.key);
    S.table = diverging(S.unit);
  }
  const bar = (a, b, c) => `<span class="bar" style="background:linear-gradient(to right,${a},${b},${c})"></span>`;
  if (view === "surprise") {
    $("legend").innerHTML = `surprise 0 ${bar("rgba(235,90,20,0)", "rgba(235,90,20,.42)", HEAT[64])} &ge;${HOT} nats`;
    say("");
  } else if (!S.key || !Object.keys(M.states).length) {
    $("legend").innerHTML = "";
    say("this page holds no unit activations (inspect was run without them)");
  } else if (!S.unit) {
    $("legend").innerHTML = "";
    say(`unit ${unitName(S.key)} is not stored in this page (it keeps ${stored.size} of ${M.total_units} units); ` +
      "run on a shorter text or raise --page-mb to keep it");
  } else {
    const m = Math.max(Math.abs(S.unit.lo), Math.abs(value(S.unit, 255)));
    $("legend").innerHTML = `${unitName(S.key)} &minus;${m.toPrecision(3)} ${bar(S.table[0] || "#fff", "#fff", S.table[255] || "#fff")} +${m.toPrecision(3)}`;
    say("");
  }
  paint();
}

// ---- match (LSTMVis): the units on across a span, and the other spans where at least half of them are on
function match(a, b) {
  const t = parseFloat($("threshold").value), st = $("state").value, info = $("match-info"), list = $("matches");
  S.query = [a, b];
  S.matches = [];
  list.innerHTML = "";
  if (!Number.isFinite(t)) { info.textContent = "the threshold is not a number"; return; }
  const keys = [...stored.keys()].filter((k) => k.split(":")[1] === st), picked = [];
  for (const k of keys) {
    const u = unitData(k), qt = qThreshold(u, t);
    let on = qt < 256;
    for (let i = a; on && i < b; i++) on = u.q[i] >= qt;
    if (on) picked.push([u, qt]);
  }
  S.picked = picked.length;
  S.hits = new Uint8Array(N);
  S.hits.fill(2, a, b);
  const where = `tokens ${a}\u2013${b - 1}`;
  if (!picked.length) {
    info.textContent = `no stored ${st} unit stays at or above ${t} across ${where} (${keys.length} looked at): ` +
      "lower the threshold or select a shorter span";
    paint();
    return;
  }
  const on = new Uint16Array(N), need = Math.ceil(picked.length / 2), len = b - a;
  for (const [u, qt] of picked) for (let i = 0; i < N; i++) if (u.q[i] >= qt) on[i]++;
  for (let i = 0; i < N;) {
    if (on[i] < need) { i++; continue; }
    let j = i, sum = 0;
    while (j < N && on[j] >= need) sum += on[j++];
    if (j <= a || i >= b) S.matches.push({ a: i, b: j, score: sum / (j - i) / picked.length });
    i = j;
  }
  S.matches.sort((x, y) => y.score - x.score || Math.abs(x.b - x.a - len) - Math.abs(y.b - y.a - len) || x.a - y.a);
  for (const m of S.matches) S.hits.fill(1, m.a, m.b);
  info.textContent = `${picked.length} ${st} unit${picked.length > 1 ? "s" : ""} (of ${keys.length} stored) stay at or above ` +
    `${t} across ${where}; ${S.matches.length} other span${S.matches.length === 1 ? "" : "s"} where at least ${need} ` +
    `of them are on${S.matches.length > LISTED ? `, the best ${LISTED} listed` : ""}`;
  list.innerHTML = S.matches.slice(0, LISTED).map((m, r) => {
    const snip = shown(M.tokens.slice(m.a, m.b).join(""));
    return `<li><button data-r="${r}"><span class="snip">${esc(snip.length > 40 ? snip.slice(0, 39) + "\u2026" : snip)}</span> ` +
      `tokens ${m.a}\u2013${m.b - 1} &middot; ${(100 * m.score).toFixed(0)}% on</button></li>`;
  }).join("");
  paint();
}
function edge(node, off, isEnd) { // the token at a selection boundary (the last one inside it for an end)
  if (node.nodeType === Node.TEXT_NODE) {
    const s = node.parentElement && node.parentElement.closest("span[data-i]");
    if (!s) return null;
    const i = +s.dataset.i;
    return isEnd ? (off === 0 ? i - 1 : i) : off >= node.length ? i + 1 : i;
  }
  const kids = node.childNodes, inside = (el, last) => {
    const e = el.nodeType === Node.TEXT_NODE ? el.parentElement : el;
    if (!e || e.nodeType !== 1) return null;
    if (e.matches("span[data-i]")) return +e.dataset.i;
    const all = e.querySelectorAll("span[data-i]");
    return all.length ? +all[last ? all.length - 1 : 0].dataset.i : null;
  };
  if (isEnd) for (let k = Math.min(off, kids.length) - 1; k >= 0; k--) { const i = inside(kids[k], true); if (i !== null) return i; }
  else for (let k = off; k < kids.length; k++) { const i = inside(kids[k], false); if (i !== null) return i; }
  const s = node.closest && node.closest("span[data-i]");
  return s ? +s.dataset.i : null;
}
function onMouseUp() {
  const sel = getSelection();
  if (!sel.rangeCount || sel.isCollapsed) return;
  const r = sel.getRangeAt(0);
  if (!$("text").contains(r.commonAncestorContainer)) return;
  const a = edge(r.startContainer, r.startOffset, false), z = edge(r.endContainer, r.endOffset, true);
  if (a === null || z === null || z < a) return;
  if (!stored.size) { $("match-info").textContent = "this page holds no unit activations to match"; return; }
  match(Math.max(0, a), Math.min(N - 1, z) + 1);
}

// ---- tooltip
function tipHtml(i) {
  const rows = [`<div><span class="tok">${esc(shown(M.tokens[i]))}</span> token ${i}</div>`];
  rows.push(`<div>surprise ${loss[i] >= 0 ? `${loss[i].toFixed(3)} nats (${(loss[i] / Math.LN2).toFixed(2)} bits)` : "-"}</div>`);
  if (S.view === "activation" && S.unit) rows.push(`<div>${unitName(S.key)} = ${value(S.unit, i).toFixed(3)}</div>`);
  const top = [];
  for (let k = 0; k < K; k++) {
    const id = topIds[i * K + k], p = topP[i * K + k] / 255;
    top.push(`<tr><td>${esc(shown(M.vocab[id] ?? `#${id}`))}</td><td>${(100 * p).toFixed(1)}%</td></tr>`);
  }
  if (K) rows.push(`<div>next, as predicted:</div><table>${top.join("")}</table>`);
  if (i + 1 < N) rows.push(`<div>next, as read: ${esc(shown(M.tokens[i + 1]))} (${(100 * Math.exp(-loss[i + 1])).toFixed(1)}%)</div>`);
  return rows.join("");
}
function onMove(e) {
  const tip = $("tip"), s = e.target.closest && e.target.closest("span[data-i]");
  if (!s) { tip.hidden = true; return; }
  if (tip.dataset.i !== s.dataset.i || tip.dataset.v !== S.view + S.key) {
    tip.innerHTML = tipHtml(+s.dataset.i);
    tip.dataset.i = s.dataset.i;
    tip.dataset.v = S.view + S.key;
  }
  tip.hidden = false;
  const w = tip.offsetWidth, h = tip.offsetHeight;
  tip.style.left = `${Math.min(e.clientX + 14, innerWidth - w - 4)}px`;
  tip.style.top = `${e.clientY + 18 + h > innerHeight ? e.clientY - h - 8 : e.clientY + 18}px`;
}

// ---- start
function start() {
  M = JSON.parse($("rnn-meta").textContent);
  N = M.n;
  K = M.top_k;
  loss = new Float32Array(bytes(M.loss).buffer);
  const ids = bytes(M.top_ids).buffer;
  topIds = M.top_ids_type === "u32" ? new Uint32Array(ids) : new Uint16Array(ids);
  topP = bytes(M.top_p);
  for (const el of document.querySelectorAll('script[type="application/x-rnncli-unit"]')) {
    const [, l, s, u] = el.id.match(/^u(\d+)([hc])(\d+)$/);
    const d = el.dataset;
    stored.set(`${l}:${s}:${u}`, { b64: el.textContent, lo: d.lo !== undefined ? +d.lo : -1, hi: d.hi !== undefined ? +d.hi : 1 });
    el.remove(); // the DOM stays small (the text lives on in `stored` until the unit is first used)
  }
  $("rnn-meta").remove();
  if (M.threshold !== undefined) $("threshold").value = M.threshold;
  const found = M.found.map((f) => {
    const key = `${f.layer}:${f.state}:${f.unit}`, kept = stored.has(key);
    return `<li><button class="${kept ? "" : "off"}" data-key="${key}"><b>${esc(f.property)}</b> ` +
      `${esc(M.properties[f.property] || "")}: ${unitName(key)}, r = ${f.r.toFixed(2)}${kept ? "" : " (not stored)"}</button></li>`;
  });
  if (M.absent.length) found.push(`<li class="off">not in this text: ${esc(M.absent.join(", "))}</li>`);
  $("found").innerHTML = found.join("") || '<li class="off">none found</li>';
  const layers = [...new Set(Object.keys(M.states).map((k) => +k.split(":")[0]))].sort((x, y) => x - y);
  options($("layer"), layers.map((l) => [l, l]));
  fillStates();
  if (layers.length) firstUnit() ? pick(...firstUnit().split(":"), false) : chooseUnit(false);
  for (const id of ["layer", "state", "unit"]) $(id).disabled = !layers.length;

  $("view").addEventListener("change", () => setView($("view").value));
  $("layer").addEventListener("change", () => { fillStates(); chooseUnit(); });
  $("state").addEventListener("change", () => { fillUnits(); chooseUnit(); });
  $("unit").addEventListener("change", () => chooseUnit());
  $("threshold").addEventListener("change", () => { if (S.query) match(...S.query); });
  $("found").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-key]");
    if (b) { const [l, s, u] = b.dataset.key.split(":"); pick(l, s, u); }
  });
  $("matches").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-r]");
    if (b) goTo(S.matches[+b.dataset.r].a);
  });
  document.addEventListener("mouseup", onMouseUp);
  $("text").addEventListener("mousemove", onMove);
  $("text").addEventListener("mouseleave", () => { $("tip").hidden = true; });

  layoutBlocks();
  setView("surprise");
  if (blocks.length) fill(blocks[0]);
  void $("text").offsetHeight; // laid out
  S.ready = performance.now();
  const hash = new URLSearchParams(location.hash.slice(1));
  if (hash.has("unit")) { const [l, s, u] = hash.get("unit").split(":"); pick(l, s, u); }
  else if (hash.get("view") === "activation") setView("activation");
  if (hash.has("selftest")) setTimeout(selftest, 0);
}

// ---- #selftest: what a person would do, through the real controls; the result as JSON in <pre id="selftest">
function selftest() {
  const out = { ready_ms: S.ready, tokens: N, units_stored: stored.size, errors: ERRORS };
  const set = (id, v) => { $(id).value = v; $(id).dispatchEvent(new Event("change", { bubbles: true })); };
  const spans = () => [...document.querySelectorAll("#text span[data-i]")].slice(0, 500);
  try {
    const before = spans().map((s) => s.style.background);
    const key = firstUnit();
    if (!key) throw new Error("no stored unit to pick");
    const [l, s, u] = key.split(":");
    set("view", "activation"); set("layer", l); set("state", s); set("unit", u);
    out.unit = key;
    out.recoloured = spans().filter((el, j) => el.style.background !== before[j]).length;
    let best = null, top = -Infinity; // the drawn token where a unit of this state is highest
    const drawn = spans();
    for (const k of stored.keys()) {
      if (k.split(":")[1] !== s) continue;
      const d = unitData(k);
      for (const el of drawn) if (value(d, +el.dataset.i) > top) { top = value(d, +el.dataset.i); best = el; }
    }
    if (top < 0.3) set("threshold", (Math.floor(top * 100) / 100 - 0.01).toFixed(2)); // a person lowers it
    const r = document.createRange();
    r.setStart(best.firstChild, 0);
    r.setEnd(best.firstChild, best.firstChild.length);
    getSelection().removeAllRanges();
    getSelection().addRange(r);
    best.dispatchEvent(new MouseEvent("mouseup", { bubbles: true }));
    Object.assign(out, { query: S.query, threshold: +$("threshold").value, units_selected: S.picked, matches: S.matches.length,
      spans: S.matches.slice(0, 10).map((m) => [m.a, m.b]) });
    best.dispatchEvent(new MouseEvent("mousemove", { bubbles: true, clientX: 40, clientY: 200 }));
    out.tooltip = $("tip").hidden ? "" : $("tip").textContent;
    const first = $("matches").querySelector("button");
    if (first) first.click();
    out.highlighted = document.querySelectorAll("#text span.hit").length;
    const missing = [...$("unit").options].find((o) => o.text.endsWith("(not stored)"));
    if (missing) { set("unit", missing.value); out.not_stored_says = $("msg").textContent; }
  } catch (e) {
    ERRORS.push(`selftest: ${e && e.stack ? e.stack : e}`);
  }
  out.ok = !ERRORS.length && out.recoloured > 0 && out.matches > 0 && out.highlighted > 0;
  $("selftest").textContent = JSON.stringify(out);
  $("selftest").hidden = false;
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
