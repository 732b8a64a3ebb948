"use strict";
// The CityOps web cockpit: KPI tiles, a map of the city's GeoJSON layers drawn as SVG
// (no tile server), the live alert list, and the incident panel with lifecycle actions.

const I18N = {
  zh: {
    title: "城市生命线运行驾驶舱", city: "城市", offline: "离线", online: "实时", logout: "退出",
    login: "使用 API 密钥登录", signin: "登录", heat: "网格热力", pipes: "管网", assets: "设施",
    devices: "设备", incidents: "事件", alerts: "实时告警", note: "备注", department: "部门",
    audit: "处置记录", devicesOnline: "设备在线", devicesOffline: "设备离线", open: "未结事件",
    mtta: "平均响应", mttr: "平均处置", red: "红色(I级)", orange: "橙色(II级)", yellow: "黄色(III级)",
    blue: "蓝色(IV级)", type: "类型", severity: "等级", status: "状态", started: "开始",
    assetsF: "设施", cells: "网格", assigned: "责任部门", badKey: "密钥无效或已吊销",
    acknowledge: "确认", assign: "派单至部门", dispatch: "调度", on_site: "到场",
    resolve: "处置完成", close: "归档", false_alarm: "误报",
    new: "新告警", acknowledged: "已确认", dispatched: "已调度", resolved: "已处置",
    closed: "已归档", min: "分钟", none: "无",
    gas_leak: "燃气泄漏", gas_pressure_abnormal: "燃气压力异常", pipe_burst: "供水爆管",
    water_leak: "供水漏损", low_water_pressure: "供水低压", waterlogging: "城市内涝",
    underpass_flooding: "下穿通道积水", manhole_cover: "井盖异常", bridge_overload: "桥梁超限",
    tunnel_hazard: "管廊险情", heating_leak: "供热泄漏", fire: "烟火", crowd: "人员聚集",
    city_management: "城市管理", sensor_fault: "传感器故障", device_offline: "设备离线",
  },
  en: {
    title: "City Lifeline Operations Cockpit", city: "City", offline: "offline", online: "live",
    logout: "Sign out", login: "Sign in with an API key", signin: "Sign in", heat: "Grid heat",
    pipes: "Pipes", assets: "Assets", devices: "Devices", incidents: "Incidents",
    alerts: "Live alerts", note: "Note", department: "Department", audit: "Audit trail",
    devicesOnline: "Devices online", devicesOffline: "Devices offline", open: "Open incidents",
    mtta: "Mean time to acknowledge", mttr: "Mean time to resolve", red: "Red (I)",
    orange: "Orange (II)", yellow: "Yellow (III)", blue: "Blue (IV)", type: "Type",
    severity: "Severity", status: "Status", started: "Started", assetsF: "Assets", cells: "Grid cells",
    assigned: "Department", badKey: "The key is not valid or has been revoked",
    acknowledge: "Acknowledge", assign: "Assign", dispatch: "Dispatch", on_site: "On site",
    resolve: "Resolve", close: "Close", false_alarm: "False alarm",
    new: "new", acknowledged: "acknowledged", dispatched: "dispatched", resolved: "resolved",
    closed: "closed", min: "min", none: "none",
    gas_leak: "Gas leak", gas_pressure_abnormal: "Gas pressure abnormal", pipe_burst: "Pipe burst",
    water_leak: "Water leak", low_water_pressure: "Low water pressure", waterlogging: "Waterlogging",
    underpass_flooding: "Underpass flooding", manhole_cover: "Manhole cover",
    bridge_overload: "Bridge overload", tunnel_hazard: "Tunnel hazard", heating_leak: "Heating leak",
    fire: "Smoke/fire", crowd: "Crowd", city_management: "City management",
    sensor_fault: "Sensor fault", device_offline: "Device offline",
  },
};
const SEV_COLOR = { red: "#d7263d", orange: "#f46036", yellow: "#e6c229", blue: "#1b98e0" };
const FINAL = new Set(["closed", "false_alarm"]);

const state = {
  lang: localStorage.getItem("cityops.lang") || "zh",
  key: sessionStorage.getItem("cityops.key") || "",
  city: null, alerts: new Map(), selected: null, lastId: null, ws: null, layers: {},
  view: null, refreshTimer: null,
};
const $ = (id) => document.getElementById(id);
const t = (k) => (I18N[state.lang][k] ?? k);

function applyLang() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  $("lang").textContent = state.lang === "zh" ? "English" : "中文";
  $("live").textContent = state.ws && state.ws.readyState === 1 ? t("online") : t("offline");
  renderAlerts();
  if (state.selected) renderPanel(state.selected);
}

