// The runs list: refreshed from /api/runs without reloading the page.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const refresh = Number(document.body.dataset.refreshMs) || 1500;
  const body = document.getElementById("runs-body");
  every(async () => {
    const {runs} = await getJSON("/api/runs");
    document.getElementById("empty").hidden = runs.length > 0;
    document.getElementById("runs").hidden = runs.length === 0;
    body.replaceChildren(...runs.map(row));
    stamp();
  }, refresh);
});

function row(r) {
  const progress = el("progress", {max: r.total || 1});
  progress.value = r.done;
  return el("tr", {"data-run": r.id},
    el("td", {}, el("a", {href: "/runs/" + encodeURIComponent(r.id)}, el("strong", {text: r.name})), el("br"), el("code", {text: r.id})),
    el("td", {}, el("span", {class: "state state-" + r.state, text: r.state})),
    el("td", {}, progress, " ", el("span", {class: "muted", text: `${r.done} of ${r.total}`})),
    el("td", {class: "num", text: r.succeeded}),
    el("td", {class: "num" + (r.failed ? " bad" : ""), text: r.failed}),
    el("td", {class: "num", text: r.skipped}),
    el("td", {class: "num"}, usd(r.cost_usd), r.budget_usd ? el("span", {class: "muted", text: " of " + usd(r.budget_usd)}) : null),
    el("td", {class: "muted", text: new Date(r.created_at).toISOString().replace("T", " ").slice(0, 19)}),
    el("td", {}, r.report ? el("a", {href: r.report, text: "report"}) : null, " ", el("a", {href: "/api/runs/" + encodeURIComponent(r.id), text: "json"})),
  );
}
