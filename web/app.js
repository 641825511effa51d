// icewall's page: a hash router over four views (overview, jobs, a job, submit), fed by
// the public JSON API, polling every two seconds while the tab is visible. Charts are
// SVG drawn here from data the server already reduced to at most one value per pixel.
'use strict';

const POLL_MS = 2000;
/** A request not answered by then is given up: a connection lost without a word would hold the polling for ever. */
const REQUEST_MS = 10000;
/** A big wall's charts are read from disk and reduced on request: seconds, not milliseconds. */
const CHART_MS = 60000;
const SVG = 'http://www.w3.org/2000/svg';
const PAGE = 20;
/** Profiles and heights a profile shown of a job's config: a wall may have a million sections. */
const HEIGHT_PROFILES = 10;
const HEIGHTS_SHOWN = 40;
const $ = (id) => document.getElementById(id);
const fmt = (n) => (n === null || n === undefined ? '–' : (typeof n === 'bigint' ? n : Number(n)).toLocaleString('en-US'));

// ---- HTTP ----------------------------------------------------------------------------

/** An error answer (`status` its HTTP status), or none at all (`status` 0). */
class ApiError extends Error {
  constructor(status, reason) { super(reason); this.status = status; }
}

/**
 * A `num_teams` past 2^53 (the server takes up to 2^63 - 1) as a BigInt read from its
 * text: as a Number it is another count. Only that field: the figures the charts compute
 * with stay Numbers. A browser that gives no text keeps the Number.
 */
function exactTeams(key, value, context) {
  const text = context && context.source;
  return key === 'num_teams' && typeof value === 'number' && !Number.isSafeInteger(value) && /^\d+$/.test(text || '')
    ? BigInt(text) : value;
}

async function api(path, options = {}) {
  const headers = Object.assign({ Accept: 'application/json' }, options.headers || {});
  const token = $('admin-token').value;
  if (options.admin && token) headers.Authorization = 'Bearer ' + token;
  const timeout = options.timeout || REQUEST_MS;
  let response;
  let text;
  try {
    const sent = Date.now();
    response = await fetch(path, {
      method: options.method || 'GET', headers, body: options.body, cache: 'no-store',
      signal: AbortSignal.timeout(timeout),
    });
    serverClock.observe(response.headers.get('Date'), sent, Date.now());
    text = await response.text();
  } catch (error) {
    throw new ApiError(0, error.name === 'TimeoutError'
      ? `The server did not answer within ${timeout / 1000} s.`
      : 'The server cannot be reached: it is stopped or restarting, or the network is down.');
  }
  let body = null;
  try { body = text ? JSON.parse(text, exactTeams) : null; } catch (_) { body = null; }
  if (!response.ok) {
    // A proxy in front of a stopped server answers in HTML: its status is all there is to say.
    const reason = (body && body.reason) || `The server answered ${response.status} ${response.statusText}`.trim() + '.';
    throw new ApiError(response.status, reason);
  }
  return body;
}

/**
 * The server's clock as the browser's plus an offset, for what the page measures against
 * the server's times (a running job's elapsed time): the browser's may be minutes off.
 * An answer's Date header (to the second) was the server's time between the request's
 * sending and the answer's coming, so the offset lies within bounds; the offset kept is
 * the one in those bounds nearest 0, so a browser whose clock is right is not moved.
 */
const serverClock = {
  offset: 0,
  observe(header, sent, received) {
    const date = Date.parse(header || '');
    if (!Number.isFinite(date)) return;
    const low = date - received;
    const high = date + 1000 - sent;
    this.offset = Math.min(Math.max(0, low), high);
  },
  now() { return Date.now() + this.offset; },
};

/** Whether an error may pass by itself: no answer, or the server's own trouble. */
const isPassing = (error) => error.status === 0 || error.status >= 500;

/** Says, until the next refresh succeeds, that what is shown is not live and why. */
function showTrouble(error) {
  const note = $('trouble');
  if (!error) {
    note.hidden = true;
    showTrouble.since = null;
    return;
  }
  showTrouble.since = showTrouble.since || new Date();
  // No answer from a server seen draining: it has done what it was asked, not failed.
  server.stopped = server.draining && error.status === 0;
  showServerState();
  const message = server.stopped ? 'The server has shut down.' : error.message;
  note.textContent = `${message} What is shown is as of ${showTrouble.since.toLocaleTimeString()}; trying again every ${POLL_MS / 1000} s.`;
  note.hidden = false;
}

function toast(message) {
  const element = $('toast');
  element.textContent = message;
  element.classList.add('shown');
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => element.classList.remove('shown'), 4000);
}

// ---- formatting ----------------------------------------------------------------------

function duration(ms) {
  if (ms === null || ms === undefined) return '–';
  if (ms < 1) return ms.toFixed(3) + ' ms';
  if (ms < 1000) return ms.toFixed(ms < 10 ? 2 : 0) + ' ms';
  const s = ms / 1000;
  if (s < 120) return s.toFixed(s < 10 ? 2 : 1) + ' s';
  const m = Math.floor(s / 60);
  if (m < 120) return m + ' min ' + Math.round(s % 60) + ' s';
  return Math.floor(m / 60) + ' h ' + (m % 60) + ' min';
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : '–';
}

