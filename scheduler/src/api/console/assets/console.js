// havoc console: live updates and ticking times. No build step, no framework, no inline
// script (the Content-Security-Policy forbids it). Works without JavaScript too: every
// control is a plain form, and a page reload shows the current state.
(function () {
  'use strict';

  // "in 2 min 5 s", "42 s ago": the same words the server writes.
  function span(secs) {
    if (secs < 60) return secs + ' s';
    if (secs < 3600) {
      var s = secs % 60;
      return Math.floor(secs / 60) + ' min' + (s ? ' ' + s + ' s' : '');
    }
    if (secs < 86400) return Math.floor(secs / 3600) + ' h ' + Math.floor((secs % 3600) / 60) + ' min';
    return Math.floor(secs / 86400) + ' d ' + Math.floor((secs % 86400) / 3600) + ' h';
  }

  function relative(iso) {
    var secs = Math.round((Date.parse(iso) - Date.now()) / 1000);
    if (secs === 0) return 'just now';
    return secs < 0 ? span(-secs) + ' ago' : 'in ' + span(secs);
  }

  function tick() {
    var nodes = document.querySelectorAll('[data-countdown], [data-since]');
    for (var i = 0; i < nodes.length; i++) {
      var n = nodes[i];
      var iso = n.getAttribute('data-countdown') || n.getAttribute('data-since');
      var text = relative(iso);
      if (n.textContent !== text) n.textContent = text;
    }
  }

  // A part of the page the user is working in is not replaced: a focused field, or one
  // with something typed or ticked.
  function busy(el) {
    var a = document.activeElement;
    if (a && a !== document.body && el.contains(a) && /^(INPUT|SELECT|TEXTAREA)$/.test(a.tagName)) return true;
    var fields = el.querySelectorAll('input, textarea');
    for (var i = 0; i < fields.length; i++) {
      var f = fields[i];
      if (f.type === 'hidden') continue;
      if ((f.type === 'checkbox' || f.type === 'radio') ? f.checked !== f.defaultChecked : f.value !== f.defaultValue) return true;
    }
    return false;
  }

  var state = document.getElementById('live-state');
  function say(text) { if (state && state.textContent !== text) state.textContent = text; }

  var pending = false;
  var fetching = false;
  function refresh() {
    if (fetching) { pending = true; return; }
    fetching = true;
    fetch(window.location.href, { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'text/html' } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(new Error(String(r.status))); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, 'text/html');
        var parts = doc.querySelectorAll('[data-live][id]');
        var skipped = false;
        for (var i = 0; i < parts.length; i++) {
          var old = document.getElementById(parts[i].id);
          if (!old) continue;
          if (busy(old)) { skipped = true; continue; }
          old.replaceWith(document.importNode(parts[i], true));
        }
        pending = skipped;
        tick();
        say('Live: updated ' + new Date().toLocaleTimeString());
      })
      .catch(function () { say('Live updates: the page could not be read again; retrying.'); pending = true; })
      .then(function () { fetching = false; });
  }

  var url = document.body.getAttribute('data-events');
  var digest = document.body.getAttribute('data-digest');
  if (url && window.EventSource) {
    var source = new EventSource(url);
    source.addEventListener('change', function (e) {
      if (e.data !== digest) {
        digest = e.data;
        refresh();
      }
    });
    source.onopen = function () { say('Live'); };
    source.onerror = function () { say('Live updates: reconnecting…'); };
  }
  // Catch up when the user leaves a field that held an update back.
  document.addEventListener('focusout', function () { if (pending) setTimeout(refresh, 50); });
  setInterval(tick, 1000);
  setInterval(function () { if (pending && !fetching) refresh(); }, 2000);
})();
