// The lvsd console: polls /console/state and renders it; actions POST /console/action
// with the token in a header (kept for this tab only, never in a cookie).
"use strict";
(function () {
  const POLL_MS = 2000;
  const $ = (id) => document.getElementById(id);
  let actions = false;
  const services = new Map();

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function token() { return sessionStorage.getItem("lvsd-token") || ""; }

  async function action(body) {
    const res = await fetch("/console/action", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-LVSD-Token": token() },
      body: JSON.stringify(body),
      credentials: "omit",
    });
    let answer = { ok: false, message: res.statusText };
    try { answer = await res.json(); } catch (e) { /* keep the status text */ }
    $("message").textContent = (answer.ok ? "Done: " : "Refused: ") + answer.message;
    poll();
    return { status: res.status, ok: answer.ok, message: answer.message };
  }
  window.lvsdAction = action;

  function spark(label, history, index) {
    const box = el("span", { class: "spark" });
    const values = history.map((p) => p[index]);
    const last = values.length ? values[values.length - 1] : 0;
    const max = Math.max(1, ...values);
    const n = Math.max(1, values.length - 1);
    const line = values.map((v, i) =>
      (i * 100 / n).toFixed(1) + "," + (20 - v * 19 / max).toFixed(1)).join(" ");
    // The HTML parser puts <svg> in the SVG namespace: no namespace URL in the script.
    const t = document.createElement("template");
    t.innerHTML = '<svg viewBox="0 0 100 20" preserveAspectRatio="none" role="img">' +
      '<title></title><polyline points="' + line + '"></polyline></svg>';
    const svg = t.content.firstChild;
    svg.querySelector("title").textContent = label + ": now " + last + ", peak " +
      Math.max(0, ...values) + " over the last " + Math.ceil(values.length * 2 / 60) + " min";
    box.appendChild(el("span", { class: "meta" }, label + " " + last));
    box.appendChild(svg);
    return box;
  }

  function cell(label, text, cls) {
    const td = el("td", { "data-label": label }, text);
    if (cls) td.className = cls;
    return td;
  }

  function realRow(svc, d) {
    const tr = el("tr", { "data-service": svc.name, "data-real": d.addr });
    tr.appendChild(el("th", { scope: "row" }, d.addr));
    const weight = d.weight === null ? "— (out)" : d.weight;
    tr.appendChild(cell("Weight", weight, "num weight"));
    const health = d.health + (d.in_service ? "" : " (out of service)");
    tr.appendChild(cell("Health", health, "health " + d.health));
    tr.appendChild(cell("Last change", [d.probe && d.probe + " probe: " + d.reason, d.note]
      .filter(Boolean).join("; ") || "—", "reason"));
    tr.appendChild(cell("Active", d.active, "num"));
    tr.appendChild(cell("Inactive", d.inactive, "num"));
    tr.appendChild(cell("Conn/s", d.cps, "num"));
    if (actions) {
      const td = el("td", { "data-label": "Actions" });
      td.appendChild(controls(svc, d));
      tr.appendChild(td);
    }
    return tr;
  }

  function controls(svc, d) {
    const box = el("div", { class: "actions" });
    const who = d.addr + " of " + svc.name;
    const base = { service: svc.name, real: d.addr };
    if (d.weight !== null) {
      const drain = el("button", { type: "button", class: "drain", "data-key": "drain " + who,
        "aria-label": "Drain " + who }, "Drain");
      drain.addEventListener("click", () => action({ ...base, action: "drain" }));
      box.appendChild(drain);
      const id = "w-" + svc.name.replace(/\W/g, "_") + "-" + d.addr.replace(/\W/g, "_");
      box.appendChild(el("label", { for: id, class: "sr" }, "New weight of " + who));
      const input = el("input", { id: id, type: "number", min: "0", max: "65535",
        value: String(d.weight), "data-key": "weight " + who });
      box.appendChild(input);
      const set = el("button", { type: "button", "data-key": "set " + who,
        "aria-label": "Set the weight of " + who }, "Set weight");
      set.addEventListener("click", () =>
        action({ ...base, action: "weight", weight: Number(input.value) }));
      box.appendChild(set);
      const out = el("button", { type: "button", "data-key": "out " + who,
        "aria-label": "Take " + who + " out" }, "Take out");
      out.addEventListener("click", () => action({ ...base, action: "out" }));
      box.appendChild(out);
    } else {
      const back = el("button", { type: "button", "data-key": "back " + who,
        "aria-label": "Put " + who + " back" }, "Put back");
      back.addEventListener("click", () =>
        action({ ...base, action: "back", weight: d.configured_weight || 1 }));
      box.appendChild(back);
    }
    return box;
  }

  function serviceBlock(svc) {
    const section = el("section", { class: "service", "data-service": svc.name,
      "aria-label": svc.name });
    const flags = svc.flags.length ? " · flags " + svc.flags.join(",") : "";
    const persist = svc.persistent ? " · persistent " + svc.persistent + "s" : "";
    section.appendChild(el("h3", {}, svc.name));
    section.appendChild(el("p", { class: "meta" },
      "scheduler " + svc.scheduler + flags + persist + " · " + svc.active + " active, " +
      svc.inactive + " inactive, " + svc.conns + " connections"));
    const sparks = el("p", {});
    sparks.appendChild(spark("active", svc.history, 1));
    sparks.appendChild(spark("inactive", svc.history, 2));
    sparks.appendChild(spark("conn/s", svc.history, 3));
    sparks.appendChild(spark("bytes/s", svc.history, 4));
    section.appendChild(sparks);
    if (actions) {
      const zero = el("button", { type: "button", "data-key": "zero " + svc.name,
        "aria-label": "Zero the counters of " + svc.name },
        "Zero counters");
      zero.addEventListener("click", () => action({ action: "zero", service: svc.name }));
      section.appendChild(zero);
    }
    const wrap = el("div", { class: "scroll" });
    const table = el("table", { class: "reals" });
    table.appendChild(el("caption", { class: "sr" }, "Real servers of " + svc.name));
    const head = el("tr", {});
    const columns = ["Real server", "Weight", "Health", "Last change", "Active", "Inactive",
      "Conn/s"].concat(actions ? ["Actions"] : []);
    for (const h of columns) head.appendChild(el("th", { scope: "col" }, h));
    const thead = el("thead", {});
    thead.appendChild(head);
    table.appendChild(thead);
    const body = el("tbody", {});
    for (const d of svc.dests) body.appendChild(realRow(svc, d));
    table.appendChild(body);
    wrap.appendChild(table);
    section.appendChild(wrap);
    return section;
  }

  function definitions(dl, pairs) {
    dl.replaceChildren();
    for (const [k, v] of pairs) {
      dl.appendChild(el("dt", {}, k));
      dl.appendChild(el("dd", {}, v));
    }
  }

  function render(s) {
    actions = s.actions;
    $("auth").hidden = !actions;
    const list = $("service-list");
    // Rebuilding moves the keyboard focus nowhere: put it back on the same control,
    // with what the operator was typing.
    const active = document.activeElement;
    const focusKey = list.contains(active) && active.dataset ? active.dataset.key : undefined;
    const typed = focusKey && active.tagName === "INPUT" ? active.value : undefined;
    const keep = new Set();
    for (const svc of s.services) {
      keep.add(svc.name);
      const old = services.get(svc.name);
      const block = serviceBlock(svc);
      if (old) old.replaceWith(block); else list.appendChild(block);
      services.set(svc.name, block);
    }
    if (focusKey) {
      const again = [...list.querySelectorAll("[data-key]")].find((n) => n.dataset.key === focusKey);
      if (again) {
        if (typed !== undefined) again.value = typed;
        again.focus();
      }
    }
    for (const [name, block] of services) {
      if (!keep.has(name)) { block.remove(); services.delete(name); }
    }
    const fill = s.max_connections ? (100 * s.connections / s.max_connections) : 0;
    definitions($("director"), [
      ["Fast path", s.fastpath],
      ["Connection table", s.connections + " of " + s.max_connections + " (" + fill.toFixed(2) + "% full)"],
      ["Up for", s.uptime + " s"],
      ["Actions", actions ? "enabled (token required)" : "off (read-only)"],
    ]);
    const f = s.failover;
    definitions($("failover"), f === null ? [["Failover", "not configured"]] : [
      ["Role", f.role + " (" + f.node + ")"],
      ["Peer", (f.peer || "none") + ": " + f.peer_role + (f.peer_alive ? ", alive" : ", not heard")],
      ["Heartbeats", f.heartbeats_sent + " sent, " + f.heartbeats_accepted + " accepted, " +
        f.heartbeats_lost + " lost"],
      ["Round trip", f.rtt_ms === null ? "—" : f.rtt_ms.toFixed(1) + " ms"],
      ["Sync lag", f.sync_lag_ms === null ? "—" : f.sync_lag_ms + " ms"],
      ["VIPs", f.claimed ? "held here" : "not held here"],
      ["Shadow table", f.shadow_connections + " connections" + (f.table_synced ? ", synced" : "")],
    ]);
    const drops = $("drops").tBodies[0];
    drops.replaceChildren();
    for (const [reason, n] of Object.entries(s.drops)) {
      const tr = el("tr", {});
      tr.appendChild(el("th", { scope: "row" }, reason));
      tr.appendChild(cell("Packets", n, "num"));
      drops.appendChild(tr);
    }
    const log = $("log");
    log.replaceChildren();
    for (const entry of s.log) log.appendChild(el("li", {}, entry.at + " s: " + entry.what));
    if (!s.log.length) log.appendChild(el("li", {}, "none since lvsd started"));
    const reals = s.services.reduce((n, svc) => n + svc.dests.length, 0);
    const down = s.services.reduce((n, svc) =>
      n + svc.dests.filter((d) => d.health === "down").length, 0);
    const summary = s.services.length + " services, " + reals + " real servers, " + down + " down";
    // A live region: written only when it changes, so a screen reader speaks news only.
    if ($("summary").textContent !== summary) $("summary").textContent = summary;
  }

  let timer = 0;
  async function poll() {
    clearTimeout(timer);
    try {
      const res = await fetch("/console/state", { cache: "no-store", credentials: "omit" });
      render(await res.json());
      document.body.dataset.updated = String(Date.now());
    } catch (e) {
      $("summary").textContent = "The director does not answer: " + e;
    }
    timer = setTimeout(poll, document.hidden ? POLL_MS * 5 : POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("token").value = token();
    $("token-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem("lvsd-token", $("token").value);
      $("message").textContent = "Actions unlocked for this tab.";
    });
    $("lock").addEventListener("click", () => {
      sessionStorage.removeItem("lvsd-token");
      $("token").value = "";
      $("message").textContent = "Actions locked.";
    });
    $("reload").addEventListener("click", () => action({ action: "reload" }));
    $("zero-all").addEventListener("click", () => action({ action: "zero" }));
    poll();
  });
})();
