// The run page: progress, models, limits, queues, failures and a gallery
// that fills as outputs land, all refreshed from the JSON API without
// reloading the page; buttons POST the run actions.
"use strict";

const page = {
  run: "",
  refresh: 1500,
  limit: 120,
  detail: null,
  tiles: new Map(), // task+status -> figure, so landed images never reload
  gallerySig: "",
};

document.addEventListener("DOMContentLoaded", () => {
  page.run = document.body.dataset.run;
  page.refresh = Number(document.body.dataset.refreshMs) || 1500;
  document.getElementById("filters").addEventListener("change", () => {
    page.limit = 120;
    loadGallery();
  });
  document.getElementById("gallery-more").addEventListener("click", () => {
    page.limit += 120;
    loadGallery();
  });
  for (const b of document.querySelectorAll("#actions button[data-action]")) {
    b.addEventListener("click", () => act(b.dataset.action));
  }
  document.getElementById("budget-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    act("budget", new URLSearchParams({budget_usd: document.getElementById("budget-input").value}));
  });
  every(async () => {
    await Promise.all([loadDetail(), loadGallery()]);
    stamp();
    const r = page.detail && page.detail.run;
    return r && r.finalized && r.pending === 0 ? page.refresh * 3 : page.refresh;
  }, page.refresh);
});

function api(path) { return "/api/runs/" + encodeURIComponent(page.run) + path; }

async function loadDetail() {
  const d = await getJSON(api("/detail"));
  page.detail = d;
  const r = d.run;
  const state = document.getElementById("run-state");
  state.textContent = r.state;
  state.dataset.state = r.state;
  state.className = "state state-" + r.state;
  const progress = document.getElementById("progress");
  progress.max = r.total || 1;
  progress.value = r.done;
  setText("done-count", r.done);
  setText("total-count", r.total);
  setText("succeeded-count", r.succeeded);
  setText("failed-count", r.failed);
  setText("skipped-count", r.skipped);
  setText("cached-count", r.cached);
  setText("rate", d.rate_per_min ? d.rate_per_min.toFixed(1) + " tasks/min" : "– tasks/min");
  setText("eta", r.paused ? "paused" : r.finalized ? "done" : duration(d.eta_s));
  setText("elapsed", duration(r.elapsed_s));
  setText("cost", usd(r.cost_usd));
  setText("budget", r.budget_usd ? "of " + usd(r.budget_usd) : "no budget");
  setText("reserved", usd(r.reserved_usd));
  const bar = document.getElementById("cost-bar");
  bar.hidden = !r.budget_usd;
  if (r.budget_usd) { bar.max = r.budget_usd; bar.value = Math.min(r.cost_usd, r.budget_usd); }
  const report = document.getElementById("report-link");
  report.hidden = !r.report;
  if (r.report) report.href = r.report;
  renderActions(d);
  renderModels(d.models || []);
  renderLimits(d.limits || []);
  renderQueues(d.queues || []);
  renderFailures(d.failures || []);
}

function setText(id, v) { document.getElementById(id).textContent = v; }

function renderActions(d) {
  const r = d.run, a = d.actions;
  document.getElementById("actions").hidden = !a.enabled;
  const live = !(r.finalized && r.pending === 0);
  document.getElementById("btn-pause").hidden = !live || r.paused || r.canceled;
  document.getElementById("btn-resume").hidden = !live || !r.paused || r.canceled;
  document.getElementById("btn-cancel").hidden = !live || r.canceled;
  document.getElementById("btn-retry").hidden = !a.retry || r.failed + r.skipped === 0;
  document.getElementById("budget-form").hidden = !r.budget_usd || !live;
}

function renderModels(models) {
  const body = document.getElementById("models-body");
  if (!models.length) {
    body.replaceChildren(el("tr", {}, el("td", {colspan: 8, class: "muted", text: "no task finished yet"})));
    return;
  }
  body.replaceChildren(...models.map((m) => {
    const checks = Object.entries(m.check_failures || {}).sort();
    return el("tr", {},
      el("td", {}, el("strong", {text: m.model}), " ", el("code", {class: "muted", text: m.model_ref})),
      el("td", {class: "num", text: m.total}),
      el("td", {class: "num" + (m.success_rate < 1 && m.total ? " bad" : ""), text: pct(m.success_rate)}),
      el("td", {class: "num", text: ms(m.latency_p50_ms)}),
      el("td", {class: "num", text: ms(m.latency_p95_ms)}),
      el("td", {class: "num", text: usd(m.cost_usd)}),
      el("td", {class: "num", text: m.retries}),
      el("td", {}, checks.length ? checks.map(([k, n]) => el("span", {class: "pill bad", text: `${k} ×${n}`})) : el("span", {class: "muted", text: "none"})),
    );
  }));
}

