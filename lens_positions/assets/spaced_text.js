(function () {
  var tip = document.getElementById('tip');
  document.querySelectorAll('text.ch').forEach(function (el) {
    el.addEventListener('mousemove', function (ev) {
      tip.textContent = el.getAttribute('data-tip');
      tip.style.display = 'block';
      tip.style.left = (ev.clientX + 14) + 'px';
      tip.style.top = (ev.clientY + 14) + 'px';
    });
    el.addEventListener('mouseleave', function () { tip.style.display = 'none'; });
  });
  // Glyphs wider than the room between their neighbours are squeezed to it (to 0.3 at most);
  // all are measured before any is changed, so the browser lays the drawing out once.
  function squeeze(els, roomOf) {
    var natural = Array.prototype.map.call(els, function (el) {
      if (el._w === undefined) { el._w = el.getComputedTextLength(); }
      return el._w;
    });
    Array.prototype.forEach.call(els, function (el, i) {
      var room = +(roomOf(el) || 0);
      if (room && room < natural[i]) {
        el.setAttribute('textLength', Math.max(room, 0.3 * natural[i]).toFixed(1));
        el.setAttribute('lengthAdjust', 'spacingAndGlyphs');
      } else {
        el.removeAttribute('textLength');
      }
    });
  }
  function setScale(s) {
    var glyphs = document.querySelectorAll('text.ch');
    glyphs.forEach(function (el) { el.setAttribute('x', el.getAttribute('data-x' + s)); });
    squeeze(glyphs, function (el) { return el.getAttribute('data-l' + s); });
    document.querySelectorAll('line.base').forEach(function (el) {
      el.setAttribute('x2', el.getAttribute('data-x2' + s));
    });
    document.querySelectorAll('svg.spaced').forEach(function (el) {
      el.setAttribute('width', el.getAttribute('data-w' + s));
    });
    document.getElementById('scale-note').textContent = s === 'r'
      ? 'each row scaled by its own mean increment' : 'all rows of a panel on one scale';
  }
  document.querySelectorAll('input[name=scale]').forEach(function (el) {
    el.addEventListener('change', function () { setScale(el.value); });
  });
  setScale('%(initial)s');
})();
