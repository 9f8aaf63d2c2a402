// The video → MP3 web app: log in, upload (several files, dropped or
// chosen, each its own job, each with its progress), watch the conversions,
// listen to the MP3s in the page, download them under the video's name,
// delete finished jobs. No framework and nothing from elsewhere:
// the page's Content-Security-Policy allows scripts from this file only.
//
// The JWT lives in sessionStorage (this tab only, gone when it closes) and
// travels only in the Authorization header, never in a URL.
'use strict';

(() => {
  const TOKEN_KEY = 'mp3converter.token';
  const POLL_MS = 2000;
  // While the live stream (GET /events) is open the list is polled only as
  // a safety net, this long after the last event.
  const LIVE_POLL_MS = 60000;
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
    jobsMsg: $('jobs-msg'), dropZone: $('drop-zone'), uploads: $('uploads'),
  };

  let pollTimer = 0;
  let polling = false;
  let pendingDownload = ''; // fid from ?download=, started after login
  let uploading = null; // the upload in flight: a tus.Upload, or an XMLHttpRequest
  const deleted = new Set(); // ids of jobs deleted here: a list fetched before is stale

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
    clearTimeout(expiryTimer);
    stopPolling();
    stopEvents();
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

  let expiryTimer = 0;

  function showApp() {
    const c = claims(getToken());
    // Back to the login form when the token expires, whatever the page is
    // doing then.
    clearTimeout(expiryTimer);
    if (Number.isFinite(c.exp)) expiryTimer = setTimeout(sessionExpired, Math.min(Math.max(c.exp * 1000 - Date.now(), 0), 2 ** 31 - 1));
    el.whoami.textContent = c.username ? 'Signed in as ' + c.username : 'Signed in';
    el.loginView.hidden = true;
    el.appView.hidden = false;
    el.account.hidden = false;
    startPolling();
    startEvents();
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

  // Every file chosen or dropped is its own POST /upload (its own job).
  // They go one at a time, in order; each has its row in #uploads with its
  // own progress, and the bar above shows the whole batch. Files added
  // while a batch is uploading join it.
  let queue = []; // {file, row} waiting
  let batch = null; // {count, total, finished, ok: [], failed: [{name, text}]}

  function setProgress(pct) {
    pct = Math.max(0, Math.min(100, Math.floor(pct)));
    el.progress.value = pct; // also sets the value attribute
    el.progress.setAttribute('value', String(pct));
    el.percent.textContent = pct + ' %';
  }

  // batchProgress is the share of the batch's bytes sent, with loaded
  // bytes of the file in flight.
  function batchProgress(loaded) {
    if (!batch) return;
    if (batch.total > 0) setProgress(((batch.finished + loaded) * 100) / batch.total);
    else setProgress(((batch.ok.length + batch.failed.length) * 100) / batch.count);
  }

  function abortUpload() {
    queue = [];
    batch = null;
    el.uploadButton.disabled = false;
    if (uploading) {
      uploading.abort();
      uploading = null;
    }
  }

  function uploadRow(file) {
    const li = document.createElement('li');
    li.className = 'upload';
    li.dataset.state = 'waiting';
    child(li, 'span', 'upload-name').textContent = file.name;
    child(li, 'span', 'upload-state').textContent = 'Waiting';
    const bar = child(li, 'progress', 'upload-progress');
    bar.max = 100;
    bar.value = 0;
    bar.setAttribute('aria-label', 'Upload of ' + file.name);
    el.uploads.appendChild(li);
    return li;
  }

  function rowState(row, state, text, pct) {
    row.dataset.state = state;
    row.querySelector('.upload-state').textContent = text;
    if (pct !== undefined) row.querySelector('.upload-progress').value = pct;
  }

  function upload(ev) {
    ev.preventDefault();
    const files = el.file.files ? [...el.file.files] : [];
    if (!files.length) {
      say(el.uploadMsg, 'Choose a video file first.', 'error');
      el.file.focus();
      return;
    }
    el.uploadForm.reset(); // the files are queued: a second click does not send them again
    enqueue(files);
  }

  function enqueue(files) {
    if (!getToken()) {
      sessionExpired();
      return;
    }
    if (!batch) {
      batch = { count: 0, total: 0, finished: 0, ok: [], failed: [] };
      el.uploads.replaceChildren();
      setProgress(0);
    }
    for (const file of files) {
      queue.push({ file, row: uploadRow(file) });
      batch.count++;
      batch.total += file.size;
    }
    el.progressRow.hidden = false;
    if (!uploading) next();
    else batchProgress(0);
  }

  // next sends the first waiting file, or ends the batch.
  function next() {
    const token = getToken();
    if (!token) {
      sessionExpired();
      return;
    }
    const item = queue.shift();
    if (!item) {
      finishBatch();
      return;
    }
    const { file, row } = item;
    const position = batch.count > 1 ? ' (' + (batch.ok.length + batch.failed.length + 1) + ' of ' + batch.count + ')' : '';
    rowState(row, 'uploading', '0 %', 0);
    el.uploadButton.disabled = true;
    say(el.uploadMsg, 'Uploading ' + file.name + position + '…', 'info');
    if (window.tus && window.tus.isSupported) sendResumable(file, row, token);
    else sendOnce(file, row, token);
  }

  function sent(file, row, loaded, total) {
    if (total > 0) {
      const pct = Math.floor((loaded * 100) / total);
      rowState(row, 'uploading', pct + ' %', pct);
      batchProgress(file.size * loaded / total);
    }
  }

  // sendResumable sends the file with the tus protocol (POST /uploads,
  // then PATCHes; tus-js-client): when the connection breaks, or the
  // gateway restarts, only the bytes in flight are lost, and the upload
  // goes on from the server's offset, also after a reload of the page (the
  // client remembers the upload's URL in localStorage until it succeeds).
  function sendResumable(file, row, token) {
    const up = new window.tus.Upload(file, {
      endpoint: '/uploads',
      headers: { Authorization: 'Bearer ' + token },
      metadata: { filename: file.name, filetype: file.type || 'application/octet-stream' },
      retryDelays: [0, 1000, 3000, 5000, 10000, 20000],
      removeFingerprintOnSuccess: true,
      onProgress: (loaded, total) => { if (uploading === up) sent(file, row, loaded, total); },
      onShouldRetry: (err) => {
        // Retry what a retry can mend: the network, the server's 5xx, an
        // offset that moved (409) or a lock still held (423).
        const res = err && err.originalResponse;
        const status = res ? res.getStatus() : 0;
        const retry = uploading === up && (!status || status >= 500 || status === 409 || status === 423);
        if (retry) rowState(row, 'uploading', 'Connection lost, resuming…');
        return retry;
      },
      onSuccess: () => {
        if (uploading !== up) return;
        uploading = null;
        rowState(row, 'uploading', '100 %', 100);
        uploaded({ status: 200, responseText: '' }, file, row);
      },
      onError: (err) => {
        if (uploading !== up) return;
        uploading = null;
        const res = err && err.originalResponse;
        if (!res) uploadFailed(file, row); // the network, past the retries
        else uploaded({ status: res.getStatus(), responseText: res.getBody() || '' }, file, row);
      },
    });
    uploading = up;
    up.findPreviousUploads().then((previous) => {
      if (uploading !== up) return;
      if (previous.length) up.resumeFromPreviousUpload(previous[0]);
      up.start();
    }, () => { if (uploading === up) up.start(); });
  }

  // sendOnce is the one-request upload (POST /upload, multipart), for a
  // browser where tus-js-client did not load.
  function sendOnce(file, row, token) {
    const form = new FormData();
    form.append('file', file, file.name);
    const xhr = new XMLHttpRequest();
    uploading = xhr;
    xhr.open('POST', '/upload');
    xhr.setRequestHeader('Authorization', 'Bearer ' + token);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) sent(file, row, e.loaded, e.total);
    };
    xhr.upload.onload = () => {
      rowState(row, 'uploading', '100 %', 100);
      batchProgress(file.size);
    };
    xhr.onload = () => {
      if (uploading !== xhr) return;
      uploading = null;
      uploaded(xhr, file, row);
    };
    xhr.onerror = () => {
      if (uploading !== xhr) return;
      uploading = null;
      uploadFailed(file, row);
    };
    xhr.send(form);
  }

  function uploadFailed(file, row) {
    fileDone(file, row, 'The upload failed: ' + MSG.network.charAt(0).toLowerCase() + MSG.network.slice(1));
  }

  function uploaded(xhr, file, row) {
    const body = xhr.responseText || '';
    switch (xhr.status) {
      case 200:
        fileDone(file, row, '');
        refreshJobs();
        return;
      case 401:
      case 403:
        sessionExpired();
        return;
      case 413: {
        const m = /limit is ([0-9]+ ?[KMGT]i?B)/i.exec(body);
        fileDone(file, row, MSG.tooLarge + (m ? ' (the limit is ' + m[1] + ').' : '.'));
        return;
      }
      case 415:
        fileDone(file, row, MSG.notMedia);
        return;
      default:
        fileDone(file, row, statusText(xhr.status, body));
    }
  }

  // fileDone records one file's outcome (error: '' when it was accepted)
  // and goes on with the next.
  function fileDone(file, row, error) {
    if (!batch) return;
    batch.finished += file.size;
    if (error) {
      batch.failed.push({ name: file.name, text: error });
      rowState(row, 'failed', error);
    } else {
      batch.ok.push(file.name);
      rowState(row, 'done', 'Uploaded', 100);
    }
    batchProgress(0);
    next();
  }

  function finishBatch() {
    const b = batch;
    batch = null;
    el.uploadButton.disabled = false;
    if (!b) return;
    if (b.count === 1) { // one file: its message, and no list
      el.uploads.replaceChildren();
      if (b.ok.length) {
        setProgress(100);
        say(el.uploadMsg, 'Uploaded ' + b.ok[0] + '. The conversion has started; the MP3 appears below when it is ready.', 'ok');
      } else {
        el.progressRow.hidden = true;
        say(el.uploadMsg, b.failed[0].text, 'error');
      }
      return;
    }
    if (!b.failed.length) {
      setProgress(100);
      say(el.uploadMsg, 'Uploaded ' + b.count + ' files. The conversions have started; the MP3s appear below when they are ready.', 'ok');
      return;
    }
    say(el.uploadMsg, (b.ok.length ? 'Uploaded ' + b.ok.length + ' of ' + b.count + ' files; ' : 'No file was uploaded; ') +
      b.failed.map((f) => f.name + ': ' + f.text).join(' '), 'error');
  }

  // Drag and drop: files dropped on the zone are uploaded at once. A drop
  // anywhere else is ignored (rather than the browser leaving the page to
  // open the file).
  function dragOver(ev) {
    if (!ev.dataTransfer || ![...ev.dataTransfer.types].includes('Files')) return;
    ev.preventDefault();
    const inZone = el.dropZone.contains(ev.target);
    ev.dataTransfer.dropEffect = inZone ? 'copy' : 'none';
    el.dropZone.classList.toggle('dragging', inZone);
  }

  function drop(ev) {
    if (!ev.dataTransfer) return;
    ev.preventDefault();
    el.dropZone.classList.remove('dragging');
    const files = [...ev.dataTransfer.files];
    if (files.length && el.dropZone.contains(ev.target) && !el.appView.hidden) enqueue(files);
  }

  // ---------- jobs ----------

  const STATUS = { queued: 'Queued', converting: 'Converting', done: 'Ready', failed: 'Failed', expired: 'Expired' };

  function clearJobs() {
    for (const li of el.jobs.querySelectorAll('.job')) dropAudio(li);
    el.jobs.replaceChildren();
    deleted.clear();
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
    if (polling) pollTimer = setTimeout(refreshJobs, live ? LIVE_POLL_MS : POLL_MS);
  }

  // ---------- live updates ----------

  // GET /events is a server-sent events stream of this user's job changes,
  // read with fetch (an EventSource cannot send the token). While it is
  // open each change updates its row as it happens; when it fails the page
  // polls every POLL_MS as before and opens it again later.
  let stream = null; // the AbortController of the stream, while one is wanted
  let streamRetry = 0;
  let streamDelay = 1000;
  let live = false;

  function setLive(on) {
    live = on;
    el.jobs.dataset.live = on ? 'true' : 'false';
  }

  function startEvents() {
    stopEvents();
    const token = getToken();
    if (!token || !window.ReadableStream || !window.TextDecoder || !window.AbortController) return;
    const ctl = new AbortController();
    stream = ctl;
    readEvents(ctl, token).catch(() => {}).finally(() => {
      if (stream !== ctl) return; // stopped on purpose
      setLive(false);
      schedulePoll();
      streamRetry = setTimeout(startEvents, streamDelay);
      streamDelay = Math.min(streamDelay * 2, 60000);
    });
  }

  function stopEvents() {
    clearTimeout(streamRetry);
    const ctl = stream;
    stream = null;
    if (ctl) ctl.abort();
    setLive(false);
  }

  async function readEvents(ctl, token) {
    const resp = await fetch('/events', {
      headers: { Authorization: 'Bearer ' + token },
      credentials: 'omit',
      cache: 'no-store',
      signal: ctl.signal,
    });
    if (resp.status === 401 || resp.status === 403) {
      sessionExpired();
      return;
    }
    if (!resp.ok || !resp.body) return;
    setLive(true);
    streamDelay = 1000;
    refreshJobs(); // what changed before the stream opened
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true }).replace(/\r\n?/g, '\n');
      let end;
      while ((end = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, end);
        buf = buf.slice(end + 2);
        let name = 'message';
        let data = '';
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) name = line.slice(6).trim();
          else if (line.startsWith('data:')) data += line.slice(5).trim();
        }
        if (stream === ctl) onEvent(name, data);
      }
    }
  }

  function onEvent(name, data) {
    switch (name) {
      case 'job':
        try {
          applyJob(JSON.parse(data));
        } catch (e) { /* not a job: ignored */ }
        schedulePoll();
        break;
      case 'resync': // changes may have been missed
        refreshJobs();
        break;
      case 'expired':
        sessionExpired();
        break;
    }
  }

  // applyJob updates (or adds, at the top) the row of one job.
  function applyJob(job) {
    if (!polling || !job || !job.id || deleted.has(job.id)) return;
    let li = null;
    for (const n of el.jobs.children) if (n.dataset.id === job.id) li = n;
    if (!li) {
      li = jobItem(job);
      el.jobs.insertBefore(li, el.jobs.firstChild);
      el.jobsEmpty.hidden = true;
    }
    updateJob(li, job);
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

  // before adds a new element to a job's item, above its buttons.
  function before(li, tag, cls) {
    const n = document.createElement(tag);
    n.className = cls;
    li.insertBefore(n, li.querySelector('.job-actions'));
    return n;
  }

  function jobItem(job) {
    const li = document.createElement('li');
    li.className = 'job';
    li.dataset.id = job.id;
    child(li, 'span', 'job-name');
    child(li, 'span', 'job-status');
    child(li, 'time', 'job-time');
    child(li, 'div', 'job-actions');
    return li;
  }

  // mp3Name is the name a download is saved under: the video's, with .mp3
  // for its extension (the API's attachment name, <fid>.mp3, is for curl).
  function mp3Name(filename, fid) {
    let base = String(filename || '').replace(/^.*[\\/]/, '');
    const dot = base.lastIndexOf('.');
    if (dot > 0) base = base.slice(0, dot);
    base = base.trim();
    return (base || fid) + '.mp3';
  }

  const BUTTONS = ['job-play', 'job-download', 'job-delete'];

  // button shows (wanted) or removes the item's button of class cls, kept
  // in the order of BUTTONS.
  function button(li, cls, text, wanted) {
    const actions = li.querySelector('.job-actions');
    let b = actions.querySelector('.' + cls);
    if (!wanted) {
      if (b) b.remove();
      return null;
    }
    if (!b) {
      b = document.createElement('button');
      b.type = 'button';
      b.className = cls + (cls === 'job-download' ? '' : ' secondary');
      b.textContent = text;
      const after = BUTTONS.slice(BUTTONS.indexOf(cls) + 1).map((c) => actions.querySelector('.' + c)).find(Boolean);
      actions.insertBefore(b, after || null);
    }
    return b;
  }

  // updateJob changes an item in place, so a focused Download button keeps
  // its focus while the list refreshes.
  function updateJob(li, job) {
    // A done job whose MP3 the retention sweeper deleted.
    const status = job.status === 'done' && job.expired_at ? 'expired' : STATUS[job.status] ? job.status : 'queued';
    li.dataset.status = status;
    const label = job.filename || job.id;
    li.querySelector('.job-name').textContent = label;
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
        bar = before(li, 'progress', 'job-progress');
        bar.max = 100;
        bar.setAttribute('aria-label', 'Conversion of ' + label);
      }
      bar.value = pct;
    } else if (bar) {
      bar.remove();
    }

    let err = li.querySelector('.job-error');
    if (status === 'failed') {
      if (!err) err = before(li, 'p', 'job-error');
      const reason = capitalise(job.error);
      err.textContent = reason ? reason.replace(/([^.!?])$/, '$1.') : 'The conversion failed.';
    } else if (status === 'expired') {
      if (!err) err = before(li, 'p', 'job-error');
      const when = new Date(job.expired_at);
      err.textContent = 'The MP3 was deleted' + (isNaN(when) ? '' : ' on ' + when.toLocaleDateString()) +
        ', after the time MP3s are kept. Upload the video again to convert it anew.';
    } else if (err) {
      err.remove();
    }

    const fid = job.mp3_fid || '';
    const ready = status === 'done' && fid !== '';
    const name = mp3Name(job.filename, fid);
    li.dataset.mp3Name = name;
    const audio = li.querySelector('.job-audio');
    if (audio && (!ready || audio.dataset.fid !== fid)) dropAudio(li);
    const play = button(li, 'job-play', 'Listen', ready && !li.querySelector('.job-audio'));
    if (play) {
      play.dataset.fid = fid;
      play.setAttribute('aria-label', 'Listen to ' + label + ' here');
    }
    const dl = button(li, 'job-download', 'Download MP3', ready);
    if (dl) {
      dl.dataset.fid = fid;
      dl.dataset.name = name;
      dl.setAttribute('aria-label', 'Download ' + label + ' as ' + name);
    }
    const del = button(li, 'job-delete', 'Delete', status === 'done' || status === 'failed' || status === 'expired');
    if (del) del.setAttribute('aria-label', 'Delete ' + label + ' and its files');
  }

  function renderJobs(list) {
    const existing = new Map();
    for (const li of el.jobs.children) existing.set(li.dataset.id, li);
    const wanted = [];
    for (const job of list) {
      if (!job || !job.id || deleted.has(job.id)) continue;
      let li = existing.get(job.id);
      if (!li) li = jobItem(job);
      existing.delete(job.id);
      updateJob(li, job);
      wanted.push(li);
    }
    for (const li of existing.values()) removeJob(li);
    // Reorder only when needed: moving a node would take its focus away.
    wanted.forEach((li, i) => {
      if (el.jobs.children[i] !== li) el.jobs.insertBefore(li, el.jobs.children[i] || null);
    });
    el.jobsEmpty.hidden = wanted.length > 0;
  }

  function removeJob(li) {
    dropAudio(li);
    li.remove();
    el.jobsEmpty.hidden = el.jobs.children.length > 0;
  }

  // ---------- the MP3s: listen, download, delete ----------

  // getMP3 fetches MP3 fid with the token in the header: {blob}, or
  // {status, text} saying why not (status 401 or 403: the session is over).
  async function getMP3(fid, token) {
    let resp;
    try {
      resp = await fetch('/download?fid=' + encodeURIComponent(fid), {
        headers: { Authorization: 'Bearer ' + token },
        credentials: 'omit',
        cache: 'no-store',
      });
    } catch (e) {
      return { status: 0, text: MSG.network };
    }
    if (!resp.ok) {
      const body = await resp.text().catch(() => '');
      const text = resp.status === 404
        ? 'That MP3 was not found. It may not be ready yet, or it belongs to another account.'
        : resp.status === 410 && body ? capitalise(body).replace(/([^.!?])$/, '$1.')
        : statusText(resp.status, body);
      return { status: resp.status, text };
    }
    try {
      return { blob: await resp.blob() };
    } catch (e) {
      return { status: 0, text: 'The download was interrupted, try again.' };
    }
  }

  function lower(s) {
    return s.charAt(0).toLowerCase() + s.slice(1);
  }

  // listen loads the job's MP3 into an <audio> player in its item (a Blob
  // URL: the page's token cannot ride on a src attribute), and plays it.
  async function listen(li, btn) {
    const fid = btn.dataset.fid;
    const token = getToken();
    if (!token) {
      sessionExpired();
      return;
    }
    btn.disabled = true;
    btn.textContent = 'Loading…';
    const r = await getMP3(fid, token);
    if (!li.isConnected || li.querySelector('.job-audio')) return;
    if (!r.blob) {
      if (r.status === 401 || r.status === 403) {
        sessionExpired();
        return;
      }
      btn.disabled = false;
      btn.textContent = 'Listen';
      say(el.downloadMsg, 'Could not load ' + li.dataset.mp3Name + ': ' + lower(r.text), 'error');
      return;
    }
    const audio = document.createElement('audio');
    audio.className = 'job-audio';
    audio.controls = true;
    audio.preload = 'metadata';
    audio.dataset.fid = fid;
    audio.src = URL.createObjectURL(r.blob);
    audio.setAttribute('aria-label', 'Play ' + li.querySelector('.job-name').textContent);
    li.appendChild(audio);
    btn.remove();
    audio.focus();
    audio.play().catch(() => { /* autoplay refused: the controls are there */ });
  }

  // dropAudio removes an item's player and frees its MP3.
  function dropAudio(li) {
    const audio = li.querySelector('.job-audio');
    if (!audio) return;
    audio.pause();
    URL.revokeObjectURL(audio.src);
    audio.remove();
  }

  // nameFor is the saved name of MP3 fid: its job's video name with .mp3
  // when the job is in the list (or the first page of it), else <fid>.mp3.
  async function nameFor(fid, token) {
    const shown = [...el.jobs.querySelectorAll('.job-download')].find((b) => b.dataset.fid === fid);
    if (shown) return shown.dataset.name;
    try {
      const resp = await fetch('/jobs', { headers: { Authorization: 'Bearer ' + token }, credentials: 'omit', cache: 'no-store' });
      const list = resp.ok ? await resp.json() : [];
      const job = Array.isArray(list) ? list.find((j) => j && j.mp3_fid === fid) : null;
      if (job) return mp3Name(job.filename, fid);
    } catch (e) { /* the name is a nicety */ }
    return fid + '.mp3';
  }

  // download fetches the MP3 with the token in the header and hands it to
  // the browser, saved as name (the video's name with .mp3).
  async function download(fid, name) {
    const token = getToken();
    if (!token) {
      pendingDownload = fid;
      sessionExpired();
      return;
    }
    if (!name) name = await nameFor(fid, token);
    say(el.downloadMsg, 'Downloading ' + name + '…', 'info');
    // A player in the page has the MP3 already.
    const audio = [...el.jobs.querySelectorAll('.job-audio')].find((a) => a.dataset.fid === fid);
    let url = audio ? audio.src : '';
    if (!url) {
      const r = await getMP3(fid, token);
      if (!r.blob) {
        if (r.status === 401 || r.status === 403) {
          pendingDownload = fid;
          sessionExpired();
          return;
        }
        say(el.downloadMsg, r.status === 0 && r.text === MSG.network ? 'The download failed: ' + lower(r.text) : r.text, 'error');
        return;
      }
      url = URL.createObjectURL(r.blob);
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    }
    const a = document.createElement('a');
    a.href = url;
    a.download = name;
    a.hidden = true;
    document.body.appendChild(a);
    a.click();
    a.remove();
    say(el.downloadMsg, 'Downloaded ' + name + '.', 'ok');
  }

  // deleteJob deletes a finished job and its files (DELETE /jobs/{id}) and
  // takes it off the list.
  async function deleteJob(li, btn) {
    const id = li.dataset.id;
    const label = li.querySelector('.job-name').textContent;
    const token = getToken();
    if (!token) {
      sessionExpired();
      return;
    }
    btn.disabled = true;
    let resp;
    try {
      resp = await fetch('/jobs/' + encodeURIComponent(id), {
        method: 'DELETE',
        headers: { Authorization: 'Bearer ' + token },
        credentials: 'omit',
        cache: 'no-store',
      });
    } catch (e) {
      btn.disabled = false;
      say(el.downloadMsg, 'Could not delete ' + label + ': ' + lower(MSG.network), 'error');
      return;
    }
    if (resp.status === 401 || resp.status === 403) {
      sessionExpired();
      return;
    }
    if (resp.status === 204 || resp.status === 404) { // 404: gone already
      deleted.add(id);
      removeJob(li);
      say(el.downloadMsg, 'Deleted ' + label + '.', 'ok');
      return;
    }
    btn.disabled = false;
    say(el.downloadMsg, 'Could not delete ' + label + ': ' + lower(statusText(resp.status, await resp.text().catch(() => ''))), 'error');
  }

  function onJobsClick(ev) {
    const btn = ev.target.closest('button');
    const li = btn && btn.closest('.job');
    if (!li || btn.disabled) return;
    if (btn.classList.contains('job-download') && btn.dataset.fid) download(btn.dataset.fid, btn.dataset.name);
    else if (btn.classList.contains('job-play') && btn.dataset.fid) listen(li, btn);
    else if (btn.classList.contains('job-delete')) deleteJob(li, btn);
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
    document.addEventListener('dragenter', dragOver);
    document.addEventListener('dragover', dragOver);
    document.addEventListener('dragleave', (ev) => {
      if (!ev.relatedTarget || !el.dropZone.contains(ev.relatedTarget)) el.dropZone.classList.remove('dragging');
    });
    document.addEventListener('drop', drop);
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