function renderLimits(limits) {
  const body = document.getElementById("limits-body");
  if (!limits.length) {
    body.replaceChildren(el("tr", {}, el("td", {colspan: 5, class: "muted", text: "no fleet limit applies"})));
    return;
  }
  body.replaceChildren(...limits.map((l) => {
    const force = [l.requests_per_minute ? l.requests_per_minute + " req/min" : "", l.concurrency ? l.concurrency + " in flight" : ""].filter(Boolean).join(", ") || "none";
    const circuit = l.circuit === "open" ? `open ${duration(l.open_s)}` : l.circuit === "failing" ? `${l.failures} failure${l.failures === 1 ? "" : "s"} in a row` : "closed";
    return el("tr", {},
      el("td", {}, el("code", {text: l.key}), el("br"), el("span", {class: "muted small", text: l.models.join(", ")})),
      el("td", {text: force}),
      el("td", {class: "num", text: l.concurrency ? `${l.in_flight} / ${l.concurrency}` : l.in_flight}),
      el("td", {class: l.cooldown_s > 0 ? "bad" : "muted", text: l.cooldown_s > 0 ? duration(l.cooldown_s) : "none"}),
      el("td", {class: l.circuit === "closed" ? "muted" : "bad", text: l.error || circuit}),
    );
  }));
}

function renderQueues(queues) {
  const body = document.getElementById("queues-body");
  if (!queues.length) {
    body.replaceChildren(el("tr", {}, el("td", {colspan: 5, class: "muted", text: "queue depth unavailable"})));
    return;
  }
  body.replaceChildren(...queues.map((q) => el("tr", {},
    el("td", {}, el("code", {text: q.queue}), q.error ? el("span", {class: "bad small", text: " " + q.error}) : null),
    el("td", {class: "num", text: q.pending}),
    el("td", {class: "num", text: q.active}),
    el("td", {class: "num", title: "scheduled + retry (paused and rate-limited tasks wait here)", text: q.scheduled + q.retry}),
    el("td", {class: "num", text: q.archived}),
  )));
}

function renderFailures(groups) {
  document.getElementById("failures-section").hidden = groups.length === 0;
  document.getElementById("failures").replaceChildren(...groups.map((g) => el("div", {class: "failure", "data-class": g.class},
    el("h3", {}, el("span", {class: "bad", text: g.class}), el("span", {class: "muted", text: ` · ${g.count} task${g.count === 1 ? "" : "s"}`})),
    el("ul", {}, g.messages.map((m) => el("li", {},
      el("span", {class: "pill", text: "×" + m.count}), " ", m.message || "(no message)", " ",
      el("span", {class: "muted small"}, m.tasks.map((t, i) => [i ? ", " : "", taskLink(t)])),
    ))),
  )));
}

function taskLink(task) {
  const a = el("a", {href: "#", text: task});
  a.addEventListener("click", (ev) => { ev.preventDefault(); openRecord(task); });
  return a;
}

async function loadGallery() {
  const form = document.getElementById("filters");
  const params = new URLSearchParams(new FormData(form));
  for (const [k, v] of [...params]) if (!v) params.delete(k);
  params.set("limit", page.limit);
  const g = await getJSON(api("/gallery?" + params));
  renderFacets(form, g.facets || {});
  setText("gallery-count", g.matched === g.total ? `${g.total} finished` : `${g.matched} of ${g.total} finished`);
  document.getElementById("gallery-more").hidden = g.items.length >= g.matched - g.offset;
  const sig = params + "|" + g.items.map((i) => i.task + ":" + i.status).join(",");
  if (sig === page.gallerySig) return;
  page.gallerySig = sig;
  renderGallery(g);
}

function renderFacets(form, facets) {
  for (const sel of form.querySelectorAll("select")) {
    const current = sel.value;
    const values = facets[sel.name] || [];
    sel.replaceChildren(el("option", {value: "", text: "all"}),
      ...values.map((f) => el("option", {value: f.value, text: `${f.value} (${f.count})`})));
    sel.value = values.some((f) => f.value === current) ? current : "";
  }
}

// renderGallery lays the outputs out as the report does: one row per
// character and prompt, the character's reference first.
function renderGallery(g) {
  const groups = [];
  let cur = null;
  for (const item of g.items) {
    if (!cur || cur.character !== item.character || cur.prompt !== item.prompt) {
      cur = {character: item.character, prompt: item.prompt, text: item.prompt_text, items: []};
      groups.push(cur);
    }
    cur.items.push(item);
  }
  const keep = new Map();
  const out = groups.map((grp) => {
    const ref = g.references[grp.character];
    const tiles = [];
    if (ref) {
      tiles.push(el("figure", {class: "ref"}, el("img", {src: ref, alt: "reference of " + grp.character, loading: "lazy", class: "reference"}),
        el("figcaption", {text: "reference · " + grp.character})));
    }
    for (const item of grp.items) {
      const key = item.task + ":" + item.status;
      const fig = page.tiles.get(key) || tile(item);
      keep.set(key, fig);
      tiles.push(fig);
    }
    return el("div", {class: "group"},
      el("h3", {}, grp.character + " · " + grp.prompt, el("span", {class: "muted", text: " — " + grp.text})),
      el("div", {class: "tiles"}, tiles));
  });
  page.tiles = keep;
  document.getElementById("gallery").replaceChildren(...out);
}

