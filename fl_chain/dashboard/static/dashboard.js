// fl-chain dashboard: fills the page from the JSON API and polls it; charts are inline SVG.
"use strict";

// Milliseconds between two polls: 2 s, or ?poll=MS in the page's address (250 to 60000).
const POLL_MS = Math.min(60000, Math.max(250, Number(new URLSearchParams(location.search).get("poll")) || 2000));

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

async function api(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) throw new Error(body.detail || response.statusText);
  return body;
}

function short(address) {
  return address ? address.slice(0, 8) + "…" + address.slice(-4) : "";
}

function time(seconds) {
  return seconds ? new Date(seconds * 1000).toISOString().slice(11, 19) : "–";
}

function badge(kind, text) {
  return el("span", { class: `badge ${kind}-${String(text).replace(/ /g, "-")}` }, text);
}

function showError(target, error) {
  target.replaceChildren(el("p", { class: "error", id: "error-message" }, error.message));
}

// Runs `refresh` now and every POLL_MS; errors are shown in `target` and polling goes on.
function poll(target, refresh) {
  const tick = async () => {
    try {
      await refresh();
    } catch (error) {
      showError(target, error);
    }
    setTimeout(tick, POLL_MS);
  };
  tick();
}

async function chainLine() {
  try {
    const chain = await api("/api/chain");
    document.getElementById("chain-line").textContent =
      `chain ${chain.chain_id} · contract ${short(chain.contract)} · block ${chain.block}`;
  } catch (error) {
    document.getElementById("chain-line").textContent = error.message;
  }
}

// -- task table -------------------------------------------------------------------------------

function tasksPage(root) {
  poll(root, async () => {
    const tasks = await api("/api/tasks");
    const rows = tasks.map((t) =>
      el("tr", { "data-task": t.id },
        el("td", {}, el("a", { href: `/tasks/${t.id}${location.search}`, class: "task-link" }, `task ${t.id}`)),
        el("td", { class: "state" }, badge("state", t.state)),
        el("td", { class: "num rounds-done" }, `${t.rounds_done}/${t.rounds_total}`),
        el("td", { class: "num" }, t.state === "running" ? t.current_round : "–"),
        el("td", { class: "num participants" }, t.participants),
        el("td", { class: "mono" }, `P=${t.partitions} r=${t.replication} q=${t.quorum}`),
        el("td", {}, t.secure_aggregation ? "secure aggregation" : "plain"),
      ));
    const table = el("table", { id: "tasks-table" },
      el("thead", {}, el("tr", {}, ["task", "state", "rounds done", "current round", "participants", "protocol", "updates"]
        .map((h, i) => el("th", { class: i >= 2 && i <= 4 ? "num" : null }, h)))),
      el("tbody", {}, rows));
    root.replaceChildren(tasks.length ? table : el("p", { class: "muted", id: "no-tasks" }, "no task on this contract yet"));
    chainLine();
  });
}

// -- charts -----------------------------------------------------------------------------------