function compact(n) {
  const units = [[1e12, 'T'], [1e9, 'G'], [1e6, 'M'], [1e3, 'k']];
  for (const [size, unit] of units) {
    if (Math.abs(n) >= size) return +(n / size).toPrecision(3) + unit;
  }
  return String(+Number(n).toPrecision(3));
}

// ---- SVG charts ----------------------------------------------------------------------

function el(name, attributes, parent) {
  const node = document.createElementNS(SVG, name);
  for (const key in attributes) node.setAttribute(key, attributes[key]);
  if (parent) parent.appendChild(node);
  return node;
}

/** A chart frame: `width` x `height` drawing area inside margins for the axes. */
function frame(container, label, height) {
  const width = Math.max(280, Math.round(container.clientWidth || 600));
  const margin = { left: 56, right: 12, top: 8, bottom: 24 };
  const svg = el('svg', {
    viewBox: `0 0 ${width} ${height + margin.top + margin.bottom}`,
    role: 'img', 'aria-label': label,
  });
  const plot = el('g', { transform: `translate(${margin.left},${margin.top})` }, svg);
  container.replaceChildren(svg);
  return { svg, plot, width: width - margin.left - margin.right, height };
}

function axes(chart, yMax, yLabel, xFirst, xLast, xLabel) {
  const { plot, width, height } = chart;
  el('path', { class: 'axis', d: `M0,0V${height}H${width}` }, plot);
  const tick = (x, y, text, anchor) => {
    const t = el('text', { class: 'tick', x, y, 'text-anchor': anchor }, plot);
    t.textContent = text;
  };
  tick(-6, 10, compact(yMax), 'end');
  tick(-6, height, '0', 'end');
  tick(0, height + 16, xLabel + ' ' + fmt(xFirst), 'start');
  tick(width, height + 16, fmt(xLast), 'end');
  if (yLabel) {
    const t = el('title', {}, chart.svg);
    t.textContent = yLabel;
  }
}

/** Buckets' first and last days, from the chart answer. */
function bucketDays(chart) {
  const spans = [];
  for (let k = 0; k < chart.buckets; k++) {
    const first = k * chart.bucket_days + 1;
    spans.push([first, Math.min((k + 1) * chart.bucket_days, chart.days)]);
  }
  return spans;
}

/**
 * How many profiles the wall has when they are all identical, else 0: their summary rows
 * alike (sections, days, ice) and their ice in every bucket equal (the profiles not
 * stacked on their own, in sum). Stacked, such a wall is N equal bands that say nothing.
 */
function identicalProfiles(chart, summary) {
  const [first, ...rest] = chart.ice;
  const total = chart.ice.reduce((sum, series) => sum + series.profiles, 0);
  if (total < 2 || first.profile === null) return 0;
  const row = summary.profiles[0];
  const rowsAlike = summary.profiles.every((other) =>
    other.sections === row.sections && other.days === row.days && other.ice === row.ice);
  const seriesAlike = rest.every((series) =>
    series.ice.every((ice, k) => ice === first.ice[k] * series.profiles));
  return rowsAlike && seriesAlike ? total : 0;
}

/**
 * Stacked areas of ice per day (each bucket's ice over its days), one path a series; a
 * wall of identical profiles draws one of them, and says so.
 */
function drawIce(container, legend, caption, chart, summary) {
  const alike = identicalProfiles(chart, summary);
  const shown = alike ? [{ name: 'each profile', color: 'c0', ice: chart.ice[0].ice }] : chart.ice.map((info, s) => ({
    name: info.profile === null ? `others (${fmt(info.profiles)} profiles)` : `profile ${info.profile}`,
    color: 'c' + (info.profile === null ? 8 : s % 8),
    ice: info.ice,
  }));
  caption.textContent = alike
    ? `Ice per day of one profile (cubic yards): ${fmt(alike)} identical profiles, the wall uses ${fmt(alike)} times this`
    : 'Ice per day, by profile (cubic yards)';
  const spans = bucketDays(chart);
  const perDay = shown.map((series) => series.ice.map((ice, k) => ice / (spans[k][1] - spans[k][0] + 1)));
  const totals = spans.map((_, k) => perDay.reduce((sum, series) => sum + series[k], 0));
  const yMax = Math.max(1, ...totals);
  const what = alike ? `Ice per day of each of ${fmt(alike)} identical profiles` : `Ice per day by profile, ${shown.length} series,`;
  const c = frame(container, `${what} over ${fmt(chart.days)} days, at most ${fmt(Math.round(yMax))} cubic yards a day`, 220);
  const x = (k) => (k / Math.max(1, chart.buckets)) * c.width;
  const y = (v) => c.height - (v / yMax) * c.height;
  const below = new Array(chart.buckets).fill(0);
  legend.replaceChildren();
  perDay.forEach((series, s) => {
    let top = '';
    let bottom = '';
    for (let k = 0; k < chart.buckets; k++) {
      const low = below[k];
      const high = low + series[k];
      top += `${k ? 'L' : 'M'}${x(k).toFixed(1)},${y(high).toFixed(1)}H${x(k + 1).toFixed(1)}`;
      bottom = `L${x(k + 1).toFixed(1)},${y(low).toFixed(1)}H${x(k).toFixed(1)}` + bottom;
      below[k] = high;
    }
    const { name, color, ice } = shown[s];
    const path = el('path', { class: 'series ' + color, d: top + bottom + 'Z' }, c.plot);
    el('title', {}, path).textContent = `${name}: ${fmt(ice.reduce((a, b) => a + b, 0))} cubic yards`;
    const item = document.createElement('li');
    const swatch = el('svg', { viewBox: '0 0 10 10', 'aria-hidden': 'true' });
    el('rect', { class: color, width: 10, height: 10 }, swatch);
    item.append(swatch, name);
    legend.appendChild(item);
  });
  axes(c, yMax, 'cubic yards a day', 1, chart.days, 'day');
}

