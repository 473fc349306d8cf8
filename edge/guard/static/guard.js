// The guard screen: live decisions over Server-Sent Events, the guard actions, zh/en.
// Reasons are always shown in both languages; the toggle switches only the interface.
"use strict";

const TEXTS = JSON.parse(document.getElementById("texts").textContent);
const LANGS = ["zh", "en"];
let lang = LANGS.includes(localStorage.getItem("guard-lang")) ? localStorage.getItem("guard-lang") : "zh";
let idleTimer = null;
let source = null;

const $ = (id) => document.getElementById(id);

function lookup(language, key) {
  return key.split(".").reduce((node, part) => (node && typeof node === "object" ? node[part] : undefined), TEXTS[language]);
}

function t(key, vars = {}) {
  const text = lookup(lang, key) ?? lookup("en", key) ?? key;
  return String(text).replace(/\{(\w+)\}/g, (_, name) => (name in vars ? String(vars[name]) : `{${name}}`));
}

function both(key) {
  return { zh: lookup("zh", key) ?? key, en: lookup("en", key) ?? key };
}

function applyLanguage() {
  document.documentElement.lang = lang;
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
  $("lang").textContent = t("ui.toggle_language");
  document.title = `${t("ui.title")} · ${document.querySelector(".gate strong").textContent}`;
}

$("lang").addEventListener("click", () => {
  lang = lang === "zh" ? "en" : "zh";
  localStorage.setItem("guard-lang", lang);
  applyLanguage();
});

// -- the clock and the link badge ----------------------------------------------------

function tick() {
  $("clock").textContent = new Date().toLocaleTimeString("zh-CN", { hour12: false });
}
setInterval(tick, 1000);
tick();

function setLink(up) {
  const badge = $("link");
  badge.classList.toggle("up", up);
  badge.classList.toggle("down", !up);
  badge.dataset.t = up ? "ui.live" : "ui.reconnecting";
  badge.textContent = t(badge.dataset.t);
}

// -- showing a decision ---------------------------------------------------------------

function idle() {
  clearTimeout(idleTimer);
  $("panel").className = "idle";
  $("panel").dataset.id = "";
  $("result").hidden = true;
  $("idle-view").hidden = false;
}

function addFact(list, key, value) {
  if (value === null || value === undefined || value === "") return;
  const dt = document.createElement("dt");
  const names = both(key);
  dt.textContent = `${names.zh} · ${names.en}`;
  const dd = document.createElement("dd");
  dd.textContent = value;
  list.append(dt, dd);
}

function show(message, ageS = 0) {
  clearTimeout(idleTimer);
  const alarm = message.kind === "alarm";
  const duty = message.kind === "duty";
  const state = duty ? "duty" : message.kind === "manual" ? "manual" : message.granted ? "granted" : "denied";
  const panel = $("panel");
  panel.className = state;
  panel.dataset.id = message.id;
  panel.dataset.reason = message.reason;
  $("idle-view").hidden = true;
  $("result").hidden = false;

  const verdict = both(alarm ? "ui.alarm" : duty ? `duty.${message.event}` : `ui.${state}`);
  $("verdict-zh").textContent = verdict.zh;
  $("verdict-en").textContent = verdict.en;
  const reasonKey = duty
    ? message.refusal
      ? `duty_refusal.${message.refusal}`
      : "ui.door_stays_shut"
    : alarm
      ? `door.${message.door}`
      : `reason.${message.reason}`;
  const reason = both(reasonKey);
  $("reason-zh").textContent = reason.zh;
  $("reason-en").textContent = reason.en;

  const flags = $("flags");
  flags.replaceChildren();
  for (const flag of message.flags || []) {
    const li = document.createElement("li");
    const text = both(`flag.${flag}`);
    li.textContent = `${text.zh} · ${text.en}`;
    flags.append(li);
  }
  $("check").hidden = !message.check_by_hand;

  const photo = message.photo;
  $("photo").hidden = !photo;
  const img = $("photo-img");
  img.hidden = !(photo && photo.url);
  $("no-photo").hidden = !photo || Boolean(photo.url);
  if (photo && photo.url) img.src = photo.url;
  else img.removeAttribute("src");

  const facts = $("facts");
  facts.replaceChildren();
  if (duty) {
    addFact(facts, "ui.holder", message.holder);
    addFact(facts, "ui.person", message.person);
    addFact(facts, "ui.reader", message.reader);
    if (message.rostered !== null && message.rostered !== undefined) {
      const yes = both(message.rostered ? "ui.yes" : "ui.no");
      addFact(facts, "ui.rostered", `${yes.zh} · ${yes.en}`);
    }
    if (message.on_duty_s !== null && message.on_duty_s !== undefined) {
      addFact(facts, "ui.on_duty_for", `${Math.floor(message.on_duty_s / 3600)} h ${Math.floor((message.on_duty_s % 3600) / 60)} min`);
    }
    refreshDuty();
  } else if (message.kind === "manual") {
    const why = both(`manual_reason.${message.manual_reason}`);
    addFact(facts, "ui.reason", message.note ? `${why.zh} · ${why.en} — ${message.note}` : `${why.zh} · ${why.en}`);
    addFact(facts, "ui.by_guard", message.guard);
  } else {
    addFact(facts, "ui.holder", message.holder);
    addFact(facts, "ui.unit", message.unit);
    if (message.role) {
      const role = both(`role.${message.role}`);
      addFact(facts, "ui.role", `${role.zh} · ${role.en}`);
    }
    if (message.plate) {
      addFact(facts, "ui.plate", message.plate);
      addFact(facts, "ui.resembles", message.resembles);
      if (message.vehicle) {
        const role = both(`vehicle.${message.vehicle}`);
        addFact(facts, "ui.vehicle_role", `${role.zh} · ${role.en}`);
      }
      addFact(facts, "ui.lane", message.lane);
      if (message.confidence !== null && message.confidence !== undefined) addFact(facts, "ui.confidence", message.confidence);
    } else {
      addFact(facts, "ui.reader", message.reader);
    }
  }
  showVehicle(message);

  const remaining = Math.max(0.5, (message.idle_after_s || Number(document.body.dataset.idleS)) - ageS);
  idleTimer = setTimeout(idle, remaining * 1000);
}

