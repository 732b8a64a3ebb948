"use strict";
// The CityOps web cockpit: KPI tiles, a map of the city's GeoJSON layers drawn as SVG
// (no tile server) with the selected incident's impact, the live alert list, the incident
// panel with its readings charted (Apache ECharts, served by the API) and lifecycle
// actions; a device view, a lifeline view, and a wall mode (/?screen=wall) for the
// operations centre's big screen.

const I18N = {
  zh: {
    viewOverview: "综合态势", viewDevices: "设备", viewLifelines: "生命线", wall: "大屏",
    wholeCity: "全城", trend24: "近24小时事件", timeline24: "近24小时事件时间线",
    valvesToClose: "需关闭阀门", affectedPois: "受影响重点场所", lifeline: "生命线", cell: "网格",
    all: "全部", onlineOnly: "在线", offlineOnly: "离线", deviceId: "设备编号", kind: "类型",
    lastReading: "最近上报", metric: "指标", cellPh: "15位网格编码", devicesShown: "台设备",
    searchPh: "设备或资产编号开头", prevPage: "上一页", nextPage: "下一页", shown: "显示",
    noCharts: "图表库未安装（运行 make web）", noData: "该时段无数据", legend: "图例",
    zone: "影响范围", valve: "待关阀门", poi: "重点场所", isolated: "隔离管段",
    deviceOnline: "设备在线", deviceOffline: "设备离线", incidentsN: "起未结事件",
    normal: "正常", warning: "预警", alarm: "告警", starts: "事件开始", distance: "距离",
    gas: "燃气", water: "供水", drainage: "排水防涝", bridge: "桥梁", heating: "供热",
    tunnel: "综合管廊", public_safety: "公共安全", devicesLL: "其他设备",
    camera: "视频点位", eventsOnly: "仅事件上报", cameraEvents: "最近视频事件", noEvents: "暂无事件",
    picture: "图片", unmapped: "未映射事件",
    road_ponding: "道路积水", manhole_cover_missing: "井盖缺失", smoke_fire: "烟火",
    crowd_density: "人员聚集", illegal_parking: "违章停车", occupy_road_trading: "占道经营",
    pedlar: "流动摊贩", piled_materials: "乱堆物料", garbage_overflow: "垃圾满溢", muck_dumping: "渣土倾倒",
    hospital: "医院", school: "学校", kindergarten: "幼儿园", nursing_home: "养老院",
    shelter: "避难场所", metro: "地铁站", market: "商场",
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
    viewOverview: "Overview", viewDevices: "Devices", viewLifelines: "Lifelines", wall: "Wall",
    wholeCity: "Whole city", trend24: "Incidents, last 24 h", timeline24: "Incident timeline, last 24 h",
    valvesToClose: "Valves to close", affectedPois: "Affected places", lifeline: "Lifeline",
    cell: "Grid cell", all: "All", onlineOnly: "Online", offlineOnly: "Offline", deviceId: "Device",
    kind: "Kind", lastReading: "Last reading", metric: "Metric", cellPh: "15-digit grid code",
    devicesShown: "devices", noCharts: "Charts are not installed (run make web)",
    searchPh: "Start of a device or asset id", prevPage: "Previous", nextPage: "Next", shown: "showing",
    noData: "No data in this range", legend: "Legend", zone: "Affected zone", valve: "Valve to close",
    poi: "Key place", isolated: "Isolated section", deviceOnline: "Device online",
    deviceOffline: "Device offline", incidentsN: "open incidents", normal: "normal",
    warning: "warning", alarm: "alarm", starts: "incident starts", distance: "distance",
    gas: "Gas", water: "Water supply", drainage: "Drainage & flooding", bridge: "Bridges",
    heating: "Heating", tunnel: "Utility tunnels", public_safety: "Public safety",
    devicesLL: "Other devices",
    camera: "Video point", eventsOnly: "events only", cameraEvents: "Latest video events",
    noEvents: "No events yet", picture: "picture", unmapped: "Unmapped event",
    road_ponding: "Road ponding", manhole_cover_missing: "Missing manhole cover", smoke_fire: "Smoke or fire",
    crowd_density: "Crowd", illegal_parking: "Illegal parking", occupy_road_trading: "Road-side trading",
    pedlar: "Pedlar", piled_materials: "Piled materials", garbage_overflow: "Overflowing garbage",
    muck_dumping: "Muck dumping",
    hospital: "Hospital", school: "School", kindergarten: "Kindergarten",
    nursing_home: "Nursing home", shelter: "Shelter", metro: "Metro station", market: "Market",
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
const SEVERITIES = ["red", "orange", "yellow", "blue"];
const FINAL = new Set(["closed", "false_alarm"]);
const LIFELINES = ["gas", "water", "drainage", "bridge", "heating", "tunnel", "public_safety"];
const WALL = new URLSearchParams(location.search).get("screen") === "wall";
const STATUS_COLOR = { normal: "#2ecc71", warning: "#e6c229", alarm: "#d7263d" };

const state = {
  lang: localStorage.getItem("cityops.lang") || "zh",
  // A wall display keeps its key across restarts of the browser; a desk only per tab.
  key: (WALL ? localStorage : sessionStorage).getItem("cityops.key") || "",
  city: null, alerts: new Map(), selected: null, detail: null, lastId: null, ws: null,
  layers: {}, view: null, focus: null, refreshTimer: null, tab: "overview",
  devices: [], deviceOffset: 0, searchTimer: null, device: null, range: 24, charts: new Map(), overview: null,
  kinds: new Map(), metrics: new Map(),
};
const $ = (id) => document.getElementById(id);
const t = (k) => (I18N[state.lang][k] ?? k);
const llName = (name) => t(name === "devices" ? "devicesLL" : name);
// Sensor kinds and metrics are named by the platform's catalogue (GET /v1/kinds).
const label = (entry, k) => (entry ? entry.label[state.lang] : t(k));
const kindName = (k) => label(state.kinds.get(k), k);
const metricName = (m) => label(state.metrics.get(m), m);
const hasCharts = () => typeof window.echarts !== "undefined";

function applyLang() {
  document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  $("f-cell").placeholder = t("cellPh");
  $("f-q").placeholder = t("searchPh");
  $("lang").textContent = state.lang === "zh" ? "English" : "中文";
  $("live").textContent = state.ws && state.ws.readyState === 1 ? t("online") : t("offline");
  fillLifelineFilter();
  renderAlerts();
  drawLegend();
}

async function api(path, options = {}) {
  const resp = await fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${state.key}`, "Content-Type": "application/json",
               "Accept-Language": state.lang === "zh" ? "zh-CN" : "en", ...(options.headers || {}) },
  });
  if (resp.status === 401) { signOut(t("badKey")); throw new Error("unauthorized"); }
  const body = resp.headers.get("content-type")?.includes("json") ? await resp.json() : await resp.text();
  if (!resp.ok) throw new Error(body.detail ? JSON.stringify(body.detail) : `HTTP ${resp.status}`);
  return body;
}

function keyStore() { return WALL ? localStorage : sessionStorage; }

function signOut(message = "") {
  keyStore().removeItem("cityops.key");
  state.key = "";
  if (state.ws) { state.ws.onclose = null; state.ws.close(); state.ws = null; }
  $("cockpit").hidden = true; $("login").hidden = false; $("logout").hidden = true;
  $("tabs").hidden = true;
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
  keyStore().setItem("cityops.key", key);
  $("login").hidden = true; $("cockpit").hidden = false; $("logout").hidden = WALL;
  $("tabs").hidden = WALL;
  const catalogue = await api("/v1/kinds");
  for (const k of catalogue.kinds) {
    state.kinds.set(k.kind, k);
    for (const m of k.metrics) state.metrics.set(m.metric, m);
  }
  const { cities } = await api("/v1/cities");
  const select = $("city");
  select.innerHTML = "";
  for (const c of cities) select.append(new Option(c, c));
  state.city = cities[0] || null;
  if (state.city) await loadCity();
  connectLive();
}

async function loadCity() {
  state.alerts.clear(); state.selected = null; state.detail = null; state.focus = null;
  $("panel").hidden = true; state.view = null;
  await Promise.all([loadKpis(), loadAlerts(), loadLayers()]);
  if (WALL) await loadTrend();
  if (state.tab === "devices") await loadDevices();
  if (state.tab === "lifelines") await loadLifelines();
}

function fmtDuration(s) {
  if (s === null || s === undefined) return "–";
  return s < 120 ? `${Math.round(s)} s` : `${(s / 60).toFixed(1)} ${t("min")}`;
}

async function loadKpis() {
  const o = await api(`/v1/cities/${state.city}/overview`);
  state.overview = o;
  const tiles = [
    ["devicesOnline", o.devices.online, ""], ["devicesOffline", o.devices.offline, ""],
    ["open", o.open_incidents.total, ""],
    ...SEVERITIES.map((s) => [s, o.open_incidents.by_severity[s], s]),
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
  renderLifelineCards($("lifeline-status"), o.lifelines, true);
  if (state.tab === "lifelines") renderLifelineCards($("lifelines"), o.lifelines, false);
}

function renderLifelineCards(target, lifelines, compact) {
  target.innerHTML = "";
  for (const name of LIFELINES) {
    const l = lifelines[name];
    if (!l || (!compact && !l.devices && !l.open_incidents)) continue;
    const card = document.createElement("div");
    card.className = `lifeline ${l.status}` + (compact ? " compact" : "");
    card.dataset.lifeline = name;
    card.style.borderColor = STATUS_COLOR[l.status];
    const h = document.createElement("b"); h.textContent = llName(name);
    const status = document.createElement("span"); status.className = "ll-status";
    status.textContent = t(l.status); status.style.color = STATUS_COLOR[l.status];
    const inc = document.createElement("span");
    inc.textContent = `${l.open_incidents} ${t("incidentsN")}`;
    const dev = document.createElement("span");
    dev.textContent = `${t("deviceOnline")} ${l.online}/${l.devices}`;
    card.append(h, status, inc, dev);
    if (!compact) card.onclick = () => { $("f-lifeline").value = name; showTab("devices"); };
    target.append(card);
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
  for (const a of items.slice(0, WALL ? 14 : 500)) {
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
  state.detail = detail;
  renderPanel(id, detail);  // first: the panel takes room from the map
  focusOn(detail);
}

function renderPanel(id, detail) {
  const a = detail || state.alerts.get(id);
  if (!a || WALL) return;
  $("panel").hidden = false;
  $("panel").dataset.id = id;
  $("panel-title").textContent = `${t(a.type)} — ${a.title || id}`;
  $("panel-desc").textContent = a.description || "";
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
  renderImpact(detail?.impact);
  const audit = $("panel-audit");
  audit.innerHTML = "";
  for (const e of a.audit || []) {
    const li = document.createElement("li");
    li.textContent = `${new Date(e.at).toLocaleTimeString()} ${t(e.from_status ?? "–")} → ${t(e.to_status)} · ${e.actor} ${e.note ? "· " + e.note : ""}`;
    audit.append(li);
  }
  if (detail) renderEvidence(detail);
}

function renderImpact(impact) {
  const valves = $("impact-valves"), pois = $("impact-pois");
  valves.innerHTML = ""; pois.innerHTML = "";
  const feats = impact?.features || [];
  const rows = (role) => feats.filter((f) => f.properties.role === role)
    .sort((x, y) => (x.properties.distance_m ?? 0) - (y.properties.distance_m ?? 0));
  for (const f of rows("valve_to_close")) {
    const li = document.createElement("li");
    li.dataset.valve = f.properties.asset_id;
    li.textContent = `${f.properties.asset_id} · ${t(f.properties.network || "")} · ${f.properties.distance_m} m`;
    valves.append(li);
  }
  for (const f of rows("affected_poi")) {
    const li = document.createElement("li");
    li.dataset.poi = f.properties.poi_id;
    li.textContent = `${t(f.properties.kind)} · ${f.properties.name} · ${f.properties.distance_m} m`;
    pois.append(li);
  }
  if (!valves.children.length) valves.append(Object.assign(document.createElement("li"), { textContent: t("none") }));
  if (!pois.children.length) pois.append(Object.assign(document.createElement("li"), { textContent: t("none") }));
}

// --- charts ----------------------------------------------------------------------------

function chartOn(el) {
  if (!hasCharts()) { el.textContent = t("noCharts"); return null; }
  const old = echarts.getInstanceByDom(el);
  if (old) return old;
  const chart = echarts.init(el, null, { renderer: "canvas" });
  state.charts.set(el, chart);
  return chart;
}

const AXIS = { axisLine: { lineStyle: { color: "#35506b" } }, axisLabel: { color: "#8aa0b6" },
               splitLine: { lineStyle: { color: "#1f2d3d" } } };

// The rule's levels as coloured bands: from each threshold to the next one past it.
function levelBands(levels, lo, hi) {
  const bands = [];
  for (const dir of ["above", "below"]) {
    const mine = levels.filter((l) => l.direction === dir)
      .sort((x, y) => (dir === "above" ? x.threshold - y.threshold : y.threshold - x.threshold));
    mine.forEach((l, i) => {
      const next = mine[i + 1]?.threshold ?? (dir === "above" ? hi : lo);
      bands.push([{ yAxis: l.threshold, name: t(l.severity),
                    itemStyle: { color: SEV_COLOR[l.severity], opacity: 0.13 } }, { yAxis: next }]);
    });
  }
  return bands;
}

function seriesOption({ title, unit, points, levels, marks, startAt, range }) {
  const data = points.map((p) => [p.t, p.avg]);
  const values = points.flatMap((p) => [p.min, p.max]).filter((v) => v !== null);
  const thresholds = levels.map((l) => l.threshold);
  let lo = Math.min(...values, ...thresholds), hi = Math.max(...values, ...thresholds);
  if (!isFinite(lo)) { lo = 0; hi = 1; }
  const pad = (hi - lo) * 0.08 || Math.abs(hi) * 0.1 || 1;
  lo -= pad; hi += pad;
  const markLines = levels.map((l) => ({ yAxis: l.threshold, lineStyle: { color: SEV_COLOR[l.severity], type: "dashed" },
                                          label: { formatter: `${l.threshold}`, color: SEV_COLOR[l.severity], position: "end" } }));
  if (startAt) markLines.push({ xAxis: startAt, lineStyle: { color: "#fff", type: "dotted" }, label: { formatter: t("starts"), color: "#e8eef5" } });
  return {
    animation: false,
    backgroundColor: "transparent",
    title: { text: title, left: 8, top: 2, textStyle: { color: "#e8eef5", fontSize: 13, fontWeight: "normal" } },
    grid: { left: 56, right: 64, top: 30, bottom: 28 },
    tooltip: { trigger: "axis", valueFormatter: (v) => (v == null ? "–" : `${(+v).toFixed(3)} ${unit || ""}`) },
    xAxis: { type: "time", ...AXIS, splitLine: { show: false }, ...(range ? { min: range[0], max: range[1] } : {}) },
    yAxis: { type: "value", min: +lo.toFixed(4), max: +hi.toFixed(4), ...AXIS },
    series: [
      { name: "min–max", type: "line", data: points.map((p) => [p.t, p.min]), showSymbol: false,
        lineStyle: { opacity: 0 }, stack: "band", silent: true, tooltip: { show: false } },
      { name: "range", type: "line", data: points.map((p) => [p.t, p.max - p.min]), showSymbol: false,
        lineStyle: { opacity: 0 }, areaStyle: { color: "#4ea8f2", opacity: 0.18 }, stack: "band",
        silent: true, tooltip: { show: false } },
      { name: "avg", type: "line", data, showSymbol: data.length < 40, symbolSize: 4,
        lineStyle: { color: "#4ea8f2", width: 1.6 }, itemStyle: { color: "#4ea8f2" },
        markArea: { silent: true, data: levelBands(levels, lo, hi), label: { show: false } },
        markLine: { symbol: "none", silent: true, data: markLines },
        markPoint: { symbol: "pin", symbolSize: 34, data: marks } },
    ],
  };
}

function renderEvidence(detail) {
  const box = $("panel-charts");
  for (const el of box.querySelectorAll(".chart")) { state.charts.get(el)?.dispose(); state.charts.delete(el); }
  box.innerHTML = "";
  for (const ev of detail.evidence || []) {
    const el = document.createElement("div");
    el.className = "chart evidence";
    el.dataset.device = ev.device_id;
    el.dataset.metric = ev.metric;
    box.append(el);
    const chart = chartOn(el);
    if (!chart) continue;
    const marks = [];
    for (const a of detail.anomalies || []) {
      for (const e of a.evidence || []) {
        if (e.device_id !== ev.device_id || e.metric !== ev.metric) continue;
        marks.push({ coord: [e.ts, e.value], value: (+e.value).toPrecision(4),
                     itemStyle: { color: SEV_COLOR[a.severity] || "#fff" } });
      }
    }
    chart.setOption(seriesOption({
      title: `${ev.device_id} · ${metricName(ev.metric)} (${ev.unit || ""})`, unit: ev.unit, points: ev.points,
      levels: ev.levels || [], marks, startAt: detail.started_at,
    }));
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

// --- 24 hours of incidents ------------------------------------------------------------------

async function incidentsOfDay() {
  const start = new Date(Date.now() - 24 * 3600e3).toISOString();
  const page = await api(`/v1/alerts?${new URLSearchParams({ city: state.city, start, limit: "500" })}`);
  const hours = [];
  const now = Date.now();
  const first = Math.floor((now - 23 * 3600e3) / 3600e3) * 3600e3;
  for (let h = 0; h < 24; h++) hours.push(first + h * 3600e3);
  const counts = Object.fromEntries(SEVERITIES.map((s) => [s, hours.map(() => 0)]));
  for (const a of page.items) {
    const i = Math.floor((Date.parse(a.started_at) - first) / 3600e3);
    if (i >= 0 && i < 24) counts[a.severity][i] += 1;
  }
  return { hours, counts };
}

function timelineOption({ hours, counts }) {
  return {
    animation: false, backgroundColor: "transparent",
    legend: { data: SEVERITIES.map(t), textStyle: { color: "#8aa0b6" }, top: 0 },
    grid: { left: 40, right: 16, top: 30, bottom: 28 },
    tooltip: { trigger: "axis" },
    xAxis: { type: "category", data: hours.map((h) => new Date(h).getHours() + ":00"), ...AXIS },
    yAxis: { type: "value", minInterval: 1, ...AXIS },
    series: SEVERITIES.map((s) => ({ name: t(s), type: "bar", stack: "n", data: counts[s],
                                      itemStyle: { color: SEV_COLOR[s] } })),
  };
}

async function loadTrend() {
  const chart = chartOn($("trend"));
  if (chart) chart.setOption(timelineOption(await incidentsOfDay()), true);
}

async function loadLifelines() {
  if (!state.overview) await loadKpis();
  renderLifelineCards($("lifelines"), state.overview.lifelines, false);
  const chart = chartOn($("timeline"));
  if (chart) chart.setOption(timelineOption(await incidentsOfDay()), true);
}

// --- devices ---------------------------------------------------------------------------

function fillLifelineFilter() {
  const sel = $("f-lifeline"), keep = sel.value;
  sel.innerHTML = "";
  sel.append(new Option(t("all"), ""));
  for (const name of LIFELINES) sel.append(new Option(llName(name), name));
  sel.value = keep;
}

const DEVICE_PAGE = 200;

async function loadDevices(offset = 0) {
  const qs = new URLSearchParams({ limit: String(DEVICE_PAGE), offset: String(offset) });
  const q = $("f-q").value.trim();
  if (q) qs.set("q", q);
  if ($("f-lifeline").value) qs.set("lifeline", $("f-lifeline").value);
  if ($("f-status").value) qs.set("online", $("f-status").value);
  const cell = $("f-cell").value.trim();
  if (/^\d{15}$/.test(cell)) qs.set("grid_cell", cell);
  const { items, total } = await api(`/v1/cities/${state.city}/devices?${qs}`);
  state.devices = items;
  state.deviceOffset = offset;
  const body = $("devices").querySelector("tbody");
  body.innerHTML = "";
  for (const d of items) {
    const tr = document.createElement("tr");
    tr.dataset.device = d.device_id;
    tr.className = d.online === null ? "unreported" : d.online ? "online" : "offline";
    if (state.device?.device_id === d.device_id) tr.classList.add("selected");
    const cells = [d.device_id, kindName(d.kind), llName(d.lifeline), d.grid_code || "–",
                   d.online === null ? t("eventsOnly") : d.online ? t("onlineOnly") : t("offlineOnly"),
                   d.last_reading ? new Date(d.last_reading).toLocaleString() : "–"];
    for (const text of cells) tr.append(Object.assign(document.createElement("td"), { textContent: text }));
    tr.onclick = () => openDevice(d);
    body.append(tr);
  }
  const shown = items.length ? ` · ${t("shown")} ${offset + 1}–${offset + items.length}` : "";
  $("device-count").textContent = `${total} ${t("devicesShown")}${shown}`;
  $("dev-prev").disabled = offset === 0;
  $("dev-next").disabled = offset + items.length >= total;
}

function openDevice(d) {
  state.device = d;
  for (const tr of $("devices").querySelectorAll("tr.selected")) tr.classList.remove("selected");
  $("devices").querySelector(`tr[data-device="${CSS.escape(d.device_id)}"]`)?.classList.add("selected");
  $("device-panel").hidden = false;
  $("device-title").textContent = `${d.device_id} · ${kindName(d.kind)} · ${d.grid_code || ""}`;
  const camera = d.family === "cameras";
  for (const id of ["d-metric-label", "d-ranges", "device-chart"]) $(id).hidden = camera;
  $("camera-events").hidden = !camera;
  if (camera) { loadCameraEvents(); return; }
  const sel = $("d-metric");
  sel.innerHTML = "";
  for (const m of Object.keys(d.metrics || {})) sel.append(new Option(`${metricName(m)} (${d.metrics[m]})`, m));
  loadSeries();
}

// A camera has no series: its latest events, with their pictures.
async function loadCameraEvents() {
  const d = state.device;
  const { items } = await api(`/v1/cities/${state.city}/devices/${encodeURIComponent(d.device_id)}/events?limit=50`);
  const body = $("camera-events").querySelector("tbody");
  body.innerHTML = "";
  $("camera-events-empty").hidden = items.length > 0;
  for (const a of items) {
    const tr = document.createElement("tr");
    tr.className = `sev-${a.severity}`;
    const type = a.kind.replace(/^video_/, "");
    const what = t(type);
    for (const text of [new Date(a.ts).toLocaleString(), what, t(a.severity), a.message]) {
      tr.append(Object.assign(document.createElement("td"), { textContent: text }));
    }
    const pics = document.createElement("td");
    (a.pictures || []).forEach((p, i) => {
      if (/^https?:\/\//.test(p)) {
        pics.append(Object.assign(document.createElement("a"), { href: p, target: "_blank", rel: "noopener", textContent: `${t("picture")} ${i + 1}` }), " ");
      } else {
        pics.append(Object.assign(document.createElement("span"), { title: p, textContent: `${t("picture")} ${i + 1}` }), " ");
      }
    });
    tr.append(pics);
    body.append(tr);
  }
}

async function loadSeries() {
  const d = state.device;
  if (!d || !$("d-metric").value) return;
  for (const b of $("d-ranges").querySelectorAll("button")) b.classList.toggle("on", +b.dataset.range === state.range);
  const end = new Date(), start = new Date(end - state.range * 3600e3);
  const qs = new URLSearchParams({ metric: $("d-metric").value, start: start.toISOString(), end: end.toISOString() });
  const s = await api(`/v1/cities/${state.city}/devices/${encodeURIComponent(d.device_id)}/series?${qs}`);
  const el = $("device-chart");
  el.dataset.points = s.points.length;
  const chart = chartOn(el);
  if (!chart) return;
  const option = seriesOption({ title: `${metricName(s.metric)} (${s.unit || ""}) · ${state.range >= 168 ? state.range / 24 + "d" : state.range + "h"}`,
                                unit: s.unit, points: s.points, levels: s.levels || [], marks: [],
                                range: [start.getTime(), end.getTime()] });
  if (!s.points.length) option.title.subtext = t("noData");
  chart.setOption(option, true);
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

function bounds(geoms) {
  let minx = Infinity, miny = Infinity, maxx = -Infinity, maxy = -Infinity;
  const visit = (c) => {
    if (typeof c[0] === "number") {
      minx = Math.min(minx, c[0]); maxx = Math.max(maxx, c[0]);
      miny = Math.min(miny, c[1]); maxy = Math.max(maxy, c[1]);
    } else c.forEach(visit);
  };
  for (const g of geoms) visit(g.coordinates);
  return isFinite(minx) ? [minx, miny, maxx, maxy] : null;
}

function makeView() {
  const svg = $("map");
  const w = svg.clientWidth || 800, h = svg.clientHeight || 500;
  const box = state.focus || bounds(["grid", "pipes", "devices"].flatMap(
    (n) => (state.layers[n]?.features || []).map((f) => f.geometry)));
  if (!box) return null;
  const [minx, miny, maxx, maxy] = box;
  const c = Math.cos(((miny + maxy) / 2) * Math.PI / 180);
  const k = Math.min(w / ((maxx - minx) * c || 1e-6), h / ((maxy - miny) || 1e-6)) * 0.95;
  // Centre the box in the frame.
  const x0 = minx - (w / (k * c) - (maxx - minx)) / 2, y1 = maxy + (h / k - (maxy - miny)) / 2;
  return { x0, y1, k, c, w, h };
}

// Move the map to an incident: its impact zone and what it touches, with room around.
function focusOn(detail) {
  const near = new Set(["zone", "valve_to_close"]);
  const feats = (detail.impact?.features || []).filter((f) => near.has(f.properties.role));
  let box = bounds(feats.map((f) => f.geometry));
  if (!box && detail.lon != null) box = [detail.lon - 0.004, detail.lat - 0.003, detail.lon + 0.004, detail.lat + 0.003];
  if (!box) return;
  const [minx, miny, maxx, maxy] = box;
  const dx = Math.max(maxx - minx, 0.002) * 0.6, dy = Math.max(maxy - miny, 0.0015) * 0.6;
  state.focus = [minx - dx, miny - dy, maxx + dx, maxy + dy];
  state.view = null;
  drawMap();
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
function titled(node, text) { node.append(Object.assign(el("title", {}), { textContent: text })); return node; }

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
    cells.append(titled(el("path", { d: pathOf(view, f.geometry), class: "cell", fill, "fill-opacity": h ? 0.45 : 1 }),
                        f.properties.code + (h ? ` · ${h.count}` : "")));
  }
  const impact = state.detail?.impact?.features || [];
  const zone = g("impact-zone");
  for (const f of impact) {
    if (f.properties.role === "zone") zone.append(el("path", { d: pathOf(view, f.geometry), class: "zone" }));
    if (f.properties.role === "affected_cell") zone.append(el("path", { d: pathOf(view, f.geometry), class: "affected-cell" }));
  }
  if (on("pipes")) {
    const pipes = g("pipes");
    for (const f of state.layers.pipes?.features || []) {
      pipes.append(el("path", { d: pathOf(view, f.geometry), class: `pipe ${f.properties.network}` }));
    }
  }
  for (const f of impact) {
    if (f.properties.role === "isolated_segment") zone.append(el("path", { d: pathOf(view, f.geometry), class: "isolated" }));
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
      devices.append(el("circle", { cx: x, cy: y, r: 2, class: "device" + (f.properties.online === false ? " offline" : "") }));
    }
  }
  const marks = g("impact");
  for (const f of impact) {
    const p = f.properties;
    if (f.geometry.type !== "Point") {
      if (p.role === "affected_poi") marks.append(titled(el("path", { d: pathOf(view, f.geometry), class: "poi" }), p.name));
      continue;
    }
    const [x, y] = project(view, f.geometry.coordinates);
    if (p.role === "valve_to_close") {
      marks.append(titled(el("path", { d: `M${x},${y - 7}L${x + 7},${y}L${x},${y + 7}L${x - 7},${y}Z`,
                                       class: "valve-close", "data-valve": p.asset_id }), `${t("valve")} ${p.asset_id}`));
    } else if (p.role === "affected_poi") {
      marks.append(titled(el("rect", { x: x - 5, y: y - 5, width: 10, height: 10, class: "poi", "data-poi": p.poi_id }),
                          `${t(p.kind)} ${p.name} · ${p.distance_m} m`));
      const label = el("text", { x: x + 8, y: y + 4, class: "poi-label" });
      label.textContent = p.name;
      marks.append(label);
    }
  }
  if (on("incidents")) {
    const incidents = g("incidents");
    for (const a of state.alerts.values()) {
      if (a.lon == null || FINAL.has(a.alert_status)) continue;
      const [x, y] = project(view, [a.lon, a.lat]);
      const c = el("circle", { cx: x, cy: y, r: state.selected === a.incident_id ? 10 : 7,
                               class: "incident" + (state.selected === a.incident_id ? " selected" : ""),
                               fill: SEV_COLOR[a.severity], "data-id": a.incident_id });
      titled(c, `${t(a.type)} · ${t(a.severity)}`);
      c.onclick = () => select(a.incident_id);
      incidents.append(c);
    }
  }
}

function drawLegend() {
  const items = [
    ["pipe gas", t("gas")], ["pipe water", t("water")], ["pipe drainage", t("drainage")],
    ["pipe heating", t("heating")], ["device", t("deviceOnline")], ["device offline", t("deviceOffline")],
    ...SEVERITIES.map((s) => [`sev ${s}`, t(s)]), ["zone", t("zone")], ["isolated", t("isolated")],
    ["valve-close", t("valve")], ["poi", t("poi")],
  ];
  const box = $("legend");
  box.innerHTML = "";
  box.append(Object.assign(document.createElement("b"), { textContent: t("legend") }));
  for (const [cls, label] of items) {
    const row = document.createElement("span");
    const sw = document.createElement("i");
    sw.className = `sw ${cls}`;
    row.append(sw, document.createTextNode(label));
    box.append(row);
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
    const known = state.alerts.get(e.incident_id);
    // The feed carries the stored wording; the page keeps the one in its language.
    const { title, description, ...rest } = e;
    state.alerts.set(e.incident_id, { ...known, ...rest, title: known?.title ?? title });
    renderAlerts();
    drawMap();
    if (state.selected === e.incident_id) select(e.incident_id);
    scheduleRefresh(!known);
  };
  ws.onclose = () => {
    $("live").className = "live off"; $("live").textContent = t("offline");
    if (state.ws === ws) setTimeout(connectLive, 2000);
  };
}

function scheduleRefresh(alertsToo = false) {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(() => {
    loadKpis().catch(() => {});
    if (alertsToo) loadAlerts().catch(() => {});
    if (WALL) loadTrend().catch(() => {});
    if (state.tab === "lifelines") loadLifelines().catch(() => {});
  }, 500);
}

// --- views and wiring --------------------------------------------------------------------

function showTab(tab) {
  state.tab = tab;
  for (const b of $("tabs").querySelectorAll("button")) b.classList.toggle("on", b.dataset.view === tab);
  for (const v of ["overview", "devices", "lifelines"]) $(`view-${v}`).hidden = v !== tab;
  if (!state.city) return;
  if (tab === "devices") loadDevices();
  if (tab === "lifelines") loadLifelines();
  if (tab === "overview") { state.view = null; drawMap(); }
  for (const chart of state.charts.values()) chart.resize();
}

function tick() {
  $("clock").textContent = new Date().toLocaleString(state.lang === "zh" ? "zh-CN" : "en-GB", { hour12: false });
}

if (WALL) document.body.classList.add("wall");
$("login-form").onsubmit = (ev) => { ev.preventDefault(); signIn($("key").value.trim()); };
$("logout").onclick = () => signOut();
$("lang").onclick = async () => {
  state.lang = state.lang === "zh" ? "en" : "zh";
  localStorage.setItem("cityops.lang", state.lang);
  applyLang();
  tick();
  if (!state.city) return;
  await Promise.all([loadKpis(), loadAlerts()]);
  if (state.selected) await select(state.selected);
  if (state.tab === "devices") { await loadDevices(state.deviceOffset); if (state.device) await loadSeries(); }
  if (state.tab === "lifelines") await loadLifelines();
  if (WALL) await loadTrend();
};
$("city").onchange = (ev) => { state.city = ev.target.value; loadCity(); };
for (const box of document.querySelectorAll("[data-layer]")) box.onchange = drawMap;
for (const b of $("tabs").querySelectorAll("button")) b.onclick = () => showTab(b.dataset.view);
$("whole-city").onclick = () => { state.focus = null; state.view = null; drawMap(); };
$("device-filters").onsubmit = (ev) => ev.preventDefault();
for (const id of ["f-lifeline", "f-status"]) $(id).onchange = () => loadDevices();
$("f-cell").onchange = () => loadDevices();
$("f-q").oninput = () => { clearTimeout(state.searchTimer); state.searchTimer = setTimeout(() => loadDevices(), 250); };
$("dev-prev").onclick = () => loadDevices(Math.max(0, state.deviceOffset - DEVICE_PAGE));
$("dev-next").onclick = () => loadDevices(state.deviceOffset + DEVICE_PAGE);
$("d-metric").onchange = () => loadSeries();
for (const b of $("d-ranges").querySelectorAll("button")) b.onclick = () => { state.range = +b.dataset.range; loadSeries(); };
window.onresize = () => { state.view = null; drawMap(); for (const chart of state.charts.values()) chart.resize(); };
setInterval(tick, 1000);
// The wall refreshes itself: the live feed moves it, and a full reload every few minutes
// keeps it right through anything the feed missed.
if (WALL) setInterval(() => { if (state.city) loadCity().catch(() => {}); }, 300_000);

applyLang();
tick();
if (state.key) signIn(state.key); else signOut();
