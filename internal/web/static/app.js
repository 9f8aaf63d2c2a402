// The video → MP3 web app: log in, upload with a progress bar, watch the
// conversions, download the MP3s. No framework and nothing from elsewhere:
// the page's Content-Security-Policy allows scripts from this file only.
//
// The JWT lives in sessionStorage (this tab only, gone when it closes) and
// travels only in the Authorization header, never in a URL.
'use strict';

(() => {
  const TOKEN_KEY = 'mp3converter.token';
  const POLL_MS = 2000;
  const FID_RE = /^[0-9a-fA-F]{24}$/;

  const MSG = {
    wrongLogin: 'Wrong email or password.',
    unavailable: 'The service is unavailable, try again shortly.',
    network: 'The service cannot be reached, check your connection and try again.',
    expired: 'Your session has expired, please log in again.',
    tooLarge: 'File too large',
    notMedia: 'Not a video or audio file. Choose a video (or audio) file and try again.',
  };

  const $ = (id) => document.getElementById(id);
  const el = {
    account: $('account'), whoami: $('whoami'), logout: $('logout'),
    loginView: $('login-view'), loginNote: $('login-note'), loginForm: $('login-form'),
    email: $('email'), password: $('password'), loginButton: $('login-button'), loginMsg: $('login-msg'),
    appView: $('app-view'), uploadForm: $('upload-form'), file: $('file'), uploadButton: $('upload-button'),
    progressRow: $('upload-progress-row'), progress: $('upload-progress'), percent: $('upload-percent'),
    uploadMsg: $('upload-msg'), downloadMsg: $('download-msg'), jobs: $('jobs'), jobsEmpty: $('jobs-empty'),
    jobsMsg: $('jobs-msg'),
  };

  let pollTimer = 0;
  let polling = false;
  let pendingDownload = ''; // fid from ?download=, started after login
  let uploading = null; // the XMLHttpRequest in flight

  // ---------- small helpers ----------

  function say(node, text, kind) {
    node.textContent = text || '';
    node.className = 'msg' + (text && kind ? ' ' + kind : '');
  }

  function capitalise(s) {
    s = String(s || '').trim();
    return s ? s[0].toUpperCase() + s.slice(1) : s;
  }

  // base64 of the UTF-8 bytes (btoa alone only takes Latin-1).
  function base64UTF8(s) {
    let bin = '';
    for (const b of new TextEncoder().encode(s)) bin += String.fromCharCode(b);
    return btoa(bin);
  }

  // The claims of a JWT (not verified: only to show the user's name and to
  // drop an expired token early; the server checks every request).
  function claims(token) {
    try {
      const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
      const bin = atob(part + '='.repeat((4 - part.length % 4) % 4));
      const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
      return JSON.parse(new TextDecoder().decode(bytes));
    } catch (e) {
      return {};
    }
  }

  function getToken() {
    let t = null;
    try { t = sessionStorage.getItem(TOKEN_KEY); } catch (e) { /* storage disabled */ }
    if (!t) return '';
    const exp = claims(t).exp;
    if (typeof exp === 'number' && exp * 1000 <= Date.now()) {
      clearToken();
      return '';
    }
    return t;
  }

  function setToken(t) {
    try { sessionStorage.setItem(TOKEN_KEY, t); } catch (e) { /* the tab keeps working until reload */ }
  }

  function clearToken() {
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* nothing stored */ }
  }

  function retryAfterSeconds(value) {
    const n = parseInt(value, 10);
    if (Number.isFinite(n) && n >= 0) return Math.max(n, 1);
    const when = Date.parse(value || '');
    if (Number.isFinite(when)) return Math.max(Math.ceil((when - Date.now()) / 1000), 1);
    return 0;
  }

  // The words for a failed request that the caller has no better text for.
  function statusText(status, body) {
    if (status === 0) return MSG.network;
    if (status === 502 || status === 503 || status === 504) return MSG.unavailable;
    if (status === 429) return 'Too many requests, wait a moment and try again.';
    const text = (body || '').trim();
    if (text && text.length < 300 && !text.startsWith('<')) return capitalise(text) + '.';
    return 'Something went wrong (HTTP ' + status + '), try again.';
  }

  // ---------- views ----------

  function showLogin(note, noteIsError) {
    stopPolling();
    el.appView.hidden = true;
    el.account.hidden = true;
    el.loginView.hidden = false;
    el.loginNote.hidden = !note;
    el.loginNote.textContent = note || '';
    say(el.loginMsg, noteIsError ? note : '', noteIsError ? 'error' : '');
    if (noteIsError) el.loginNote.hidden = true;
    el.password.value = '';
    (el.email.value ? el.password : el.email).focus();
  }

  function showApp() {
    const c = claims(getToken());
    el.whoami.textContent = c.username ? 'Signed in as ' + c.username : 'Signed in';
    el.loginView.hidden = true;
    el.appView.hidden = false;
    el.account.hidden = false;
    startPolling();
  }

  function sessionExpired() {
    clearToken();
    abortUpload();
    clearJobs();
    showLogin(MSG.expired, true);
  }

  function logout() {
    clearToken();
    abortUpload();
    clearJobs();
    pendingDownload = '';
    say(el.uploadMsg, '');
    say(el.downloadMsg, '');
    el.progressRow.hidden = true;
    showLogin('You are logged out.', false);
  }

  // ---------- login ----------

  async function login(ev) {
    ev.preventDefault();
    const email = el.email.value.trim();
    const password = el.password.value;
    if (!email || !password) {
      say(el.loginMsg, 'Enter your email and password.', 'error');
      (email ? el.password : el.email).focus();
      return;
    }
    el.loginButton.disabled = true;
    say(el.loginMsg, '');
    let resp;
    try {
      resp = await fetch('/login', {
        method: 'POST',
        headers: { Authorization: 'Basic ' + base64UTF8(email + ':' + password) },
        credentials: 'omit',
        cache: 'no-store',
      });
    } catch (e) {
      el.loginButton.disabled = false;
      say(el.loginMsg, MSG.network, 'error');
      return;
    }
    const body = await resp.text().catch(() => '');
    el.loginButton.disabled = false;
    if (resp.ok && body.trim()) {
      setToken(body.trim());
      el.password.value = '';
      el.loginNote.hidden = true;
      showApp();
      if (pendingDownload) {
        const fid = pendingDownload;
        pendingDownload = '';
        forgetDownloadParam();
        download(fid);
      }
      return;
    }
    let text;
    switch (resp.status) {
      case 400:
      case 401:
      case 403:
        text = MSG.wrongLogin;
        break;
      case 429: {
        const secs = retryAfterSeconds(resp.headers.get('Retry-After'));
        text = secs ? 'Too many attempts, wait ' + secs + ' seconds.' : 'Too many attempts, wait a moment.';
        break;
      }
      default:
        text = statusText(resp.status, body);
    }
    say(el.loginMsg, text, 'error');
    el.password.select();
    el.password.focus();
  }

  // ---------- upload ----------

  function setProgress(pct) {
    pct = Math.max(0, Math.min(100, Math.floor(pct)));
    el.progress.value = pct; // also sets the value attribute
    el.progress.setAttribute('value', String(pct));
    el.percent.textContent = pct + ' %';
  }

  function abortUpload() {
    if (uploading) {
      uploading.abort();
      uploading = null;
    }
  }

  function upload(ev) {
    ev.preventDefault();
    const token = getToken();
    if (!token) {
      sessionExpired();
      return;
    }
    const file = el.file.files && el.file.files[0];
    if (!file) {
      say(el.uploadMsg, 'Choose a video file first.', 'error');
      el.file.focus();
      return;
    }
    const form = new FormData();
    form.append('file', file, file.name);

    const xhr = new XMLHttpRequest();
    uploading = xhr;
    xhr.open('POST', '/upload');
    xhr.setRequestHeader('Authorization', 'Bearer ' + token);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable && e.total > 0) setProgress((e.loaded * 100) / e.total);
    };
    xhr.upload.onload = () => setProgress(100);
    xhr.onload = () => {
      uploading = null;
      el.uploadButton.disabled = false;
      uploaded(xhr, file.name);
    };
    xhr.onerror = () => {
      uploading = null;
      el.uploadButton.disabled = false;
      say(el.uploadMsg, 'The upload failed: ' + MSG.network.charAt(0).toLowerCase() + MSG.network.slice(1), 'error');
    };
    xhr.onabort = () => {
      el.uploadButton.disabled = false;
    };

    setProgress(0);
    el.progressRow.hidden = false;
    el.uploadButton.disabled = true;
    say(el.uploadMsg, 'Uploading ' + file.name + '…', 'info');
    xhr.send(form);
  }

  function uploaded(xhr, name) {
    const body = xhr.responseText || '';
    switch (xhr.status) {
      case 200: {
        setProgress(100);
        say(el.uploadMsg, 'Uploaded ' + name + '. The conversion has started; the MP3 appears below when it is ready.', 'ok');
        el.uploadForm.reset();
        refreshJobs();
        return;
      }
      case 401:
      case 403:
        sessionExpired();
        return;
      case 413: {
        const m = /limit is ([0-9]+ ?[KMGT]i?B)/i.exec(body);
        say(el.uploadMsg, MSG.tooLarge + (m ? ' (the limit is ' + m[1] + ').' : '.'), 'error');
        break;
      }
      case 415:
        say(el.uploadMsg, MSG.notMedia, 'error');
        break;
      default:
        say(el.uploadMsg, statusText(xhr.status, body), 'error');
    }
    el.progressRow.hidden = true;
  }

  // ---------- jobs ----------

  const STATUS = { queued: 'Queued', converting: 'Converting', done: 'Ready', failed: 'Failed', expired: 'Expired' };

  function clearJobs() {
    el.jobs.replaceChildren();
    el.jobsEmpty.hidden = false;
    say(el.jobsMsg, '');
  }

  function startPolling() {
    stopPolling();
    polling = true;
    refreshJobs();
  }

  function stopPolling() {
    polling = false;
    clearTimeout(pollTimer);
    pollTimer = 0;
  }

  function schedulePoll() {
    clearTimeout(pollTimer);
    if (polling) pollTimer = setTimeout(refreshJobs, POLL_MS);
  }

  let inFlight = false;
  async function refreshJobs() {
    const token = getToken();
    if (!token) {
      if (polling) sessionExpired();
      return;
    }
    if (inFlight) return;
    if (document.hidden) { // poll again when the tab is visible
      schedulePoll();
      return;
    }
    inFlight = true;
    try {
      const resp = await fetch('/jobs', {
        headers: { Authorization: 'Bearer ' + token },
        credentials: 'omit',
        cache: 'no-store',
      });
      if (resp.status === 401 || resp.status === 403) {
        sessionExpired();
        return;
      }
      if (!resp.ok) {
        say(el.jobsMsg, 'Could not refresh the list: ' + statusText(resp.status, await resp.text().catch(() => '')).replace(/^./, (c) => c.toLowerCase()), 'error');
        return;
      }
      const list = await resp.json();
      if (polling) renderJobs(Array.isArray(list) ? list : []);
      say(el.jobsMsg, '');
    } catch (e) {
      say(el.jobsMsg, 'Could not refresh the list: ' + MSG.network.charAt(0).toLowerCase() + MSG.network.slice(1), 'error');
    } finally {
      inFlight = false;
      schedulePoll();
    }
  }

  function child(parent, tag, cls) {
    const n = document.createElement(tag);
    n.className = cls;
    parent.appendChild(n);
    return n;
  }

  function jobItem(job) {
    const li = document.createElement('li');
    li.className = 'job';
    li.dataset.id = job.id;
    child(li, 'span', 'job-name');
    child(li, 'span', 'job-status');
    child(li, 'time', 'job-time');
    return li;
  }

  // updateJob changes an item in place, so a focused Download button keeps
  // its focus while the list refreshes.
  function updateJob(li, job) {
    // A done job whose MP3 the retention sweeper deleted.
    const status = job.status === 'done' && job.expired_at ? 'expired' : STATUS[job.status] ? job.status : 'queued';
    li.dataset.status = status;
    li.querySelector('.job-name').textContent = job.filename || job.id;
    const pct = Math.max(0, Math.min(100, Math.floor(Number(job.progress) || 0)));
    li.querySelector('.job-status').textContent = STATUS[status] + (status === 'converting' ? ' ' + pct + ' %' : '');
    const t = li.querySelector('.job-time');
    const created = new Date(job.created_at);
    if (!isNaN(created)) {
      t.dateTime = created.toISOString();
      t.textContent = 'Uploaded ' + created.toLocaleString();
    }

    let bar = li.querySelector('.job-progress');
    if (status === 'converting') {
      if (!bar) {
        bar = child(li, 'progress', 'job-progress');
        bar.max = 100;
        bar.setAttribute('aria-label', 'Conversion of ' + (job.filename || job.id));
      }
      bar.value = pct;
    } else if (bar) {
      bar.remove();
    }

    let err = li.querySelector('.job-error');
    if (status === 'failed') {
      if (!err) err = child(li, 'p', 'job-error');
      const reason = capitalise(job.error);
      err.textContent = reason ? reason.replace(/([^.!?])$/, '$1.') : 'The conversion failed.';
    } else if (status === 'expired') {
      if (!err) err = child(li, 'p', 'job-error');
      const when = new Date(job.expired_at);
      err.textContent = 'The MP3 was deleted' + (isNaN(when) ? '' : ' on ' + when.toLocaleDateString()) +
        ', after the time MP3s are kept. Upload the video again to convert it anew.';
    } else if (err) {
      err.remove();
    }

    let btn = li.querySelector('.job-download');
    const fid = job.mp3_fid || '';
    if (status === 'done' && fid) {
      if (!btn) {
        btn = child(li, 'button', 'job-download');
        btn.type = 'button';
        btn.textContent = 'Download MP3';
      }
      btn.dataset.fid = fid;
      btn.setAttribute('aria-label', 'Download ' + (job.filename || fid) + ' as MP3');
    } else if (btn) {
      btn.remove();
    }
  }

  function renderJobs(list) {
    const existing = new Map();
    for (const li of el.jobs.children) existing.set(li.dataset.id, li);
    const wanted = [];
    for (const job of list) {
      if (!job || !job.id) continue;
      let li = existing.get(job.id);
      if (!li) li = jobItem(job);
      existing.delete(job.id);
      updateJob(li, job);
      wanted.push(li);
    }
    for (const li of existing.values()) li.remove();
    // Reorder only when needed: moving a node would take its focus away.
    wanted.forEach((li, i) => {
      if (el.jobs.children[i] !== li) el.jobs.insertBefore(li, el.jobs.children[i] || null);
    });
    el.jobsEmpty.hidden = wanted.length > 0;
  }

  // ---------- download ----------

  // download fetches the MP3 with the token in the header and hands it to
  // the browser as <fid>.mp3; label names it in the messages.
  async function download(fid, label) {
    const what = label ? label + ' (' + fid + '.mp3)' : fid + '.mp3';
    const token = getToken();
    if (!token) {
      pendingDownload = fid;
      sessionExpired();
      return;
    }
    say(el.downloadMsg, 'Downloading ' + what + '…', 'info');
    let resp;
    try {
      resp = await fetch('/download?fid=' + encodeURIComponent(fid), {
        headers: { Authorization: 'Bearer ' + token },
        credentials: 'omit',
        cache: 'no-store',
      });
    } catch (e) {
      say(el.downloadMsg, 'The download failed: ' + MSG.network.charAt(0).toLowerCase() + MSG.network.slice(1), 'error');
      return;
    }
    if (resp.status === 401 || resp.status === 403) {
      pendingDownload = fid;
      sessionExpired();
      return;
    }
    if (!resp.ok) {
      const body = await resp.text().catch(() => '');
      const text = resp.status === 404
        ? 'That MP3 was not found. It may not be ready yet, or it belongs to another account.'
        : resp.status === 410 && body ? capitalise(body).replace(/([^.!?])$/, '$1.')
        : statusText(resp.status, body);
      say(el.downloadMsg, text, 'error');
      return;
    }
    let blob;
    try {
      blob = await resp.blob();
    } catch (e) {
      say(el.downloadMsg, 'The download was interrupted, try again.', 'error');
      return;
    }
    const url = URL.createObjectURL(blob);
    const a = document.createElement('a');
    a.href = url;
    a.download = fid + '.mp3';
    a.hidden = true;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    say(el.downloadMsg, 'Downloaded ' + what + '.', 'ok');
  }

  function onJobsClick(ev) {
    const btn = ev.target.closest('.job-download');
    if (btn && btn.dataset.fid) download(btn.dataset.fid, btn.closest('.job').querySelector('.job-name').textContent);
  }

  // The link of the notification email: /?download=<fid>.
  function downloadParam() {
    const v = new URLSearchParams(location.search).get('download');
    return v === null ? null : v.trim();
  }

  function forgetDownloadParam() {
    const u = new URL(location.href);
    if (!u.searchParams.has('download')) return;
    u.searchParams.delete('download');
    history.replaceState(history.state, '', u.pathname + u.search + u.hash);
  }

  // ---------- start ----------

  function start() {
    el.loginForm.addEventListener('submit', login);
    el.uploadForm.addEventListener('submit', upload);
    el.logout.addEventListener('click', logout);
    el.jobs.addEventListener('click', onJobsClick);
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && polling) refreshJobs();
    });

    const fid = downloadParam();
    let badLink = false;
    if (fid !== null && !FID_RE.test(fid)) {
      badLink = true;
      forgetDownloadParam();
    }
    if (getToken()) {
      showApp();
      if (badLink) say(el.downloadMsg, 'The download link is not valid.', 'error');
      else if (fid) {
        forgetDownloadParam();
        download(fid);
      }
      return;
    }
    if (fid && !badLink) {
      pendingDownload = fid;
      showLogin('Log in to download your MP3.', false);
      return;
    }
    showLogin(badLink ? 'The download link is not valid.' : '', badLink);
  }

  start();
})();