// -- a plate held for the guard: the crop and the answers ------------------------------

let heldPlate = null;

function showVehicle(message) {
  const plate = message.kind === "decision" && message.plate;
  $("crop").hidden = !plate;
  $("no-crop").hidden = !plate || Boolean(message.crop);
  $("crop-img").hidden = !message.crop;
  if (plate && message.crop) $("crop-img").src = message.crop;
  else $("crop-img").removeAttribute("src");
  heldPlate = plate && message.held ? message : null;
  $("vehicle-actions").hidden = !heldPlate;
  const itIs = $("it-is");
  itIs.hidden = !(heldPlate && heldPlate.resembles);
  if (heldPlate && heldPlate.resembles) {
    itIs.dataset.plate = heldPlate.resembles;
    itIs.textContent = t("ui.it_is", { plate: heldPlate.resembles });
  }
}

function openVehicleForm(action, plate) {
  if (!heldPlate) return;
  clearTimeout(idleTimer); // the guard is answering: keep the car on the screen
  const held = heldPlate;
  $("vehicle-plate").textContent = held.plate;
  for (const form of document.querySelectorAll(".vehicle-form")) form.hidden = form.id !== `vehicle-${action}`;
  const form = $(`vehicle-${action}`);
  form.reset();
  form.querySelector(".message").textContent = "";
  form.elements.namedItem("held").value = held.held;
  const plateField = form.elements.namedItem("plate");
  if (plateField) plateField.value = plate || (action === "register" ? held.plate : "");
  $("vehicle-dialog").showModal();
  (form.querySelector("input:not([type=hidden]):placeholder-shown, select") || form.querySelector("input")).focus();
}

for (const button of document.querySelectorAll("#vehicle-actions button")) {
  button.addEventListener("click", () => openVehicleForm(button.dataset.action, button.dataset.plate));
}

for (const form of document.querySelectorAll(".vehicle-form")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = await post(form, form.dataset.url);
    if (!body) return;
    const pin = form.elements.namedItem("pin");
    if (pin) pin.value = "";
    const message = form.querySelector(".message");
    message.className = "message ok";
    if (body.opened === true) message.textContent = t("ui.done_open");
    else if (body.opened === false) message.textContent = t("ui.done_not_open");
    else if (body.reason) {
      const reason = both(`reason.${body.reason}`);
      message.textContent = t("ui.done_decided", { reason: `${reason.zh} · ${reason.en}` });
    } else message.textContent = t("ui.done_vehicle");
    setTimeout(() => $("vehicle-dialog").close(), 1500);
  });
}

// -- the live stream: EventSource reconnects by itself; we restart it if it gave up ----

function connect() {
  source = new EventSource("/events");
  source.addEventListener("open", () => setLink(true));
  source.addEventListener("state", (event) => {
    const state = JSON.parse(event.data);
    if (state.last) show(state.last, state.age_s || 0);
    else idle();
  });
  source.addEventListener("show", (event) => show(JSON.parse(event.data)));
  source.addEventListener("error", () => {
    setLink(false);
    if (source.readyState === EventSource.CLOSED) {
      source.close();
      setTimeout(connect, 2000);
    }
  });
}

// -- guard actions --------------------------------------------------------------------

function errorText(body) {
  if (body.error === "field") {
    return t("error.field", { field: t(`field.${body.field}`), detail: t(`problem.${body.problem}`) });
  }
  if (body.error === "pin_locked") return t("error.pin_locked", { seconds: Math.ceil(body.seconds || 0) });
  return t(`error.${body.error}`);
}

