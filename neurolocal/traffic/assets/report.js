/* neurolocal traffic report: draws the inlined data as SVG. Written for this page:
   no library, nothing fetched. Python did the counting and the graph layout.
   Every string from the log reaches the page as a text node or an attribute value
   (make/svg/showTip below): nothing here builds markup from strings, and
   tests/test_report_security.py fails if innerHTML or its relatives appear. */
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("report-data").textContent);
  const NS = "http://www.w3.org/2000/svg";
  const KIND_COLORS = { value: "#2f6fde", error: "#e0662b", partial: "#8b4fd1", param: "#1f9d74", control: "#7a8497" };
  const PALETTE = ["#2f6fde", "#e0662b", "#1f9d74", "#c2418f", "#8b4fd1", "#d4a514", "#17a2b8",
    "#7d5a3c", "#e24c4c", "#5b8c2a", "#3c4fa8", "#b5651d", "#2b8a9e", "#a83c6e", "#6b7f1f",
    "#9a5ccf"];
  const app = document.getElementById("app");
  const tip = make("div", { id: "tip" });
  document.body.appendChild(tip);

  // --- small helpers ---------------------------------------------------------------------
  function make(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null) continue;
      if (k === "class") e.className = v; else if (k === "style") e.style.cssText = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
    }
    for (const k of kids) if (k != null) e.append(k);
    return e;
  }
  function svg(tag, attrs, ...kids) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null) continue;
      if (k.startsWith("on")) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
    }
    for (const k of kids) if (k != null) e.append(k);
    return e;
  }
  // pieces of a tooltip: text nodes and a few fixed elements, never parsed markup
  function B(text) { return make("b", {}, String(text)); }
  function M(text) { return make("span", { class: "m" }, String(text)); }
  function dot(colour) { return make("span", { class: "kdot", style: "background:" + colour }); }
  function fmtInt(n) { return n == null ? "–" : Math.round(n).toLocaleString("en-US"); }
  function fmtBytes(n) {
    if (n == null) return "–";
    const u = ["B", "kB", "MB", "GB", "TB"]; let i = 0;
    while (Math.abs(n) >= 1000 && i < u.length - 1) { n /= 1000; i++; }
    return (i === 0 ? Math.round(n) : n.toFixed(n < 10 ? 2 : 1)) + " " + u[i];
  }
  function fmtNum(n) {
    if (n == null || !isFinite(n)) return "–";
    const a = Math.abs(n);
    if (a !== 0 && (a < 1e-3 || a >= 1e6)) return n.toExponential(2);
    return a >= 100 ? n.toFixed(0) : a >= 1 ? n.toFixed(2) : n.toPrecision(3);
  }
  function fmtMs(ms) {
    if (ms == null) return "–";
    if (ms < 1e-3) return (ms * 1e6).toFixed(0) + " ns";
    if (ms < 1) return (ms * 1e3).toPrecision(3) + " µs";
    if (ms < 1000) return ms.toPrecision(3) + " ms";
    return (ms / 1000).toPrecision(3) + " s";
  }
  function showTip(ev, ...lines) {  // each line: a list of strings (as text) and nodes
    const kids = [];
    lines.forEach((line, i) => {
      if (i) kids.push(make("br"));
      for (const part of [].concat(line)) kids.push(part instanceof Node ? part : String(part));
    });
    tip.replaceChildren(...kids); tip.style.display = "block";
    const w = tip.offsetWidth, h = tip.offsetHeight;
    let x = ev.clientX + 14, y = ev.clientY + 14;
    if (x + w > window.innerWidth - 8) x = ev.clientX - w - 14;
    if (y + h > window.innerHeight - 8) y = ev.clientY - h - 14;
    tip.style.left = x + "px"; tip.style.top = y + "px";
  }
  function hideTip() { tip.style.display = "none"; }
  function kindColor(k, i) { return KIND_COLORS[k] || PALETTE[(i + 5) % PALETTE.length]; }
  function niceTicks(lo, hi, count) {
    if (!(hi > lo)) { hi = lo + 1; }
    const span = hi - lo, raw = span / Math.max(1, count);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map(m => m * mag).find(s => span / s <= count) || 10 * mag;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
    return out;
  }
  function intTicks(lo, hi, count) {  // whole numbers only: rounds and batches are counted
    const step = Math.max(1, Math.ceil((hi - lo) / Math.max(1, count)));
    const nice = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000, 100000, 1e6]
      .find(s => s >= step) || step;
    const out = [];
    for (let v = Math.ceil(lo / nice) * nice; v <= hi; v += nice) out.push(v);
    return out;
  }
  function panel(title, hint, ...kids) {
    return make("section", { class: "panel" }, make("h2", {}, title),
      hint ? make("div", { class: "hint" }, ...[].concat(hint)) : null, ...kids);
  }
  function segmented(options, current, onchange) {
    const box = make("span", { class: "seg" });
    for (const [value, label] of options) {
      const b = make("button", { type: "button", class: value === current ? "on" : "" }, label);
      b.addEventListener("click", () => {
        for (const x of box.children) x.classList.remove("on");
        b.classList.add("on"); onchange(value);
      });
      box.append(b);
    }
    return box;
  }

  // --- header and cards ------------------------------------------------------------------
  const S = D.summary;
  const settings = D.settings || {};
  const chips = make("div", { class: "chips" });
  for (const key of ["engine", "schedule", "mode", "eta", "iterations", "staleness",
    "vertices_per_actor", "placement", "partition", "shards"]) {
    if (settings[key] != null) chips.append(make("span", { class: "chip" }, key + " " + settings[key]));
  }
  if (settings.cut_bytes != null) {   // the partition's cut: bytes per batch between shards
    chips.append(make("span", { class: "chip" }, "cut " + settings.cut_bytes.toLocaleString() +
      " B/batch (" + (100 * (settings.cut_fraction || 0)).toFixed(1) + "% of edge bytes)"));
  }
  chips.append(make("span", { class: "chip" }, D.writers.length + " writer" + (D.writers.length === 1 ? "" : "s")));
  app.append(make("header", { class: "top" },
    make("h1", {}, "neurolocal · " + D.title),
    make("div", { class: "sub" }, D.directory + " · report made " + D.generated), chips));
  const main = make("main");
  app.append(main);

  const notes = [];
  if (D.truncated.length) notes.push(["bad", "Truncated stream file(s), read up to the last whole record: " + D.truncated.join(", ")]);
  const abandoned = D.marks.filter(m => m.kind === "abandoned");
  const unfinished = D.marks.filter(m => m.kind === "unfinished");
  if (abandoned.length) notes.push(["", abandoned.length + " abandoned batch(es): an actor died, the batch was replayed under a new id (marked ✕ in red below)."]);
  if (unfinished.length) notes.push(["", unfinished.length + " unfinished batch(es): the run ended inside them (e.g. an actor timeout), marked in orange."]);
  if (D.runs.length > 1) notes.push(["", D.runs.length + " runs in this log (a resumed run starts a new run id; batches are numbered per run)."]);
  for (const [cls, text] of notes) main.append(make("div", { class: "note " + cls }, text));

  const actorsSet = new Set(D.graph.vertices.map(v => v.actor));
  const cards = [
    ["messages", fmtInt(S.messages), ""],
    ["bytes sent", fmtBytes(S.bytes), "payload, not log size"],
    ["batches", fmtInt(S.batches), D.runs.length + " run" + (D.runs.length === 1 ? "" : "s")],
    ["rounds", fmtInt(S.rounds), "round 0 = forward pass"],
    ["vertices", fmtInt(D.graph.vertices.length), fmtInt(D.graph.edges.length) + " edge·kinds"],
    ["actors / hosts", actorsSet.size + " / " + (S.hosts || []).length, ""],
    ["latency p50", fmtMs(S.latency_ms.p50), "p99 " + fmtMs(S.latency_ms.p99)],
    ["scheduler / batch", fmtBytes(S.scheduler_bytes_per_batch), "control bytes"],
  ];
  if (abandoned.length || unfinished.length) cards.push(["abandoned / unfinished", abandoned.length + " / " + unfinished.length, "batches", "warn"]);
  const cardBox = make("div", { class: "cards" });
  for (const [k, v, n, cls] of cards) cardBox.append(make("div", { class: "card " + (cls || "") },
    make("div", { class: "k" }, k), make("div", { class: "v" }, v), make("div", { class: "n" }, n)));
  main.append(cardBox);

  // --- the graph ---------------------------------------------------------------------------
  main.append(drawGraph());

  // --- timeline ----------------------------------------------------------------------------
  main.append(drawTimeline());

  // --- rounds and scope -------------------------------------------------------------------
  const g2 = make("div", { class: "grid2" });
  g2.append(drawRounds(), drawScope());
  main.append(g2, make("div", { class: "row-gap" }));

  // --- latency ---------------------------------------------------------------------------
  main.append(drawLatency());

  // --- energy and batches -----------------------------------------------------------------
  const g3 = make("div", { class: "grid2" });
  g3.append(drawEnergy(), drawBatches());
  main.append(g3, make("div", { class: "row-gap" }));

  // --- energy per layer and round (the depth audit from the log) -------------------------
  main.append(drawLayers(), make("div", { class: "row-gap" }));

  // --- tables ----------------------------------------------------------------------------
  main.append(drawKinds(), drawEdgesTable());
  main.append(make("footer", {}, "neurolocal traffic report · one self-contained file · data, script and style inlined"));
  document.body.setAttribute("data-rendered", "1");

  // =========================================================================================
  function drawGraph() {
    const V = D.graph.vertices, E = D.graph.edges;
    const box = make("div", { class: "graphbox" });
    const state = { weight: "messages", colour: "actor", kinds: new Set(Object.keys(KIND_COLORS)) };
    const legend = make("div", { class: "legend" });
    const controls = make("div", { class: "controls" },
      make("span", { class: "lbl" }, "edge width"),
      segmented([["messages", "messages"], ["bytes", "bytes"]], "messages", v => { state.weight = v; render(); }),
      make("span", { class: "lbl" }, "vertex colour"),
      segmented([["actor", "actor"], ["host", "host"]], "actor", v => { state.colour = v; render(); }));
    const kindsPresent = [...new Set(E.map(e => e.kind))];
    for (const k of kindsPresent) {
      const cb = make("input", { type: "checkbox", checked: "checked" });
      state.kinds.add(k);
      cb.addEventListener("change", () => { cb.checked ? state.kinds.add(k) : state.kinds.delete(k); render(); });
      controls.append(make("label", {}, cb, make("span", { class: "kdot", style: "background:" + kindColor(k, 0) }), k));
    }
    if (!V.length) {
      return panel("Graph", "", make("div", { class: "empty" }, "no vertex-to-vertex messages in this log"));
    }
    const maxX = Math.max(...V.map(v => v.x)), maxY = Math.max(...V.map(v => v.y));
    const colGap = V.length > 200 ? 120 : 170, rowGap = V.length > 200 ? 30 : 58;
    const arcs = E.some(e => e.kind === "partial" || e.kind === "param") ? rowGap + 30 : 0;
    const W = Math.max(600, (maxX + 1) * colGap + 120), H = Math.max(260, (maxY + 1) * rowGap + 60 + 2 * arcs);
    const px = v => 70 + v.x * colGap, py = v => 36 + arcs + v.y * rowGap;
    const pos = {}; for (const v of V) pos[v.id] = v;
    const height = Math.round(Math.min(640, Math.max(260, H * Math.min(1.25, 1340 / W))));  // small graphs are not blown up
    const root = svg("svg", { width: "100%", height: height, viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "xMidYMid meet" });
    const defs = svg("defs");
    for (const k of kindsPresent) {
      defs.append(svg("marker", { id: "arrow-" + kindsPresent.indexOf(k), viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto" },
        svg("path", { d: "M0,0 L10,5 L0,10 z", fill: kindColor(k, kindsPresent.indexOf(k)) })));
    }
    root.append(defs);
    const layer = svg("g");
    root.append(layer);
    box.append(root, make("div", { class: "zoomhint" }, "scroll to zoom · drag to pan · double-click to reset"));
    const resetBtn = make("span", { class: "seg reset" }, make("button", { type: "button" }, "reset view"));
    box.append(resetBtn);

    // zoom and pan on the viewBox
    let vb = [0, 0, W, H], drag = null;
    const setVB = () => root.setAttribute("viewBox", vb.join(" "));
    const reset = () => { vb = [0, 0, W, H]; setVB(); };
    resetBtn.addEventListener("click", reset);
    root.addEventListener("dblclick", reset);
    root.addEventListener("wheel", ev => {
      ev.preventDefault();
      const r = root.getBoundingClientRect();
      const s = Math.min(r.width / vb[2], r.height / vb[3]);
      const ox = (r.width - vb[2] * s) / 2, oy = (r.height - vb[3] * s) / 2;
      const mx = vb[0] + (ev.clientX - r.left - ox) / s, my = vb[1] + (ev.clientY - r.top - oy) / s;
      const f = Math.exp(Math.sign(ev.deltaY) * 0.15);
      const w = Math.min(W * 4, Math.max(40, vb[2] * f)), h = w * vb[3] / vb[2];
      vb = [mx - (mx - vb[0]) * w / vb[2], my - (my - vb[1]) * h / vb[3], w, h]; setVB();
    }, { passive: false });
    root.addEventListener("pointerdown", ev => { drag = [ev.clientX, ev.clientY, vb[0], vb[1]]; root.classList.add("drag"); root.setPointerCapture(ev.pointerId); });
    root.addEventListener("pointermove", ev => {
      if (!drag) return;
      const r = root.getBoundingClientRect(), s = Math.min(r.width / vb[2], r.height / vb[3]);
      vb[0] = drag[2] - (ev.clientX - drag[0]) / s; vb[1] = drag[3] - (ev.clientY - drag[1]) / s; setVB();
    });
    const end = () => { drag = null; root.classList.remove("drag"); };
    root.addEventListener("pointerup", end); root.addEventListener("pointercancel", end);

    function render() {
      layer.textContent = "";
      const groups = [...new Set(V.map(v => v[state.colour]))].sort();
      const colourOf = g => PALETTE[groups.indexOf(g) % PALETTE.length];
      const shown = E.filter(e => state.kinds.has(e.kind) && pos[e.src] && pos[e.dst]);
      const vmax = Math.max(1, ...shown.map(e => e[state.weight]));
      const edgeLayer = svg("g"), nodeLayer = svg("g");
      for (const e of shown) {
        const a = pos[e.src], b = pos[e.dst];
        const x1 = px(a), y1 = py(a), x2 = px(b), y2 = py(b);
        const dx = x2 - x1, dy = y2 - y1, len = Math.hypot(dx, dy) || 1;
        const bend = e.kind === "partial" || e.kind === "param" ? 0.35 : 0.12;
        const off = Math.min(len * bend, rowGap * 1.6 + 20);  // long arcs stay near the graph
        const cx = (x1 + x2) / 2 - dy / len * off, cy = (y1 + y2) / 2 + dx / len * off;
        const sx = x1 + (cx - x1) / Math.hypot(cx - x1, cy - y1) * 10, sy = y1 + (cy - y1) / Math.hypot(cx - x1, cy - y1) * 10;
        const ex = x2 + (cx - x2) / Math.hypot(cx - x2, cy - y2) * 12, ey = y2 + (cy - y2) / Math.hypot(cx - x2, cy - y2) * 12;
        const width = 1 + 8 * Math.sqrt(e[state.weight] / vmax);
        const colour = kindColor(e.kind, kindsPresent.indexOf(e.kind));
        const path = svg("path", {
          d: `M${sx},${sy} Q${cx},${cy} ${ex},${ey}`, fill: "none", stroke: colour, "stroke-width": width,
          "stroke-opacity": 0.55, "stroke-linecap": "round", "marker-end": `url(#arrow-${kindsPresent.indexOf(e.kind)})`,
          "stroke-dasharray": e.kind === "partial" || e.kind === "param" ? "5 4" : null,
        });
        path.addEventListener("mousemove", ev => {
          path.setAttribute("stroke-opacity", 0.95);
          showTip(ev, [B(e.src + " → " + e.dst), " ", M(e.kind)],
            `${fmtInt(e.messages)} messages · ${fmtBytes(e.bytes)}`,
            [M(`latency p50 ${fmtMs(e.p50)} · p99 ${fmtMs(e.p99)}`)]);
        });
        path.addEventListener("mouseleave", () => { path.setAttribute("stroke-opacity", 0.55); hideTip(); });
        edgeLayer.append(path);
      }
      const labels = V.length <= 400;
      for (const v of V) {
        const g = svg("g", { transform: `translate(${px(v)},${py(v)})` });
        const colour = colourOf(v[state.colour]);
        g.append(svg("circle", { r: 9, fill: colour, stroke: "#fff", "stroke-width": 2.5 }));
        if (labels) {
          const name = v.id.length > 22 ? v.id.slice(0, 21) + "…" : v.id;
          g.append(svg("text", { x: 0, y: -14, "text-anchor": "middle", "font-size": 11.5, fill: "#1d2433",
            "paint-order": "stroke", stroke: "#f6f7fb", "stroke-width": 3 }, name));
        }
        g.addEventListener("mousemove", ev => showTip(ev, [B(v.id)],
          [M("actor"), " " + v.actor + " · ", M("host"), " " + v.host],
          `sent ${fmtInt(v.sent)} (${fmtBytes(v.bytes_sent)}) · received ${fmtInt(v.received)}`));
        g.addEventListener("mouseleave", hideTip);
        nodeLayer.append(g);
      }
      layer.append(edgeLayer, nodeLayer);
      legend.textContent = "";
      legend.append(make("span", { class: "lbl" }, state.colour + "s: "));
      for (const gname of groups.slice(0, 40)) {
        legend.append(make("span", {}, make("span", { class: "sw", style: "background:" + colourOf(gname) }), gname || "(none)"));
      }
      if (groups.length > 40) legend.append(make("span", {}, "… and " + (groups.length - 40) + " more"));
    }
    render();
    return panel("Graph", "Vertices as the messages show them, parents left of children. Edge width ∝ √(" +
      "messages or bytes, all batches); value and error edges bend to opposite sides. Hover for numbers.",
      controls, box, legend);
  }

  // =========================================================================================
  function drawTimeline() {
    const T = D.timeline;
    if (!T || !T.actors || !T.actors.length) return panel("Activity per actor", "", make("div", { class: "empty" }, "no timed messages"));
    const rowH = T.actors.length > 40 ? 9 : 18, left = 120, right = 16, top = 18;
    const W = 1100, plotW = W - left - right, H = top + T.actors.length * rowH + 34;
    const root = svg("svg", { width: "100%", viewBox: `0 0 ${W} ${H}` });
    const binW = plotW / T.bins;
    let max = 1; for (const row of T.counts) for (const c of row) if (c > max) max = c;
    // batch spans as alternating bands
    const bands = svg("g");
    T.batch_spans.forEach(([a, b], i) => {
      const x = left + a / T.seconds * plotW, w = Math.max(0.6, (b - a) / T.seconds * plotW);
      bands.append(svg("rect", { x, y: top - 8, width: w, height: 5, fill: i % 2 ? "#9fb3ec" : "#3558d6", opacity: 0.7 }));
    });
    root.append(bands);
    T.actors.forEach((actor, r) => {
      const y = top + r * rowH;
      root.append(svg("text", { x: left - 8, y: y + rowH * 0.72, "text-anchor": "end", "font-size": Math.min(11.5, rowH), fill: "#1d2433" },
        actor.length > 18 ? actor.slice(0, 17) + "…" : actor));
      root.append(svg("rect", { x: left, y: y + 1, width: plotW, height: rowH - 2, fill: "#f1f3f8" }));
      T.counts[r].forEach((c, i) => {
        if (!c) return;
        const t = Math.sqrt(c / max);
        const rect = svg("rect", { x: left + i * binW, y: y + 1, width: Math.max(binW, 0.8), height: rowH - 2,
          fill: `rgb(${Math.round(235 - 200 * t)},${Math.round(240 - 150 * t)},${Math.round(255 - 60 * t)})` });
        rect.addEventListener("mousemove", ev => showTip(ev, [B(actor)], `${fmtInt(c)} messages sent or received`,
          [M(`t = ${(i * T.seconds / T.bins).toFixed(3)}–${((i + 1) * T.seconds / T.bins).toFixed(3)} s`)]));
        rect.addEventListener("mouseleave", hideTip);
        root.append(rect);
      });
    });
    const axisY = top + T.actors.length * rowH + 4;
    const ax = svg("g", { class: "axis" });
    for (const t of niceTicks(0, T.seconds, 10)) {
      const x = left + t / T.seconds * plotW;
      ax.append(svg("line", { x1: x, x2: x, y1: axisY, y2: axisY + 4 }));
      ax.append(svg("text", { x, y: axisY + 16, "text-anchor": "middle" }, fmtNum(t) + " s"));
    }
    root.append(ax);
    for (const m of D.marks) {
      if (m.t == null) continue;
      const x = left + (m.t - T.t0) / T.seconds * plotW, colour = m.kind === "abandoned" ? "#b91c1c" : "#c2410c";
      const line = svg("line", { x1: x, x2: x, y1: top - 10, y2: axisY, stroke: colour, "stroke-width": 1.5, "stroke-dasharray": "3 2" });
      const label = svg("text", { x: x + 3, y: top - 10, fill: colour, "font-size": 11 }, m.kind === "abandoned" ? "✕ abandoned" : "unfinished");
      for (const e of [line, label]) {
        e.addEventListener("mousemove", ev => showTip(ev, [B(m.kind + " batch")], `run ${m.run}, batch ${m.batch}`));
        e.addEventListener("mouseleave", hideTip);
      }
      root.append(line, label);
    }
    return panel("Activity per actor over time",
      "Messages each actor sent or received per time bin (darker = busier): the log records messages, not compute, so this is a proxy for busy time. The blue bar on top marks batches.", root);
  }

  // =========================================================================================
  function barsByRound() { return D.rounds; }
  function drawRounds() {
    const R = barsByRound(), rounds = R.rounds, kinds = Object.keys(R.kinds);
    if (!rounds.length) return panel("Messages per round", "", make("div", { class: "empty" }, "no messages"));
    const W = 560, H = 260, left = 56, bottom = 34, top = 10, right = 10;
    const plotW = W - left - right, plotH = H - top - bottom;
    const totals = rounds.map((_, i) => kinds.reduce((s, k) => s + R.kinds[k][i], 0));
    const max = Math.max(1, ...totals);
    const root = svg("svg", { width: "100%", viewBox: `0 0 ${W} ${H}` });
    const yt = niceTicks(0, max, 5), ymax = yt[yt.length - 1] || max;
    const ax = svg("g", { class: "axis" });
    for (const t of yt) {
      const y = top + plotH - t / ymax * plotH;
      root.append(svg("line", { class: "gridline", x1: left, x2: W - right, y1: y, y2: y }));
      ax.append(svg("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, fmtNum(t)));
    }
    const bw = plotW / rounds.length;
    rounds.forEach((r, i) => {
      let acc = 0;
      kinds.forEach((k, j) => {
        const v = R.kinds[k][i]; if (!v) return;
        const h = v / ymax * plotH, y = top + plotH - (acc + v) / ymax * plotH;
        const rect = svg("rect", { x: left + i * bw + bw * 0.12, y, width: Math.max(0.8, bw * 0.76), height: Math.max(0.5, h), fill: kindColor(k, j), rx: Math.min(3, bw * 0.1) });
        rect.addEventListener("mousemove", ev => showTip(ev, [B(`round ${r}`), r === 0 ? " (forward pass)" : ""],
          ...kinds.map((kk, jj) => [dot(kindColor(kk, jj)), `${kk} ${fmtInt(R.kinds[kk][i])}`])));
        rect.addEventListener("mouseleave", hideTip);
        root.append(rect); acc += v;
      });
    });
    for (const t of intTicks(rounds[0], rounds[rounds.length - 1], 12)) {
      const i = rounds.indexOf(t); if (i < 0) continue;
      ax.append(svg("text", { x: left + (i + 0.5) * bw, y: H - bottom + 15, "text-anchor": "middle" }, String(t)));
    }
    ax.append(svg("text", { x: left + plotW / 2, y: H - 4, "text-anchor": "middle" }, "round (0 = forward pass)"));
    root.append(ax);
    const legend = make("div", { class: "legend" });
    kinds.forEach((k, j) => legend.append(make("span", {}, make("span", { class: "sw", style: "background:" + kindColor(k, j) }), k)));
    return panel("Messages per round", "All batches, stacked by kind.", root, legend);
  }

  // =========================================================================================
  function drawScope() {
    const sc = S.scope, keys = ["local", "cross-actor", "cross-host"];
    const colours = { local: "#1f9d74", "cross-actor": "#d4a514", "cross-host": "#c2418f" };
    const wrap = make("div");
    for (const measure of ["messages", "bytes"]) {
      const total = keys.reduce((s, k) => s + sc[k][measure], 0) || 1;
      const W = 560, H = 46;
      const root = svg("svg", { width: "100%", viewBox: `0 0 ${W} ${H}` });
      root.append(svg("text", { x: 0, y: 13, "font-size": 12, fill: "#6b7385" }, measure === "bytes" ? "bytes sent" : "messages"));
      let x = 0;
      for (const k of keys) {
        const v = sc[k][measure], w = v / total * W;
        if (w <= 0) continue;
        const rect = svg("rect", { x, y: 18, width: w, height: 24, fill: colours[k] });
        rect.addEventListener("mousemove", ev => showTip(ev, [B(k)], `${measure === "bytes" ? fmtBytes(v) : fmtInt(v) + " messages"} · ${(100 * v / total).toFixed(1)}%`));
        rect.addEventListener("mouseleave", hideTip);
        root.append(rect);
        if (w > 60) root.append(svg("text", { x: x + 6, y: 35, fill: "#fff", "font-size": 12, "font-weight": 600, "pointer-events": "none" }, `${k} ${(100 * v / total).toFixed(1)}%`));
        x += w;
      }
      wrap.append(root);
    }
    const legend = make("div", { class: "legend" });
    for (const k of keys) legend.append(make("span", {}, make("span", { class: "sw", style: "background:" + colours[k] }),
      `${k}: ${fmtInt(sc[k].messages)} messages, ${fmtBytes(sc[k].bytes)}`));
    const kindRows = make("table", { class: "t" }, make("tr", {}, make("th", {}, "kind"), make("th", { class: "num" }, "messages"),
      make("th", { class: "num" }, "bytes sent"), make("th", { class: "num" }, "bytes / batch")));
    Object.entries(S.by_kind).forEach(([k, v], j) => kindRows.append(make("tr", {},
      make("td", {}, make("span", { class: "kdot", style: "background:" + kindColor(k, j) }), k),
      make("td", { class: "num" }, fmtInt(v.messages)), make("td", { class: "num" }, fmtBytes(v.bytes)),
      make("td", { class: "num" }, fmtBytes(v.bytes / Math.max(1, S.batches))))));
    return panel("Where messages go", "Local: both ends in one actor (or one process); cross-actor: another actor on the same host; cross-host: another machine.",
      wrap, legend, make("div", { class: "row-gap" }), kindRows);
  }

  // =========================================================================================
  function drawLatency() {
    const box = make("div", { class: "small-multiples" });
    const kinds = Object.keys(D.latency);
    if (!kinds.length) return panel("Latency per kind", "", make("div", { class: "empty" }, "no messages"));
    kinds.forEach((k, j) => {
      const L = D.latency[k];
      const W = 320, H = 150, left = 40, bottom = 30, top = 8, right = 8;
      const plotW = W - left - right, plotH = H - top - bottom;
      const root = svg("svg", { width: "100%", viewBox: `0 0 ${W} ${H}` });
      const n = L.counts.length, max = Math.max(1, ...L.counts);
      const bw = plotW / Math.max(1, n);
      L.counts.forEach((c, i) => {
        if (!c) return;
        const h = Math.max(1, Math.sqrt(c / max) * plotH);
        const rect = svg("rect", { x: left + i * bw, y: top + plotH - h, width: Math.max(1, bw - 1), height: h, fill: kindColor(k, j), opacity: 0.85 });
        rect.addEventListener("mousemove", ev => showTip(ev, [B(k)], `${fmtMs(L.edges[i])} – ${fmtMs(L.edges[i + 1])}`, `${fmtInt(c)} messages`));
        rect.addEventListener("mouseleave", hideTip);
        root.append(rect);
      });
      const ax = svg("g", { class: "axis" });
      ax.append(svg("line", { x1: left, x2: W - right, y1: top + plotH, y2: top + plotH }));
      const every = Math.max(1, Math.ceil(n / 5));
      for (let i = 0; i <= n; i += every) {
        ax.append(svg("text", { x: left + i * bw, y: H - bottom + 14, "text-anchor": "middle" }, fmtMs(L.edges[i])));
      }
      ax.append(svg("text", { x: left + plotW / 2, y: H - 3, "text-anchor": "middle" }, "latency (log scale), bar height ∝ √count"));
      root.append(ax);
      box.append(make("div", { class: "sm" }, make("h3", {}, make("span", { class: "kdot", style: "background:" + kindColor(k, j) }), k),
        make("div", { class: "n" }, `p50 ${fmtMs(L.p50)} · p99 ${fmtMs(L.p99)} · ${fmtInt(L.counts.reduce((a, b) => a + b, 0))} messages`), root));
    });
    return panel("Latency per kind", "Receive time minus send time of each message (clocks of different hosts may disagree; negative values count in the first bar).", box);
  }

  // =========================================================================================
  function lineChart(opts) {
    const W = 560, H = 240, left = 58, bottom = 34, top = 12, right = 12;
    const plotW = W - left - right, plotH = H - top - bottom;
    const root = svg("svg", { width: "100%", viewBox: `0 0 ${W} ${H}` });
    const all = opts.series.flatMap(s => s.values.filter(v => v != null && isFinite(v)));
    if (!all.length) return make("div", { class: "empty" }, "no data");
    const n = Math.max(...opts.series.map(s => s.values.length));
    let lo = Math.min(...all), hi = Math.max(...all);
    const logY = opts.logY && lo > 0 && hi / lo > 50;
    const f = v => logY ? Math.log10(v) : v;
    let flo = f(lo), fhi = f(hi);
    if (!logY) { flo = Math.min(0, flo); }
    if (fhi === flo) fhi = flo + 1;
    const yt = logY ? niceTicks(Math.floor(flo), Math.ceil(fhi), 5).filter(Number.isInteger) : niceTicks(flo, fhi, 5);
    if (!logY) { flo = Math.min(flo, yt[0]); fhi = Math.max(fhi, yt[yt.length - 1]); }
    const X = i => left + (n <= 1 ? plotW / 2 : i / (n - 1) * plotW);
    const Y = v => top + plotH - (f(v) - flo) / (fhi - flo) * plotH;
    const ax = svg("g", { class: "axis" });
    for (const t of yt) {
      const y = top + plotH - (t - flo) / (fhi - flo) * plotH;
      if (y < top - 1 || y > top + plotH + 1) continue;
      root.append(svg("line", { class: "gridline", x1: left, x2: W - right, y1: y, y2: y }));
      ax.append(svg("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, logY ? "1e" + t : fmtNum(t)));
    }
    for (const t of intTicks(0, n - 1, 10)) {
      ax.append(svg("text", { x: X(t), y: H - bottom + 15, "text-anchor": "middle" }, String(opts.xLabelOf ? opts.xLabelOf(t) : t)));
    }
    ax.append(svg("text", { x: left + plotW / 2, y: H - 3, "text-anchor": "middle" }, opts.xLabel));
    root.append(ax);
    for (const m of opts.marks || []) {
      const colour = m.colour || "#b91c1c";
      root.append(svg("line", { x1: X(m.at), x2: X(m.at), y1: top, y2: top + plotH, stroke: colour, "stroke-dasharray": "3 2", "stroke-width": 1.3 }));
      if (m.label) root.append(svg("text", { x: X(m.at) + 3, y: top + 10, fill: colour, "font-size": 10.5 }, m.label));
    }
    for (const s of opts.series) {
      let d = "", pen = false;
      s.values.forEach((v, i) => {
        if (v == null || !isFinite(v) || (logY && v <= 0)) { pen = false; return; }
        d += (pen ? "L" : "M") + X(i).toFixed(1) + "," + Y(v).toFixed(1); pen = true;
      });
      root.append(svg("path", { d, fill: "none", stroke: s.colour, "stroke-width": s.width || 2, "stroke-dasharray": s.dash || null,
        "stroke-linejoin": "round" }));
      if (n <= 60) s.values.forEach((v, i) => { if (v != null && isFinite(v) && !(logY && v <= 0)) root.append(svg("circle", { cx: X(i), cy: Y(v), r: 2.4, fill: s.colour })); });
    }
    const guide = svg("line", { y1: top, y2: top + plotH, stroke: "#9aa3b8", "stroke-width": 1, visibility: "hidden" });
    root.append(guide);
    const hit = svg("rect", { x: left, y: top, width: plotW, height: plotH, fill: "transparent" });
    hit.addEventListener("mousemove", ev => {
      const r = root.getBoundingClientRect(), sx = W / r.width;
      const i = Math.max(0, Math.min(n - 1, Math.round(((ev.clientX - r.left) * sx - left) / plotW * (n - 1))));
      guide.setAttribute("x1", X(i)); guide.setAttribute("x2", X(i)); guide.setAttribute("visibility", "visible");
      showTip(ev, [B(`${opts.xLabel} ${opts.xLabelOf ? opts.xLabelOf(i) : i}`)], ...opts.series.map(s =>
        [dot(s.colour), `${s.name}: ${opts.format ? opts.format(s.values[i]) : fmtNum(s.values[i])}`]));
    });
    hit.addEventListener("mouseleave", () => { guide.setAttribute("visibility", "hidden"); hideTip(); });
    root.append(hit);
    const legend = make("div", { class: "legend" });
    for (const s of opts.series) legend.append(make("span", {}, make("span", { class: "sw", style: "background:" + s.colour }), s.name));
    return make("div", {}, root, legend);
  }

  function drawEnergy() {
    const E = D.energy;
    if (!E || !E.mean) return panel("Energy per round", "", make("div", { class: "empty" }, "no energy records in this log"));
    return panel("Energy per round", `Summed squared prediction error after each round, over ${fmtInt(E.batches)} batches. With fixed predictions the hidden errors start at zero and grow to their backprop values, so this curve may rise before it settles.`,
      lineChart({ xLabel: "round", logY: true, series: [
        { name: "mean over batches", values: E.mean, colour: "#3558d6", width: 2.4 },
        { name: "first batch", values: E.first, colour: "#9aa3b8", dash: "4 3", width: 1.5 },
        { name: "last batch", values: E.last, colour: "#1f9d74", width: 1.8 }] }));
  }

  function drawBatches() {
    const B = D.batches;
    if (!B.count) return panel("Per batch", "", make("div", { class: "empty" }, "no batches"));
    const marks = D.marks.filter(m => m.at != null).map(m => ({ at: m.at, colour: m.kind === "abandoned" ? "#b91c1c" : "#c2410c", label: m.kind === "abandoned" ? "✕" : "…" }));
    for (const r of D.run_starts.slice(1)) marks.push({ at: r.at, colour: "#3558d6", label: "resumed" });
    const label = i => B.step > 1 ? `${i * B.step}–${(i + 1) * B.step - 1}` : String(i);
    return panel("Per batch", "Messages and bytes each batch carried, in the order batches ran" + (B.step > 1 ? ` (means over ${B.step} batches a point)` : "") +
      ". Scheduler bytes: the control traffic of a batch. Red ✕: abandoned, orange: unfinished, blue: a resumed run begins.",
      lineChart({ xLabel: "batch", xLabelOf: label, marks, format: fmtBytes, series: [
        { name: "bytes sent", values: B.bytes, colour: "#3558d6" },
        { name: "scheduler (control) bytes", values: B.control, colour: "#7a8497", dash: "5 3" }] }),
      lineChart({ xLabel: "batch", xLabelOf: label, marks, format: fmtInt, series: [
        { name: "messages", values: B.messages, colour: "#e0662b" }] }));
  }

  // =========================================================================================
  // colour of t in [0, 1]: a perceptually ordered ramp (dark blue -> green -> yellow)
  function ramp(t) {
    const RAMP = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
    const x = Math.max(0, Math.min(1, t)) * (RAMP.length - 1), i = Math.min(RAMP.length - 2, Math.floor(x)), f = x - i;
    const c = RAMP[i].map((a, k) => Math.round(a + (RAMP[i + 1][k] - a) * f));
    return "rgb(" + c.join(",") + ")";
  }

  function drawLayers() {
    const L = D.layers;
    const title = "Error per layer and round";
    if (!L) return panel(title, "", make("div", { class: "empty" }, "this log holds no energy per vertex (written by an older version, or no batch finished)"));
    const state = { measure: "energy", series: "mean" };
    const holder = make("div", { class: "heat" });
    const names = L.layers.slice().reverse();  // the output on top, the input side below
    const R = L.round_numbers;
    const silent = L.silent.length
      ? make("div", { class: "note bad" }, "error never arrived at (in no batch): " + L.silent.join(", "))
      : make("div", { class: "note" }, "every layer's error arrived: clean");
    const controls = make("div", { class: "controls" },
      make("span", { class: "lbl" }, "show"),
      segmented([["energy", "energy ½‖ε‖²"], ["norm", "error norm ‖ε‖"]], "energy", v => { state.measure = v; draw(); }),
      make("span", { class: "lbl" }, "batches"),
      segmented([["mean", "mean"], ["first", "first batch"], ["last", "last batch"]], "mean", v => { state.series = v; draw(); }));
    function value(name, i) {
      const e = L.energy[state.series][name][i];
      if (e == null) return null;
      return state.measure === "norm" ? Math.sqrt(2 * Math.max(e, 0)) : e;
    }
    function draw() {
      const rowH = names.length > 60 ? Math.max(3, 600 / names.length) : 16;
      const left = 90, top = 8, bottom = 34, right = 70;
      const plotW = Math.max(560, Math.min(1100, R.length * 14)), cellW = plotW / R.length;
      const W = left + plotW + right, H = top + names.length * rowH + bottom;
      const root = svg("svg", { width: "100%", viewBox: `0 0 ${W} ${H}` });
      root.style.maxWidth = Math.round(W * 1.2) + "px";   // few layers: not blown up
      const values = names.flatMap(n => R.map((_, i) => value(n, i))).filter(v => v != null && v > 0 && isFinite(v));
      const largest = values.length ? Math.max(...values) : 1;
      const floor = largest * (state.measure === "norm" ? Math.sqrt(L.arrival_threshold) : L.arrival_threshold);
      const lo = Math.log10(Math.max(floor, values.length ? Math.min(...values) : floor)), hi = Math.log10(largest);
      const scale = v => hi > lo ? (Math.log10(v) - lo) / (hi - lo) : 1;
      const labelEvery = Math.max(1, Math.ceil(12 / rowH));
      names.forEach((name, j) => {
        const y = top + j * rowH;
        if (j % labelEvery === 0) root.append(svg("text", { x: left - 6, y: y + rowH / 2 + 4, "text-anchor": "end", "font-size": 11, fill: "#3b4252" }, name));
        R.forEach((r, i) => {
          const v = value(name, i), none = v == null || !(v > floor);
          const cell = svg("rect", { class: "cell", x: left + i * cellW, y, width: Math.max(0.5, cellW - (cellW > 4 ? 1 : 0)), height: Math.max(0.5, rowH - (rowH > 4 ? 1 : 0)),
            fill: none ? "#e6e9ef" : ramp(scale(v)) });
          cell.addEventListener("mousemove", ev => showTip(ev, [B(name), ` · round ${r}`, r === 0 ? " (forward pass)" : ""],
            `${state.measure === "norm" ? "error norm" : "energy"} ${fmtNum(v)}` + (none ? " (no error yet)" : ""),
            `error arrived: ${L.arrived[name] == null ? "never" : "round " + L.arrived[name]}`));
          cell.addEventListener("mouseleave", hideTip);
          root.append(cell);
        });
      });
      const ax = svg("g", { class: "axis" });
      for (const t of intTicks(R[0], R[R.length - 1], 12)) {
        const i = R.indexOf(t); if (i < 0) continue;
        ax.append(svg("text", { x: left + (i + 0.5) * cellW, y: H - bottom + 15, "text-anchor": "middle" }, String(t)));
      }
      ax.append(svg("text", { x: left + plotW / 2, y: H - 4, "text-anchor": "middle" }, "round (0 = forward pass)"));
      root.append(ax);
      const steps = 24, barH = Math.min(names.length * rowH, 200), bx = left + plotW + 14;
      for (let k = 0; k < steps; k++) {
        root.append(svg("rect", { x: bx, y: top + barH - (k + 1) * barH / steps, width: 12, height: barH / steps + 0.5, fill: ramp(k / (steps - 1)) }));
      }
      root.append(svg("text", { x: bx + 16, y: top + 10, "font-size": 10, fill: "#3b4252" }, fmtNum(largest)));
      root.append(svg("text", { x: bx + 16, y: top + barH, "font-size": 10, fill: "#3b4252" }, fmtNum(Math.pow(10, lo))));
      holder.replaceChildren(root);
    }
    draw();
    return panel(title, `Each layer's share of the energy after each round (log colour scale; grey: no error, below ${L.arrival_threshold} of the largest), ` +
      `over the ${fmtInt(L.batches)} batches this log holds` + (R.length && R[R.length - 1] + 1 > R.length ? ` (every ${R[1] - R[0]}th round shown)` : "") +
      ". Where the colour never reaches a layer, no error reached it and its weights did not learn (neurolocal traffic depth DIR prints the same table).",
      controls, holder, silent);
  }

  // =========================================================================================
  function drawKinds() {
    const t = make("table", { class: "t" }, make("tr", {}, make("th", {}, "kind"), make("th", {}, "what it carries"),
      make("th", { class: "num" }, "messages"), make("th", { class: "num" }, "bytes sent")));
    Object.entries(D.kinds).forEach(([k, meaning], j) => t.append(make("tr", {},
      make("td", {}, make("span", { class: "kdot", style: "background:" + kindColor(k, j) }), k), make("td", {}, meaning),
      make("td", { class: "num" }, fmtInt(S.by_kind[k].messages)), make("td", { class: "num" }, fmtBytes(S.by_kind[k].bytes)))));
    return panel("Message kinds", "", t);
  }

  function drawEdgesTable() {
    const rows = D.graph.edges.concat(D.control).slice().sort((a, b) => b.bytes - a.bytes || b.messages - a.messages).slice(0, 20);
    const t = make("table", { class: "t" }, make("tr", {}, make("th", {}, "edge"), make("th", {}, "kind"),
      make("th", { class: "num" }, "messages"), make("th", { class: "num" }, "bytes sent"),
      make("th", { class: "num" }, "p50"), make("th", { class: "num" }, "p99")));
    rows.forEach(e => t.append(make("tr", {}, make("td", {}, e.src + " → " + e.dst),
      make("td", {}, make("span", { class: "kdot", style: "background:" + kindColor(e.kind, 0) }), e.kind),
      make("td", { class: "num" }, fmtInt(e.messages)), make("td", { class: "num" }, fmtBytes(e.bytes)),
      make("td", { class: "num" }, fmtMs(e.p50)), make("td", { class: "num" }, fmtMs(e.p99)))));
    return panel("Busiest edges", ["The 20 edges that carried the most bytes (all of them: ", make("code", {}, "neurolocal traffic edges DIR"), ")."], t);
  }
})();
