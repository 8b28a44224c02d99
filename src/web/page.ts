// The single page of `graft serve`: HTML, a stylesheet and a script, all served by Graft (the
// Content-Security-Policy allows nothing else, and no inline script or style). The page works
// on projects kept by the server (projects.ts): it sends each image as its original file (or a
// webcam frame as JPEG), and the server decodes it with graft train's pipeline; thumbnails are
// the server's rendering of what the model will see. User text is set as text, never HTML.

const esc = (s: string) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

/** The page, with this start's token for the API (guard.ts). */
export function page(token: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="graft-token" content="${esc(token)}">
<title>Graft: transfer learning</title>
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script>
</head><body>
<a class="skip" href="#diagram">Skip to the diagram</a>
<header><h1>Graft: transfer learning</h1>
<div id="project-bar" class="row" role="region" aria-label="Project">
<label for="project">Project</label><select id="project"></select>
<button id="new-project" type="button">New project</button>
<label for="project-name">Name</label><input id="project-name" maxlength="100" autocomplete="off">
<button id="delete-project" type="button">Delete project</button>
<span id="project-status" class="note" role="status"></span>
</div></header>
<main>
<section id="base-section" aria-labelledby="h-base"><h2 id="h-base">1. Base model and cut</h2>
<div class="row"><label for="zoo">Pretrained model</label><select id="zoo"></select></div>
<p id="base-error" class="err" role="alert"></p>
<p id="cutinfo" aria-live="polite">Loading the model...</p>
<div id="cut-choices" role="group" aria-labelledby="cut-choices-title" hidden><p id="cut-choices-title"></p><div class="choices row"></div></div>
<p id="block-help" class="visually-hidden">Press to choose a cut inside this block.</p>
<div id="diagram" tabindex="-1" role="region" aria-label="Architecture diagram: each block is a button that offers its layers as cuts"></div>
<details id="all-layers"><summary>All layers (choose any layer as the cut)</summary><ol id="layers"></ol></details>
</section>
<section id="classes-section" aria-labelledby="h-classes"><h2 id="h-classes">2. Classes and images</h2>
<div class="row"><button id="add-class" type="button">Add a class</button>
<label class="filebutton" for="folder">Load a folder (one sub-folder per class)</label><input id="folder" class="visually-hidden" type="file" webkitdirectory multiple>
<button id="camera" type="button" aria-pressed="false">Start the webcam</button></div>
<video id="video" muted playsinline hidden aria-label="Webcam picture"></video>
<p id="classes-status" aria-live="polite"></p>
<div id="classes"></div>
</section>
<section id="train-section" aria-labelledby="h-train"><h2 id="h-train">3. Train</h2>
<form id="settings" class="settings" novalidate>
<div><label for="s-warmupEpochs">Warm-up epochs</label><input id="s-warmupEpochs" type="number" min="0" max="50" step="1" placeholder="auto" aria-describedby="h-warmupEpochs e-warmupEpochs"><small id="h-warmupEpochs">0-50; auto: the linear head is fitted to convergence</small><span id="e-warmupEpochs" class="err"></span></div>
<div><label for="s-finetuneEpochs">Fine-tune epochs</label><input id="s-finetuneEpochs" type="number" min="0" max="50" step="1" placeholder="2" aria-describedby="h-finetuneEpochs e-finetuneEpochs"><small id="h-finetuneEpochs">0-50 (default 2)</small><span id="e-finetuneEpochs" class="err"></span></div>
<div><label for="s-batchSize">Batch size</label><input id="s-batchSize" type="number" min="1" max="512" step="1" placeholder="64" aria-describedby="h-batchSize e-batchSize"><small id="h-batchSize">1-512 (default 64)</small><span id="e-batchSize" class="err"></span></div>
<div><label for="s-lr">Learning rate</label><input id="s-lr" type="number" min="0.000001" max="1" step="any" placeholder="0.002" aria-describedby="h-lr e-lr"><small id="h-lr">0.000001-1 (default 0.002; the fine-tune uses half)</small><span id="e-lr" class="err"></span></div>
<div><label for="s-unfreeze">Unfreeze for fine-tuning</label><select id="s-unfreeze" aria-describedby="h-unfreeze"><option value="all">all of the body</option><option value="gradual">gradually, from the top</option><option value="20">the top 20 layers</option><option value="none">none (body stays frozen)</option></select><small id="h-unfreeze">what trains after the warm-up</small></div>
<div><label for="s-holdOut">Held out for testing</label><select id="s-holdOut" aria-describedby="h-holdOut"><option value="0">none</option><option value="0.1">10%</option><option value="0.15">15%</option><option value="0.2">20%</option><option value="0.25">25%</option></select><small id="h-holdOut">per class; gives the accuracy per class and the confusion matrix</small></div>
<div><label class="check"><input id="s-augment" type="checkbox"> Augment images while fine-tuning</label><small>random crop, flip, rotation, colour</small></div>
<div><label class="check"><input id="s-findLr" type="checkbox"> Find the fine-tune learning rate</label><small>the LR finder sweeps rates after the warm-up (graft train --lr auto)</small></div>
</form>
<div class="row"><button id="train" type="button" class="primary">Train</button><button id="resume" type="button" hidden>Resume the stopped run</button><button id="stop" type="button" hidden>Stop</button></div>
<progress id="progress" max="1" value="0" aria-label="Training progress"></progress>
<p id="status" role="status" aria-live="polite">Not trained yet.</p>
<div id="curves"></div>
</section>
<section id="results-section" aria-labelledby="h-results"><h2 id="h-results">4. Results</h2>
<div id="results"><p class="empty">No results yet: train the project to see its accuracy per class, the confusion matrix and what the recipe did.</p></div>
</section>
<section id="predict-section" aria-labelledby="h-predict"><h2 id="h-predict">5. Predict and export</h2>
<div class="row"><label class="filebutton" for="predict-file">Classify an image</label><input id="predict-file" class="visually-hidden" type="file" accept="image/png,image/jpeg,image/gif,image/webp">
<button id="live" type="button" aria-pressed="false">Live webcam preview</button></div>
<p id="predict-error" class="err" role="alert"></p>
<div id="prediction" aria-live="polite"><p class="empty">Train the project, then choose an image or start the live preview.</p></div>
<div id="export" hidden>
<p><a id="download" href="#">Download the trained model (tfjs model + graft.json, zip)</a> · <a id="download-onnx" href="#">ONNX (fp32)</a> · <a id="download-onnx16" href="#">ONNX (fp16, half the size)</a> · <a id="report" href="#" target="_blank" rel="noopener">Open the full report</a></p>
<details><summary>Use it in a browser with TensorFlow.js</summary><pre><code id="snippet-tfjs"></code></pre></details>
<details><summary>Use it from the command line</summary><pre><code id="snippet-cli"></code></pre></details>
</div>
</section>
</main>
</body></html>`;
}

export const APP_CSS = `*{box-sizing:border-box}[hidden]{display:none!important}select{max-width:100%}body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;background:#f7f7f5;color:#1d1d1d;line-height:1.4}
.skip{position:absolute;left:-9999px;top:0;background:#fff;color:#1d1d1d;padding:8px;z-index:10}.skip:focus{left:8px}
header{background:#24323f;color:#fff;padding:10px 16px}header h1{margin:0 0 6px;font-size:1.3rem}header label{color:#fff}header .note{color:#e8eef5}
main{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:14px;padding:14px;max-width:1400px;margin:0 auto}
section{background:#fff;border:1px solid #ccc;border-radius:8px;padding:12px;min-width:0}h2{margin:0 0 8px;font-size:1.1rem}
#base-section{grid-row:span 3}#diagram{max-height:70vh;overflow:auto;border:1px solid #e3e3e3}#diagram svg{max-width:100%;height:auto}#diagram .block{cursor:pointer}
button,select,input{font:inherit}button,.filebutton{min-height:44px;min-width:44px;padding:6px 12px;border-radius:6px;border:1px solid #445;background:#eef;color:#1d1d1d;cursor:pointer;display:inline-flex;align-items:center}
button[disabled]{opacity:.55;cursor:not-allowed}button.primary{background:#24527a;color:#fff}button.danger{border-color:#8b1a1a;color:#8b1a1a;background:#fff}
input,select{min-height:44px;padding:4px 6px;border:1px solid #666;border-radius:4px}input[aria-invalid="true"]{border:2px solid #b00020}
button:focus,input:focus,select:focus,.block:focus,a:focus,summary:focus,.filebutton:focus-within{outline:3px solid #1a73e8;outline-offset:1px}
.visually-hidden{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
#layers{max-height:300px;overflow:auto;padding-left:0;list-style:none;margin:6px 0}#layers li{display:flex;justify-content:space-between;align-items:center;gap:6px;border-bottom:1px solid #eee;font-size:.9rem}
#layers li.cut{background:#fde7e7;font-weight:bold}#cut-choices{border:2px solid #24527a;border-radius:6px;padding:8px;margin:6px 0;background:#f3f7fb}
.choices button.suggested{border-width:2px;border-color:#24527a}.choices button[aria-current="true"]{background:#24527a;color:#fff}
.class{border:1px solid #99a;border-radius:6px;padding:8px;margin:8px 0}.class.drag{background:#eef6ff;border-style:dashed}
.row{display:flex;flex-wrap:wrap;gap:8px;align-items:center}.settings{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:8px;margin-bottom:8px}
.settings div{display:flex;flex-direction:column;gap:2px}.settings small,.note{color:#4a4a4a}.check{display:flex;gap:6px;align-items:center;min-height:44px}.check input{width:44px;height:44px;margin:0;flex:none}
.thumbs{display:flex;flex-wrap:wrap;gap:6px;margin-top:6px;list-style:none;padding:0}.thumbs li{display:flex;flex-direction:column;width:64px;font-size:.75rem}
.thumbs img{width:64px;height:64px;object-fit:contain;background:#000;border:1px solid #999}.thumbs button{padding:0;font-size:.8rem;width:64px}
.bar{height:14px;background:#24527a;border-radius:3px}#status{min-height:1.4em}#curves img{max-width:100%;background:#fff}#progress{width:100%;height:18px}
.err{color:#b00020}.err:empty{display:none}ul.errors{color:#b00020;margin:4px 0;padding-left:18px}.empty{color:#4a4a4a;font-style:italic}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
.confusion td.hit{background:#d9ead3}pre{background:#f0f0f0;padding:8px;overflow:auto;font-size:.85rem;max-width:100%;white-space:pre-wrap;overflow-wrap:anywhere}.scroll{overflow-x:auto;max-width:100%}video{max-width:100%;width:320px;border:1px solid #999}
#prediction img{max-width:160px;max-height:160px;border:1px solid #999}
@media (max-width:800px){main{grid-template-columns:minmax(0,1fr);padding:8px}#base-section{grid-row:auto}header .row{gap:4px}}
`;

export const APP_JS = String.raw`const $ = (s) => document.querySelector(s);
const TOKEN = document.querySelector('meta[name="graft-token"]').content;
const TYPES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'];
const MAX_FILE = 32 * 1024 * 1024;
let project = null, diagram = null, es = null, stream = null, liveTimer = null, pollTimer = null;
// User text (class names, file names, layer names, messages) only ever goes in as text.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'text') e.textContent = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else if (typeof v === 'boolean') { if (v) e.setAttribute(k, ''); } else e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
}
const withToken = (path) => path + (path.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(TOKEN);
const P = (rest) => '/api/projects/' + encodeURIComponent(project.id) + (rest || '');
async function api(path, body) {
  const headers = { 'x-graft-token': TOKEN };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, body !== undefined ? { method: 'POST', headers, body: JSON.stringify(body) } : { headers });
  const data = await res.json().catch(() => ({ error: res.statusText }));
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}
async function sendFile(path, blob, name) {
  const res = await fetch(path, { method: 'POST', headers: { 'x-graft-token': TOKEN, 'content-type': 'application/octet-stream', 'x-file-name': encodeURIComponent(name) }, body: blob });
  const data = await res.json().catch(() => ({ error: res.statusText }));
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}
function say(target, text, error) { const s = $(target); s.textContent = text; s.classList.toggle('err', Boolean(error)); }
const pct = (v) => (100 * v).toFixed(1) + '%';

// ---- projects
async function loadProjects(select) {
  const list = await api('/api/projects');
  $('#project').replaceChildren(...list.map((p) => el('option', { value: p.id, text: p.name + ' (' + p.classes + ' classes, ' + p.samples + ' images)' })));
  if (select) $('#project').value = select;
  return list;
}
async function openProject(id) {
  stopFollowing();
  project = await api('/api/projects/' + encodeURIComponent(id));
  localStorage.setItem('graft-project', project.id);
  $('#project').value = project.id;
  $('#project-name').value = project.name;
  $('#zoo').value = project.base;
  renderSettings();
  renderClasses();
  renderResults();
  await showDiagram();
  const j = project.job;
  if (j && (j.status === 'queued' || j.status === 'running')) follow(j.id);
  else setTraining(false, project.stopped ? (project.stopped.checkPending ? 'Stopped while checking whether fine-tuning beats the head: Resume redoes the warm-up and the check; Train starts afresh.' : 'Stopped in the ' + project.stopped.phase + ' phase after ' + project.stopped.epochsDone + ' epoch(s): Resume goes on from there; Train starts afresh.')
    : j && j.status === 'interrupted' ? 'The last training was interrupted when the server stopped; train again.' : project.result ? 'Trained ' + new Date(project.result.finished).toLocaleString() + '.' : 'Not trained yet.');
}
async function refresh() { project = await api(P()); await loadProjects(project.id); }
$('#project').addEventListener('change', (e) => openProject(e.target.value).catch((err) => say('#project-status', err.message, true)));
$('#new-project').addEventListener('click', async () => {
  try {
    const p = await api('/api/projects', { name: 'Project ' + new Date().toLocaleString() });
    await loadProjects(p.id);
    await openProject(p.id);
    $('#project-name').focus();
    say('#project-status', 'Created a new project.');
  } catch (e) { say('#project-status', e.message, true); }
});
$('#project-name').addEventListener('change', async (e) => {
  try { project = await api(P(), { name: e.target.value }); await loadProjects(project.id); say('#project-status', 'Renamed.'); }
  catch (err) { say('#project-status', err.message, true); $('#project-name').value = project.name; }
});
$('#delete-project').addEventListener('click', async () => {
  if (!confirm('Delete the project "' + project.name + '" with its images and model? This cannot be undone.')) return;
  try {
    await api(P('/delete'), {});
    localStorage.removeItem('graft-project');
    const list = await loadProjects();
    if (list.length) await openProject(list[0].id); else await newProject();
    say('#project-status', 'Deleted.');
    $('#project').focus();
  } catch (e) { say('#project-status', e.message, true); }
});
async function newProject() { const p = await api('/api/projects', { name: 'My first project' }); await loadProjects(p.id); await openProject(p.id); }

// ---- base model and cut
async function loadZoo() {
  const zoo = await api('/api/models');
  $('#zoo').replaceChildren(...zoo.map((z) => el('option', { value: z.name, title: z.description, text: z.name + ' - ' + z.description })));
}
$('#zoo').addEventListener('change', async (e) => {
  try { say('#base-error', ''); project = await api(P(), { base: e.target.value }); renderClasses(); await showDiagram(); }
  catch (err) { say('#base-error', err.message, true); }
});
function showSvg(svg) {
  const doc = new DOMParser().parseFromString(svg, 'image/svg+xml');
  const root = doc.documentElement;
  for (const s of root.querySelectorAll('script, foreignObject')) s.remove();
  // The blocks are controls: the picture is a group of buttons, not one image.
  root.setAttribute('role', 'group');
  const node = document.importNode(root, true);
  $('#diagram').replaceChildren(node);
  return node;
}
async function showDiagram(focusGroup) {
  say('#cutinfo', 'Loading the diagram...');
  try {
    diagram = await api(P('/diagram'));
    const svg = showSvg(diagram.svg);
    const layers = diagram.inspection.layers.filter((l) => l.className !== 'InputLayer');
    $('#layers').replaceChildren(...layers.map((l) => el('li', l.name === diagram.cut ? { class: 'cut' } : {},
      el('span', { text: l.index + ' ' + l.name + ' ' }, el('small', { text: l.className })),
      el('button', { type: 'button', 'data-layer': l.name, 'aria-label': 'cut after ' + l.name, text: l.name === diagram.cut ? 'the cut' : 'cut here' }))));
    const c = diagram.inspection.cut;
    $('#cutinfo').textContent = (diagram.chosen ? 'Cut after "' + diagram.cut + '" (your choice)' : 'Cut after "' + diagram.cut + '" (the suggested cut)') + ': ' + c.removed.length + ' layers removed on the output side; the input node stays "' + diagram.inspection.inputs[0].name + '". Features: [' + c.featureShape.slice(1).join(', ') + ']. Click a block to choose a cut inside it.';
    for (const g of svg.querySelectorAll('.block[data-layers]')) {
      const ls = g.getAttribute('data-layers').split(' ');
      const state = g.getAttribute('data-state');
      g.setAttribute('role', 'button');
      // Its name is its drawn text (heading, shape, state; WCAG 2.5.3), and a description says what a press does.
      const title = g.querySelector('title');
      if (title) { g.setAttribute('data-layers-title', title.textContent); title.remove(); }
      if (state !== 'new-head') g.setAttribute('aria-describedby', 'block-help');
      if (state === 'new-head') { g.removeAttribute('tabindex'); g.setAttribute('role', 'img'); g.setAttribute('aria-label', 'the new head: ' + g.getAttribute('data-layers-title').replace(/\n/g, '; ')); continue; }
      const open = () => offerCuts(g.getAttribute('data-group'), ls);
      g.addEventListener('click', open);
      g.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); open(); } });
    }
    if (focusGroup) {
      const sel = '.block[data-group="' + CSS.escape(focusGroup) + '"]';
      const g = svg.querySelector('[id^="body-"]' + sel) || svg.querySelector(sel);
      if (g) g.focus();
    }
  } catch (e) { say('#cutinfo', e.message, true); }
}
function offerCuts(group, layers) {
  const box = $('#cut-choices');
  const suggested = diagram.suggested || [];
  $('#cut-choices-title').textContent = 'Cut inside ' + group + ': the new head goes after the layer you choose.';
  const pre = layers.includes(diagram.cut) ? diagram.cut : layers.find((l) => suggested.includes(l)) || layers[layers.length - 1];
  const buttons = layers.map((l) => el('button', { type: 'button', class: suggested.includes(l) ? 'suggested' : '', 'aria-current': l === diagram.cut ? 'true' : 'false',
    text: l + (suggested.includes(l) ? ' (suggested)' : '') + (l === diagram.cut ? ' (current)' : ''), onclick: () => chooseCut(l, group) }));
  buttons.push(el('button', { type: 'button', text: 'Cancel', onclick: () => { box.hidden = true; const g = document.querySelector('#diagram .block[data-group="' + CSS.escape(group) + '"]'); if (g) g.focus(); } }));
  box.querySelector('.choices').replaceChildren(...buttons);
  box.hidden = false;
  buttons[Math.max(0, layers.indexOf(pre))].focus();
}
async function chooseCut(layer, group) {
  try {
    $('#cut-choices').hidden = true;
    project = await api(P(), { cut: layer });
    await showDiagram(group);
  } catch (e) { say('#base-error', e.message, true); }
}
$('#layers').addEventListener('click', async (e) => {
  const b = e.target.closest('button[data-layer]');
  if (!b) return;
  const layer = b.dataset.layer;
  await chooseCut(layer);
  const nb = [...document.querySelectorAll('#layers button[data-layer]')].find((x) => x.dataset.layer === layer);
  if (nb) nb.focus();
});

// ---- classes and samples
function renderClasses() {
  const box = $('#classes');
  if (!project.classes.length) { box.replaceChildren(el('p', { class: 'empty', text: 'No classes yet: add a class and give it images (choose files, drop them here, or record from the webcam), or load a folder with one sub-folder of images per class.' })); return; }
  box.replaceChildren(...project.classes.map((c, k) => classCard(c, k)));
}
// Each class's last refused files, kept across re-renders until its next upload.
const refusedFiles = new Map();
function classCard(c, k) {
  const id = 'c-' + c.id;
  const name = el('input', { id: id + '-name', value: c.name, maxlength: '100', autocomplete: 'off' });
  name.value = c.name;
  const files = el('input', { id: id + '-files', class: 'visually-hidden', type: 'file', multiple: true, accept: TYPES.join(',') });
  const errors = el('ul', { class: 'errors', id: id + '-errors', 'aria-live': 'polite' }, ...(refusedFiles.get(c.id) || []).map((m) => el('li', { text: m })));
  const count = el('span', { class: 'note', id: id + '-count', text: c.samples.length + ' image' + (c.samples.length === 1 ? '' : 's') });
  const rec = el('button', { type: 'button', class: 'record', disabled: !stream, 'aria-label': 'Hold to record webcam images for ' + c.name, text: 'Hold to record' });
  const del = el('button', { type: 'button', class: 'danger', 'aria-label': 'Delete class ' + c.name, text: 'Delete class' });
  const thumbs = el('ul', { class: 'thumbs', 'aria-label': 'Images of ' + c.name });
  const shown = c.samples.slice(-60);
  for (const s of shown) thumbs.append(thumb(c, s));
  const more = c.samples.length > shown.length ? el('p', { class: 'note', text: 'Showing the last ' + shown.length + ' of ' + c.samples.length + ' images.' }) : null;
  const card = el('div', { class: 'class', id, role: 'group', 'aria-label': 'Class ' + (k + 1) + ': ' + c.name },
    el('div', { class: 'row' },
      el('label', { for: id + '-name', id: id + '-label', text: 'Name of class ' + (k + 1) }), name,
      el('label', { class: 'filebutton', for: id + '-files', text: 'Add images to class ' + (k + 1) }), files, rec, del, count),
    errors, thumbs, more);
  name.addEventListener('change', async () => {
    try { project = await api(P('/classes/' + c.id), { name: name.value }); errors.replaceChildren(); renderClasses(); const n = document.getElementById(id + '-name'); if (n) n.focus(); }
    catch (e) { errors.replaceChildren(el('li', { text: e.message })); name.value = c.name; name.setAttribute('aria-invalid', 'true'); }
  });
  del.addEventListener('click', async () => {
    if (c.samples.length && !confirm('Delete the class "' + c.name + '" and its ' + c.samples.length + ' images?')) return;
    try { project = await api(P('/classes/' + c.id + '/delete'), {}); renderClasses(); $('#add-class').focus(); refreshDiagramSoon(); }
    catch (e) { errors.replaceChildren(el('li', { text: e.message })); }
  });
  files.addEventListener('change', (e) => addFiles(c, [...e.target.files]).then(() => { files.value = ''; }));
  card.addEventListener('dragover', (e) => { e.preventDefault(); card.classList.add('drag'); });
  card.addEventListener('dragleave', () => card.classList.remove('drag'));
  card.addEventListener('drop', (e) => { e.preventDefault(); card.classList.remove('drag'); addFiles(c, [...e.dataTransfer.files]); });
  holdToRecord(rec, c);
  return card;
}
function thumb(c, s) {
  const img = el('img', { src: withToken(P('/samples/' + s.id + '/thumb') + '?b=' + encodeURIComponent(project.base)), alt: s.name, title: s.name + ' as the model sees it', loading: 'lazy', width: '64', height: '64' });
  const del = el('button', { type: 'button', 'aria-label': 'Delete image ' + s.name + ' from ' + c.name, text: 'Delete' });
  const li = el('li', {}, img, del);
  del.addEventListener('click', async () => {
    try {
      const next = li.nextElementSibling || li.previousElementSibling;
      project = await api(P('/samples/' + s.id + '/delete'), {});
      li.remove();
      const cc = project.classes.find((x) => x.id === c.id);
      const cnt = document.getElementById('c-' + c.id + '-count');
      if (cc && cnt) cnt.textContent = cc.samples.length + ' images';
      const focus = next && next.querySelector('button');
      (focus || document.getElementById('c-' + c.id + '-files')).focus();
    } catch (e) { document.getElementById('c-' + c.id + '-errors').replaceChildren(el('li', { text: e.message })); }
  });
  return li;
}
/** Uploads files to a class, 4 at a time; each refused file is listed with its name and why. */
async function addFiles(c, list, quiet) {
  const errors = [];
  let done = 0, ok = 0;
  const status = () => say('#classes-status', 'Uploading to "' + c.name + '": ' + done + ' of ' + list.length + '...');
  status();
  const queue = list.slice();
  const worker = async () => {
    for (let f = queue.shift(); f; f = queue.shift()) {
      try {
        if (f.size > MAX_FILE) throw new Error('"' + f.name + '" is larger than 32 MB, the most one file may be.');
        await sendFile(P('/classes/' + c.id + '/samples'), f, f.name || 'image');
        ok++;
      } catch (e) { errors.push(e.message); }
      done++; status();
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  refusedFiles.set(c.id, errors);
  await refresh();
  renderClasses();
  if (!quiet) say('#classes-status', 'Added ' + ok + ' of ' + list.length + ' images to "' + c.name + '"' + (errors.length ? '; ' + errors.length + ' refused (listed under the class).' : '.'), errors.length > 0);
  return { ok, errors };
}
async function addClass(name) {
  const r = await api(P('/classes'), { name });
  project = r.project;
  renderClasses();
  refreshDiagramSoon();
  return project.classes.find((c) => c.id === r.class.id);
}
function nextName() { let i = project.classes.length + 1; while (project.classes.some((c) => c.name === 'class ' + i)) i++; return 'class ' + i; }
$('#add-class').addEventListener('click', async () => {
  try { const c = await addClass(nextName()); const n = document.getElementById('c-' + c.id + '-name'); n.focus(); n.select(); say('#classes-status', 'Added "' + c.name + '": give it a name and images.'); }
  catch (e) { say('#classes-status', e.message, true); }
});
$('#folder').addEventListener('change', async (e) => {
  const by = new Map();
  const notImages = [];
  for (const f of e.target.files) {
    const parts = (f.webkitRelativePath || f.name).split('/');
    if (parts.length < 3) { notImages.push(f.name + ': not inside a class sub-folder'); continue; }
    if (!TYPES.includes(f.type)) { notImages.push(parts.slice(1).join('/') + ': not a PNG, JPEG, GIF or WebP image'); continue; }
    const cls = parts[parts.length - 2];
    if (!by.has(cls)) by.set(cls, []);
    by.get(cls).push(f);
  }
  e.target.value = '';
  const names = [...by.keys()].sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  let total = 0, refused = 0;
  try {
    for (const name of names) {
      const c = project.classes.find((x) => x.name === name) || await addClass(name);
      const r = await addFiles(c, by.get(name).sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true })), true);
      total += r.ok; refused += r.errors.length;
    }
    say('#classes-status', 'Loaded ' + total + ' images into ' + names.length + ' classes' + (refused ? '; ' + refused + ' refused (listed under their class)' : '') + (notImages.length ? '; skipped ' + notImages.length + ' other file' + (notImages.length === 1 ? '' : 's') + ': ' + notImages.slice(0, 5).join('; ') + (notImages.length > 5 ? '; ...' : '') : '') + '.', refused > 0);
  } catch (err) { say('#classes-status', err.message, true); }
});
let diagramTimer = null;
function refreshDiagramSoon() { clearTimeout(diagramTimer); diagramTimer = setTimeout(() => showDiagram(), 300); }

// ---- webcam
$('#camera').addEventListener('click', () => (stream ? stopCamera() : startCamera()));
async function startCamera() {
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
    const v = $('#video'); v.srcObject = stream; v.hidden = false; await v.play();
    $('#camera').textContent = 'Stop the webcam'; $('#camera').setAttribute('aria-pressed', 'true');
    for (const b of document.querySelectorAll('button.record')) b.disabled = false;
    say('#classes-status', 'Webcam on: hold "Hold to record" on a class (mouse, touch, Space or Enter) to add frames to it.');
  } catch (e) { stream = null; say('#classes-status', 'The webcam could not be started: ' + e.message, true); }
}
function stopCamera() {
  for (const t of stream.getTracks()) t.stop();
  stream = null; $('#video').hidden = true; $('#camera').textContent = 'Start the webcam'; $('#camera').setAttribute('aria-pressed', 'false');
  for (const b of document.querySelectorAll('button.record')) b.disabled = true;
  stopLive();
}
function frame() {
  const v = $('#video');
  const canvas = el('canvas', { width: String(v.videoWidth || 640), height: String(v.videoHeight || 480) });
  canvas.getContext('2d').drawImage(v, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve) => canvas.toBlob(resolve, 'image/jpeg', 0.9));
}
function holdToRecord(button, c) {
  let timer = null, n = 0, pending = [];
  const start = () => {
    if (!stream || timer) return;
    button.textContent = 'Recording...'; n = 0; pending = [];
    timer = setInterval(async () => { const b = await frame(); if (b && timer) { pending.push(sendFile(P('/classes/' + c.id + '/samples'), b, 'webcam-' + Date.now() + '-' + (n++) + '.jpg').catch((e) => e)); button.textContent = 'Recording... ' + n; } }, 200);
  };
  const stop = async () => {
    if (!timer) return;
    clearInterval(timer); timer = null; button.textContent = 'Hold to record';
    const results = await Promise.all(pending);
    const bad = results.filter((r) => r instanceof Error);
    await refresh(); renderClasses();
    say('#classes-status', 'Recorded ' + (results.length - bad.length) + ' frames for "' + c.name + '"' + (bad.length ? '; ' + bad.length + ' failed: ' + bad[0].message : '.'), bad.length > 0);
    const again = document.querySelector('#c-' + c.id + ' button.record'); if (again) again.focus();
  };
  button.addEventListener('pointerdown', (e) => { e.preventDefault(); start(); });
  button.addEventListener('pointerup', stop);
  button.addEventListener('pointerleave', stop);
  button.addEventListener('keydown', (e) => { if ((e.key === ' ' || e.key === 'Enter') && !e.repeat) { e.preventDefault(); start(); } });
  button.addEventListener('keyup', (e) => { if (e.key === ' ' || e.key === 'Enter') { e.preventDefault(); stop(); } });
}

// ---- settings
const FIELDS = { warmupEpochs: [0, 50, true], finetuneEpochs: [0, 50, true], batchSize: [1, 512, true], lr: [0.000001, 1, false] };
function renderSettings() {
  const s = project.settings;
  for (const k of Object.keys(FIELDS)) { const i = $('#s-' + k); i.value = s[k] == null ? '' : s[k]; i.removeAttribute('aria-invalid'); say('#e-' + k, ''); }
  $('#s-unfreeze').value = s.unfreeze || 'all';
  $('#s-holdOut').value = String(s.holdOut == null ? 0.15 : s.holdOut);
  $('#s-augment').checked = s.augment !== false;
  $('#s-findLr').checked = s.findLr === true;
}
/** The value of a number field, null when empty (the default), or an error in words. */
function fieldValue(k) {
  const [min, max, whole] = FIELDS[k];
  const i = $('#s-' + k);
  const t = i.value.trim();
  if (t === '' && !i.validity.badInput) return { value: null };
  const v = Number(t);
  if (!i.validity.badInput && Number.isFinite(v) && v >= min && v <= max && (!whole || Number.isInteger(v))) return { value: v };
  return { error: 'Must be ' + (whole ? 'a whole number' : 'a number') + ' from ' + min + ' to ' + max + ' (or empty for the default).' };
}
async function saveSetting(k, value) {
  const settings = {}; settings[k] = value;
  project = await api(P(), { settings });
}
for (const k of Object.keys(FIELDS)) {
  $('#s-' + k).addEventListener('change', async () => {
    const r = fieldValue(k);
    const i = $('#s-' + k);
    i.setAttribute('aria-invalid', r.error ? 'true' : 'false');
    say('#e-' + k, r.error || '', true);
    if (!r.error) { try { await saveSetting(k, r.value); } catch (e) { say('#e-' + k, e.message, true); } }
  });
}
$('#s-unfreeze').addEventListener('change', async (e) => { try { await saveSetting('unfreeze', e.target.value); await showDiagram(); } catch (err) { say('#status', err.message, true); } });
$('#s-holdOut').addEventListener('change', async (e) => { try { await saveSetting('holdOut', Number(e.target.value)); } catch (err) { say('#status', err.message, true); } });
$('#s-augment').addEventListener('change', async (e) => { try { await saveSetting('augment', e.target.checked); } catch (err) { say('#status', err.message, true); } });
$('#s-findLr').addEventListener('change', async (e) => { try { await saveSetting('findLr', e.target.checked); } catch (err) { say('#status', err.message, true); } });

// ---- training
function setTraining(on, text) {
  $('#train').disabled = on;
  $('#stop').hidden = !on;
  $('#resume').hidden = on || !project.stopped;
  if (text) say('#status', text);
}
function stopFollowing() { if (es) { es.close(); es = null; } clearInterval(pollTimer); }
function follow(id) {
  stopFollowing();
  setTraining(true, 'Waiting to start...');
  const forProject = project.id;
  es = new EventSource(withToken('/api/jobs/' + encodeURIComponent(id) + '/events'));
  let total = 1;
  const poll = async () => {
    try { const j = await api('/api/jobs/' + encodeURIComponent(id)); if (j.status === 'queued') say('#status', 'Waiting in the queue: ' + j.ahead + ' job' + (j.ahead === 1 ? '' : 's') + ' ahead of this one.'); else clearInterval(pollTimer); } catch (e) { clearInterval(pollTimer); }
  };
  poll(); pollTimer = setInterval(poll, 2000);
  const curves = () => {
    const t = Date.now();
    const src = (kind) => withToken('/api/jobs/' + encodeURIComponent(id) + '/curves.svg?' + (kind ? 'kind=' + kind + '&' : '') + 't=' + t);
    $('#curves').replaceChildren(el('img', { alt: 'Loss per epoch, warm-up and fine-tune phases', src: src('loss') }), el('img', { alt: 'Accuracy per epoch, warm-up and fine-tune phases', src: src('') }));
  };
  const ended = async (text, error) => {
    stopFollowing();
    if (project.id !== forProject) return;
    await refresh();
    setTraining(false);
    say('#status', text, error);
    renderResults();
    $('#train').focus();
  };
  es.addEventListener('started', () => { clearInterval(pollTimer); say('#status', 'Started: decoding the images...'); });
  es.addEventListener('decoded', (e) => { const d = JSON.parse(e.data); say('#status', 'Decoded ' + d.samples + ' images' + (d.skipped.length ? '; skipped ' + d.skipped.map((x) => x.name + ' (' + x.reason + ')').join(', ') : '') + '.'); });
  es.addEventListener('phase', (e) => {
    const p = JSON.parse(e.data);
    if (p.phase === 'fine-tune check') { say('#status', 'Checking whether fine-tuning beats the head: fold ' + p.fold + ' of ' + p.folds + '...'); return; }
    if (p.phase === 'decoding') { say('#status', 'Decoding ' + p.samples + ' images with the pipeline of graft train...'); return; }
    if (p.phase === 'resuming') return;
    total = Math.max(1, p.epochs * p.batchesPerEpoch);
    say('#status', p.phase + ': ' + (p.fit ? 'fitting the new head to the body features (L-BFGS)' : p.epochs + ' epochs' + (p.usesFeatureCache ? ', head on cached body features' : ', body unfrozen')) + '...');
  });
  es.addEventListener('batch', (e) => { const b = JSON.parse(e.data); $('#progress').value = ((b.epoch - 1) * b.batches + b.batch) / total; say('#status', b.phase + ' epoch ' + b.epoch + '/' + b.epochs + ', batch ' + b.batch + '/' + b.batches + ', loss ' + b.loss.toFixed(3) + ', accuracy ' + pct(b.accuracy)); });
  es.addEventListener('epoch', curves);
  es.addEventListener('done', (e) => { const d = JSON.parse(e.data); $('#progress').value = 1; ended('Done.' + (d.test ? ' Test accuracy on ' + d.test.count + ' held-out images: ' + pct(d.test.accuracy) + '.' : '')); });
  es.addEventListener('cancelled', (e) => ended('Stopped: ' + JSON.parse(e.data).reason + '.'));
  es.addEventListener('phase', (e) => { const p = JSON.parse(e.data); if (p.phase === 'resuming') say('#status', 'Resuming the ' + p.from + ' phase after ' + p.epochsDone + ' epoch(s)...'); });
  es.addEventListener('error', (e) => { if (e.data) ended('Training failed: ' + JSON.parse(e.data).message, true); });
}
async function startTraining(resume) {
  $('#train').disabled = true;
  $('#resume').hidden = true;
  try {
    for (const k of Object.keys(FIELDS)) { const r = fieldValue(k); if (r.error) { say('#e-' + k, r.error, true); $('#s-' + k).focus(); throw new Error('Fix the setting "' + document.querySelector('label[for="s-' + k + '"]').textContent + '" first: ' + r.error); } }
    const { id, ahead } = await api(P('/train'), resume ? { resume: true } : {});
    project.job = { id, status: 'queued' };
    follow(id);
    if (ahead) say('#status', 'Waiting in the queue: ' + ahead + ' job' + (ahead === 1 ? '' : 's') + ' ahead of this one.');
  } catch (e) { say('#status', e.message, true); $('#train').disabled = false; $('#resume').hidden = !project.stopped; }
}
$('#train').addEventListener('click', () => startTraining(false));
$('#resume').addEventListener('click', () => startTraining(true));
$('#stop').addEventListener('click', async () => { try { await api(P('/stop'), {}); say('#status', 'Stopping after the current batch...'); } catch (e) { say('#status', e.message, true); } });

// ---- results
function renderResults() {
  const r = project.result;
  const box = $('#results');
  $('#export').hidden = !r;
  if (!r) { box.replaceChildren(el('p', { class: 'empty', text: 'No results yet: train the project to see its accuracy per class, the confusion matrix and what the recipe did.' })); $('#curves').replaceChildren(); return; }
  const parts = [el('p', { text: 'Trained on ' + r.trainedOn + ' images, ' + new Date(r.finished).toLocaleString() + '.' })];
  if (r.test) {
    parts.push(el('p', {}, el('strong', { text: 'Test accuracy ' + pct(r.test.accuracy) }), ' on ' + r.test.count + ' held-out images (95% interval ' + pct(r.test.wilson95[0]) + ' to ' + pct(r.test.wilson95[1]) + ').'));
    const per = el('table', {}, el('caption', { text: 'Accuracy per class (held-out images)' }), el('thead', {}, el('tr', {}, el('th', { text: 'class' }), el('th', { text: 'images' }), el('th', { text: 'accuracy' }))),
      el('tbody', {}, ...r.test.perClass.map((c) => el('tr', {}, el('td', { text: c.className }), el('td', { text: String(c.count) }), el('td', { text: c.accuracy == null ? '-' : pct(c.accuracy) })))));
    const conf = el('table', { class: 'confusion' }, el('caption', { text: 'Confusion matrix: rows are the true class, columns the predicted one' }),
      el('thead', {}, el('tr', {}, el('th', { text: 'true \\ predicted' }), ...r.classNames.map((n) => el('th', { scope: 'col', text: n })))),
      el('tbody', {}, ...r.test.confusion.map((row, i) => el('tr', {}, el('th', { scope: 'row', text: r.classNames[i] }), ...row.map((v, j) => el('td', { class: i === j ? 'hit' : '', text: String(v) }))))));
    // Wide tables scroll inside their own box, which the keyboard can reach and scroll.
    parts.push(el('div', { class: 'scroll', tabindex: '0', role: 'region', 'aria-label': 'Accuracy per class' }, per),
      el('div', { class: 'scroll', tabindex: '0', role: 'region', 'aria-label': 'Confusion matrix' }, conf));
  } else parts.push(el('p', { class: 'note', text: 'Nothing was held out for testing, so there is no accuracy per class (set "Held out for testing").' }));
  if (r.words.length) parts.push(el('ul', {}, ...r.words.map((w) => el('li', { text: w }))));
  if (r.skipped.length) parts.push(el('p', { class: 'err', text: 'Skipped: ' + r.skipped.map((x) => x.name + ' (' + x.reason + ')').join('; ') }));
  box.replaceChildren(...parts);
  if (!es) {
    const src = (kind) => withToken(P('/curves.svg') + '?' + (kind ? 'kind=' + kind + '&' : '') + 't=' + Date.parse(r.finished));
    $('#curves').replaceChildren(el('img', { alt: 'Loss per epoch, warm-up and fine-tune phases', src: src('loss') }), el('img', { alt: 'Accuracy per epoch, warm-up and fine-tune phases', src: src('') }));
  }
  $('#download').href = withToken(P('/download'));
  $('#download-onnx').href = withToken(P('/download') + '?format=onnx');
  $('#download-onnx16').href = withToken(P('/download') + '?format=onnx&quantize=fp16');
  $('#report').href = withToken(P('/report'));
  $('#snippet-tfjs').textContent = "import * as tf from '@tensorflow/tfjs';\n// Unzip the download next to your page; graft.json lists the classes and the input size.\nconst model = await tf.loadLayersModel('graft-model/model.json');\nconst meta = await (await fetch('graft-model/graft.json')).json();\nconst [h, w] = meta.preprocessing.inputShape;\nconst x = tf.image.resizeBilinear(tf.browser.fromPixels(img), [h, w]).expandDims(0);\n// Scale as graft.json's preprocessing says (the model was trained on that), then:\nconst probs = await model.predict(x).data();\nconsole.log(meta.classNames[probs.indexOf(Math.max(...probs))]);";
  $('#snippet-cli').textContent = 'unzip graft-model-' + project.id.slice(0, 8) + '.zip -d graft-model\nnpx graft predict graft-model photo.jpg\nnpx graft evaluate graft-model <folder of class sub-folders>\nnpx graft report graft-model';
}

// ---- predict
async function predictBlob(blob, name) {
  say('#predict-error', '');
  const { top } = await sendFile(P('/predict') + '?top=' + Math.min(5, Math.max(2, project.classes.length)), blob, name);
  const url = URL.createObjectURL(blob);
  $('#prediction').replaceChildren(el('img', { src: url, alt: name }), el('ol', { 'aria-label': 'Predictions for ' + name }, ...top.map((t) => {
    const bar = el('div', { class: 'bar' });
    bar.style.width = Math.max(2, 100 * t.probability) + '%';
    return el('li', {}, el('b', { text: t.className }), ' ' + pct(t.probability), bar);
  })));
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}
$('#predict-file').addEventListener('change', async (e) => {
  const f = e.target.files[0];
  if (!f) return;
  try { await predictBlob(f, f.name); } catch (err) { say('#predict-error', err.message, true); }
  e.target.value = '';
});
$('#live').addEventListener('click', async () => {
  if (liveTimer) { stopLive(); return; }
  if (!stream) await startCamera();
  if (!stream) { say('#predict-error', 'The webcam could not be started (see section 2).', true); return; }
  $('#live').setAttribute('aria-pressed', 'true'); $('#live').textContent = 'Stop the live preview';
  let busy = false;
  liveTimer = setInterval(async () => {
    if (busy) return; busy = true;
    try { const b = await frame(); if (b) await predictBlob(b, 'webcam frame'); } catch (err) { say('#predict-error', err.message, true); stopLive(); }
    busy = false;
  }, 700);
});
function stopLive() { clearInterval(liveTimer); liveTimer = null; $('#live').setAttribute('aria-pressed', 'false'); $('#live').textContent = 'Live webcam preview'; }

// ---- start: reopen the last project, or make the first one
(async () => {
  try {
    await loadZoo();
    const list = await loadProjects();
    const last = localStorage.getItem('graft-project');
    if (last && list.some((p) => p.id === last)) await openProject(last);
    else if (list.length) await openProject(list[0].id);
    else await newProject();
  } catch (e) { say('#project-status', e.message, true); }
})();
`;