async function post(form, url) {
  const message = form.querySelector(".message");
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  message.className = "message";
  message.textContent = t("ui.sending");
  const payload = Object.fromEntries(new FormData(form).entries());
  let response;
  let body;
  try {
    response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(payload),
    });
    body = await response.json();
  } catch (_) {
    message.textContent = t("error.network");
    return null;
  }
  if (!response.ok) {
    message.textContent = errorText(body);
    const field = body.field && form.elements.namedItem(body.field);
    if (field) {
      field.setAttribute("aria-invalid", "true");
      field.focus();
    }
    if (String(body.error).startsWith("pin_")) form.elements.namedItem("pin").value = "";
    return null;
  }
  message.textContent = "";
  return body;
}

function openDialog(dialog, form) {
  form.reset();
  form.hidden = false;
  form.querySelector(".message").textContent = "";
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  dialog.showModal();
  form.querySelector("select, input").focus();
}

for (const button of document.querySelectorAll("dialog .cancel")) {
  button.addEventListener("click", () => button.closest("dialog").close());
}

$("open-manual").addEventListener("click", () => openDialog($("manual-dialog"), $("manual-form")));
$("manual-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const body = await post(form, "/api/manual");
  if (!body) return;
  form.elements.namedItem("pin").value = "";
  const message = form.querySelector(".message");
  message.className = "message ok";
  message.textContent =
    body.unlocked_for_s === null ? t("ui.done_manual_no_door") : t("ui.done_manual", { seconds: body.unlocked_for_s });
  setTimeout(() => $("manual-dialog").close(), 1500);
});

$("open-visitor").addEventListener("click", () => {
  $("visitor-slip").hidden = true;
  openDialog($("visitor-dialog"), $("visitor-form"));
});
$("visitor-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const body = await post(form, "/api/visitors");
  if (!body) return;
  form.elements.namedItem("pin").value = "";
  form.hidden = true;
  $("slip-qr").innerHTML = body.qr_svg; // made by the gate (segno) from digits only
  $("slip-code").textContent = body.code_grouped;
  $("slip-code").dataset.code = body.code;
  $("slip-name").textContent = body.name;
  $("slip-unit").textContent = body.unit;
  $("slip-phone").textContent = body.phone;
  $("slip-expires").textContent = new Date(body.expires).toLocaleString("zh-CN", { hour12: false });
  $("visitor-slip").hidden = false;
});
$("print").addEventListener("click", () => window.print());

// -- on duty: the roster panel and the staff PIN check-in --------------------------------

function hhmm(iso) {
  // The page is rendered with UTC times; here they become the gate's local time.
  return iso ? new Date(iso).toLocaleTimeString("zh-CN", { hour12: false, hour: "2-digit", minute: "2-digit" }) : "";
}

function dutyItem(entry, mark) {
  const li = document.createElement("li");
  li.dataset.person = entry.person;
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = entry.name;
  li.append(name, " ");
  if (entry.team) {
    const team = document.createElement("span");
    team.className = "team";
    team.textContent = entry.team;
    li.append(team, " ");
  }
  const hours = document.createElement("span");
  hours.className = "hours";
  hours.textContent = entry.start ? `${hhmm(entry.start)}–${hhmm(entry.end)}` : hhmm(entry.since);
  li.append(hours);
  if (mark) {
    li.className = entry.checked_in ? "in" : "out";
    const badge = document.createElement("span");
    badge.className = "mark";
    badge.dataset.t = entry.checked_in ? "ui.duty_checked_in" : "ui.duty_not_checked_in";
    badge.textContent = t(badge.dataset.t);
    li.append(" ", badge);
  }
  return li;
}

async function refreshDuty() {
  let panel;
  try {
    const response = await fetch("/api/duty", { cache: "no-store" });
    if (!response.ok) return;
    panel = await response.json();
  } catch (_) {
    return;
  }
  $("duty").dataset.roster = panel.roster;
  $("duty-none").hidden = panel.roster === "current";
  $("duty-now").replaceChildren(...panel.now.map((s) => dutyItem(s, true)));
  $("duty-next").replaceChildren(...panel.next.map((s) => dutyItem(s, false)));
  $("duty-here").replaceChildren(...panel.checked_in.map((c) => dutyItem(c, false)));
  const select = $("duty-person");
  const chosen = select.value;
  const anyone = select.options[0];
  const options = panel.people.map((p) => {
    const option = document.createElement("option");
    option.value = p.person;
    option.textContent = p.name;
    return option;
  });
  select.replaceChildren(anyone, ...options);
  select.value = panel.people.some((p) => p.person === chosen) ? chosen : "";
}
setInterval(refreshDuty, 30000);
refreshDuty();

$("open-duty").addEventListener("click", () => openDialog($("duty-dialog"), $("duty-form")));
$("duty-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.currentTarget;
  const body = await post(form, "/api/duty/pin");
  form.elements.namedItem("pin").value = "";
  if (!body) return;
  const message = form.querySelector(".message");
  message.className = "message ok";
  message.textContent = t(body.event === "duty.check_out" ? "ui.duty_done_out" : "ui.duty_done_in", { name: body.name });
  refreshDuty();
  setTimeout(() => $("duty-dialog").close(), 1500);
});

applyLanguage();
setLink(false);
connect();
