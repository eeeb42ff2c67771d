// Views of the lens-positions report, drawn from the JSON in <script id="report-data">
// (written by lens_positions/report.py; the field names are documented there).
// Everything is built on the page: the file holds numbers once, not one element per number.
(function () {
  'use strict';
  var D = JSON.parse(document.getElementById('report-data').textContent);
  var tip = document.getElementById('tip');
  var nTokens = D.bytes.length;
  // The unit of the views: a character (byte models) or a token (pretrained rotary models).
  var tokens = D.unit === 'token';
  // Derived once: which spans are separators / BOS (each chunk's first), the chunk of each unit,
  // the unit of each token.
  D.isSep = D.chars.map(function () { return false; });
  D.chunks.forEach(function (ch) { D.isSep[ch.c0] = true; });
  D.chunkOf = [];
  D.tokenChar = new Int32Array(nTokens);
  for (var c0 = 0, k0 = -1; c0 < D.chars.length; c0++) {
    if (D.isSep[c0]) { k0++; }
    D.chunkOf.push(k0);
    var end0 = c0 + 1 < D.cstart.length ? D.cstart[c0 + 1] : nTokens;
    for (var t0 = D.cstart[c0]; t0 < end0; t0++) { D.tokenChar[t0] = c0; }
  }

  function esc(s) {
    return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
  }
  function showTip(ev, text) {
    tip.textContent = text;
    tip.style.display = 'block';
    var x = ev.clientX + 14, y = ev.clientY + 14;
    if (x + tip.offsetWidth > window.innerWidth) { x = ev.clientX - tip.offsetWidth - 8; }
    if (y + tip.offsetHeight > window.innerHeight) { y = ev.clientY - tip.offsetHeight - 8; }
    tip.style.left = x + 'px';
    tip.style.top = y + 'px';
  }
  function hideTip() { tip.style.display = 'none'; }
  // Blue below the layer mean (packed closer), red above (a boundary), white at the mean.
  function colour(rel) {
    var x = Math.max(-1, Math.min(1, rel - 1));
    var v = Math.round(255 - 150 * Math.abs(x));
    return x >= 0 ? 'rgb(255,' + v + ',' + v + ')' : 'rgb(' + v + ',' + v + ',255)';
  }
  function glyph(c) { return D.glyphs[c] !== undefined ? D.glyphs[c] : D.chars[c]; }
  // A unit drawn as a grey stand-in: a character's stand-in glyph, or a token of only whitespace.
  function isStandin(c) { return tokens ? !/\S/.test(D.chars[c]) : glyph(c) !== D.chars[c]; }
  // A unit in the running text: spaces as spaces, a newline as ⏎ (then a line break).
  function inText(c) {
    var ch = D.chars[c];
    if (tokens) { return ch.replace(/\n/g, '⏎'); }
    return ch === ' ' ? ' ' : ch === '\n' ? '⏎' : glyph(c);
  }
  function breaks(c) { return '<br>'.repeat(D.chars[c].split('\n').length - 1); }
  function tokenRange(c) { return [D.cstart[c], c + 1 < D.cstart.length ? D.cstart[c + 1] : nTokens]; }
  function hex(b) { return (b < 16 ? '0' : '') + b.toString(16).toUpperCase(); }
  function tokenTip(row, c) {
    var t = tokenRange(c), ids = [], deltas = [], bits = 0;
    for (var i = t[0]; i < t[1]; i++) {
      ids.push(D.bytes[i]);
      deltas.push(D.delta[row][i].toFixed(3));
      bits += D.bits[i] || 0;
    }
    return D.rows[row] + '  ' + JSON.stringify(D.chars[c]) + '\n' +
      (ids.length > 1 ? 'token ids   ' : 'token id    ') + ids.join(' ') + '\n' +
      'δ           ' + deltas.join(' + ') + (deltas.length > 1 ? ' = ' + D.inc[row][c].toFixed(3) : '') + '\n' +
      'relative    ×' + D.rel[row][c].toFixed(2) + '\n' +
      'position    ' + D.pos[row][c].toFixed(2) + '  (chunk ' + (D.chunkOf[c] + 1) + ')\n' +
      'surprisal   ' + bits.toFixed(2) + ' bits';
  }
  function charTip(row, c) {
    if (tokens) { return tokenTip(row, c); }
    var t = tokenRange(c), ch = D.chars[c], g = glyph(c);
    var code = g === '\ufffd' ? 'not valid UTF-8' : 'U+' + ('000' + ch.codePointAt(0).toString(16).toUpperCase()).slice(-Math.max(4, ch.codePointAt(0).toString(16).length));
    var bytes = [], deltas = [], bits = 0;
    for (var i = t[0]; i < t[1]; i++) {
      bytes.push(hex(D.bytes[i]));
      deltas.push(D.delta[row][i].toFixed(3));
      bits += D.bits[i] || 0;
    }
    var label = D.rows[row] + (D.headNote ? ' (' + D.headNote + ')' : '');
    return label + '  ' + (g === ch ? "'" + ch + "'" : g) + '  ' + code + '\n' +
      'bytes       ' + bytes.join(' ') + '\n' +
      'δ           ' + deltas.join(' + ') + (deltas.length > 1 ? ' = ' + D.inc[row][c].toFixed(3) : '') + '\n' +
      'relative    ×' + D.rel[row][c].toFixed(2) + '\n' +
      'position    ' + D.pos[row][c].toFixed(2) + '  (chunk ' + (D.chunkOf[c] + 1) + ')\n' +
      'surprisal   ' + bits.toFixed(2) + ' bits';
  }
  function options(select, labels, initial) {
    select.innerHTML = labels.map(function (l, i) {
      return '<option value="' + i + '"' + (i === initial ? ' selected' : '') + '>' + esc(l) + '</option>';
    }).join('');
  }
  var chunkLabels = D.chunks.map(function (ch, i) {
    return 'chunk ' + (i + 1) + ' of ' + D.chunks.length + (tokens ? ' (tokens ' : ' (bytes ') + ch.b0 + '–' + ch.b1 + ')';
  });

  // ---------------------------------------------------------------- spaced text (one chunk)
  var spacedBox = document.getElementById('spaced');
  var spacedChunk = document.getElementById('spaced-chunk');
  var spacedRows = document.getElementById('spaced-rows');  // absent when every row is drawn
  function drawSpaced() {
    var k = +spacedChunk.value, S = D.spaced[k], ch = D.chunks[k];
    var s = document.querySelector('input[name=scale]:checked').value;
    var shown = D.rowSets[spacedRows ? +spacedRows.value : 0].rows;
    var height = shown.length === D.rows.length ? S.h : Math.round(shown.length * S.rowPx + 12);
    var out = ['<svg class="spaced" width="' + S.w[s] + '" height="' + height + '">'];
    for (var i = 0; i < shown.length; i++) {
      var r = shown[i];
      var y = ((i + 0.7) * S.rowPx).toFixed(1), x = S.x[s][r], fit = S.l[s][r];
      var name = D.rows[r] + (D.headNote ? ' (' + D.headNote + ')' : '');
      out.push('<text class="lab" x="' + (S.labelPx - 14) + '" y="' + y + '" text-anchor="end">' + esc(name) + '</text>');
      out.push('<line x1="' + S.labelPx + '" x2="' + x[x.length - 1] + '" y1="' + (+y + 0.3 * S.fontPx) +
        '" y2="' + (+y + 0.3 * S.fontPx) + '" stroke="#e2e2e2"/>');
      for (var j = 0; j < x.length; j++) {
        var c = ch.c0 + 1 + j, g = glyph(c), stand = isStandin(c);
        var size = !tokens && g.length > 1 && stand ? S.fontPx * D.standinScale : S.fontPx;
        out.push('<text class="ch' + (stand ? ' ws' : '') + '" data-r="' + r + '" data-c="' + c + '" x="' + x[j] +
          '" y="' + y + '" font-size="' + size.toFixed(0) + '" text-anchor="middle"' +
          (fit[j] ? ' data-room="' + fit[j] + '"' : '') + '>' + esc(g) + '</text>');
      }
    }
    out.push('</svg>');
    spacedBox.innerHTML = out.join('');
    // Glyphs wider than the room between their neighbours are squeezed to it (at most to 30%):
    // all are measured before any is changed, so the browser lays the drawing out once.
    var tight = spacedBox.querySelectorAll('text[data-room]');
    var widths = Array.prototype.map.call(tight, function (el) { return el.getComputedTextLength(); });
    Array.prototype.forEach.call(tight, function (el, i) {
      var room = +el.dataset.room;
      if (room < widths[i]) {
        el.setAttribute('textLength', Math.max(room, 0.3 * widths[i]).toFixed(1));
        el.setAttribute('lengthAdjust', 'spacingAndGlyphs');
      }
    });
  }
  if (spacedBox) {
    options(spacedChunk, chunkLabels, 0);
    spacedChunk.addEventListener('change', drawSpaced);
    if (spacedRows) {
      options(spacedRows, D.rowSets.map(function (set) { return set.label; }), 0);
      spacedRows.addEventListener('change', drawSpaced);
    }
    document.querySelectorAll('input[name=scale]').forEach(function (el) { el.addEventListener('change', drawSpaced); });
    spacedBox.addEventListener('mousemove', function (ev) {
      var t = ev.target;
      if (t.dataset && t.dataset.c !== undefined) { showTip(ev, charTip(+t.dataset.r, +t.dataset.c)); } else { hideTip(); }
    });
    spacedBox.addEventListener('mouseleave', hideTip);
    drawSpaced();
  }

  // ---------------------------------------------------------------- per-character view (whole text)
  var charBox = document.getElementById('chars');
  var charRow = document.getElementById('chars-row');
  var charSpans = [];
  function buildChars() {
    var out = [];
    for (var c = 0; c < D.chars.length; c++) {
      if (D.isSep[c]) {
        if (D.chunkOf[c] > 0) {
          out.push('<span class="cut" title="chunk ' + (D.chunkOf[c] + 1) + ' starts here: positions restart at 0">┆</span>');
        }
        continue;
      }
      var ch = D.chars[c], shown = inText(c);
      var ws = tokens ? isStandin(c) : shown !== ch;
      out.push('<span class="c' + (ws ? ' ws' : '') + '" data-c="' + c + '">' + esc(shown) + '</span>' + breaks(c));
    }
    charBox.innerHTML = out.join('');
    charSpans = Array.prototype.slice.call(charBox.querySelectorAll('span.c'));
  }
  function colourChars() {
    var r = +charRow.value;
    charSpans.forEach(function (el) { el.style.background = colour(D.rel[r][+el.dataset.c]); });
  }
  if (charBox) {
    options(charRow, D.rows.map(function (l) { return l === 'shared' || l === 'none' ? 'all layers' : 'layer ' + l.slice(1); }), D.rows.length - 1);
    buildChars();
    colourChars();
    charRow.addEventListener('change', colourChars);
    charBox.addEventListener('mousemove', function (ev) {
      var t = ev.target;
      if (t.dataset && t.dataset.c !== undefined) { showTip(ev, charTip(+charRow.value, +t.dataset.c)); } else { hideTip(); }
    });
    charBox.addEventListener('mouseleave', hideTip);
  }

  // ---------------------------------------------------------------- attention (unpacked on demand)
  var attBox = document.getElementById('attention');
  if (!attBox || !D.att) { return; }
  var attChunk = document.getElementById('att-chunk');
  var attLayer = document.getElementById('att-layer');
  var attHead = document.getElementById('att-head');
  var canvas = document.getElementById('att-canvas');
  var attText = document.getElementById('att-text');
  var attStatus = document.getElementById('att-status');
  var unpacked = {};
  var current = null;  // {k, T, w: Float32Array [T*T] of the shown head (or head mean)}
  var locked = null;

  function unpack(k, layer) {
    var key = k + ':' + layer;
    if (!unpacked[key]) {
      var bin = atob(D.att[k][layer]);
      var u = new Uint8Array(bin.length);
      for (var i = 0; i < bin.length; i++) { u[i] = bin.charCodeAt(i); }
      var stream = new Blob([u]).stream().pipeThrough(new DecompressionStream('deflate'));
      unpacked[key] = new Response(stream).arrayBuffer().then(function (b) { return new Uint8Array(b); });
    }
    return unpacked[key];
  }
  function headWeights(u, T, head) {
    var tri = T * (T + 1) / 2, w = new Float32Array(T * T);
    var heads = head < D.nHeads ? [head] : Array.from({ length: D.nHeads }, function (_, h) { return h; });
    heads.forEach(function (h) {
      for (var q = 0; q < T; q++) {
        var base = h * tri + q * (q + 1) / 2;
        for (var j = 0; j <= q; j++) { w[q * T + j] += u[base + j] / 255 / heads.length; }
      }
    });
    return w;
  }
  function drawAttention() {
    var k = +attChunk.value, layer = +attLayer.value, head = +attHead.value, ch = D.chunks[k];
    var T = ch.t1 - ch.t0;
    attStatus.textContent = 'unpacking…';
    unpack(k, layer).then(function (u) {
      current = { k: k, T: T, w: headWeights(u, T, head) };
      var px = Math.max(1, Math.floor(560 / T));
      canvas.width = T * px;
      canvas.height = T * px;
      var ctx = canvas.getContext('2d'), img = ctx.createImageData(T * px, T * px);
      for (var q = 0; q < T; q++) {
        for (var j = 0; j < T; j++) {
          var a = j > q ? -1 : Math.sqrt(current.w[q * T + j]);
          var rgb = a < 0 ? [236, 236, 236] : [255 - 225 * a, 255 - 195 * a, 255 - 75 * a];
          for (var dy = 0; dy < px; dy++) {
            for (var dx = 0; dx < px; dx++) {
              var o = ((q * px + dy) * T * px + j * px + dx) * 4;
              img.data[o] = rgb[0]; img.data[o + 1] = rgb[1]; img.data[o + 2] = rgb[2]; img.data[o + 3] = 255;
            }
          }
        }
      }
      ctx.putImageData(img, 0, 0);
      canvas.dataset.px = px;
      attStatus.textContent = '';
      drawAttText();
    }).catch(function (e) { attStatus.textContent = 'cannot unpack the attention data: ' + e; });
  }
  function tokenLabel(t) {
    var c = D.tokenChar[t], r = tokenRange(c);
    if (D.isSep[c]) { return tokens ? '<bos>' : '<sep>'; }
    var name = tokens ? JSON.stringify(D.chars[c]) : glyph(c);
    return name + (r[1] - r[0] > 1 ? (tokens ? ' token ' : ' byte ') + (t - r[0] + 1) : '');
  }
  function drawAttText() {
    var ch = D.chunks[current.k], out = [];
    for (var c = ch.c0; c < ch.c1; c++) {
      var shown = D.isSep[c] ? (tokens ? '⟨bos⟩' : '⟨sep⟩') : inText(c);
      var stand = !D.isSep[c] && (tokens ? isStandin(c) : shown !== D.chars[c] && shown.length > 1);
      out.push('<span class="a' + (stand ? ' ws' : '') + '" data-c="' + c + '">' + esc(shown) + '</span>' +
        (D.isSep[c] ? '' : breaks(c)));
    }
    attText.innerHTML = out.join('');
    if (locked !== null && locked >= ch.c0 && locked < ch.c1) { colourFrom(locked); }
  }
  // Colour every character of the chunk by the attention the hovered character's last byte pays it.
  function colourFrom(c) {
    var ch = D.chunks[current.k], T = current.T, q = tokenRange(c)[1] - 1 - ch.t0;
    attText.querySelectorAll('span.a').forEach(function (el) {
      var kc = +el.dataset.c, r = tokenRange(kc), s = 0;
      for (var t = r[0]; t < r[1]; t++) { if (t - ch.t0 <= q) { s += current.w[q * T + t - ch.t0]; } }
      var a = Math.sqrt(Math.min(1, s));
      el.style.background = kc === c ? '#ffe08a' : 'rgba(30,60,180,' + a.toFixed(3) + ')';
      el.style.color = a > 0.6 && kc !== c ? '#fff' : '';
    });
  }
  options(attChunk, chunkLabels, 0);
  options(attLayer, Array.from({ length: D.nLayers }, function (_, l) { return 'layer ' + l; }), 0);
  options(attHead, Array.from({ length: D.nHeads }, function (_, h) { return 'head ' + h; }).concat(['mean of heads']), 0);
  [attChunk, attLayer, attHead].forEach(function (el) { el.addEventListener('change', drawAttention); });
  canvas.addEventListener('mousemove', function (ev) {
    if (!current) { return; }
    var px = +canvas.dataset.px, rect = canvas.getBoundingClientRect();
    var j = Math.floor((ev.clientX - rect.left) / px), q = Math.floor((ev.clientY - rect.top) / px);
    var t0 = D.chunks[current.k].t0;
    if (q < 0 || j < 0 || q >= current.T || j > q) { hideTip(); return; }
    showTip(ev, 'query ' + tokenLabel(t0 + q) + ' (position ' + q + ')\nkey   ' + tokenLabel(t0 + j) +
      ' (position ' + j + ')\nweight ' + current.w[q * current.T + j].toFixed(3));
  });
  canvas.addEventListener('mouseleave', hideTip);
  attText.addEventListener('mouseover', function (ev) {
    var t = ev.target;
    if (current && locked === null && t.dataset && t.dataset.c !== undefined) { colourFrom(+t.dataset.c); }
  });
  attText.addEventListener('click', function (ev) {
    var t = ev.target;
    if (!(t.dataset && t.dataset.c !== undefined)) { return; }
    locked = locked === +t.dataset.c ? null : +t.dataset.c;
    if (locked !== null) { colourFrom(locked); }
  });
  if (typeof DecompressionStream === 'undefined') {
    attStatus.textContent = 'this browser cannot unpack the attention data (DecompressionStream is missing)';
  } else {
    drawAttention();
  }
})();
