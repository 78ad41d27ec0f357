/* Escalera embed loader. <script src="https://RELAY/widget.js" data-site="KEY" async></script>
 * Draws the chat bubble; on first click loads the widget in an iframe from the relay. The page
 * and the iframe talk only through postMessage, each checking the other's exact origin. */
(function () {
  var me = document.currentScript;
  if (!me || window.EscaleraLoaded) return;
  window.EscaleraLoaded = 1;
  var d = document, relay = new URL(me.src).origin, site = me.getAttribute('data-site') || '';
  // The page's `data-color` and `data-position` win over the site's (read from the relay, and
  // again whenever its owner changes them).
  var hex = /^#[0-9a-f]{6}$/i, myColor = me.getAttribute('data-color'), myPos = me.getAttribute('data-position');
  // The page's language (`data-locale`); else the relay picks from the browser's and the site's.
  var lang = me.getAttribute('data-locale') ? '&lang=' + encodeURIComponent(me.getAttribute('data-locale')) : '';
  if (!hex.test(myColor)) myColor = null;
  if (myPos !== 'left' && myPos !== 'right') myPos = null;
  var frame, open = false, look = { color: myColor || '#2563eb', position: myPos || 'right', open: 'Open chat', close: 'Close chat', title: 'Chat' };
  // The page's own handlers (Escalera.on), and a logout asked for before the frame could hear it.
  var handlers = { open: [], close: [], message: [], unread: [] }, bye = 0, unread = 0;
  // The page's logged-in user (Escalera.identify), told to the widget before it connects.
  var ident = null;
  // A link from an email back to a conversation (`#escalera-resume=TOKEN`): the widget opens
  // on it at once, and the token leaves the address bar.
  var resume = /[#&]escalera-resume=([\w-]+)/.exec(location.hash);
  if (resume) {
    resume = '&resume=' + resume[1];
    history.replaceState(history.state, '', location.href.split('#')[0]);
  }
  function emit(ev, arg) {
    handlers[ev].forEach(function (f) {
      try { f(arg); } catch (e) { setTimeout(function () { throw e; }); }
    });
  }
  // Full screen (a phone): the host page must not scroll behind the widget.
  var full = matchMedia('(max-width:480px)'), locked = null, ready = false;
  var css = d.createElement('style');
  css.textContent =
    '.esc-l,.esc-f{position:fixed;right:20px;z-index:2147483000}.esc-left{right:auto;left:20px}' +
    '.esc-l{bottom:20px;width:60px;height:60px;border-radius:50%;border:0;cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.3);display:grid;place-items:center}' +
    '.esc-l:focus-visible{outline:3px solid #93c5fd;outline-offset:2px}' +
    '.esc-b{position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;border-radius:10px;background:#dc2626;font:700 12px/20px system-ui,sans-serif;display:none}' +
    '.esc-f{bottom:92px;width:380px;height:min(620px,calc(100% - 112px));border:0;border-radius:14px;box-shadow:0 8px 32px rgba(0,0,0,.3);background:#fff}' +
    '@media (max-width:480px){.esc-f[class]{inset:0;width:100%;height:100%;border-radius:0}}';
  d.head.appendChild(css);
  var chat = '<svg width="28" height="28" viewBox="0 0 24 24" fill="currentColor" aria-hidden="true"><path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"/></svg>';
  var cross = '<svg width="24" height="24" viewBox="0 0 24 24" stroke="currentColor" stroke-width="2.5" aria-hidden="true"><path d="M6 6l12 12M18 6L6 18"/></svg>';
  var btn = d.createElement('button'), badge = d.createElement('span');
  btn.className = 'esc-l';
  btn.type = 'button';
  btn.setAttribute('data-testid', 'launcher');
  badge.className = 'esc-b';
  // Black or white, whichever contrasts more with the colour (WCAG's luminance): one of the
  // two always reaches 4.5:1.
  function ink(c) {
    var l = [1, 3, 5].map(function (i) {
      var v = parseInt(c.substr(i, 2), 16) / 255;
      return v <= 0.04045 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    l = 0.2126 * l[0] + 0.7152 * l[1] + 0.0722 * l[2] + 0.05;
    return 1.05 / l >= l / 0.05 ? '#fff' : '#000';
  }
  // The site's look, unless the page set its own.
  function restyle(site) {
    if (hex.test(site.color) && !myColor) look.color = site.color;
    if ((site.position === 'left' || site.position === 'right') && !myPos) look.position = site.position;
    ['open', 'close', 'title'].forEach(function (k) { if (site[k]) look[k] = site[k]; });
    if (frame) frame.title = look.title;
    draw();
    btn.style.background = look.color;
    btn.style.color = ink(look.color);
    [btn, frame].forEach(function (e) { if (e) e.classList.toggle('esc-left', look.position === 'left'); });
  }
  function draw() {
    btn.innerHTML = open ? cross : chat;
    btn.appendChild(badge);
    btn.setAttribute('aria-label', open ? look.close : look.open);
    btn.setAttribute('aria-expanded', open);
  }
  // Pins the host page where it is (position: fixed keeps iOS from scrolling it too). On
  // unlock it puts back the page's own values of just the properties it set (the page may have
  // changed others meanwhile), and its scroll position exactly.
  var pins = [[d.documentElement, 'overflow'], [0, 'overflow'], [0, 'position'], [0, 'top'], [0, 'left'], [0, 'width']];
  function lock(on) {
    if (on == !!locked) return;
    if (on) locked = { x: scrollX, y: scrollY, v: [] };
    var set = { overflow: 'hidden', position: 'fixed', top: -locked.y + 'px', left: -locked.x + 'px', width: '100%' };
    pins.forEach(function (p, i) {
      var s = (p[0] || d.body).style, v = locked.v[i];
      if (on) {
        locked.v[i] = [s.getPropertyValue(p[1]), s.getPropertyPriority(p[1])];
        s.setProperty(p[1], set[p[1]], 'important');
      } else if (v[0]) s.setProperty(p[1], v[0], v[1]);
      else s.removeProperty(p[1]);
    });
    if (!on) {
      scrollTo({ left: locked.x, top: locked.y, behavior: 'instant' });
      locked = null;
    }
  }
  // On a phone the on-screen keyboard shrinks the visual viewport, not the layout one: the
  // full-screen widget follows the visual one, so its message box stays above the keyboard.
  var vv = window.visualViewport;
  function fit() {
    if (!frame) return;
    var on = open && full.matches && vv;
    frame.style.height = on ? vv.height + 'px' : '';
    frame.style.top = on ? vv.offsetTop + 'px' : '';
  }
  if (vv) { vv.addEventListener('resize', fit); vv.addEventListener('scroll', fit); }
  function refit() { lock(open && full.matches); fit(); }
  full.addEventListener ? full.addEventListener('change', refit) : full.addListener(refit);
  // Only once the widget said it listens: before that the frame holds about:blank, and a
  // message for the relay's origin would be refused (and logged on the host page).
  function tell(msg) {
    if (ready) frame.contentWindow.postMessage(msg, relay);
  }
  // Where the visitor is, for the agent's side panel; again on every single-page navigation.
  function page() {
    tell({ type: 'escalera:page', url: location.href, title: d.title, referrer: d.referrer });
  }
  ['pushState', 'replaceState'].forEach(function (k) {
    var f = history[k];
    history[k] = function () { var r = f.apply(this, arguments); page(); return r; };
  });
  addEventListener('popstate', page);
  addEventListener('hashchange', page);
  function setOpen(v) {
    var was = open;
    open = v;
    if (v && !frame) {
      frame = d.createElement('iframe');
      frame.className = 'esc-f';
      frame.setAttribute('data-testid', 'widget-frame');
      frame.allow = 'camera; microphone; display-capture; autoplay; clipboard-write';
      frame.src = relay + '/embed?site=' + encodeURIComponent(site) + '&origin=' + encodeURIComponent(location.origin) +
        (myColor ? '&color=' + encodeURIComponent(myColor) : '') + lang + (bye ? '&logout=1' : '') + (resume || '');
      bye = 0;
      d.body.appendChild(frame);
      restyle({});
    }
    if (frame) frame.style.display = v ? '' : 'none';
    if (v) badge.style.display = 'none';
    lock(v && full.matches);
    fit();
    tell({ type: 'escalera:open', open: v });
    draw();
    (v ? frame : btn).focus();
    if (was !== v) emit(v ? 'open' : 'close');
  }
  btn.onclick = function () { setOpen(!open); };
  addEventListener('message', function (e) {
    if (!frame || e.origin !== relay || e.source !== frame.contentWindow) return;
    var m = e.data || {};
    // The widget says when it listens; only then can it hear whether it is shown.
    if (m.type === 'escalera:ready') {
      ready = true;
      tell({ type: 'escalera:identity', identity: ident });
      tell({ type: 'escalera:open', open: open });
      page();
    }
    if (m.type === 'escalera:close') setOpen(false);
    if (m.type === 'escalera:look') restyle(m);
    if (m.type === 'escalera:unread') {
      badge.textContent = m.count > 9 ? '9+' : m.count;
      badge.style.display = m.count > 0 && !open ? 'block' : 'none';
      if (m.count !== unread) emit('unread', unread = m.count);
    }
    if (m.type === 'escalera:message') emit('message', { author: m.author, name: m.name, text: m.text });
  });
  // The page's API. Calls made before this script loaded wait in `window.Escalera.q` (see the
  // README's snippet) and run now.
  var early = (window.Escalera && window.Escalera.q) || [];
  var api = window.Escalera = {
    open: function () { setOpen(true); },
    close: function () { setOpen(false); },
    toggle: function () { setOpen(!open); },
    on: function (ev, f) {
      if (handlers[ev] && typeof f === 'function') handlers[ev].push(f);
      return api;
    },
    // The page's logged-in user, `{id, name, email}`, with `hash`: hex HMAC-SHA256 of the id
    // under the site's identity secret, made by the page's server.
    identify: function (user, hash) {
      user = user || {};
      ident = { id: String(user.id || ''), hash: String(hash || '') };
      if (user.name) ident.name = String(user.name);
      if (user.email) ident.email = String(user.email);
      tell({ type: 'escalera:identity', identity: ident });
    },
    // Forgets the visitor in this browser (a shared computer): the next chat is a new one.
    logout: function () {
      ident = null;
      if (!frame) bye = 1;
      else if (ready) tell({ type: 'escalera:logout' });
      else frame.src += '&logout=1';
    }
  };
  early.forEach(function (c) { if (api[c[0]]) api[c[0]].apply(api, c[1]); });
  restyle({});
  fetch(relay + '/api/look?site=' + encodeURIComponent(site) + lang).then(function (r) { return r.ok && r.json(); })
      .then(function (l) { if (l) restyle(l); }, function () {});
  function start() {
    d.body.appendChild(btn);
    if (resume) setOpen(true);
  }
  d.body ? start() : addEventListener('DOMContentLoaded', start);
})();
