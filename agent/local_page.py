"""The teleworker's local page (served by :mod:`agent.control` on 127.0.0.1): plain HTML and script.

It shows whether the camera is on and why ("off: not on duty", "on: on duty since 09:02",
"on: verifying punch-in"), the camera preview with the detected faces boxed (``/preview.jpg``,
refreshed twice a second; emptied while the camera is off), the current state, duty and task,
punch buttons and the task picker, face registration, the last evidence taken (camera still
and screenshot) and the notices (e.g. the screen was locked). Texts come from :mod:`agent.i18n`
in the chosen language; the links at the top switch between 日本語 and English. No external
resources are loaded.
"""

from __future__ import annotations

import html
import json

from agent.i18n import LANGUAGES, catalog, language_of, text

_STYLE = """
body{font-family:system-ui,"Hiragino Sans","Noto Sans JP",sans-serif;margin:0;background:#f4f5f7;color:#222}
header{display:flex;justify-content:space-between;align-items:center;padding:.6rem 1rem;
  background:#234;color:#fff}
header a{color:#cde;margin-left:.6rem}
main{display:grid;grid-template-columns:minmax(320px,640px) 1fr;gap:1rem;padding:1rem}
section{background:#fff;border-radius:6px;padding:.8rem 1rem;box-shadow:0 1px 2px #0002}
h2{font-size:1rem;margin:.2rem 0 .6rem}
#preview{width:100%;background:#000;min-height:240px;display:block}
.big{font-size:1.3rem;font-weight:600}
/* every state but present and away is an alert */[data-state]{color:#c62828}[data-state=none]{color:inherit}
[data-state=present]{color:#1a7f37}[data-state=away]{color:#777}
button{font-size:1rem;padding:.45rem .9rem;margin:.2rem .3rem .2rem 0;cursor:pointer}
#message{min-height:1.4rem;margin-top:.5rem;font-weight:600}
#message.refused{color:#c62828}#message.accepted{color:#1a7f37}
#evidence img{max-width:48%;margin-right:2%;border:1px solid #ccc}
ul{padding-left:1.1rem;margin:.2rem 0}li.warning{color:#c62828}
.muted{color:#777;font-size:.9rem}
"""

_SCRIPT = """
const T = JSON.parse(document.getElementById('texts').textContent);
const LANG = document.documentElement.lang;
const $ = (id) => document.getElementById(id);
function fmt(key, p) { return (T[key] || key).replace(/\\{(\\w+)\\}/g, (m, k) => (p && k in p) ? p[k] : m); }
function setText(id, value) { const el = $(id); if (el.textContent !== value) el.textContent = value; }
let busy = false;
let cameraOn = false;

async function call(path, body) {
  const r = await fetch(path + '?lang=' + LANG, {method: 'POST', credentials: 'same-origin',
    headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
  let data = {};
  try { data = await r.json(); } catch (e) { data = {message: r.status + ' ' + r.statusText}; }
  const m = $('message');
  m.textContent = data.message || data.error || '';
  m.className = (r.ok ? 'accepted' : 'refused');
  m.dataset.result = r.ok ? 'accepted' : 'refused';
  refresh();
  return data;
}

function punch(kind) { return call('/api/punch', {kind: kind}); }

async function register() {
  $('register').disabled = true;
  $('message').textContent = fmt('register_help');
  try { await call('/api/register', {count: 3}); } finally { $('register').disabled = false; }
}

function renderTasks(tasks, current) {
  const picker = $('task-picker');
  const have = Array.from(picker.options).map((o) => o.value).join('\\n');
  if (have !== tasks.join('\\n')) {
    picker.innerHTML = '';
    for (const t of tasks) {
      const o = document.createElement('option'); o.value = t; o.textContent = t; picker.appendChild(o);
    }
    if (current && tasks.includes(current)) picker.value = current;
  }
  $('task-free').hidden = tasks.length > 0;
  picker.hidden = tasks.length === 0;
  if (tasks.length === 0) picker.value = '';
}

function renderEvidence(ev) {
  const box = $('evidence');
  const key = ev ? ev.images.map((i) => i.sha256).join(',') : '';
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  box.innerHTML = '';
  if (!ev) { box.textContent = T.no_evidence; return; }
  const p = document.createElement('p'); p.className = 'muted';
  const missing = ev.missing.length ? ' (' + ev.missing.join('; ') + ')' : '';
  p.textContent = ev.taken_at + ' — ' + ev.reason + missing;
  box.appendChild(p);
  for (const i of ev.images) {
    const img = document.createElement('img'); img.src = '/evidence/' + i.sha256 + '.jpg';
    img.alt = i.kind; img.dataset.kind = i.kind; box.appendChild(img);
  }
}

function renderList(id, items) {
  const ul = $(id);
  const key = JSON.stringify(items);
  if (ul.dataset.key === key) return;
  ul.dataset.key = key; ul.innerHTML = '';
  for (const it of items) {
    const li = document.createElement('li'); li.textContent = it.text; li.className = it.level || '';
    ul.appendChild(li);
  }
}

async function refresh() {
  if (busy) return;
  busy = true;
  try {
    const r = await fetch('/api/status?lang=' + LANG, {credentials: 'same-origin'});
    if (!r.ok) return;
    const s = await r.json();
    const st = $('state'); st.dataset.state = s.state || 'none'; setText('state', s.state_text);
    const cam = $('camera-status'); cameraOn = s.camera_status.on;
    cam.dataset.on = String(cameraOn); cam.dataset.why = s.camera_status.why;
    setText('camera-status', s.camera_status.text);
    if (!cameraOn) {  // off: no picture, whether one was shown on this page or not yet
      $('preview').removeAttribute('src'); $('preview').dataset.loaded = '0';
    }
    $('duty').dataset.onDuty = String(s.on_duty);
    setText('duty', s.on_duty ? T.on_duty : T.off_duty);
    setText('task', s.task || T.no_task); $('task').dataset.task = s.task || '';
    setText('face', s.face && s.face.distance !== null ? fmt('face_distance', s.face) : '');
    setText('camera-info', s.camera ? fmt('camera_props', s.camera) : T.camera_none);
    $('punch-in').disabled = s.on_duty; $('punch-out').disabled = !s.on_duty;
    $('task-start').disabled = !s.on_duty; $('task-end').disabled = !s.task;
    renderTasks(s.tasks, s.task);
    $('camera-section').hidden = !s.camera_switchable;
    renderEvidence(s.evidence);
    renderList('notices', s.notices);
    renderList('punches', s.punches.map((p) => ({text: p.text, level: p.accepted ? '' : 'warning'})));
    document.body.dataset.ready = '1';
  } catch (e) { /* the agent may be restarting: try again */ }
  finally { busy = false; }
}

function preview() {
  const img = $('preview');
  const next = new Image();
  next.onload = () => {
    if (cameraOn) { img.src = next.src; img.dataset.loaded = '1'; }
    setTimeout(preview, 500);
  };
  next.onerror = () => setTimeout(preview, 1000);
  next.src = '/preview.jpg?n=' + Date.now();
}

$('punch-in').onclick = () => punch('in');
$('punch-out').onclick = () => punch('out');
$('task-start').onclick = () => call('/api/punch',
  {kind: 'task_start', task: $('task-picker').hidden ? $('task-free').value : $('task-picker').value});
$('task-end').onclick = () => punch('task_end');
$('register').onclick = register;
$('camera-list').onclick = async () => {
  const r = await fetch('/api/cameras', {credentials: 'same-origin'});
  const data = await r.json();
  const sel = $('camera-index'); sel.innerHTML = '';
  for (const c of data.cameras) {
    const o = document.createElement('option'); o.value = c.index;
    o.textContent = fmt('camera_props', c); sel.appendChild(o);
  }
};
$('camera-apply').onclick = async () => {
  const index = parseInt($('camera-index').value, 10);
  const r = await fetch('/api/camera', {method: 'POST', credentials: 'same-origin',
    headers: {'Content-Type': 'application/json'},
    body: JSON.stringify({index: index, resolution: $('camera-resolution').value})});
  const data = await r.json();
  const m = $('message'); m.className = r.ok ? 'accepted' : 'refused';
  m.textContent = r.ok ? fmt('camera_switched', data.camera) : fmt('camera_failed', {detail: data.error});
};
refresh(); setInterval(refresh, 500); preview();
"""