function tile(item) {
  const caption = `${item.model} · v${item.variant}`;
  const fig = el("figure", {class: item.status, "data-task": item.task, "data-status": item.status, title: caption + " — " + item.status},
    item.image
      ? el("img", {src: item.image, alt: `${item.character} ${item.prompt} ${caption}`, loading: "lazy", class: "output", width: 150, height: 150})
      : el("div", {class: "placeholder", text: item.status.replace("_", " ") + (item.error_class ? ": " + item.error_class : "")}),
    el("figcaption", {text: caption}));
  fig.addEventListener("click", () => openRecord(item.task));
  return fig;
}

async function openRecord(task) {
  const rec = await getJSON(api("/records/" + encodeURIComponent(task)));
  const kv = (k, v) => (v === undefined || v === null || v === "" ? [] : [el("dt", {text: k}), el("dd", {}, v)]);
  const img = rec.output_key ? el("img", {src: "/files/" + rec.output_key, alt: rec.task}) : el("p", {class: "muted", text: "no image: " + rec.status});
  const ref = rec.reference_key ? el("img", {src: "/files/" + rec.reference_key, alt: "reference"}) : null;
  const attempts = (rec.attempt_log || []).map((a) => el("tr", {},
    el("td", {class: "num", text: a.n}), el("td", {class: "num", text: a.seed}),
    el("td", {class: a.class ? "bad" : "", text: a.class || "ok"}),
    el("td", {class: "num", text: ms(a.duration_ms)}), el("td", {class: "num", text: ms(a.limit_wait_ms || 0)}),
    el("td", {class: "small", text: a.error || ""})));
  document.getElementById("record-body").replaceChildren(
    el("h2", {text: `${rec.character} · ${rec.prompt} · ${rec.model} · v${rec.variant}`}),
    el("div", {class: "record-grid"},
      el("div", {}, img, ref ? el("p", {class: "muted small", text: "reference"}) : null, ref),
      el("dl", {class: "kv", id: "record-fields"},
        kv("task", rec.task), kv("status", rec.status), kv("prompt", rec.prompt_text), kv("model", rec.model_ref),
        kv("seed", String(rec.seed)), kv("attempts", String(rec.attempts)), kv("cost", usd(rec.cost_usd)),
        kv("provider latency", ms(rec.provider_latency_ms)), kv("queue wait", ms(rec.queue_wait_ms)),
        kv("size", rec.width ? `${rec.width}×${rec.height}` : ""), kv("cached", rec.cached ? "yes (reused)" : ""),
        kv("trace id", rec.trace_id ? el("code", {text: rec.trace_id}) : ""),
        kv("request id", rec.provider_request_id ? el("code", {text: rec.provider_request_id}) : ""),
        kv("worker", rec.worker), kv("error", rec.error ? `${rec.error_class || rec.status}: ${rec.error}` : ""),
        kv("record", el("a", {href: `/files/runs/${rec.run}/records/${rec.task}.json`, text: "json"})))),
    attempts.length ? el("table", {class: "wide", id: "record-attempts"},
      el("thead", {}, el("tr", {}, ["#", "seed", "class", "took", "limit wait", "error"].map((h) => el("th", {text: h})))),
      el("tbody", {}, attempts)) : null);
  const dlg = document.getElementById("record");
  if (!dlg.open) dlg.showModal();
}

async function act(action, body) {
  const msg = document.getElementById("action-msg");
  msg.className = "";
  msg.textContent = action + "…";
  let resp, data;
  try {
    resp = await fetch(api("/" + action), {method: "POST", credentials: "same-origin", body: body || new URLSearchParams()});
    data = await resp.json();
  } catch (err) {
    msg.className = "error";
    msg.textContent = action + " failed: " + err.message;
    return;
  }
  if (!resp.ok) {
    msg.className = "error";
    msg.textContent = data.error || `${action} refused (${resp.status})`;
    if (resp.status === 401) {
      msg.append(" ", el("a", {href: "/login?next=" + encodeURIComponent(location.pathname), id: "action-login", text: "log in"}));
    }
    return;
  }
  msg.className = "ok";
  msg.textContent = data.message;
  await loadDetail();
}