async function api(path, options = {}) {
  const resp = await fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${state.key}`, "Content-Type": "application/json",
               ...(options.headers || {}) },
  });
  if (resp.status === 401) { signOut(t("badKey")); throw new Error("unauthorized"); }
  const body = resp.headers.get("content-type")?.includes("json") ? await resp.json() : await resp.text();
  if (!resp.ok) throw new Error(body.detail || `HTTP ${resp.status}`);
  return body;
}

function signOut(message = "") {
  sessionStorage.removeItem("cityops.key");
  state.key = "";
  if (state.ws) { state.ws.onclose = null; state.ws.close(); state.ws = null; }
  $("cockpit").hidden = true; $("login").hidden = false; $("logout").hidden = true;
  $("login-error").textContent = message;
}

async function signIn(key) {
  state.key = key;
  try {
    await api("/v1/me");
  } catch (err) {
    if (err.message !== "unauthorized") $("login-error").textContent = err.message;
    return;
  }
  sessionStorage.setItem("cityops.key", key);
  $("login").hidden = true; $("cockpit").hidden = false; $("logout").hidden = false;
  const { cities } = await api("/v1/cities");
  const select = $("city");
  select.innerHTML = "";
  for (const c of cities) select.append(new Option(c, c));
  state.city = cities[0] || null;
  if (state.city) await loadCity();
  connectLive();
}

async function loadCity() {
  state.alerts.clear(); state.selected = null; $("panel").hidden = true; state.view = null;
  await Promise.all([loadKpis(), loadAlerts(), loadLayers()]);
}

function fmtDuration(s) {
  if (s === null || s === undefined) return "–";
  return s < 120 ? `${Math.round(s)} s` : `${(s / 60).toFixed(1)} ${t("min")}`;
}

async function loadKpis() {
  const o = await api(`/v1/cities/${state.city}/overview`);
  const tiles = [
    ["devicesOnline", o.devices.online, ""], ["devicesOffline", o.devices.offline, ""],
    ["open", o.open_incidents.total, ""],
    ...["red", "orange", "yellow", "blue"].map((s) => [s, o.open_incidents.by_severity[s], s]),
    ["mtta", fmtDuration(o.mean_time_to_acknowledge_s), ""],
    ["mttr", fmtDuration(o.mean_time_to_resolve_s), ""],
  ];
  $("kpis").innerHTML = "";
  for (const [label, value, cls] of tiles) {
    const div = document.createElement("div");
    div.className = `kpi ${cls}`;
    div.dataset.kpi = label;
    div.innerHTML = `<b></b><span></span>`;
    div.querySelector("b").textContent = value;
    div.querySelector("span").textContent = t(label);
    $("kpis").append(div);
  }
}

async function loadAlerts() {
  const qs = new URLSearchParams({ city: state.city, limit: "200" });
  for (const s of ["new", "acknowledged", "dispatched", "on_site", "resolved"]) qs.append("status", s);
  const page = await api(`/v1/alerts?${qs}`);
  for (const a of page.items) state.alerts.set(a.incident_id, a);
  renderAlerts();
}

function alertTime(a) { return Date.parse(a.alert_updated_at > a.updated_at ? a.alert_updated_at : a.updated_at); }

function renderAlerts() {
  const list = $("alerts");
  list.innerHTML = "";
  const items = [...state.alerts.values()]
    .filter((a) => !FINAL.has(a.alert_status))
    .sort((x, y) => alertTime(y) - alertTime(x));
  for (const a of items) {
    const li = document.createElement("li");
    li.className = `sev-${a.severity}` + (state.selected === a.incident_id ? " selected" : "");
    li.dataset.id = a.incident_id;
    li.dataset.status = a.alert_status;
    const title = document.createElement("strong");
    title.textContent = `${t(a.type)} · ${t(a.severity)}`;
    const badge = document.createElement("span");
    badge.className = "badge status";
    badge.textContent = t(a.alert_status);
    const small = document.createElement("small");
    small.textContent = `${a.title || a.incident_id} · ${new Date(alertTime(a)).toLocaleTimeString()}`;
    li.append(title, badge, small);
    li.onclick = () => select(a.incident_id);
    list.append(li);
  }
}

async function select(id) {
  state.selected = id;
  renderAlerts();
  const detail = await api(`/v1/alerts/${encodeURIComponent(id)}`);
  state.alerts.set(id, { ...state.alerts.get(id), ...detail });
  renderPanel(id, detail);
}

function renderPanel(id, detail) {
  const a = detail || state.alerts.get(id);
  if (!a) return;
  $("panel").hidden = false;
  $("panel").dataset.id = id;
  $("panel-title").textContent = `${t(a.type)} — ${a.title || id}`;
  const facts = [
    ["severity", `${t(a.severity)}`], ["status", t(a.alert_status)],
    ["started", new Date(a.started_at).toLocaleString()],
    ["assetsF", (a.asset_ids || []).join(", ") || t("none")],
    ["cells", (a.grid_cells || []).join(", ") || t("none")],
    ["assigned", a.assigned_dept || t("none")],
  ];
  const dl = $("panel-facts");
  dl.innerHTML = "";
  for (const [k, v] of facts) {
    const dt = document.createElement("dt"); dt.textContent = t(k);
    const dd = document.createElement("dd"); dd.textContent = v; dd.dataset.fact = k;
    dl.append(dt, dd);
  }
  const actions = $("panel-actions");
  actions.innerHTML = "";
  for (const action of a.actions || []) {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.action = action;
    b.textContent = t(action);
    b.onclick = () => act(id, action, b);
    actions.append(b);
  }
  const audit = $("panel-audit");
  audit.innerHTML = "";
  for (const e of a.audit || []) {
    const li = document.createElement("li");
    li.textContent = `${new Date(e.at).toLocaleTimeString()} ${e.from_status ?? "–"} → ${e.to_status} · ${e.actor} ${e.note ? "· " + e.note : ""}`;
    audit.append(li);
  }
}

async function act(id, action, button) {
  $("panel-error").textContent = "";
  button.disabled = true;
  try {
    const body = { note: $("note").value };
    if (action === "assign") body.department = $("dept").value;
    await api(`/v1/alerts/${encodeURIComponent(id)}/actions/${action}`, {
      method: "POST", body: JSON.stringify(body),
    });
    $("note").value = "";
    await select(id);
    scheduleRefresh();
  } catch (err) {
    $("panel-error").textContent = err.message;
  } finally {
    button.disabled = false;
  }
}

// --- the map --------------------------------------------------------------------------

async function loadLayers() {
  const names = ["grid-heat", "grid", "pipes", "assets", "devices", "incidents"];
  const results = await Promise.all(
    names.map((n) => api(`/v1/cities/${state.city}/map/${n}?zoom=15`).catch(() => null)));
  names.forEach((n, i) => { state.layers[n] = results[i]; });
  drawMap();
}

function project(view, [lon, lat]) {
  return [(lon - view.x0) * view.k * view.c, (view.y1 - lat) * view.k];
}

function makeView() {
  const svg = $("map");
  const w = svg.clientWidth || 800, h = svg.clientHeight || 500;
  let minx = Infinity, miny = Infinity, maxx = -Infinity, maxy = -Infinity;
  const visit = (c) => {
    if (typeof c[0] === "number") {
      minx = Math.min(minx, c[0]); maxx = Math.max(maxx, c[0]);
      miny = Math.min(miny, c[1]); maxy = Math.max(maxy, c[1]);
    } else c.forEach(visit);
  };
  for (const n of ["grid", "pipes", "devices"]) {
    for (const f of state.layers[n]?.features || []) visit(f.geometry.coordinates);
  }
  if (!isFinite(minx)) return null;
  const c = Math.cos(((miny + maxy) / 2) * Math.PI / 180);
  const k = Math.min(w / ((maxx - minx) * c || 1e-6), h / ((maxy - miny) || 1e-6)) * 0.95;
  return { x0: minx, y1: maxy, k, c, w, h };
}

function pathOf(view, geom) {
  const ring = (pts) => pts.map((p, i) => (i ? "L" : "M") + project(view, p).map((v) => v.toFixed(1)).join(",")).join("");
  switch (geom.type) {
    case "Polygon": return geom.coordinates.map((r) => ring(r) + "Z").join("");
    case "MultiPolygon": return geom.coordinates.flatMap((p) => p.map((r) => ring(r) + "Z")).join("");
    case "LineString": return ring(geom.coordinates);
    case "MultiLineString": return geom.coordinates.map(ring).join("");
    default: return "";
  }
}

const SVG_NS = "http://www.w3.org/2000/svg";
function el(tag, attrs) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

function drawMap() {
  const svg = $("map");
  svg.innerHTML = "";
  state.view = state.view || makeView();
  const view = state.view;
  if (!view) return;
  const on = (n) => document.querySelector(`[data-layer="${n}"]`)?.checked;
  const heat = new Map((state.layers["grid-heat"]?.features || []).map((f) => [f.properties.code, f.properties]));
  const g = (name) => { const e = el("g", { "data-layer": name }); svg.append(e); return e; };
  const cells = g("grid");
  for (const f of state.layers.grid?.features || []) {
    const h = on("grid-heat") ? heat.get(f.properties.code) : null;
    const fill = h?.worst_severity ? SEV_COLOR[h.worst_severity] : "#101b27";
    const p = el("path", { d: pathOf(view, f.geometry), class: "cell", fill, "fill-opacity": h ? 0.45 : 1 });
    p.append(Object.assign(el("title", {}), { textContent: f.properties.code + (h ? ` · ${h.count}` : "") }));
    cells.append(p);
  }
  if (on("pipes")) {
    const pipes = g("pipes");
    for (const f of state.layers.pipes?.features || []) {
      pipes.append(el("path", { d: pathOf(view, f.geometry), class: `pipe ${f.properties.network}` }));
    }
  }
  if (on("assets")) {
    const assets = g("assets");
    for (const f of state.layers.assets?.features || []) {
      if (f.geometry.type === "Point") {
        const [x, y] = project(view, f.geometry.coordinates);
        assets.append(el("rect", { x: x - 2, y: y - 2, width: 4, height: 4, class: "asset" }));
      } else {
        assets.append(el("path", { d: pathOf(view, f.geometry), class: "asset", "fill-opacity": 0.3 }));
      }
    }
  }
  if (on("devices")) {
    const devices = g("devices");
    for (const f of state.layers.devices?.features || []) {
      const [x, y] = project(view, f.geometry.coordinates);
      devices.append(el("circle", { cx: x, cy: y, r: 2, class: "device" + (f.properties.online ? "" : " offline") }));
    }
  }
  if (on("incidents")) {
    const incidents = g("incidents");
    for (const a of state.alerts.values()) {
      if (a.lon == null || FINAL.has(a.alert_status)) continue;
      const [x, y] = project(view, [a.lon, a.lat]);
      const c = el("circle", { cx: x, cy: y, r: 7, class: "incident", fill: SEV_COLOR[a.severity],
                               "data-id": a.incident_id });
      c.append(Object.assign(el("title", {}), { textContent: `${t(a.type)} · ${t(a.severity)}` }));
      c.onclick = () => select(a.incident_id);
      incidents.append(c);
    }
  }
}

// --- the live feed -----------------------------------------------------------------------

async function connectLive() {
  if (!state.key) return;
  let ticket;
  try {
    ({ ticket } = await api("/v1/feed/ticket", { method: "POST" }));
  } catch {
    setTimeout(connectLive, 3000);
    return;
  }
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const qs = new URLSearchParams({ ticket });
  if (state.lastId !== null) qs.set("last_id", state.lastId);
  const ws = new WebSocket(`${proto}://${location.host}/v1/feed/ws?${qs}`);
  state.ws = ws;
  ws.onopen = () => { $("live").className = "live on"; $("live").textContent = t("online"); };
  ws.onmessage = (msg) => {
    const e = JSON.parse(msg.data);
    state.lastId = e.id;
    if (e.city !== state.city) return;
    state.alerts.set(e.incident_id, { ...state.alerts.get(e.incident_id), ...e });
    renderAlerts();
    drawMap();
    if (state.selected === e.incident_id) select(e.incident_id);
    scheduleRefresh();
  };
  ws.onclose = () => {
    $("live").className = "live off"; $("live").textContent = t("offline");
    if (state.ws === ws) setTimeout(connectLive, 2000);
  };
}

function scheduleRefresh() {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(() => { loadKpis().catch(() => {}); }, 500);
}

// --- wiring ------------------------------------------------------------------------------

$("login-form").onsubmit = (ev) => { ev.preventDefault(); signIn($("key").value.trim()); };
$("logout").onclick = () => signOut();
$("lang").onclick = () => {
  state.lang = state.lang === "zh" ? "en" : "zh";
  localStorage.setItem("cityops.lang", state.lang);
  applyLang();
  if (state.city) loadKpis();
};
$("city").onchange = (ev) => { state.city = ev.target.value; loadCity(); };
for (const box of document.querySelectorAll("[data-layer]")) box.onchange = drawMap;
window.onresize = () => { state.view = null; drawMap(); };

applyLang();
if (state.key) signIn(state.key); else signOut();
