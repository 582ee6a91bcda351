/* tracecorr postmortem timeline: draws the lanes, records, wakers and the blocked-time icicle
 * from the data embedded in this page (see correlator/render/timeline/data.py for the format).
 *
 * Level of detail, per lane and per redraw: a lane whose visible window holds few slices (or
 * any window of EXACT_NS or less) draws every slice, at least one pixel wide; a denser lane
 * draws one bar per pixel column whose height is the busy fraction of that column and whose
 * colour is the worst class in it. Nothing is left out at any zoom level.
 *
 * Every string from a trace reaches the page through textContent, a canvas fillText or
 * setAttribute: never as markup. */
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  performance.mark('tc-script');
  const META = JSON.parse($('tc-meta').textContent);
  const T0 = BigInt(META.t0);
  const CLS = META.classes;
  // a record's "in" code on the page (0: the library's): its colour key, legend, name, tip
  const IN_LEGEND = [
    [1, 'go-runtime', 'Go runtime inside a cgo call', 'Go runtime', 'time of the Go runtime inside the cgo call'],
    [2, 'python-runtime', 'Python interpreter (GIL) inside a call', 'Python runtime', 'time the thread waited for the GIL inside the call'],
    [3, 'caller', 'the caller’s own code inside a call', 'caller', 'time in the caller’s own C code inside the call'],
  ];
  const NCLS = CLS.length;
  const BUSY = Uint8Array.from(CLS, (c) => (c.busy ? 1 : 0));
  const ROWS = 3;
  const EXACT_NS = 10e6; // a window this short or shorter always shows every slice exactly
  const LABEL_W = 250;
  const GH = 20; // goroutine lane height
  const TH = 30; // thread lane height: goroutine / py-spy row, syscall row, off-CPU row
  const HH = 20; // pane and process headers
  const ROW_Y = [2, 11, 20];
  const ROW_H = 8;
  const HL = '#0047ff';
  const WAKER = '#1b7f3b';
  const body = document.body;

  // ---------------------------------------------------------------- data
  async function inflate(id) { // base64 text of a zlib stream -> bytes, all offline
    const b64 = $(id).textContent.trim();
    let bytes;
    if (Uint8Array.fromBase64) bytes = Uint8Array.fromBase64(b64);
    else {
      const bin = atob(b64);
      bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    }
    const ds = new DecompressionStream('deflate');
    const w = ds.writable.getWriter();
    w.write(bytes);
    w.close();
    return new Uint8Array(await new Response(ds.readable).arrayBuffer());
  }

  // A column is `width` byte planes (byte j of every value, then byte j+1, ...) plus the
  // sparse high parts of the few values wider than that. `wide`: decode into float64.
  async function column(name, wide) {
    const d = META.columns[name];
    const n = d.n; const k = d.width;
    const b = await inflate('tc-col-' + name);
    const out = wide ? new Float64Array(n) : new [Uint8Array, Uint16Array, Uint32Array, Uint32Array][k - 1](n);
    if (k === 1) for (let i = 0; i < n; i++) out[i] = b[i];
    else if (k === 2) for (let i = 0; i < n; i++) out[i] = b[i] | (b[n + i] << 8);
    else if (k === 3) for (let i = 0; i < n; i++) out[i] = b[i] | (b[n + i] << 8) | (b[2 * n + i] << 16);
    else for (let i = 0; i < n; i++) out[i] = (b[i] | (b[n + i] << 8) | (b[2 * n + i] << 16)) + b[3 * n + i] * 16777216;
    if (d.hi) {
      const scale = 2 ** (8 * k);
      for (let j = 0; j < d.hi[0].length; j++) out[d.hi[0][j]] += d.hi[1][j] * scale;
    }
    return out;
  }
  const noneCode = (name) => 2 ** (8 * META.columns[name].width) - 1;

  // One pane's order: slice indices by (track, start) where key[i] >= 0 is slice i's track,
  // with a running maximum of the ends so that the first slice still visible at time s is
  // found by binary search even where slices overlap (the folded goroutines lane).
  function pane(key, nTracks, end) {
    const n = key.length;
    const off = new Uint32Array(nTracks + 1);
    for (let i = 0; i < n; i++) if (key[i] >= 0) off[key[i] + 1]++;
    for (let k = 0; k < nTracks; k++) off[k + 1] += off[k];
    const order = new Uint32Array(off[nTracks]);
    const fill = off.slice(0, nTracks);
    for (let i = 0; i < n; i++) { const k = key[i]; if (k >= 0) order[fill[k]++] = i; } // stable
    const pmax = new Float64Array(order.length);
    for (let k = 0; k < nTracks; k++) {
      let m = -Infinity;
      for (let p = off[k]; p < off[k + 1]; p++) {
        const e = end[order[p]];
        if (e > m) m = e;
        pmax[p] = m;
      }
    }
    return { off, order, pmax };
  }

  let M = null; // the model: columns and the two panes
  let R = null; // the records document

  // First the small part (the whole capture as pixel-column bars, and the records): the page
  // paints from it while the parser is still reading the slice columns below this script.
  let OV = null;
  async function loadOverview() {
    const [b, rec] = await Promise.all([
      inflate('tc-overview'),
      inflate('tc-records').then((x) => JSON.parse(new TextDecoder().decode(x))),
    ]);
    const o = META.overview; const nt = o.threads * o.bins; const ng = o.goroutines * o.bins;
    OV = {
      threads: { share: b.subarray(0, nt), worst: b.subarray(nt, 2 * nt) },
      goroutines: { share: b.subarray(2 * nt, 2 * nt + ng), worst: b.subarray(2 * nt + ng, 2 * nt + 2 * ng) },
    };
    R = rec;
    R.order = Array.from({ length: R.n || 0 }, (_, i) => i).sort((x, y) => R.start[x] - R.start[y]);
  }

  // Then every slice: the columns, and each pane's order.
  async function loadColumns() {
    const [start, end, cls, tt, gi, nm] = await Promise.all([
      column('start', true), column('dur', true), column('cls'), column('tt'), column('gi'), column('nm'),
    ]);
    performance.mark('tc-inflated');
    const n = META.n;
    for (let i = 1; i < n; i++) start[i] += start[i - 1]; // deltas -> starts
    for (let i = 0; i < n; i++) end[i] += start[i]; // durations -> ends
    const ttNone = noneCode('tt'); const giNone = noneCode('gi');
    const goLane = Int32Array.from(META.goroutines.lane);
    const nGo = META.goroutines.lanes.length + (META.goroutines.other ? 1 : 0);
    const kt = new Int32Array(n); const kg = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      kt[i] = tt[i] === ttNone ? -1 : tt[i];
      kg[i] = gi[i] === giNone ? -1 : goLane[gi[i]];
    }
    M = {
      n, start, end, cls, tt, gi, nm, giNone,
      threads: pane(kt, META.threads.length * ROWS, end),
      gor: pane(kg, nGo, end),
    };
    performance.mark('tc-model');
  }

  // ---------------------------------------------------------------- layout
  const G = META.goroutines;
  const rows = []; // {type, y, h, ...}: pane and process headers, goroutine and thread lanes
  const gLaneY = [];
  const tLaneY = [];
  function layout() {
    let y = 0;
    const header = (type, text) => { rows.push({ type, y, h: HH, text }); y += HH; };
    const nG = G.lanes.length + (G.other ? 1 : 0);
    if (nG) {
      header('pane', `Goroutines (${G.lanes.length} that called ${META.library}; click one to follow it across threads)`);
      G.lanes.forEach((l, i) => {
        rows.push({ type: 'glane', lane: i, y, h: GH, text: `goroutine ${l.goid}`, sub: l.site, goid: l.goid });
        gLaneY[i] = y; y += GH;
      });
      if (G.other) {
        rows.push({ type: 'glane', lane: G.lanes.length, y, h: GH, text: `other goroutines (${G.other})`, sub: 'folded into one lane' });
        gLaneY[G.lanes.length] = y; y += GH;
      }
    }
    header('pane', `OS threads (${META.threads.length})`);
    let pid = null;
    META.threads.forEach((t, i) => {
      if (t.pid !== pid) {
        pid = t.pid;
        const main = META.threads.find((u) => u.tid === t.pid);
        header('group', `process ${pid < 0 ? '?' : pid}${main && main.name ? ' ' + main.name : ''}`);
      }
      rows.push({ type: 'tlane', lane: i, y, h: TH, text: `${t.pid < 0 ? '?' : t.pid} / ${t.tid}`, sub: t.name, tid: t.tid });
      tLaneY[i] = y; y += TH;
    });
    return y;
  }
  const totalH = layout();

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function buildLabels() {
    const box = $('tc-labels');
    box.style.height = totalH + 'px';
    for (const r of rows) {
      const d = el('div', 'tc-lab tc-' + r.type);
      d.style.top = r.y + 'px';
      d.style.height = r.h + 'px';
      d.appendChild(el('span', 'tc-main', r.text));
      if (r.sub) d.appendChild(el('span', 'tc-sub', ' ' + r.sub));
      d.setAttribute('title', r.sub ? `${r.text} ${r.sub}` : r.text);
      if (r.type === 'glane') {
        if (r.goid !== undefined && r.goid !== null) d.dataset.goid = String(r.goid);
        d.addEventListener('click', () => { if (r.goid != null) setHighlight(view.hl === r.goid ? null : r.goid); });
      }
      if (r.type === 'tlane') d.dataset.tid = String(r.tid);
      r.label = d;
      box.appendChild(d);
    }
  }

  function buildLegend() {
    const box = $('tc-legend');
    const item = (colour, text, shape) => {
      const s = el('span', 'tc-key');
      const sw = el('i', 'tc-sw' + (shape ? ' ' + shape : ''));
      sw.style.background = colour;
      s.append(sw, el('span', null, text));
      box.appendChild(s);
    };
    // only what this capture has: a Python capture has no goroutine states
    META.present.forEach((i) => item(CLS[i].colour, CLS[i].label));
    item(META.record_colours.library, `blocking inside ${META.library}`);
    IN_LEGEND.forEach(([code, name, label]) => {
      if (R && R.rt.some((x) => x === code)) item(META.record_colours[name], label);
    });
    if (G.ids.length) item(HL, 'highlighted goroutine on a thread');
    if (R && R.wakers.length) item(WAKER, 'waker → woken record', 'tc-arrow');
  }

  function fmtNs(ns) {
    if (ns === null || ns === undefined) return '?';
    const a = Math.abs(ns);
    if (a < 1e3) return `${Math.round(ns)} ns`;
    if (a < 1e6) return `${(ns / 1e3).toFixed(1)} µs`;
    if (a < 1e9) return `${(ns / 1e6).toFixed(3)} ms`;
    return `${(ns / 1e9).toFixed(3)} s`;
  }
  const fmtAt = (rel) => `${(rel / 1e6).toFixed(3)} ms`;

  function buildFindings() {
    const box = $('tc-findings');
    const list = META.findings;
    box.appendChild(el('h3', null, `Findings (${list.length})`));
    if (!list.length) { box.appendChild(el('p', 'tc-none', 'No findings in this capture.')); return; }
    const ul = el('ul', 'tc-flist');
    for (const f of list) {
      const li = el('li', 'tc-finding');
      li.dataset.kind = f.kind;
      li.append(el('span', 'tc-sev tc-sev-' + (['error', 'warning', 'info'].includes(f.severity) ? f.severity : 'info'), f.severity),
        el('span', 'tc-fkind', f.kind), el('span', 'tc-fsum', f.summary));
      const bits = [];
      if (f.goroutines.length) bits.push(`goroutines ${f.goroutines.join(', ')}`);
      if (f.threads.length) bits.push(`threads ${f.threads.join(', ')}`);
      if (f.pid !== null) bits.push(`pid ${f.pid}`);
      if (f.fd !== null) bits.push(`fd ${f.fd}`);
      if (f.count !== null) bits.push(`${f.count}×`);
      if (bits.length) li.appendChild(el('span', 'tc-fmeta', bits.join(' · ')));
      if (f.first !== null && /^-?\d+$/.test(f.first) && /^-?\d+$/.test(f.last || f.first)) {
        const a = el('a', 'tc-flink', 'show on the timeline');
        let href = `#t=ns:${f.first},${f.last || f.first}`;
        if (f.goroutines.length) href += `&g=${Number(f.goroutines[0])}`;
        a.setAttribute('href', href);
        li.appendChild(a);
      }
      ul.appendChild(li);
    }
    box.appendChild(ul);
  }

  // ---------------------------------------------------------------- view state
  const fullRange = () => [-(META.end || 1000) * 0.01, (META.end || 1000) * 1.01];
  const [s0, e0] = fullRange();
  const view = { s: s0, e: e0, hl: null, filter: null };
  const canvas = $('tc-lanes');
  const axis = $('tc-axis');
  const scroller = $('tc-scroll');
  let W = 800; let H = 400;

  function setRange(s, e, fromHash) {
    if (!(e > s)) { const c = s; s = c - 500; e = c + 500; }
    if (e - s < 100) { const c = (s + e) / 2; s = c - 50; e = c + 50; }
    view.s = s; view.e = e;
    schedule(fromHash ? 'none' : 'hash');
  }

  function setHighlight(goid) {
    view.hl = goid === null || goid === undefined || Number.isNaN(goid) ? null : goid;
    body.dataset.highlight = view.hl === null ? '' : String(view.hl);
    for (const r of rows) if (r.type === 'glane' && r.label) r.label.classList.toggle('tc-on', view.hl !== null && r.goid === view.hl);
    $('tc-hl').textContent = view.hl === null ? '' : `goroutine ${view.hl} highlighted (its stretches on every thread: blue strip) `;
    $('tc-hl-clear').hidden = view.hl === null;
    schedule('hash');
  }

  function setFilter(node) {
    const T = R.tree;
    view.filter = node === null || node === 0 ? null : node;
    const f = view.filter;
    const st = $('tc-filter');
    if (f === null) { st.textContent = ''; $('tc-filter-clear').hidden = true; }
    else {
      let n = 0;
      for (let i = 0; i < R.n; i++) if (R.node[i] >= f && R.node[i] < f + T.size[f]) n++;
      st.textContent = `showing the ${n} record(s) under “${R.strings[T.label[f]]}” `;
      $('tc-filter-clear').hidden = false;
    }
    body.dataset.filter = f === null ? '' : String(f);
    drawIcicle();
    schedule();
  }

  function parseHash() {
    const out = {};
    for (const part of location.hash.replace(/^#/, '').split('&')) {
      const i = part.indexOf('=');
      if (i < 0) continue;
      const k = part.slice(0, i);
      const v = decodeURIComponent(part.slice(i + 1));
      if (k === 't') {
        let [a, b] = v.split(',');
        if (b === undefined) continue;
        const ns = a.startsWith('ns:');
        if (ns) { a = a.slice(3); if (b.startsWith('ns:')) b = b.slice(3); }
        try {
          out.t = ns ? [Number(BigInt(a) - T0), Number(BigInt(b) - T0)] : [Number(a) * 1e6, Number(b) * 1e6];
        } catch (err) { /* not a number: ignore the parameter */ }
        if (out.t && !out.t.every(Number.isFinite)) delete out.t;
      } else if (k === 'g' && /^\d+$/.test(v)) out.g = Number(v);
    }
    return out;
  }

  function applyHash() {
    const h = parseHash();
    if (h.t) setRange(Math.round(h.t[0]), Math.round(h.t[1]), true);
    if (h.g !== undefined) setHighlight(h.g);
    else if (h.t && view.hl !== null && !location.hash.includes('g=')) setHighlight(null);
  }

  let hashTimer = 0;
  function writeHash() { // the address bar is always a link to this view (debounced)
    clearTimeout(hashTimer);
    hashTimer = setTimeout(() => {
      let h = `#t=${(view.s / 1e6).toFixed(6)},${(view.e / 1e6).toFixed(6)}`;
      if (view.hl !== null) h += `&g=${view.hl}`;
      if (h !== location.hash) history.replaceState(null, '', h);
    }, 400);
  }

  let pending = false;
  let wantHash = false;
  function schedule(mode) {
    if (mode === 'hash') wantHash = true;
    if (pending || !R) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; draw(); if (wantHash) { wantHash = false; writeHash(); } });
  }

  // ---------------------------------------------------------------- drawing
  let ctx = null;
  let actx = null;
  let agg = null;
  function resize() {
    const dpr = window.devicePixelRatio || 1;
    W = Math.max(200, scroller.clientWidth - LABEL_W);
    H = Math.max(1, Math.min(totalH, Math.max(300, window.innerHeight - 140)));
    scroller.style.height = H + 'px';
    $('tc-content').style.height = totalH + 'px';
    for (const [c, h] of [[canvas, H], [axis, 28]]) {
      c.width = Math.round(W * dpr); c.height = Math.round(h * dpr);
      c.style.width = W + 'px'; c.style.height = h + 'px';
    }
    canvas.style.marginLeft = LABEL_W + 'px';
    axis.style.marginLeft = LABEL_W + 'px';
    ctx = canvas.getContext('2d'); ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    actx = axis.getContext('2d'); actx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const w = Math.ceil(W);
    agg = {
      cov: new Float64Array(w), diff: new Float64Array(w + 1), pres: new Int32Array(NCLS * (w + 1)),
      hl: new Int32Array(w + 1), best: new Int16Array(w),
    };
    if (icicle.canvas) sizeIcicle();
  }

  function range(P, k, s, e) { // [first, last) positions of track k's slices meeting [s, e]
    const lo = P.off[k]; const hi = P.off[k + 1];
    let a = lo; let b = hi;
    while (a < b) { const m = (a + b) >>> 1; if (P.pmax[m] < s) a = m + 1; else b = m; }
    const first = a;
    b = hi;
    while (a < b) { const m = (a + b) >>> 1; if (M.start[P.order[m]] <= e) a = m + 1; else b = m; }
    return [first, a];
  }

  // What the last redraw drew, per pane and class: slices drawn one by one ('exact') and
  // slices folded into pixel-column bars ('binned'). Published on <body data-drawn>.
  let stats = null;
  function newStats() {
    return {
      exact: { threads: new Float64Array(NCLS), goroutines: new Float64Array(NCLS) },
      binned: { threads: new Float64Array(NCLS), goroutines: new Float64Array(NCLS) },
      aggregated: 0, highlighted: 0, records: 0, lanes: 0, lanesTotal: 0, wakers: 0,
    };
  }
  function byKind(counts) {
    const o = {};
    CLS.forEach((c, i) => { const k = c.kind || 'other'; o[k] = (o[k] || 0) + counts[i]; });
    return o;
  }

  function drawOverview(ov, k, y, h) { // the precomputed bars, resampled to this window
    const B = META.overview.bins; const binNs = META.end / B;
    const s = view.s; const colNs = (view.e - s) / W;
    stats.aggregated++;
    let prev = -1; let prevH = 0; let x0 = 0;
    const flush = (x) => {
      if (prev >= 0) { ctx.fillStyle = CLS[prev].colour; ctx.fillRect(x0, y + h - prevH, x - x0, prevH); }
    };
    for (let c = 0; c <= W; c++) {
      let worst = -1; let hp = 0;
      if (c < W) {
        const b0 = Math.max(0, Math.floor((s + c * colNs) / binNs));
        const b1 = Math.min(B - 1, Math.floor((s + (c + 1) * colNs) / binNs - 1e-9));
        let sum = 0; let cnt = 0;
        for (let q = Math.max(b0, 0); q <= b1; q++) {
          const wv = ov.worst[k * B + q];
          sum += ov.share[k * B + q]; cnt++;
          if (wv !== 255 && (worst < 0 || CLS[wv].severity > CLS[worst].severity)) worst = wv;
        }
        if (worst >= 0) hp = Math.max(1.5, (sum / cnt / 255) * h);
      }
      if (worst !== prev || Math.abs(hp - prevH) >= 0.5) { flush(c); prev = worst; prevH = hp; x0 = c; }
    }
  }

  function drawTrack(P, k, y, h, paneName, strip) {
    if (!M) { drawOverview(OV[paneName], k, y, h); return; }
    const [first, last] = range(P, k, view.s, view.e);
    if (first >= last) return;
    const s = view.s; const e = view.e; const kx = W / (e - s);
    const { start, end, cls, gi } = M;
    const hlIdx = view.hl === null ? -2 : hlIndex;
    const exact = e - s <= EXACT_NS || last - first <= 2 * W;
    if (exact) {
      let colour = -1;
      const counts = stats.exact[paneName];
      for (let p = first; p < last; p++) {
        const i = P.order[p];
        if (end[i] < s) continue;
        const x0 = Math.max(-1, Math.floor((start[i] - s) * kx));
        const x1 = Math.min(W + 1, (end[i] - s) * kx);
        const c = cls[i];
        if (c !== colour) { ctx.fillStyle = CLS[c].colour; colour = c; }
        ctx.fillRect(x0, y, Math.max(1, x1 - x0), h);
        counts[c]++;
        if (gi[i] === hlIdx && strip !== null) {
          if (paneName === 'threads') stats.highlighted++;
          ctx.fillStyle = HL; colour = -1;
          ctx.fillRect(x0, strip, Math.max(1, x1 - x0), 3);
          ctx.strokeStyle = HL; ctx.lineWidth = 1;
          ctx.strokeRect(x0 + 0.5, y + 0.5, Math.max(1, x1 - x0) - 1, h - 1);
        }
      }
      return;
    }
    stats.aggregated++;
    const counts = stats.binned[paneName];
    const w = agg.best.length;
    const colNs = (e - s) / W;
    agg.cov.fill(0); agg.diff.fill(0); agg.pres.fill(0); agg.hl.fill(0);
    for (let p = first; p < last; p++) {
      const i = P.order[p];
      if (end[i] < s) continue;
      const fa = Math.max(0, (start[i] - s) / colNs);
      const fb = Math.min(w, (end[i] - s) / colNs);
      const c0 = Math.min(w - 1, fa | 0);
      const c1 = Math.max(c0, Math.min(w - 1, fb | 0));
      const ci = cls[i];
      counts[ci]++;
      if (!BUSY[ci]) { /* waiting: its colour counts, not its time */ }
      else if (c0 === c1) agg.cov[c0] += fb - fa;
      else { agg.cov[c0] += c0 + 1 - fa; agg.cov[c1] += fb - c1; agg.diff[c0 + 1] += 1; agg.diff[c1] -= 1; }
      const base = ci * (w + 1);
      agg.pres[base + c0]++; agg.pres[base + c1 + 1]--;
      if (gi[i] === hlIdx && strip !== null) { agg.hl[c0]++; agg.hl[c1 + 1]--; }
    }
    let run = 0;
    for (let c = 0; c < w; c++) { run += agg.diff[c]; agg.cov[c] += run; }
    agg.best.fill(-1);
    for (let cl = 0; cl < NCLS; cl++) {
      const base = cl * (w + 1); const sev = CLS[cl].severity; let on = 0;
      for (let c = 0; c < w; c++) {
        on += agg.pres[base + c];
        if (on > 0 && (agg.best[c] < 0 || sev > CLS[agg.best[c]].severity)) agg.best[c] = cl;
      }
    }
    let c = 0; // runs of equal colour and height are one rectangle
    while (c < w) {
      const b = agg.best[c];
      if (b < 0) { c++; continue; }
      const hp = Math.max(1.5, Math.min(1, agg.cov[c]) * h);
      let c2 = c + 1;
      while (c2 < w && agg.best[c2] === b && Math.abs(Math.max(1.5, Math.min(1, agg.cov[c2]) * h) - hp) < 0.5) c2++;
      ctx.fillStyle = CLS[b].colour;
      ctx.fillRect(c, y + h - hp, c2 - c, hp);
      c = c2;
    }
    if (hlIdx >= 0) {
      ctx.fillStyle = HL; let on = 0;
      for (let x = 0; x < w; x++) { on += agg.hl[x]; if (on > 0) ctx.fillRect(x, strip, 1, 3); }
    }
  }

  let hlIndex = -2; // the highlighted goroutine's index into goroutines.ids
  function recordShown(i) {
    if (view.filter === null) return true;
    const nd = R.node[i];
    return nd >= view.filter && nd < view.filter + R.tree.size[view.filter];
  }

  function draw() {
    if (!R) return;
    const top = scroller.scrollTop;
    const s = view.s; const e = view.e; const kx = W / (e - s);
    ctx.clearRect(0, 0, W, H);
    stats = newStats();
    hlIndex = view.hl === null || !M ? -2 : G.ids.indexOf(view.hl);
    if (hlIndex < 0 && view.hl !== null) hlIndex = -3;
    const dim = view.filter !== null;
    ctx.globalAlpha = dim ? 0.35 : 1;
    for (const r of rows) {
      const y = r.y - top;
      if (y + r.h < 0 || y > H) continue;
      if (r.type === 'pane' || r.type === 'group') {
        ctx.fillStyle = r.type === 'pane' ? '#e8e8e8' : '#f4f4f4';
        ctx.fillRect(0, y, W, r.h);
        continue;
      }
      stats.lanes++;
      ctx.fillStyle = r.lane % 2 ? '#fafafa' : '#ffffff';
      ctx.fillRect(0, y, W, r.h);
      if (r.type === 'glane') {
        if (r.goid === view.hl && view.hl !== null) { ctx.fillStyle = '#e6edff'; ctx.fillRect(0, y, W, r.h); }
        // the highlighted goroutine's own lane is tinted; the folded lane marks its stretches
        drawTrack(M && M.gor, r.lane, y + 3, r.h - 8, 'goroutines', r.goid == null ? y : null);
      } else {
        for (let row = 0; row < ROWS; row++) drawTrack(M && M.threads, r.lane * ROWS + row, y + ROW_Y[row], ROW_H, 'threads', y);
      }
    }
    ctx.globalAlpha = 1;
    drawRecords(top, s, kx);
    axisDraw();
    publish();
  }

  function drawRecords(top, s, kx) {
    if (!R || !R.n) return;
    const e = view.e;
    const col = META.record_colours;
    const arrows = [];
    for (const i of R.order) {
      if (R.start[i] > e) break;
      if (R.end[i] < s || !recordShown(i)) continue;
      stats.records++;
      const x0 = Math.max(-1, Math.floor((R.start[i] - s) * kx));
      const x1 = Math.min(W + 1, (R.end[i] - s) * kx);
      const w = Math.max(2, x1 - x0);
      ctx.fillStyle = inColour(col, i);
      const ty = tLaneY[R.lane[i]] - top + ROW_Y[1] - 2;
      ctx.fillRect(x0, ty, w, ROW_H + 4);
      if (R.rt[i]) { ctx.fillStyle = 'rgba(255,255,255,0.45)'; for (let x = x0; x < x0 + w; x += 4) ctx.fillRect(x, ty, 1, ROW_H + 4); }
      const gl = R.glane[i];
      if (gl >= 0 && gLaneY[gl] !== undefined) {
        const gy = gLaneY[gl] - top + GH - 8;
        ctx.fillStyle = inColour(col, i);
        ctx.fillRect(x0, gy, w, 6);
        ctx.strokeStyle = 'rgba(214,39,40,0.55)'; ctx.lineWidth = 1; // the connector
        ctx.beginPath(); ctx.moveTo(Math.max(0, x0) + 0.5, gy + 6); ctx.lineTo(Math.max(0, x0) + 0.5, ty); ctx.stroke();
      }
      const wi = R.waker[i];
      if (wi >= 0) {
        const wk = R.wakers[wi];
        if (wk.t !== null && tLaneY[wk.lane] !== undefined) arrows.push([wk, i, ty]);
      }
    }
    ctx.strokeStyle = WAKER; ctx.fillStyle = WAKER; ctx.lineWidth = 1.5;
    for (const [wk, i, ty] of arrows) {
      const xa = (wk.t - s) * kx; const xb = Math.max(xa, (Math.min(R.end[i], e) - s) * kx);
      const ya = tLaneY[wk.lane] - top + TH / 2;
      const yb = ty + (ya < ty ? 0 : ROW_H + 4);
      ctx.beginPath(); ctx.moveTo(xa, ya); ctx.lineTo(xb, yb); ctx.stroke();
      const ang = Math.atan2(yb - ya, xb - xa);
      ctx.beginPath(); ctx.moveTo(xb, yb);
      ctx.lineTo(xb - 7 * Math.cos(ang - 0.4), yb - 7 * Math.sin(ang - 0.4));
      ctx.lineTo(xb - 7 * Math.cos(ang + 0.4), yb - 7 * Math.sin(ang + 0.4));
      ctx.closePath(); ctx.fill();
      ctx.beginPath(); ctx.arc(xa, ya, 2.5, 0, 2 * Math.PI); ctx.fill();
      stats.wakers++;
    }
  }

  function niceStep(ns) {
    const p = 10 ** Math.floor(Math.log10(ns));
    for (const m of [1, 2, 5, 10]) if (m * p >= ns) return m * p;
    return 10 * p;
  }

  function axisDraw() {
    const s = view.s; const e = view.e; const kx = W / (e - s);
    actx.clearRect(0, 0, W, 28);
    actx.fillStyle = '#fff'; actx.fillRect(0, 0, W, 28);
    if (sel) { actx.fillStyle = 'rgba(0,71,255,0.2)'; actx.fillRect(Math.min(sel.a, sel.b), 0, Math.abs(sel.b - sel.a), 28); }
    const step = niceStep((e - s) / Math.max(1, W / 90));
    const dec = Math.max(0, -Math.floor(Math.log10(step / 1e6) + 1e-9));
    actx.fillStyle = '#333'; actx.strokeStyle = '#999'; actx.font = '11px sans-serif';
    for (let t = Math.ceil(s / step) * step; t <= e; t += step) {
      const x = Math.round((t - s) * kx) + 0.5;
      actx.beginPath(); actx.moveTo(x, 18); actx.lineTo(x, 28); actx.stroke();
      actx.fillText(`${(t / 1e6).toFixed(Math.min(dec, 6))} ms`, x + 2, 14);
    }
    $('tc-range').textContent = `${fmtAt(s)} – ${fmtAt(e)} (${fmtNs(e - s)} shown)`;
  }

  function publish() { // the state tests and tools read from the page
    if (!body.dataset.state) performance.mark('tc-first-draw');
    if (M && body.dataset.state !== 'ready') performance.mark('tc-all-slices-drawn');
    const ns = (x) => (T0 + BigInt(Math.round(x))).toString();
    body.dataset.range = `${ns(view.s)},${ns(view.e)}`;
    stats.lanesTotal = rows.filter((r) => r.type === 'glane' || r.type === 'tlane').length;
    body.dataset.drawn = JSON.stringify({
      ...stats,
      exact: { threads: byKind(stats.exact.threads), goroutines: byKind(stats.exact.goroutines) },
      binned: { threads: byKind(stats.binned.threads), goroutines: byKind(stats.binned.goroutines) },
    });
    body.dataset.state = M ? 'ready' : 'overview';
    document.dispatchEvent(new CustomEvent('tracecorr:drawn', { detail: stats }));
  }

  // ---------------------------------------------------------------- hover and click
  const tip = $('tc-tip');
  function showTip(lines, x, y) {
    // a line is text, or {h: text} for a heading; all of it goes in as text
    tip.replaceChildren(...lines.map((l) => (typeof l === 'string' ? el('div', null, l) : el('div', 'tc-tiph', l.h))));
    tip.hidden = false;
    const r = tip.getBoundingClientRect();
    tip.style.left = Math.min(window.innerWidth - r.width - 8, x + 14) + 'px';
    tip.style.top = Math.min(window.innerHeight - r.height - 8, y + 14) + 'px';
  }
  const hideTip = () => { tip.hidden = true; };

  function str(i) { return i >= 0 ? R.strings[i] : null; }
  function stackLines(title, si, max) {
    if (si < 0) return [];
    const f = R.stacks[si];
    return [{ h: `${title} stack` }, ...f.slice(0, max).map((x) => '  ' + R.strings[x]), ...(f.length > max ? [`  … ${f.length - max} more`] : [])];
  }

  function inColour(col, i) {
    return R.rt[i] ? col[IN_LEGEND[R.rt[i] - 1][1]] : col.library;
  }

  function recordLines(i) {
    const L = [];
    L.push({ h: `${str(R.call[i]) || '?'} (${str(R.library[i]) || (R.rt[i] ? IN_LEGEND[R.rt[i] - 1][3] : '?')})` });
    L.push(`${str(R.syscall[i]) ? str(R.syscall[i]) + '()' : 'off-CPU outside a syscall'} for ${fmtNs(R.end[i] - R.start[i])}, at ${fmtAt(R.start[i])}`);
    L.push(`thread ${str(R.thread[i]) || ''} tid ${R.tid[i]} pid ${R.pid[i]}${R.goid[i] !== null ? ' goroutine ' + R.goid[i] : ''}`);
    if (R.rt[i]) L.push(`${IN_LEGEND[R.rt[i] - 1][4]}, not the library’s${R.inferred[i] ? ' (inferred: no callchain)' : ''}`);
    L.push(`off-CPU ${fmtNs(R.off[i])} (${str(R.state[i]) || '-'}), runqueue ${R.runq[i] === null ? 'unknown' : fmtNs(R.runq[i])}, on-CPU ${fmtNs(R.oncpu[i])}`);
    if (R.plost[i] !== null) L.push(`P handed off: ${R.plost[i] ? 'yes' : 'no'}; restarts ${R.restarts[i] ?? 0}`);
    if (R.call_start[i] !== null) L.push(`call ${fmtAt(R.call_start[i])} – ${fmtAt(R.call_end[i])}`);
    L.push(`call site ${str(R.site[i]) || '-'}`);
    L.push(`evidence ${str(R.evidence[i]) || '-'}`);
    if (str(R.censored[i])) L.push(`censored: ${str(R.censored[i])}`);
    const wi = R.waker[i];
    if (wi >= 0) {
      const w = R.wakers[wi];
      L.push({ h: `woken by ${str(w.comm) || '?'} tid ${w.tid}${w.pid !== null ? ' pid ' + w.pid : ''} at ${w.t === null ? '?' : fmtAt(w.t)}` });
      if (w.longest) L.push(`  meanwhile it waited longest in ${w.longest.syscall || 'off-CPU'} (${w.longest.state || '-'}) for ${fmtNs(w.longest.dur)}`);
      L.push(...stackLines('waker', w.stack, 8));
    }
    L.push(...stackLines('Go', R.go[i], 12), ...stackLines('C', R.native[i], 12), ...stackLines('Python', R.py[i], 16));
    return L;
  }

  function sliceLines(i, where) {
    const c = CLS[M.cls[i]];
    const nm = M.nm[i] < META.names.length ? META.names[M.nm[i]] : '';
    const L = [{ h: `${c.label}${nm && nm !== 'running' ? ': ' + nm : ''}` }, `${fmtNs(M.end[i] - M.start[i])} at ${fmtAt(M.start[i])}`];
    if (M.gi[i] !== M.giNone) L.push(`goroutine ${G.ids[M.gi[i]]} (click to highlight it on every thread)`);
    L.push(where);
    return L;
  }

  function hit(ev) { // what is under the pointer on the lanes canvas
    const rect = canvas.getBoundingClientRect();
    const x = ev.clientX - rect.left; const yc = ev.clientY - rect.top;
    const y = yc + scroller.scrollTop;
    const r = rows.find((q) => y >= q.y && y < q.y + q.h);
    if (!r || !R) return null;
    const kx = W / (view.e - view.s);
    const t = view.s + x / kx; const tol = 3 / kx;
    const out = { row: r, t, x };
    if (R && R.n) { // records first: they are drawn on top
      for (const i of R.order) {
        if (R.start[i] > t + tol) break;
        if (R.end[i] < t - tol || !recordShown(i)) continue;
        const ty = tLaneY[R.lane[i]] + ROW_Y[1] - 2;
        const gl = R.glane[i];
        if ((r.type === 'tlane' && r.lane === R.lane[i] && y >= ty && y <= ty + ROW_H + 4)
          || (r.type === 'glane' && gl === r.lane)) { out.record = i; return out; }
      }
    }
    if (!M) return out;
    let P; let k;
    if (r.type === 'glane') { P = M.gor; k = r.lane; }
    else if (r.type === 'tlane') {
      const row = ROW_Y.findIndex((ry) => y - r.y >= ry && y - r.y < ry + ROW_H + 1);
      if (row < 0) return out;
      P = M.threads; k = r.lane * ROWS + row;
    } else return out;
    const [first, last] = range(P, k, t - tol, t + tol);
    let best = -1;
    for (let p = first; p < last; p++) {
      const i = P.order[p];
      if (M.end[i] < t - tol) continue;
      if (best < 0 || M.end[best] - M.start[best] > M.end[i] - M.start[i]) best = i;
    }
    out.P = P; out.k = k; out.count = last - first;
    if (best >= 0) out.slice = best;
    return out;
  }

  function laneName(r) { return r.type === 'glane' ? r.text : `thread ${r.text} ${r.sub || ''}`; }

  canvas.addEventListener('mousemove', (ev) => {
    if (drag) return;
    const h = hit(ev);
    if (!h) { hideTip(); return; }
    if (h.record !== undefined) { showTip(recordLines(h.record), ev.clientX, ev.clientY); return; }
    if (h.slice === undefined) { hideTip(); return; }
    const L = sliceLines(h.slice, laneName(h.row));
    const kx = W / (view.e - view.s);
    if (view.e - view.s > EXACT_NS && h.count > 2 * W) {
      const [a, b] = range(h.P, h.k, h.t - 0.5 / kx, h.t + 0.5 / kx);
      L.unshift({ h: `${b - a} slice(s) in this pixel column; zoom in for each one` });
    }
    showTip(L, ev.clientX, ev.clientY);
  });
  canvas.addEventListener('mouseleave', hideTip);

  // ---------------------------------------------------------------- zoom and pan
  let drag = null;
  let sel = null;
  function zoomAt(x, factor) {
    const t = view.s + (x / W) * (view.e - view.s);
    setRange(t - (t - view.s) * factor, t + (view.e - t) * factor);
  }
  canvas.addEventListener('mousedown', (ev) => { drag = { x: ev.clientX, s: view.s, e: view.e, moved: false }; });
  window.addEventListener('mousemove', (ev) => {
    if (drag) {
      const dx = ev.clientX - drag.x;
      if (Math.abs(dx) > 2) drag.moved = true;
      if (drag.moved) { const dt = (dx / W) * (drag.e - drag.s); setRange(drag.s - dt, drag.e - dt); }
    }
    if (sel) { sel.b = Math.max(0, Math.min(W, ev.clientX - axis.getBoundingClientRect().left)); axisDraw(); }
  });
  window.addEventListener('mouseup', (ev) => {
    if (drag && !drag.moved) {
      const h = hit(ev);
      if (h && h.record !== undefined) {
        if (R.goid[h.record] !== null) setHighlight(R.goid[h.record]);
      } else if (h && h.slice !== undefined && M.gi[h.slice] !== M.giNone) setHighlight(G.ids[M.gi[h.slice]]);
      else if (h && h.row.type === 'glane' && h.row.goid != null) setHighlight(h.row.goid);
      else setHighlight(null);
    }
    drag = null;
    if (sel) {
      const a = Math.min(sel.a, sel.b); const b = Math.max(sel.a, sel.b);
      sel = null;
      if (b - a > 3) setRange(view.s + (a / W) * (view.e - view.s), view.s + (b / W) * (view.e - view.s));
      else axisDraw();
    }
  });
  axis.addEventListener('mousedown', (ev) => {
    const x = ev.clientX - axis.getBoundingClientRect().left;
    sel = { a: x, b: x };
  });
  canvas.addEventListener('dblclick', (ev) => zoomAt(ev.clientX - canvas.getBoundingClientRect().left, ev.shiftKey ? 2 : 0.5));
  canvas.addEventListener('wheel', (ev) => {
    const x = ev.clientX - canvas.getBoundingClientRect().left;
    if (ev.ctrlKey || ev.metaKey) { ev.preventDefault(); zoomAt(x, Math.exp(ev.deltaY * 0.002)); }
    else if (ev.shiftKey || Math.abs(ev.deltaX) > Math.abs(ev.deltaY)) {
      ev.preventDefault();
      const d = ((ev.shiftKey ? ev.deltaY : ev.deltaX) / W) * (view.e - view.s);
      setRange(view.s + d, view.e + d);
    }
  }, { passive: false });
  axis.addEventListener('wheel', (ev) => {
    ev.preventDefault();
    zoomAt(ev.clientX - axis.getBoundingClientRect().left, Math.exp(ev.deltaY * 0.002));
  }, { passive: false });
  window.addEventListener('keydown', (ev) => {
    if (ev.target && ['INPUT', 'TEXTAREA'].includes(ev.target.tagName)) return;
    const span = view.e - view.s;
    const k = ev.key.toLowerCase();
    if (k === 'w') zoomAt(W / 2, 0.7);
    else if (k === 's') zoomAt(W / 2, 1 / 0.7);
    else if (k === 'a') setRange(view.s - span * 0.2, view.e - span * 0.2);
    else if (k === 'd') setRange(view.s + span * 0.2, view.e + span * 0.2);
    else if (k === '0') setRange(...fullRange());
  });
  scroller.addEventListener('scroll', () => schedule());
  window.addEventListener('resize', () => { resize(); schedule(); });
  window.addEventListener('hashchange', applyHash);
  $('tc-zoom-in').addEventListener('click', () => zoomAt(W / 2, 0.5));
  $('tc-zoom-out').addEventListener('click', () => zoomAt(W / 2, 2));
  $('tc-reset').addEventListener('click', () => setRange(...fullRange()));
  $('tc-hl-clear').addEventListener('click', () => setHighlight(null));
  $('tc-filter-clear').addEventListener('click', () => selectNode(0));

  // ---------------------------------------------------------------- icicle
  const icicle = { canvas: $('tc-icicle'), focus: 0, rowH: 18 };
  function sizeIcicle() {
    const c = icicle.canvas;
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(200, c.parentElement.clientWidth);
    const depth = R ? R.tree.depth.reduce((m, d) => Math.max(m, d + 1), 1) : 1;
    const h = depth * icicle.rowH;
    c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
    c.style.width = w + 'px'; c.style.height = h + 'px';
    icicle.w = w; icicle.h = h;
    icicle.ctx = c.getContext('2d'); icicle.ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  }

  function hue(s) { let h = 0; for (let i = 0; i < s.length; i++) h = (h * 31 + s.charCodeAt(i)) | 0; return Math.abs(h) % 360; }

  function icicleBoxes() { // [node, x, y, w] of every node drawn at the current focus
    const T = R.tree; const f = icicle.focus; const out = [];
    if (!T.value.length || !T.value[f]) return out;
    const scale = icicle.w / T.value[f];
    for (let a = T.parent[f]; a >= 0; a = T.parent[a]) out.push([a, 0, T.depth[a] * icicle.rowH, icicle.w]);
    for (let n = f; n < f + T.size[f]; n++) {
      const w = T.value[n] * scale;
      if (w < 0.5) { n += T.size[n] - 1; continue; } // too thin to draw: its subtree too
      out.push([n, (T.x0[n] - T.x0[f]) * scale, T.depth[n] * icicle.rowH, w]);
    }
    return out;
  }

  function drawIcicle() {
    if (!R || !icicle.ctx) return;
    const T = R.tree; const g = icicle.ctx;
    g.clearRect(0, 0, icicle.w, icicle.h);
    g.font = '11px sans-serif'; g.textBaseline = 'middle';
    const f = view.filter;
    for (const [n, x, y, w] of icicleBoxes()) {
      const label = R.strings[T.label[n]];
      const inSel = f === null || (n >= f && n < f + T.size[f]) || (n < f && f < n + T.size[n]);
      g.fillStyle = n === 0 ? '#d0d0d0' : `hsl(${hue(label)}, 55%, ${inSel ? 72 : 88}%)`;
      g.fillRect(x, y, Math.max(0.5, w - 1), icicle.rowH - 1);
      if (w > 40) {
        g.fillStyle = '#111';
        const text = n === 0 ? `${label}: ${fmtNs(T.value[n])} in ${T.count[n]} record(s)` : label;
        const max = Math.floor((w - 6) / 6);
        g.fillText(text.length > max ? text.slice(0, Math.max(1, max - 1)) + '…' : text, x + 3, y + icicle.rowH / 2);
      }
    }
    body.dataset.icicleNodes = String(T.value.length);
  }

  function icicleHit(ev) {
    const r = icicle.canvas.getBoundingClientRect();
    const x = ev.clientX - r.left; const y = ev.clientY - r.top;
    for (const b of icicleBoxes()) if (x >= b[1] && x < b[1] + b[3] && y >= b[2] && y < b[2] + icicle.rowH) return b[0];
    return null;
  }
  icicle.canvas.addEventListener('mousemove', (ev) => {
    const n = icicleHit(ev);
    if (n === null) { hideTip(); return; }
    const T = R.tree;
    showTip([{ h: R.strings[T.label[n]] }, `${fmtNs(T.value[n])} blocked in ${T.count[n]} record(s), ${(100 * T.value[n] / (T.value[0] || 1)).toFixed(1)}% of all`,
      'click: show only these records on the timeline'], ev.clientX, ev.clientY);
  });
  icicle.canvas.addEventListener('mouseleave', hideTip);
  icicle.canvas.addEventListener('click', (ev) => {
    const n = icicleHit(ev);
    if (n === null) return;
    selectNode(n);
  });
  function selectNode(n) { // zoom the icicle into the node and filter the timeline to it
    icicle.focus = n === 0 ? 0 : n;
    setFilter(n);
  }

  // ---------------------------------------------------------------- start
  window.tracecorr = {
    setRange: (a, b) => setRange(a, b), highlight: setHighlight, selectNode, icicleBoxes,
    showRecord: (i) => showTip(recordLines(i), 10, 10),
    view, meta: META, get model() { return M; }, get records() { return R; },
  };

  buildLabels();
  buildFindings();
  resize();
  axisDraw();
  const fail = (err) => {
    body.dataset.state = 'error';
    $('tc-error').textContent = `The timeline could not be drawn: ${err && err.message ? err.message : err}`;
    $('tc-error').hidden = false;
    throw err;
  };
  const parsed = new Promise((done) => {
    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', done, { once: true });
    else done();
  });
  const early = loadOverview().then(() => {
    buildLegend();
    if (META.unaligned && Object.keys(META.unaligned).length) {
      const p = $('tc-unaligned');
      p.textContent = 'Not on the time axis (no clock offset to CLOCK_MONOTONIC): '
        + Object.entries(META.unaligned).map(([k, v]) => `${v} slices of ${k}`).join(', ');
      p.hidden = false;
    }
    sizeIcicle();
    drawIcicle();
    applyHash();
    draw();
  });
  Promise.all([early, parsed]).then(loadColumns).then(draw).catch(fail);
})();