/** The wall's cost through each bucket's last day, as a line. */
function drawCost(container, chart) {
  const yMax = Math.max(1, chart.cost[chart.cost.length - 1] || 0);
  const c = frame(container, `Cumulative cost over ${fmt(chart.days)} days, reaching ${fmt(yMax)} Gold Dragons`, 180);
  const x = (k) => ((k + 1) / Math.max(1, chart.buckets)) * c.width;
  const y = (v) => c.height - (v / yMax) * c.height;
  let d = `M0,${c.height}`;
  chart.cost.forEach((v, k) => { d += `L${x(k).toFixed(1)},${y(v).toFixed(1)}`; });
  el('path', { class: 'area-under', d: d + `L${c.width},${c.height}Z` }, c.plot);
  const line = el('path', { class: 'series line', d }, c.plot);
  el('title', {}, line).textContent = `${fmt(yMax)} Gold Dragons in all`;
  axes(c, yMax, 'Gold Dragons', 1, chart.days, 'day');
}

/** One row per team: a bar for each run of buckets spent on one profile. */
function drawGantt(container, chart) {
  const rows = chart.teams.rows;
  const rowHeight = rows.length > 30 ? 8 : 22;
  const c = frame(container, `Gantt of ${rows.length} of ${fmt(chart.teams.num_teams)} teams over ${fmt(chart.days)} days`, rows.length * rowHeight);
  const spans = bucketDays(chart);
  const x = (k) => (k / Math.max(1, chart.buckets)) * c.width;
  const profiles = chart.ice.filter((s) => s.profile !== null).map((s) => s.profile);
  rows.forEach((row, r) => {
    const group = el('g', { class: 'series', 'data-team': row.team }, c.plot);
    let k = 0;
    while (k < row.profile.length) {
      const profile = row.profile[k];
      let end = k;
      let finished = 0;
      while (end < row.profile.length && row.profile[end] === profile) finished += row.finished[end++];
      if (profile !== 0) {
        const index = profiles.indexOf(profile);
        const width = x(end) - x(k);
        const rect = el('rect', {
          // A hairline parts a bar from the next only where both are wide enough to keep their colour.
          class: 'c' + (index < 0 ? 8 : index % 8) + (width >= 4 ? ' parted' : ''),
          x: x(k).toFixed(1), y: r * rowHeight + 1, width: Math.max(0.5, width).toFixed(1), height: rowHeight - 2,
        }, group);
        el('title', {}, rect).textContent =
          `team ${row.team}, days ${fmt(spans[k][0])}–${fmt(spans[end - 1][1])}: profile ${profile}, ${fmt(finished)} sections finished`;
      }
      k = end;
    }
    if (rowHeight >= 16) {
      const label = el('text', { class: 'tick', x: -6, y: r * rowHeight + rowHeight / 2 + 4, 'text-anchor': 'end' }, c.plot);
      label.textContent = 'team ' + row.team;
    }
  });
  el('path', { class: 'axis', d: `M0,${c.height}H${c.width}` }, c.plot);
  const first = el('text', { class: 'tick', x: 0, y: c.height + 16 }, c.plot);
  first.textContent = 'day 1';
  const last = el('text', { class: 'tick', x: c.width, y: c.height + 16, 'text-anchor': 'end' }, c.plot);
  last.textContent = fmt(chart.days);
}

/** How long ago, for a chart's axis and tooltips: seconds under a minute, else minutes. */
function ago(seconds) {
  return seconds < 60 ? `${Math.round(seconds)} s ago` : `${fmt(Math.round(seconds / 60))} min ago`;
}

/**
 * Done and failed jobs per interval, stacked bars on an axis of time that ends now. The
 * server counts its intervals from its start: the last, under way, is as wide as the
 * time it has had, and the intervals from before the start, zeros that counted nothing,
 * are left out (the axis begins at the start).
 */