def page_html(lang: str) -> str:
    """The whole page in ``lang`` ("ja" or "en"; anything else: English)."""
    lang = language_of(lang)

    def t(key: str) -> str:
        return html.escape(text(lang, key))

    texts = json.dumps(catalog(lang), ensure_ascii=False).replace("</", "<\\/")
    switch = " ".join(
        f'<a href="/?lang={code}" data-lang="{code}">{"日本語" if code == "ja" else "English"}</a>'
        for code in LANGUAGES
    )
    return f"""<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{t("title")}</title><style>{_STYLE}</style></head>
<body>
<header><strong>{t("title")}</strong><span>{t("language")}: {switch}</span></header>
<main>
<section><h2>{t("camera")}</h2>
<p class="big" id="camera-status" data-on="false" data-why="off_duty">{t("camera.off_duty")}</p>
<img id="preview" alt="{t("camera")}">
<p class="muted" id="camera-info"></p><p class="muted" id="face"></p></section>
<div>
<section><h2>{t("state")}</h2><div class="big" id="state" data-state="none">{t("state.none")}</div>
<p>{t("duty")}: <strong id="duty" data-on-duty="false"></strong> ·
{t("task")}: <strong id="task"></strong></p>
<button id="punch-in">{t("punch_in")}</button><button id="punch-out">{t("punch_out")}</button><br>
<select id="task-picker" aria-label="{t("choose_task")}"></select>
<input id="task-free" placeholder="{t("choose_task")}" maxlength="200" hidden>
<button id="task-start">{t("task_start")}</button><button id="task-end">{t("task_end")}</button>
<div id="message" role="status"></div>
<ul id="punches"></ul></section>
<section id="camera-section" hidden><h2>{t("camera_choose")}</h2>
<select id="camera-index" aria-label="{t("camera")}"></select>
<select id="camera-resolution">
<option>640x480</option><option>1280x720</option><option>1920x1080</option></select>
<button id="camera-list">{t("camera_list")}</button><button id="camera-apply">{t("camera_apply")}</button>
</section>
<section><h2>{t("register")}</h2><p class="muted">{t("register_help")}</p>
<button id="register">{t("register")}</button></section>
<section><h2>{t("notices")}</h2><ul id="notices"></ul></section>
<section><h2>{t("evidence")}</h2><div id="evidence">{t("no_evidence")}</div></section>
</div>
</main>
<script id="texts" type="application/json">{texts}</script>
<script>{_SCRIPT}</script>
</body></html>
"""
