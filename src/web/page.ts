// The single page of `graft serve`: HTML, a stylesheet and a script, all served by Graft (the
// Content-Security-Policy allows nothing else, and no inline script or style). Images are
// decoded and resized in the browser (canvas) to the model's input size; the server receives
// pixels plus each file's first bytes (to check its type). User text is set as text, never HTML.

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
<header><h1>Graft: transfer learning</h1></header>
<main>
<section id="base-section"><h2>1. Base model and cut</h2>
<div class="row"><label for="zoo">Pretrained model</label><select id="zoo"></select>
<button id="show">Show</button></div>
<p id="cutinfo" aria-live="polite">Choose a layer to cut at: the new head is attached after it; the input node stays the original input.</p>
<ol id="layers" aria-label="Layers: choose where to cut"></ol>
<div id="diagram" aria-label="Architecture diagram"></div></section>
<section id="classes-section"><h2>2. Classes</h2>
<p>Add images per class (drop them on a class, or choose files), or load a folder with one sub-folder per class.</p>
<div class="row"><button id="add-class">Add class</button><label for="folder">Load a folder</label><input id="folder" type="file" webkitdirectory multiple>
<label><input id="invert" type="checkbox"> invert (dark on light)</label></div>
<div id="classes"></div></section>
<section id="train-section"><h2>3. Train</h2>
<div class="row"><label for="warmup">Warm-up epochs</label><input id="warmup" type="number" min="0" max="50" value="3" size="3">
<label for="finetune">Fine-tune epochs</label><input id="finetune" type="number" min="0" max="50" value="2" size="3">
<label for="unfreeze">Unfreeze</label><select id="unfreeze"><option value="all">all</option><option value="2">top 2 layers</option><option value="none">none (body frozen)</option></select>
<button id="train" class="primary">Train</button><button id="cancel" hidden>Cancel</button></div>
<progress id="progress" max="1" value="0"></progress><p id="status" role="status" aria-live="polite"></p>
<div id="curves"></div></section>
<section id="predict-section"><h2>4. Predict and download</h2>
<div class="row"><label for="predict-file">Image to classify</label><input id="predict-file" type="file" accept="image/png,image/jpeg,image/gif,image/webp"></div>
<div id="prediction" aria-live="polite"></div>
<p><a id="download" href="#" hidden>Download the trained model (tfjs model + graft.json, zip)</a></p></section>
</main>
</body></html>`;
}

export const APP_CSS = `*{box-sizing:border-box}body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;background:#f7f7f5;color:#1d1d1d}
header{background:#24323f;color:#fff;padding:10px 16px}header h1{margin:0;font-size:1.3rem}main{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:14px;padding:14px;max-width:1400px;margin:0 auto}
section{background:#fff;border:1px solid #ddd;border-radius:8px;padding:12px;min-width:0}h2{margin:0 0 8px;font-size:1.1rem}
#diagram svg{max-width:100%;height:auto}#diagram .block{cursor:pointer}button,select,input{font:inherit}button{padding:6px 12px;border-radius:6px;border:1px solid #557;background:#eef;cursor:pointer}
button.primary{background:#24527a;color:#fff}button:focus,input:focus,select:focus,.block:focus,a:focus{outline:3px solid #1a73e8;outline-offset:1px}
#layers{max-height:260px;overflow:auto;padding-left:0;list-style:none;margin:6px 0}#layers li{display:flex;justify-content:space-between;gap:6px;padding:2px 0;border-bottom:1px solid #eee;font-size:.9rem}
#layers li.cut{background:#fde7e7;font-weight:bold}.class{border:1px dashed #99a;border-radius:6px;padding:8px;margin:6px 0}.class.drag{background:#eef6ff}
.row{display:flex;flex-wrap:wrap;gap:8px;align-items:center}.bar{height:14px;background:#24527a;border-radius:3px}#status{min-height:1.4em}
.thumbs{display:flex;flex-wrap:wrap;gap:2px;margin-top:4px}.thumbs canvas{width:28px;height:28px;image-rendering:pixelated;border:1px solid #ccc}
#curves img{max-width:100%;background:#fff}#progress{width:100%}.wide{grid-column:1/-1}.err{color:#b00020}
@media (max-width:800px){main{grid-template-columns:minmax(0,1fr);padding:8px}}
`;

export const APP_JS = String.raw`const $ = (s) => document.querySelector(s);
const TOKEN = document.querySelector('meta[name="graft-token"]').content;
const TYPES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'];
const MAX_FILE = 5 * 1024 * 1024;
let model = null, cut = null, inputShape = null, jobId = null, classes = [];
// User text (class names, file names, layer names, messages) only ever goes in as text.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'text') e.textContent = v; else if (k in e && typeof v !== 'string') e[k] = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}
function say(text, error) { const s = $('#status'); s.textContent = text; s.className = error ? 'err' : ''; }
const withToken = (path) => path + (path.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(TOKEN);
async function api(path, body) {
  const headers = { 'x-graft-token': TOKEN };
  if (body) headers['content-type'] = 'application/json';
  const res = await fetch(path, body ? { method: 'POST', headers, body: JSON.stringify(body) } : { headers });
  const data = await res.json();
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}
async function loadZoo() {
  const zoo = await api('/api/models');
  $('#zoo').replaceChildren(...zoo.map((z) => el('option', { value: z.name, title: z.description, text: z.name })));
}
function showSvg(svg) {
  const doc = new DOMParser().parseFromString(svg, 'image/svg+xml');
  const root = doc.documentElement;
  for (const s of root.querySelectorAll('script, foreignObject')) s.remove();
  $('#diagram').replaceChildren(document.importNode(root, true));
}
async function show() {
  model = $('#zoo').value;
  const q = '/api/inspect?model=' + encodeURIComponent(model) + (cut ? '&cut=' + encodeURIComponent(cut) : '');
  try {
    const { inspection, svg } = await api(q);
    inputShape = inspection.inputs[0].shape.slice(1);
    showSvg(svg);
    $('#layers').replaceChildren(...inspection.layers.filter((l) => l.className !== 'InputLayer').map((l) =>
      el('li', l.name === cut ? { class: 'cut' } : {}, el('span', { text: l.index + ' ' + l.name + ' ' }, el('small', { text: l.className })),
        el('button', { 'data-layer': l.name, 'aria-label': 'cut after ' + l.name, text: 'cut here' }))));
    $('#cutinfo').textContent = cut ? 'Cut after "' + cut + '": ' + inspection.cut.removed.length + ' layers removed on the output side; the input node stays "' + inspection.inputs[0].name + '".' : 'No cut chosen: Graft uses the model\'s suggested cut. Choose a layer to cut at.';
    for (const g of document.querySelectorAll('#diagram .block[data-layers]')) {
      const pick = () => { const ls = g.getAttribute('data-layers').split(' '); cut = ls[ls.length - 1]; show(); };
      g.addEventListener('click', pick);
      g.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); pick(); } });
    }
  } catch (e) { say(e.message, true); }
}
$('#layers').addEventListener('click', (e) => { const b = e.target.closest('button[data-layer]'); if (b) { cut = b.dataset.layer; show().then(() => { const nb = [...document.querySelectorAll('button[data-layer]')].find((x) => x.dataset.layer === cut); if (nb) nb.focus(); }); } });
function b64(bytes) { let s = ''; for (const b of bytes) s += String.fromCharCode(b); return btoa(s); }
async function decode(file) {
  if (!TYPES.includes(file.type)) throw new Error(file.name + ': not a PNG, JPEG, GIF or WebP image');
  if (file.size > MAX_FILE) throw new Error(file.name + ': larger than 5 MB');
  const magic = b64(new Uint8Array(await file.slice(0, 12).arrayBuffer()));
  const bmp = await createImageBitmap(file);
  const [h, w, c] = inputShape;
  const canvas = el('canvas', { width: w, height: h });
  const ctx = canvas.getContext('2d');
  const scale = Math.max(w / bmp.width, h / bmp.height);
  const dw = bmp.width * scale, dh = bmp.height * scale;
  ctx.drawImage(bmp, (w - dw) / 2, (h - dh) / 2, dw, dh);
  const rgba = ctx.getImageData(0, 0, w, h).data;
  const inv = $('#invert').checked;
  const pixels = [];
  for (let i = 0; i < w * h; i++) {
    const r = rgba[4 * i], g = rgba[4 * i + 1], bl = rgba[4 * i + 2];
    const v = (x) => (inv ? 255 - x : x);
    if (c === 1) pixels.push(Math.round(v(0.299 * r + 0.587 * g + 0.114 * bl))); else pixels.push(v(r), v(g), v(bl));
  }
  return { magic, pixels, canvas };
}
function addClass(name) {
  const k = classes.length;
  const c = { name: name || 'class ' + (k + 1), images: [] };
  classes.push(c);
  const nameInput = el('input', { class: 'cname', value: c.name });
  const files = el('input', { class: 'cfiles', type: 'file', multiple: true, accept: 'image/png,image/jpeg,image/gif,image/webp' });
  const count = el('span', { class: 'count', text: '0 images' });
  const thumbs = el('div', { class: 'thumbs' });
  const div = el('div', { class: 'class' }, el('div', { class: 'row' }, el('label', { text: 'Name ' }, nameInput), el('label', { text: 'Images ' }, files), count), thumbs);
  nameInput.value = c.name;
  nameInput.addEventListener('input', (e) => { c.name = e.target.value; });
  const addFiles = async (list) => {
    await ensureModel();
    for (const f of list) {
      try { const d = await decode(f); c.images.push({ magic: d.magic, pixels: d.pixels }); if (c.images.length <= 40) thumbs.appendChild(d.canvas); }
      catch (e) { say(e.message, true); }
    }
    count.textContent = c.images.length + ' images';
  };
  files.addEventListener('change', (e) => addFiles([...e.target.files]));
  div.addEventListener('dragover', (e) => { e.preventDefault(); div.classList.add('drag'); });
  div.addEventListener('dragleave', () => div.classList.remove('drag'));
  div.addEventListener('drop', (e) => { e.preventDefault(); div.classList.remove('drag'); addFiles([...e.dataTransfer.files]); });
  $('#classes').appendChild(div);
  return { c, addFiles };
}
async function ensureModel() { if (!inputShape) await show(); }
$('#add-class').addEventListener('click', () => addClass());
$('#folder').addEventListener('change', async (e) => {
  const by = new Map();
  for (const f of e.target.files) {
    const parts = (f.webkitRelativePath || f.name).split('/');
    if (parts.length < 2) continue;
    const cls = parts[parts.length - 2];
    if (!by.has(cls)) by.set(cls, []);
    by.get(cls).push(f);
  }
  for (const [name, list] of by) await addClass(name).addFiles(list);
  say('Loaded ' + by.size + ' classes from the folder.');
});
function follow(id) {
  jobId = id;
  location.hash = 'job=' + id;
  $('#cancel').hidden = false;
  const es = new EventSource(withToken('/api/jobs/' + encodeURIComponent(id) + '/events'));
  let total = 1, done = 0;
  const end = (state) => { es.close(); $('#cancel').hidden = true; document.body.dataset.job = state; };
  es.addEventListener('phase', (e) => { const p = JSON.parse(e.data); total = p.epochs * p.batchesPerEpoch; done = 0; say(p.phase + ': ' + p.epochs + ' epochs' + (p.usesFeatureCache ? ', head on cached body features' : ', body unfrozen')); });
  es.addEventListener('batch', (e) => { const b = JSON.parse(e.data); done = (b.epoch - 1) * b.batches + b.batch; $('#progress').value = done / total; say(b.phase + ' epoch ' + b.epoch + '/' + b.epochs + ', batch ' + b.batch + '/' + b.batches + ', loss ' + b.loss.toFixed(3) + ', accuracy ' + (100 * b.accuracy).toFixed(1) + '%'); });
  es.addEventListener('epoch', () => {
    const t = Date.now();
    const src = (kind) => withToken('/api/jobs/' + encodeURIComponent(id) + '/curves.svg?' + (kind ? 'kind=' + kind + '&' : '') + 't=' + t);
    $('#curves').replaceChildren(el('img', { alt: 'loss per epoch', src: src('loss') }), el('img', { alt: 'accuracy per epoch', src: src('') }));
  });
  es.addEventListener('done', (e) => { const d = JSON.parse(e.data); end('done'); $('#progress').value = 1; const v = d.metrics.validationAccuracy; say('Done. ' + (v == null ? '' : 'Validation accuracy ' + (100 * v).toFixed(1) + '%. ') + (d.words || []).join('. ')); const a = $('#download'); a.href = withToken('/api/jobs/' + encodeURIComponent(id) + '/download'); a.hidden = false; });
  es.addEventListener('cancelled', () => { end('cancelled'); say('Cancelled.'); });
  es.addEventListener('error', (e) => { if (e.data) { say('Training failed: ' + JSON.parse(e.data).message, true); end('error'); } });
}
$('#train').addEventListener('click', async () => {
  try {
    await ensureModel();
    const body = { base: model, classes: classes.map((c) => ({ name: c.name, images: c.images })), warmupEpochs: +$('#warmup').value, finetuneEpochs: +$('#finetune').value, unfreeze: $('#unfreeze').value };
    if (cut) body.cut = cut;
    say('Uploading ' + classes.reduce((n, c) => n + c.images.length, 0) + ' images...');
    const { id } = await api('/api/jobs', body);
    document.body.dataset.job = 'running';
    follow(id);
  } catch (e) { say(e.message, true); }
});
$('#cancel').addEventListener('click', async () => { try { if (jobId) await api('/api/jobs/' + encodeURIComponent(jobId) + '/cancel', {}); } catch (e) { say(e.message, true); } });
$('#predict-file').addEventListener('change', async (e) => {
  try {
    if (!jobId) throw new Error('Train a model first.');
    const d = await decode(e.target.files[0]);
    const { top } = await api('/api/jobs/' + encodeURIComponent(jobId) + '/predict', { pixels: d.pixels, topK: 3 });
    $('#prediction').replaceChildren(el('ol', {}, ...top.map((t) => {
      const bar = el('div', { class: 'bar' });
      bar.style.width = Math.max(2, 100 * t.probability) + '%';
      return el('li', {}, el('b', { text: t.className }), ' ' + (100 * t.probability).toFixed(1) + '%', bar);
    })));
  } catch (err) { say(err.message, true); }
});
$('#show').addEventListener('click', () => { cut = null; show(); });
loadZoo().then(show).then(() => { const m = /job=([\w-]+)/.exec(location.hash); if (m) follow(m[1]); });
`;