function drawThroughput(container, caption, throughput, cluster) {
  const seconds = throughput.interval_seconds;
  const counted = throughput.intervals.slice(throughput.intervals_before_start);
  const current = Math.min(seconds, throughput.current_interval_ms / 1000);
  const span = Math.max(1, (counted.length - 1) * seconds + current);
  // In cluster mode the counts are of the jobs this node ran, not the cluster's.
  const jobs = cluster ? 'Jobs this node' : 'Jobs';
  const since = throughput.intervals_before_start ? `since ${cluster ? 'this node' : 'the server'} started` : 'in the last hour';
  const yMax = Math.max(1, ...counted.map((i) => i.done + i.failed));
  const done = counted.reduce((a, i) => a + i.done, 0);
  const failed = counted.reduce((a, i) => a + i.failed, 0);
  caption.textContent = `${jobs} finished per ${seconds === 60 ? 'minute' : seconds + ' s'}, ${since} (done and failed)`;
  const c = frame(container, `${jobs} finished ${since}, ${ago(span)}: ${fmt(done)} done, ${fmt(failed)} failed`, 120);
  const x = (t) => (t / span) * c.width;
  const y = (v) => (v / yMax) * c.height;
  const doneBars = el('g', { class: 'series bar-done' }, c.plot);
  const failedBars = el('g', { class: 'series bar-failed' }, c.plot);
  counted.forEach((i, k) => {
    const last = k === counted.length - 1;
    const left = x(k * seconds);
    const width = x(last ? span : (k + 1) * seconds) - left;
    // A gap parts the bars where they are wide enough to spare it.
    const gap = width > 4 ? 1 : 0;
    const when = last ? `the last ${Math.max(1, Math.ceil(current))} s` : ago((counted.length - 1 - k) * seconds);
    const bar = (bars, bottom, count, what) => {
      const rect = el('rect', {
        x: (left + gap).toFixed(1), y: (c.height - y(bottom + count)).toFixed(1),
        width: Math.max(1, width - 2 * gap).toFixed(1), height: y(count).toFixed(1),
      }, bars);
      el('title', {}, rect).textContent = `${when}: ${fmt(count)} ${what}`;
    };
    if (i.done) bar(doneBars, 0, i.done, 'done');
    if (i.failed) bar(failedBars, i.done, i.failed, 'failed');
  });
  el('path', { class: 'axis', d: `M0,0V${c.height}H${c.width}` }, c.plot);
  const first = throughput.intervals_before_start ? 'started ' + ago(span) : ago(span);
  const labels = [[0, first, 'start'], [c.width, 'now', 'end']];
  for (const [at, text, anchor] of labels) {
    el('text', { class: 'tick', x: at, y: c.height + 16, 'text-anchor': anchor }, c.plot).textContent = text;
  }
  el('text', { class: 'tick', x: -6, y: 10, 'text-anchor': 'end' }, c.plot).textContent = compact(yMax);
}

// ---- views ---------------------------------------------------------------------------

const views = {};
let current = null;

views.overview = {
  refresh(stats) {
    $('stat-queued').textContent = fmt(stats.jobs.queued);
    $('stat-running').textContent = fmt(stats.jobs.running);
    $('stat-done').textContent = fmt(stats.jobs.done);
    $('stat-failed').textContent = fmt(stats.jobs.failed);
    $('stat-depth').textContent = fmt(stats.queue_depth);
    $('stat-workers').textContent = `${fmt(stats.workers.busy)} of ${fmt(stats.workers.total)}`;
    $('stat-wait').textContent = `${duration(stats.queue_wait.p50_ms)} / ${duration(stats.queue_wait.p95_ms)}`;
    $('stat-run').textContent = `${duration(stats.run_time.p50_ms)} / ${duration(stats.run_time.p95_ms)}`;
    showNodes(stats.nodes);
    drawThroughput($('chart-throughput'), $('throughput-caption'), stats.throughput, server.cluster);
  },
};

/** The cluster's nodes, one row each; the panel only in cluster mode (`nodes` absent otherwise). */
function showNodes(nodes) {
  $('nodes-panel').hidden = !nodes;
  if (!nodes) return;
  const stale = nodes.filter((node) => node.stale).length;
  $('nodes-caption').textContent = `${nodes.length} ${nodes.length === 1 ? 'node shares' : 'nodes share'} the database, in the order they joined` +
    (stale ? `; ${stale} stale: silent for a whole lease, the others take back its jobs` : '');
  $('nodes-rows').replaceChildren(...nodes.map((node) => {
    const tr = document.createElement('tr');
    if (node.stale) tr.className = 'stale';
    const name = document.createElement('th');
    name.scope = 'row';
    // The whole id: v7 ids of nodes started together share their first digits.
    const id = document.createElement('code');
    id.textContent = node.node_id;
    name.append(id);
    if (node.address === location.host) name.append(' (this one)');
    tr.appendChild(name);
    const heartbeat = document.createElement('td');
    if (node.stale) heartbeat.append(stateBadge('stale'), ' ');
    heartbeat.append(duration(node.heartbeat_age_ms) + ' ago');
    const cells = [[node.address], [fmt(node.running), 'num'], [fmt(node.workers), 'num'], [when(node.started_at)]];
    for (const [text, className] of cells) {
      const td = document.createElement('td');
      td.textContent = text;
      if (className) td.className = className;
      tr.appendChild(td);
    }
    tr.appendChild(heartbeat);
    return tr;
  }));
}

const jobsPaging = { stack: [], after: null, last: null };

