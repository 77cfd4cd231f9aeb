// The page's only script: no build step, no third-party code. Each file is its own request, so one bad
// file gets its own message and the others still get their verdicts.
"use strict";

const state = { info: null, rows: [] };
const $ = (sel) => document.querySelector(sel);

function formatP(log10p) {
  if (log10p === null || log10p === undefined || !isFinite(log10p)) return "";
  if (log10p > -3) return Math.pow(10, log10p).toPrecision(2);
  const e = Math.floor(log10p);
  const m = Math.pow(10, log10p - e);
  return (m.toFixed(0) === "10" ? "1e" + (e + 1) : m.toFixed(0) + "e" + e);
}

function withP(log10p) {
  // a server with --answer decision sends no p-values: the verdict then says none
  const p = formatP(log10p);
  return p ? `; p = ${p}` : "";
}

function verdictOf(attr, datasets) {
  // attr: one /v1/attribute result (or null); datasets: one /v1/detect result's list (or [])
  const parts = [];
  let found = false;
  if (attr && attr.attributed !== "unknown") {
    found = true;
    const day = (attr.issued || "").slice(0, 10);
    parts.push(`made by model #${attr.attributed}, issued to ${attr.who} on ${day}${withP(attr.log10_p_corrected)}`);
  }
  for (const d of datasets) {
    if (d.detected) {
      found = true;
      parts.push(`carries the fingerprint of data set “${d.dataset}”${withP(d.log10_p)}`);
    }
  }
  return { found, text: found ? parts.join("; ") : "no known fingerprint found" };
}

async function post(endpoint, file) {
  const body = new FormData();
  body.append("files", file, file.name);
  const resp = await fetch(endpoint, { method: "POST", body });
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (!resp.ok) {
    const msg = data && data.error ? (typeof data.error === "string" ? data.error : JSON.stringify(data.error))
      : `the server answered ${resp.status}`;
    throw new Error(resp.status === 413 ? `too large: ${msg}` : msg);
  }
  return data.results[0];
}

function card(file) {
  const el = document.createElement("div");
  el.className = "card";
  const isImage = file.type.startsWith("image/");
  const thumb = isImage ? document.createElement("img") : document.createElement("div");
  if (isImage) { thumb.src = URL.createObjectURL(file); thumb.alt = file.name; thumb.onerror = () => thumb.removeAttribute("src"); }
  else { thumb.className = "noimg"; thumb.textContent = "no preview"; }
  const text = document.createElement("div");
  text.innerHTML = '<div class="name"></div><div class="verdict">checking…</div><div class="numbers"></div>';
  text.querySelector(".name").textContent = file.name;
  el.append(thumb, text);
  $("#cards").prepend(el);
  return el;
}

function show(el, row) {
  el.classList.add(row.error ? "error" : row.found ? "found" : "clean");
  el.querySelector(".verdict").textContent = row.error ? row.error : row.verdict;
  el.querySelector(".numbers").textContent = row.error ? "" :
    [row.bit_accuracy !== "" ? `bit accuracy ${row.bit_accuracy}` : "", row.p_value !== "" ? `p = ${row.p_value}` : ""]
      .filter(Boolean).join(" · ");
  state.rows.push(row);
  const tr = document.createElement("tr");
  for (const key of ["file", "verdict", "model", "holder", "issued", "bit_accuracy", "p_value", "datasets"]) {
    const td = document.createElement("td");
    td.textContent = key === "verdict" && row.error ? "error: " + row.error : row[key];
    tr.append(td);
  }
  $("#results tbody").append(tr);
  $("#tablebox").hidden = false;
}

async function check(file) {
  const el = card(file);
  const row = { file: file.name, verdict: "", model: "", holder: "", issued: "", bit_accuracy: "", p_value: "",
                datasets: "", found: false, error: "" };
  const limit = state.info ? state.info.max_upload_mb * 1048576 : Infinity;
  try {
    if (file.size > limit) throw new Error(`too large: ${file.name} is ${(file.size / 1048576).toFixed(1)} MB; this server takes at most ${state.info.max_upload_mb} MB`);
    const attr = state.info.attribute ? await post("/v1/attribute", file) : null;
    const det = state.info.detect ? (await post("/v1/detect", file)).datasets : [];
    const v = verdictOf(attr, det);
    Object.assign(row, { verdict: v.text, found: v.found });
    if (attr && attr.attributed !== "unknown") Object.assign(row, { model: attr.attributed, holder: attr.who, issued: attr.issued });
    if (attr && attr.bit_accuracy !== undefined) {
      row.bit_accuracy = attr.bit_accuracy.toFixed(3);
      row.p_value = formatP(attr.log10_p_corrected);
    } else if (det.length && det[0].bit_accuracy !== undefined) {
      row.bit_accuracy = det[0].bit_accuracy.toFixed(3);
      row.p_value = formatP(det[0].log10_p);
    }
    row.datasets = det.filter((d) => d.detected).map((d) => d.dataset).join(" ");
  } catch (e) {
    row.error = e.message;
  }
  show(el, row);
}

function csvCell(v) {
  const s = String(v ?? "");
  return /[",\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
}

function downloadCsv() {
  const cols = ["file", "verdict", "model", "holder", "issued", "bit_accuracy", "p_value", "datasets", "error"];
  const lines = [cols.join(",")].concat(state.rows.map((r) => cols.map((c) => csvCell(r[c])).join(",")));
  const url = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
  const a = document.createElement("a");
  a.href = url; a.download = "ganprint-results.csv";
  document.body.append(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

async function handle(files) {
  $("#status").textContent = `checking ${files.length} file(s)…`;
  for (const f of files) await check(f);
  $("#status").textContent = `done: ${state.rows.length} file(s) checked`;
}

async function init() {
  try {
    state.info = await (await fetch("/v1/info")).json();
    $("#limits").textContent = `up to ${state.info.max_upload_mb} MB per image`;
  } catch (e) {
    $("#status").textContent = "cannot reach the server";
  }
  const drop = $("#drop");
  $("#files").addEventListener("change", (ev) => { handle([...ev.target.files]); ev.target.value = ""; });
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => { ev.preventDefault(); drop.classList.remove("over"); handle([...ev.dataTransfer.files]); });
  $("#csv").addEventListener("click", downloadCsv);
  $("#clear").addEventListener("click", () => { state.rows = []; $("#cards").innerHTML = ""; $("#results tbody").innerHTML = ""; $("#tablebox").hidden = true; });
}

init();