// A line chart of points {x, y, lo, hi}; `id` names the svg (tests count its .point circles).
function lineChart(id, title, points, { yMin = 0, yMax = 1, kind = "" } = {}) {
  const W = 420, H = 220, L = 44, R = 12, T = 24, B = 30;
  const xs = points.map((p) => p.x);
  const x0 = Math.min(0, ...xs), x1 = Math.max(1, ...xs);
  const X = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const Y = (y) => T + (1 - (y - yMin) / (yMax - yMin || 1)) * (H - T - B);
  const chart = svg("svg", { id, width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  chart.append(svg("text", { x: L, y: 14 }, title));
  for (let i = 0; i <= 4; i++) {
    const v = yMin + ((yMax - yMin) * i) / 4;
    chart.append(svg("line", { class: "grid", x1: L, x2: W - R, y1: Y(v), y2: Y(v) }));
    chart.append(svg("text", { x: 4, y: Y(v) + 4 }, v.toFixed(yMax <= 1 ? 2 : 1)));
  }
  chart.append(svg("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  for (const x of xs) chart.append(svg("text", { x: X(x) - 3, y: H - B + 14 }, x));
  chart.append(svg("text", { x: W - R - 40, y: H - 4 }, "round"));
  if (points.length) {
    const band = points.map((p) => `${X(p.x)},${Y(p.hi)}`).concat(points.slice().reverse().map((p) => `${X(p.x)},${Y(p.lo)}`));
    chart.append(svg("polygon", { class: "band", points: band.join(" ") }));
    chart.append(svg("polyline", { class: `line ${kind}`, points: points.map((p) => `${X(p.x)},${Y(p.y)}`).join(" ") }));
    for (const p of points) {
      const dot = svg("circle", { class: `point ${kind}`, cx: X(p.x), cy: Y(p.y), r: 3.5, "data-round": p.x });
      dot.append(svg("title", {}, `round ${p.x}: ${p.y.toFixed(4)} (min ${p.lo.toFixed(4)}, max ${p.hi.toFixed(4)})`));
      chart.append(dot);
    }
  } else {
    chart.append(svg("text", { x: L + 20, y: H / 2 }, "no evaluation published yet"));
  }
  return el("div", { class: "chart" }, chart);
}

function barChart(id, title, bars) {
  const W = 420, H = 220, L = 64, R = 12, T = 24, B = 30;
  const max = Math.max(1, ...bars.map((b) => b.y));
  const step = (W - L - R) / Math.max(bars.length, 1);
  const chart = svg("svg", { id, width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title });
  chart.append(svg("text", { x: L, y: 14 }, title));
  chart.append(svg("line", { class: "axis", x1: L, x2: W - R, y1: H - B, y2: H - B }));
  chart.append(svg("text", { x: 4, y: T + 8 }, max.toLocaleString()));
  bars.forEach((b, i) => {
    const h = (b.y / max) * (H - T - B);
    const bar = svg("rect", { class: "bar", x: L + i * step + 2, y: H - B - h, width: Math.max(step - 4, 1), height: h });
    bar.append(svg("title", {}, `round ${b.x}: ${b.y.toLocaleString()} gas`));
    chart.append(bar);
    chart.append(svg("text", { x: L + i * step + step / 2 - 3, y: H - B + 14 }, b.x));
  });
  return el("div", { class: "chart" }, chart);
}

// -- task page --------------------------------------------------------------------------------

function taskPage(root) {
  const id = root.dataset.task;
  let metrics = [];
  let metricsAt = 0;
  poll(root, async () => {
    const [task, participants] = await Promise.all([api(`/api/tasks/${id}`), api(`/api/tasks/${id}/participants`)]);
    if (Date.now() - metricsAt > 2 * POLL_MS || metrics.length < task.rounds_done) {
      metrics = await api(`/api/tasks/${id}/metrics`).catch(() => metrics);
      metricsAt = Date.now();
    }
    const card = (label, value, cls) => el("div", { class: "card" }, el("div", { class: "muted" }, label), el("div", { class: `value ${cls || ""}` }, value));
    const finalized = task.rounds.filter((r) => r.phase === "finalized");
    const rounds = task.rounds.slice().reverse().map((r) =>
      el("tr", { "data-round": r.round },
        el("td", { class: "num" }, r.round),
        el("td", {}, badge("phase", r.phase), r.failure ? el("div", { class: "muted failure" }, r.failure.replace(/_/g, " ")) : ""),
        el("td", { class: "mono" }, `start ${time(r.start_time)}`, el("br"), `updates ${time(r.update_deadline)}`, el("br"),
          `aggregation ${time(r.aggregation_deadline)}`, el("br"), `fallback ${time(r.fallback_deadline)}`),
        el("td", {}, `${r.contributors.length} (${r.samples} samples)`, el("br"),
          el("span", { class: "muted mono" }, r.contributors.map(short).join(" "))),
        el("td", {}, r.excluded.length ? r.excluded.map(short).join(" ") : "–",
          r.reports ? el("div", { class: "muted" }, `${r.reports} report(s)`) : "",
          r.dissent.length ? el("div", { class: "muted" }, `${r.dissent.length} dissenting commit(s)`) : "",
          r.disputes ? el("div", { class: "muted" }, `${r.disputes} dispute(s)`) : ""),
        el("td", { class: "num" }, `${r.partitions_final}/${task.partitions}`),
        el("td", { class: "num gas" }, r.gas.toLocaleString()),
        el("td", {}, badge("audit", r.audit.status), el("div", { class: "muted" }, r.audit.detail)),
        el("td", {}, r.phase === "finalized"
          ? el("a", { href: `/api/tasks/${id}/rounds/${r.round}/model.npy`, class: "model-link", "data-round": r.round, download: `task${id}-round${r.round}.npy` }, "model.npy")
          : "–"),
      ));
    const people = participants.map((p) =>
      el("tr", { "data-account": p.account },
        el("td", { class: "mono" }, el("a", { href: `/tasks/${id}/participants/${p.account}${location.search}`, class: "participant" }, p.account)),
        el("td", { class: "num" }, p.updates), el("td", { class: "num" }, p.aggregates), el("td", { class: "num" }, p.dissent),
        el("td", { class: "num" }, p.reports_filed), el("td", { class: "num" }, p.excluded), el("td", {}, p.active ? "member" : "removed")));
    const mean = (m) => ({ x: m.round, y: m.accuracy, lo: m.accuracy_min, hi: m.accuracy_max });
    const lossMax = Math.max(0.5, ...metrics.map((m) => m.loss_max));
    root.replaceChildren(
      el("h1", {}, `Task ${task.id} `, badge("state", task.state)),
      el("div", { class: "cards" },
        card("rounds done", `${task.rounds_done}/${task.rounds_total}`, "rounds-done"),
        card("current round", task.state === "running" ? task.current_round : "–"),
        card("participants", task.participants),
        card("protocol", `P=${task.partitions} r=${task.replication} q=${task.quorum}`),
        card("latest accuracy (sites)", metrics.length ? metrics[metrics.length - 1].accuracy.toFixed(4) : "–", "latest-accuracy")),
      el("h2", {}, "Global model, as the sites measured it"),
      el("div", { class: "charts" },
        lineChart("accuracy-chart", "accuracy (sample-weighted mean; band: min–max over sites)", metrics.map(mean)),
        lineChart("loss-chart", "loss (sample-weighted mean; band: min–max)", metrics.map((m) => ({ x: m.round, y: m.loss, lo: m.loss_min, hi: m.loss_max })), { yMax: lossMax, kind: "loss" }),
        barChart("gas-chart", "gas per round", task.rounds.map((r) => ({ x: r.round, y: r.gas })))),
      el("p", { class: "muted" }, "Each node evaluates the global model it trains from on its own test data and publishes the result in its update manifest: a round's figures appear once the next round's updates are in. ",
        `${finalized.length} finalized round(s).`),
      el("h2", {}, "Rounds"),
      el("table", { id: "rounds-table" }, el("thead", {}, el("tr", {}, ["round", "outcome", "deadlines (UTC, chain time)", "contributors", "exclusions", "partitions final", "gas", "audit", "global model"]
        .map((h) => el("th", {}, h)))), el("tbody", {}, rounds)),
      el("h2", {}, "Participants"),
      el("table", { id: "participants-table" }, el("thead", {}, el("tr", {}, ["account", "updates", "aggregates", "dissent", "reports filed", "exclusions", "status"]
        .map((h) => el("th", {}, h)))), el("tbody", {}, people)),
    );
    chainLine();
  });
}

// -- participant page -------------------------------------------------------------------------

function participantPage(root) {
  const { task, account } = root.dataset;
  poll(root, async () => {
    const p = await api(`/api/tasks/${task}/participants/${account}`);
    const row = (label, value) => el("tr", {}, el("th", {}, label), el("td", { class: "mono" }, value));
    root.replaceChildren(
      el("h1", {}, "Participant ", el("span", { class: "mono" }, p.account)),
      el("p", {}, el("a", { href: `/tasks/${task}` }, `task ${task}`), p.active ? " · member" : " · removed from the task"),
      el("table", { id: "participant-record" }, el("tbody", {},
        row("updates committed", `${p.updates} (rounds ${p.update_rounds.join(", ") || "–"})`),
        row("aggregates committed", `${p.aggregates} (${p.fallback_aggregates} in the fallback)`),
        row("dissent", `${p.dissent} (rounds ${p.dissent_rounds.join(", ") || "–"})`),
        row("unavailability reports filed", p.reports_filed),
        row("reported unavailable", p.reported),
        row("exclusions", `${p.excluded} (rounds ${p.excluded_rounds.join(", ") || "–"})`),
        row("disputes filed", p.disputes_filed),
        row("samples (last update)", p.samples ?? "–"),
        row("IPFS peer", p.multiaddrs.join(" ") || "–"))),
    );
    chainLine();
  });
}

// -- API page ---------------------------------------------------------------------------------

async function apiPage(root) {
  try {
    const spec = await api("/openapi.json");
    root.replaceChildren(...Object.entries(spec.paths).flatMap(([path, methods]) =>
      Object.entries(methods).map(([method, op]) =>
        el("div", { class: "endpoint" },
          el("div", {}, el("span", { class: "method" }, method.toUpperCase()), el("code", {}, path)),
          el("p", {}, op.description || op.summary || ""),
          (op.parameters || []).length ? el("p", { class: "muted" }, "parameters: " + op.parameters.map((q) => `${q.name} (${q.in})`).join(", ")) : ""))));
  } catch (error) {
    showError(root, error);
  }
}

const pages = { tasks: tasksPage, task: taskPage, participant: participantPage, api: apiPage };
const root = document.querySelector("[data-page]");
if (root) pages[root.dataset.page](root);