views.jobs = {
  enter() {
    jobsPaging.stack = [];
    jobsPaging.after = null;
  },
  async refresh() {
    const status = $('jobs-status').value;
    // One row more than shown: whether it comes says whether there are older jobs.
    const query = new URLSearchParams({ order: 'newest', limit: String(PAGE + 1) });
    if (status) query.set('status', status);
    if (jobsPaging.after) query.set('after', jobsPaging.after);
    const list = await api('/api/jobs?' + query);
    // The older jobs may have gone since the page looked (deleted, expired, or no longer
    // in the state filtered): back to the page before rather than show an empty one.
    if (!list.data.length && jobsPaging.stack.length) {
      jobsPaging.after = jobsPaging.stack.pop();
      return this.refresh();
    }
    const older = list.data.length > PAGE;
    const shown = list.data.slice(0, PAGE);
    const rows = shown.map((job) => {
      const tr = document.createElement('tr');
      const link = document.createElement('a');
      link.href = '#/jobs/' + job.job_id;
      link.textContent = job.job_id;
      const cells = [link, stateBadge(job.status), when(job.created_at), when(job.finished_at)];
      for (const content of cells) {
        const td = document.createElement('td');
        td.append(content);
        tr.appendChild(td);
      }
      return tr;
    });
    if (!rows.length) {
      const tr = document.createElement('tr');
      const td = document.createElement('td');
      td.colSpan = 4;
      td.textContent = status ? `No ${status} jobs.` : 'No jobs yet.';
      tr.appendChild(td);
      rows.push(tr);
    }
    $('jobs-rows').replaceChildren(...rows);
    $('jobs-caption').textContent = (status ? `Jobs ${status}` : 'Jobs') + ', newest first' +
      (jobsPaging.stack.length ? `, page ${jobsPaging.stack.length + 1}` : '');
    jobsPaging.last = older ? shown[PAGE - 1].job_id : null;
    $('jobs-older').disabled = !jobsPaging.last;
    $('jobs-newer').disabled = !jobsPaging.stack.length;
  },
};

function stateBadge(status) {
  const badge = document.createElement('span');
  badge.className = 'state ' + status;
  badge.textContent = status;
  return badge;
}

/** The job on show; `clearJob` sets the rest, at every view's entry. */
const jobView = { id: null };

/** The fields of a job's page that say something of one job: blank until its record comes. */
const JOB_FIELDS = ['job-created', 'job-started', 'job-finished', 'job-queue', 'job-run', 'job-elapsed',
  'job-profiles', 'job-sections', 'job-teams', 'job-replayed'];

/** Forgets what the page showed of a job, and draws everything again for the next record. */
function clearJob() {
  jobView.queued = false;
  jobView.drawnFor = null;
  jobView.configFor = null;
  jobView.profiles = { stack: [], after: 0, next: null, asked: 0, shown: null };
  $('job-state').replaceChildren();
  for (const field of JOB_FIELDS) $(field).textContent = '–';
  $('job-result').hidden = true;
  $('job-heights').hidden = true;
  $('job-reason').hidden = true;
  $('job-actions').hidden = true;
}

views.job = {
  enter(id) {
    jobView.id = id;
    clearJob();
    $('job-title').textContent = 'Job ' + id.slice(0, 8);
    $('job-id').textContent = id;
    $('job-log').href = `/api/jobs/${id}/log`;
  },
  async refresh(stats) {
    const id = jobView.id;
    let job;
    try {
      job = await api('/api/jobs/' + id);
    } catch (error) {
      if (error.status !== 404 || id !== jobView.id) throw error;
      // Deleted or cancelled since (here or elsewhere), or never accepted: nothing of it is
      // left to show or act on. Still asked for: a job just accepted by another node appears.
      clearJob();
      $('job-state').replaceChildren(stateBadge('gone'));
      $('job-reason').textContent = 'There is no such job: it was deleted or cancelled, or never accepted.';
      $('job-reason').hidden = false;
      return;
    }
    if (id !== jobView.id) return;
    // A running job can be neither cancelled nor deleted (the server answers 409): no
    // button to press until it has finished.
    $('job-actions').hidden = job.status === 'running';
    $('job-state').replaceChildren(stateBadge(job.status));
    $('job-state').className = '';
    $('job-created').textContent = when(job.created_at);
    $('job-started').textContent = when(job.started_at);
    $('job-finished').textContent = when(job.finished_at);
    $('job-queue').textContent = duration(job.queue_ms);
    $('job-run').textContent = duration(job.run_ms);
    // Both ends by the server's clock: the end of a finished job, or the server's time
    // now as the page can tell it; never below 0 (the times come to the millisecond).
    const finished = job.status === 'done' || job.status === 'failed';
    const end = finished ? Date.parse(job.finished_at || '') : serverClock.now();
    const start = Date.parse(job.created_at || '');
    $('job-elapsed').textContent = Number.isFinite(end) && Number.isFinite(start) ? duration(Math.max(0, end - start)) : '–';
    $('job-profiles').textContent = fmt(job.profiles);
    $('job-sections').textContent = fmt(job.sections);
    $('job-teams').textContent = job.num_teams ? fmt(job.num_teams) : 'a crew on every section';
    $('job-replayed').textContent = job.replayed ? 'yes, it was' : 'no';
    $('job-reason').hidden = job.status !== 'failed';
    $('job-reason').textContent = job.reason ? 'Failed: ' + job.reason : '';
    jobView.queued = job.status === 'queued';
    $('job-delete').textContent = jobView.queued ? 'Cancel this job' : 'Delete this job';
    // Kept with the result: there once the job has finished, done or failed. Not waited
    // for: the charts do not wait on a big wall's config.
    if (finished && jobView.configFor !== id) {
      jobView.configFor = id;
      showConfig(id).catch((error) => {
        // Asked for again at the next poll when the failure may pass; a refusal stays.
        if (id === jobView.id && isPassing(error)) jobView.configFor = null;
        toast(error.message);
      });
    }
    if (job.status === 'done' && jobView.drawnFor !== id) {
      jobView.drawnFor = id;
      try {
        await showResult(id, stats.max_chart_width);
      } catch (error) {
        if (id === jobView.id) jobView.drawnFor = null;
        throw error;
      }
    }
  },
};

