// gatepost web console: live updates over Server-Sent Events. Plain JS, no libraries.
// Every value from the server is put into the page with textContent, never innerHTML.
"use strict";

(function () {
  function labels() {
    var node = document.getElementById("labels");
    try { return node ? JSON.parse(node.textContent) : {}; } catch (e) { return {}; }
  }
  var L = labels();
  function t(key) { return L[key] || key; }
  // event types, reasons, flags: the code itself when the page has no label for it (a newer gate's)
  var C = (function () {
    var node = document.getElementById("code-labels");
    try { return node ? JSON.parse(node.textContent) : {}; } catch (e) { return {}; }
  })();
  function label(prefix, code) { return code ? C[prefix + "." + code] || String(code) : ""; }
  function coded(tag, prefix, code) { var node = el(tag, label(prefix, code)); if (code) node.title = code; return node; }
  // stored times are UTC; pages show the site's wall clock (body data-tz), like the server does
  var zone = document.body.dataset.tz || "UTC";
  var clock = null;
  try {
    clock = new Intl.DateTimeFormat("sv-SE", { timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  } catch (e) { clock = null; }
  function shortTime(text) {
    if (!text) return "–";
    var when = new Date(String(text).replace(/(\.\d{3})\d*Z$/, "$1Z"));
    if (!clock || isNaN(when.getTime())) return String(text).replace("T", " ").replace(/Z$/, "").slice(0, 19);
    return clock.format(when);
  }
  function fmt(text, values) {
    return String(text).replace(/\{(\w+)\}/g, function (m, k) { return k in values ? String(values[k]) : m; });
  }
  // how long ago, in the largest whole unit (as render.age_parts does on the server)
  function age(text) {
    var when = new Date(String(text).replace(/(\.\d{3})\d*Z$/, "$1Z"));
    if (isNaN(when.getTime())) return "";
    var s = Math.max(0, Math.floor((Date.now() - when.getTime()) / 1000));
    if (s >= 86400) return fmt(t("age.d"), { n: Math.floor(s / 86400) });
    if (s >= 3600) return fmt(t("age.h"), { n: Math.floor(s / 3600) });
    return fmt(t("age.min"), { n: Math.floor(s / 60) });
  }
  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function link(href, text) { var a = el("a", text); a.href = href; return a; }
  function fill(cell) { cell.textContent = ""; for (var i = 1; i < arguments.length; i++) cell.appendChild(arguments[i]); }

  var badge = document.getElementById("alarm-badge");
  if (badge && badge.dataset.count && badge.dataset.count !== "0") badge.textContent = badge.dataset.count;

  // -- overview: one row per gate ------------------------------------------------------
  function gateRow(g) {
    var table = document.getElementById("gates");
    if (!table) return;
    var id = "gate-" + g.site + "-" + g.gate;
    var row = document.getElementById(id);
    if (!row) {
      var empty = table.querySelector("tr.empty");
      if (empty) empty.remove();
      row = document.createElement("tr");
      row.id = id;
      var names = ["name", "state", "state_since", "door", "last_event", "backlog", "gaps", "clock_trusted", "revocation", "certificate", "cards", "unlock"];
      names.forEach(function (n) { var td = el("td"); td.dataset.field = n; row.appendChild(td); });
      fill(row.querySelector('[data-field="name"]'), link("/gates/" + encodeURIComponent(g.site) + "/" + encodeURIComponent(g.gate), g.site + "/" + g.gate));
      if (g.unlock) {  // the server says whether this user may unlock this gate
        var unlock = link("/gates/" + encodeURIComponent(g.site) + "/" + encodeURIComponent(g.gate) + "/unlock", t("gates.unlock"));
        unlock.className = "button small";
        fill(row.querySelector('[data-field="unlock"]'), unlock);
      }
      table.tBodies[0].appendChild(row);
    }
    function cell(name) { return row.querySelector('[data-field="' + name + '"]'); }
    fill(cell("state"), el("span", t("state." + g.state), "state state-" + g.state));
    if (g.status_contradicted) {
      var odd = el("span", " " + t("gates.contradicted"), "warn");
      odd.title = t("gates.contradicted_title");
      cell("state").appendChild(odd);
    }
    if (g.confirmed === false) {
      cell("state").appendChild(el("span", " " + fmt(t("gates.unconfirmed"), { since: shortTime(g.unconfirmed_since) }), "warn unconfirmed"));
    }
    cell("state_since").textContent = shortTime(g.state_since);
    if (g.door) fill(cell("door"), el("span", t("door." + g.door), "door door-" + g.door));
    if (g.last_event_type) {
      var href = g.last_event_id ? "/events/" + g.last_event_id
        : "/events?site=" + encodeURIComponent(g.site) + "&gate=" + encodeURIComponent(g.gate);
      var typed = link(href, label("event_type", g.last_event_type));
      typed.title = g.last_event_type;
      fill(cell("last_event"), typed, document.createTextNode(" " + shortTime(g.last_event_time)));
    }
    if (g.backlog === null || g.backlog === undefined) cell("backlog").textContent = "–";
    else fill(cell("backlog"), document.createTextNode(g.backlog + " "), el("span", "· " + shortTime(g.backlog_at), "muted"));
    if (g.gaps) {
      var holes = el("span", g.gap_ranges, "bad");
      holes.title = t("gates.gaps_title");
      fill(cell("gaps"), holes, el("span", " · " + fmt(t("gates.gap_missing"), { count: g.gap_missing }), "muted"));
    } else {
      cell("gaps").textContent = "0";
    }
    if (g.clock_trusted === true) cell("clock_trusted").textContent = t("gates.clock_ok");
    else if (g.clock_trusted === false) fill(cell("clock_trusted"), el("span", t("gates.clock_untrusted"), "warn"));
    if (g.revocation_version !== null && g.revocation_version !== undefined) {
      var list = "v" + g.revocation_version + (g.revocation_issued_at ? " · " + age(g.revocation_issued_at) : "");
      fill(cell("revocation"), el("span", list, g.revocation_stale ? "bad" : ""));
      if (g.revocation_stale) cell("revocation").appendChild(el("span", " " + t("gates.revocation_stale"), "bad"));
    }
    if (g.cert_not_after) {
      var cert = el("span", fmt(t("gates.certificate_until"), { date: g.cert_not_after.slice(0, 10) }), g.cert_expiring ? "bad" : "");
      cert.title = g.cert_not_after;
      fill(cell("certificate"), cert);
    }
    if (g.cards_version !== null && g.cards_version !== undefined) {
      var current = table.dataset.cardsCurrent === "" ? null : Number(table.dataset.cardsCurrent);
      var held = current !== null && g.cards_version < current
        ? el("span", fmt(t("gates.cards_behind"), { version: g.cards_version, current: current }), "warn")
        : document.createTextNode("v" + g.cards_version);
      fill(cell("cards"), held);
      if (g.cards_count !== null && g.cards_count !== undefined) {
        cell("cards").appendChild(document.createTextNode(" · " + fmt(t("gates.cards_count"), { count: g.cards_count })));
      }
    }
    row.classList.remove("fresh"); void row.offsetWidth; row.classList.add("fresh");
  }

  // -- events: newest on top ------------------------------------------------------------
  function eventRow(e) {
    var table = document.getElementById("events");
    if (!table || !table.dataset.live) return;
    var body = table.tBodies[0];
    if (body.querySelector('tr[data-row="' + e.row_id + '"]')) return;
    var empty = body.querySelector("tr.empty");
    if (empty) empty.remove();
    var row = document.createElement("tr");
    row.dataset.row = e.row_id;
    row.className = "fresh" + (e.granted === false ? " denied" : "");
    var first = el("td");
    first.appendChild(link("/events/" + e.id, shortTime(e.time)));
    if (!e.clock_trusted) { var q = el("span", " ?", "warn"); q.title = t("events.untrusted"); first.appendChild(q); }
    if (e.flags & 2) first.appendChild(el("span", " " + t("events.flag_backdated"), "bad flag"));
    if (e.flags & 4) first.appendChild(el("span", " " + t("events.flag_flood"), "bad flag"));
    row.appendChild(first);
    row.appendChild(el("td", e.site + "/" + e.gate));
    row.appendChild(el("td", e.seq));
    row.appendChild(coded("td", "event_type", e.type));
    row.appendChild(el("td", e.granted === true ? t("events.granted") : e.granted === false ? t("events.denied") : ""));
    row.appendChild(coded("td", "reason", e.reason));
    row.appendChild(el("td", e.holder || ""));
    row.appendChild(el("td", e.reader || ""));
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > 300) body.deleteRow(body.rows.length - 1);
  }

  // -- alarms ---------------------------------------------------------------------------
  function alarm(a) {
    if (badge) {
      var n = parseInt(badge.textContent || "0", 10) || 0;
      // one open alarm per kind and gate: a further occurrence updates it (opened false) and adds none
      n = a.acked_at ? Math.max(0, n - 1) : a.opened === false ? n : n + 1;
      badge.textContent = n ? String(n) : "";
    }
    var note = document.getElementById("alarm-new");
    if (note && !a.acked_at && !document.getElementById("alarm-" + a.row_id)) note.hidden = false;
  }

  // -- the stream -----------------------------------------------------------------------
  var live = document.querySelector("[data-live]");
  var state = document.getElementById("live-state");
  if (!window.EventSource || !document.getElementById("logout")) return;
  var params = new URLSearchParams();
  var kinds = ["alarm"];
  if (live && live.dataset.live !== "alarm") kinds.push(live.dataset.live);
  params.set("kinds", kinds.join(","));
  if (live && live.dataset.filter) {
    try {
      var f = JSON.parse(live.dataset.filter);
      Object.keys(f).forEach(function (k) { if (f[k]) params.set(k, f[k]); });
    } catch (e) { /* no filter */ }
  }
  var source = new EventSource("/stream?" + params.toString());
  function setState(on) { if (state) { state.className = "live-state " + (on ? "on" : "off"); state.textContent = on ? state.dataset.on : state.dataset.off; } }
  source.onopen = function () { setState(true); document.body.dataset.live = "open"; };
  source.onerror = function () { setState(false); document.body.dataset.live = "closed"; };
  source.addEventListener("gate", function (m) { gateRow(JSON.parse(m.data)); });
  source.addEventListener("event", function (m) { eventRow(JSON.parse(m.data)); });
  source.addEventListener("alarm", function (m) { alarm(JSON.parse(m.data)); });
})();
