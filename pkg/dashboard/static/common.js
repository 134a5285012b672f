// Shared helpers of the likeness dashboard pages. No framework, no build:
// elements are built with textContent, never from HTML strings.
"use strict";

// el(tag, attrs, ...children) builds an element; strings become text.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function usd(v) {
  v = Number(v) || 0;
  return "$" + (v > 0 && v < 1 ? v.toFixed(3) : v.toFixed(2));
}

function duration(s) {
  if (s === undefined || s === null || !isFinite(s)) return "–";
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
  if (h) return `${h}h ${String(m).padStart(2, "0")}m`;
  if (m) return `${m}m ${String(sec).padStart(2, "0")}s`;
  return `${sec}s`;
}

function ms(v) {
  v = Number(v) || 0;
  return v >= 1000 ? (v / 1000).toFixed(1) + " s" : v + " ms";
}

function pct(v) { return Math.round((Number(v) || 0) * 100) + "%"; }

async function getJSON(url) {
  const resp = await fetch(url, {credentials: "same-origin", cache: "no-store"});
  if (!resp.ok) throw new Error(`${url}: ${resp.status}`);
  return resp.json();
}

// every(fn, ms) runs fn now and again ms after each run ends; fn may
// return a different delay.
function every(fn, delay) {
  const tick = async () => {
    let next = delay;
    try {
      const d = await fn();
      if (typeof d === "number") next = d;
    } catch (err) {
      const u = document.getElementById("updated");
      if (u) u.textContent = "refresh failed: " + err.message + " (retrying)";
    }
    setTimeout(tick, next);
  };
  tick();
}

function stamp() {
  const u = document.getElementById("updated");
  if (u) u.textContent = "updated " + new Date().toLocaleTimeString();
}