/** `widest` is from this refresh's stats: a server restarted with a smaller --max-chart-width refuses a wider chart. */
async function showResult(id, widest) {
  const width = Math.min(widest, Math.max(100, Math.round($('view-job').clientWidth || 800)));
  const [result, chart] = await Promise.all([
    api('/api/get_results/' + id),
    api(`/api/jobs/${id}/chart?width=${width}`, { timeout: CHART_MS }),
  ]);
  if (id !== jobView.id) return;
  $('job-result').hidden = false;
  $('job-days').textContent = fmt(result.data.days);
  $('job-ice').textContent = fmt(result.data.ice);
  $('job-cost').textContent = fmt(result.data.cost);
  drawIce($('chart-ice'), $('ice-legend'), $('ice-caption'), chart, result.data);
  drawCost($('chart-cost'), chart);
  $('gantt-figure').hidden = !chart.teams;
  if (chart.teams) {
    drawGantt($('chart-gantt'), chart);
    const shown = chart.teams.rows.length;
    $('gantt-caption').textContent = 'Teams: which team built which profile, when' +
      (shown < chart.teams.num_teams ? ` (the first ${fmt(shown)} of ${fmt(chart.teams.num_teams)} teams)` : '');
  }
  document.documentElement.dataset.chartsDrawnMs = String(performance.now());
  await showProfiles();
}

/** The first profiles of the job's config as rows of heights, long ones cut short with a count. */
async function showConfig(id) {
  let config;
  try {
    config = await api(`/api/jobs/${id}/config?limit=${HEIGHT_PROFILES}`);
  } catch (error) {
    if (error.status !== 404 || id !== jobView.id) throw error;
    $('heights-rows').replaceChildren();
    $('heights-note').textContent = 'The heights were not kept for this job: it finished under an earlier version of the server.';
    $('heights-note').hidden = false;
    $('job-heights').hidden = false;
    return;
  }
  if (id !== jobView.id) return;
  $('heights-rows').replaceChildren(...config.profiles.map((heights, i) => {
    const tr = document.createElement('tr');
    const number = document.createElement('th');
    number.scope = 'row';
    number.className = 'num';
    number.textContent = fmt(i + 1);
    const cell = document.createElement('td');
    cell.className = 'heights';
    cell.textContent = heights.slice(0, HEIGHTS_SHOWN).join(' ');
    if (heights.length > HEIGHTS_SHOWN) {
      const more = document.createElement('span');
      more.className = 'hint';
      more.textContent = ` … and ${fmt(heights.length - HEIGHTS_SHOWN)} more (${fmt(heights.length)} sections)`;
      cell.append(more);
    }
    tr.append(number, cell);
    return tr;
  }));
  const hidden = config.profiles_total - config.profiles.length;
  $('heights-note').textContent = hidden ? `And ${fmt(hidden)} more profiles, not shown.` : '';
  $('heights-note').hidden = !hidden;
  $('job-heights').hidden = false;
}

/**
 * The page of profiles the pager is on. Clicks faster than the answers send requests
 * that overlap: only the answer to the latest is drawn, as an older one may come last.
 * Next waits for the page it would follow (it knows no next page until then); a failed
 * request puts the pager back on the page shown.
 */
async function showProfiles() {
  const id = jobView.id;
  const paging = jobView.profiles;
  const asked = ++paging.asked;
  const latest = () => id === jobView.id && paging === jobView.profiles && asked === paging.asked;
  paging.next = null;
  $('profiles-next').disabled = true;
  $('profiles-prev').disabled = !paging.stack.length;
  let page;
  try {
    page = await api(`/api/jobs/${id}/profiles?after=${paging.after}&limit=${PAGE}`);
  } catch (error) {
    if (!latest()) return;
    if (paging.shown) {
      Object.assign(paging, paging.shown, { stack: [...paging.shown.stack] });
      $('profiles-next').disabled = paging.next === null;
      $('profiles-prev').disabled = !paging.stack.length;
    }
    throw error;
  }
  if (!latest()) return;
  $('profiles-rows').replaceChildren(...page.profiles.map((row) => {
    const tr = document.createElement('tr');
    const values = [row.profile, row.sections, row.days, row.ice, row.cost];
    values.forEach((value, i) => {
      const cell = document.createElement(i ? 'td' : 'th');
      if (!i) cell.scope = 'row';
      cell.className = 'num';
      cell.textContent = fmt(value);
      tr.appendChild(cell);
    });
    return tr;
  }));
  paging.next = page.next_after;
  paging.shown = { after: paging.after, next: paging.next, stack: [...paging.stack] };
  $('profiles-next').disabled = page.next_after === null;
  $('profiles-prev').disabled = !paging.stack.length;
}

// ---- submit --------------------------------------------------------------------------

/** The line and column an error reason names (`line 2 (profile 2), column 3`, or serde's `line 1 column 5`). */
function locate(reason) {
  const match = /line (\d+)(?: \(profile \d+\))?,? column (\d+)/.exec(reason);
  return match ? { line: Number(match[1]), column: Number(match[2]) } : null;
}

/** The character offset of a text config's `column`th height (or a JSON error's column) on `line`. */
function offsetOf(text, place, json) {
  const lines = text.split(/\r\n|\r|\n/);
  let offset = 0;
  for (let i = 0; i < place.line - 1 && i < lines.length; i++) offset += lines[i].length + 1;
  const line = lines[place.line - 1] || '';
  if (json) return { start: offset + Math.max(0, place.column - 1), end: offset + place.column, line };
  const tokens = [...line.matchAll(/\S+/g)];
  const token = tokens[place.column - 1];
  if (!token) return { start: offset, end: offset + line.length, line };
  return { start: offset + token.index, end: offset + token.index + token[0].length, line, token };
}

function showConfigError(reason, text, json) {
  const box = $('config-error');
  const textarea = $('config');
  box.replaceChildren();
  const message = document.createElement('p');
  message.textContent = reason;
  box.appendChild(message);
  const place = locate(reason);
  if (place) {
    box.dataset.line = String(place.line);
    box.dataset.column = String(place.column);
    const at = offsetOf(text, place, json);
    const heading = document.createElement('p');
    heading.textContent = `At line ${place.line}, column ${place.column}:`;
    const excerpt = document.createElement('pre');
    excerpt.className = 'excerpt';
    const lineStart = at.start - (at.token ? at.token.index : Math.max(0, place.column - 1));
    const before = at.line.slice(0, at.start - lineStart);
    const mark = document.createElement('mark');
    mark.textContent = at.line.slice(at.start - lineStart, at.end - lineStart) || ' ';
    excerpt.append(`${place.line} | ${before}`, mark, at.line.slice(at.end - lineStart));
    box.append(heading, excerpt);
    textarea.focus();
    textarea.setSelectionRange(at.start, at.end);
  } else {
    delete box.dataset.line;
    delete box.dataset.column;
  }
  box.hidden = false;
  textarea.setAttribute('aria-invalid', 'true');
}

async function submit(event) {
  event.preventDefault();
  const text = $('config').value;
  const teams = $('teams').value.trim();
  const json = /^\s*\{/.test(text);
  $('config-error').hidden = true;
  $('config').removeAttribute('aria-invalid');
  $('teams-error').hidden = true;
  $('teams').removeAttribute('aria-invalid');
  // A number field reads what it cannot parse ("3e", "-") as empty: that is not "no teams".
  if ($('teams').validity.badInput || (teams && !/^[1-9]\d*$/.test(teams))) {
    $('teams-error').textContent = 'Teams must be a whole number of at least 1, or empty.';
    $('teams-error').hidden = false;
    $('teams').setAttribute('aria-invalid', 'true');
    $('teams').focus();
    return;
  }
  const button = $('submit-button');
  button.disabled = true;
  try {
    const query = teams ? '?num_teams=' + teams : '';
    const accepted = await api('/api/simulate' + query, {
      method: 'POST',
      headers: { 'Content-Type': json ? 'application/json' : 'text/plain' },
      body: text,
    });
    location.hash = '#/jobs/' + accepted.job_id;
  } catch (error) {
    if (error.status === 400) showConfigError(error.message, text, json);
    else toast(error.message);
  } finally {
    button.disabled = server.draining;
  }
}

// ---- actions -------------------------------------------------------------------------

/**
 * Asks `question` in the browser's own dialog and, on yes, runs `send` with `button`
 * disabled until its answer comes: a second click would send the request again. A
 * refusal is told in a toast.
 */
async function confirmAndSend(button, question, send) {
  if (!window.confirm(question)) return;
  button.disabled = true;
  try {
    await send();
  } catch (error) {
    toast(error.message);
  } finally {
    button.disabled = false;
  }
}

function deleteJob() {
  const id = jobView.id;
  // What the question says is what is sent, whatever a poll shows meanwhile.
  const queued = jobView.queued;
  const question = queued
    ? `Cancel job ${id.slice(0, 8)}? It is removed from the queue and never runs.`
    : `Delete job ${id.slice(0, 8)}? Its result and files are removed for good.`;
  return confirmAndSend($('job-delete'), question, async () => {
    // A cancel leaves a job that finished since the page last looked: a DELETE would
    // remove its result.
    const answer = queued
      ? await api('/api/jobs/' + id + '/cancel', { method: 'POST', admin: true })
      : await api('/api/jobs/' + id, { method: 'DELETE', admin: true });
    toast(`Job ${id.slice(0, 8)} ${answer.status}.`);
    location.hash = '#/jobs';
  });
}

/**
 * What the page knows of the server's shutdown: `draining` once it refuses new jobs
 * (the shutdown's answer, or a refresh's stats), `stopped` once it no longer answers
 * after that. A server started again accepts, and clears both.
 */
const server = { draining: false, stopped: false, cluster: false };

function noteServer(stats) {
  server.draining = !stats.accepting;
  server.stopped = false;
  const cluster = Boolean(stats.nodes);
  if (cluster !== server.cluster) showScope((server.cluster = cluster));
  showServerState();
}

/**
 * In cluster mode the job counts and the queue are the cluster's, but the workers, waits,
 * run times, throughput and shutdown are the node's the page talks to: the labels that
 * have a `data-cluster` wording say which.
 */
function showScope(cluster) {
  for (const label of document.querySelectorAll('[data-cluster]')) {
    label.dataset.alone = label.dataset.alone || label.textContent;
    label.textContent = cluster ? label.dataset.cluster : label.dataset.alone;
  }
}

function showServerState() {
  $('draining').hidden = !server.draining || server.stopped;
  $('shutdown').disabled = server.draining;
  // A server that is shutting down refuses new jobs: the form is kept, for a server
  // started again, but not sent.
  $('submit-button').disabled = server.draining;
}

async function shutDown() {
  const question = server.cluster
    ? 'Shut this node down? The jobs it has claimed finish first, then it exits; the other nodes go on.'
    : 'Shut the server down? Queued and running jobs finish first, then it exits.';
  await confirmAndSend($('shutdown'), question, async () => {
    const answer = await api('/api/graceful_shutdown', { method: 'POST', admin: true });
    server.draining = true;
    // A node's pending counts the jobs it has claimed, not the cluster's queue.
    toast(server.cluster
      ? `Shutting down this node; ${fmt(answer.pending)} jobs it has claimed still to finish.`
      : `Shutting down; ${fmt(answer.pending)} jobs still to finish.`);
    refresh();
  });
  // At once, before another click can come: the button stays disabled while the server drains.
  showServerState();
}

// ---- routing and polling -------------------------------------------------------------

/**
 * A job id as the server takes it (hyphenated, lower case) from one written with or
 * without its hyphens, in either case; `null` for anything else. The server answers
 * another spelling as an unknown job: the page would say a job it has is gone.
 */
function canonicalId(text) {
  const match = /^([0-9a-f]{8})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{4})-?([0-9a-f]{12})$/.exec(text.trim().toLowerCase());
  return match ? match.slice(1).join('-') : null;
}

function route() {
  const hash = location.hash.replace(/^#/, '') || '/';
  let name = 'missing';
  let argument = null;
  let match;
  if (hash === '/') name = 'overview';
  else if (hash === '/jobs') name = 'jobs';
  else if (hash === '/submit') name = 'submit';
  else if ((match = /^\/jobs\/([^/]+)$/.exec(hash)) && (argument = canonicalId(match[1]))) name = 'job';
  for (const section of document.querySelectorAll('.view')) section.hidden = section.id !== 'view-' + name;
  for (const link of document.querySelectorAll('[data-nav]')) {
    if (link.dataset.nav === name || (name === 'job' && link.dataset.nav === 'jobs')) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  current = views[name] || null;
  if (current && current.enter) current.enter(argument);
  const title = document.querySelector(`#view-${name} h1`);
  document.title = (title ? title.textContent + ' – ' : '') + 'icewall';
  if (route.moved && title) title.focus();
  route.moved = true;
  refresh();
}

/**
 * One refresh at a time, so that slow answers do not pile up; one asked for meanwhile (a
 * new view, filter or page) runs when it ends, as what is on its way may be out of date.
 */
async function refresh() {
  if (refresh.running) {
    refresh.again = true;
    return;
  }
  const view = current;
  refresh.running = true;
  try {
    // Asked on every view, which all say the server drains; the overview shows the rest.
    const stats = await api('/api/stats');
    noteServer(stats);
    if (view && view.refresh) await view.refresh(stats);
    showTrouble(null);
  } catch (error) {
    // A poll failing for want of the server says so once, in place, not in a toast every 2 s.
    if (isPassing(error)) showTrouble(error);
    else toast(error.message);
  } finally {
    refresh.running = false;
    if (refresh.again) {
      refresh.again = false;
      refresh();
    }
  }
}

function start() {
  window.addEventListener('hashchange', route);
  // Its href would be a route of its own (#main, not found): it moves the focus only.
  document.querySelector('.skip').addEventListener('click', (event) => {
    event.preventDefault();
    $('main').focus();
  });
  $('submit-form').addEventListener('submit', submit);
  $('config-file').addEventListener('change', async (event) => {
    const file = event.target.files[0];
    if (file) $('config').value = await file.text();
  });
  $('jobs-status').addEventListener('change', () => { views.jobs.enter(); refresh(); });
  $('jobs-filter').addEventListener('submit', (event) => event.preventDefault());
  $('jobs-find').addEventListener('submit', (event) => {
    event.preventDefault();
    const id = canonicalId($('jobs-id').value);
    const valid = id !== null;
    $('jobs-find-error').hidden = valid;
    $('jobs-find-error').textContent = valid ? '' : 'A job id is a UUID, such as 0190c0de-0000-7000-8000-000000000000.';
    if (valid) location.hash = '#/jobs/' + id;
  });
  $('jobs-older').addEventListener('click', () => {
    jobsPaging.stack.push(jobsPaging.after);
    jobsPaging.after = jobsPaging.last;
    refresh();
  });
  $('jobs-newer').addEventListener('click', () => {
    jobsPaging.after = jobsPaging.stack.pop() || null;
    refresh();
  });
  $('profiles-next').addEventListener('click', () => {
    const paging = jobView.profiles;
    if (paging.next === null) return;
    paging.stack.push(paging.after);
    paging.after = paging.next;
    showProfiles().catch((error) => toast(error.message));
  });
  $('profiles-prev').addEventListener('click', () => {
    const paging = jobView.profiles;
    paging.after = paging.stack.pop() || 0;
    showProfiles().catch((error) => toast(error.message));
  });
  $('job-delete').addEventListener('click', deleteJob);
  $('shutdown').addEventListener('click', shutDown);
  // Live: a poll every two seconds, none while the tab is hidden, one at once on return.
  setInterval(() => { if (!document.hidden) refresh(); }, POLL_MS);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) refresh(); });
  route.moved = false;
  route();
}

start();
