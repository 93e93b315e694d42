/* global Chart, EventSource, document, window, navigator */
// The dashboard page: one server-sent event stream of snapshots (see dashboard-server.ts), rendered
// with textContent only (nothing from the warehouse is ever parsed as HTML), numbers formatted for
// the reader's locale with Intl, money always with its own currency.
'use strict';

const locale = navigator.language || 'en-GB';
const integer = new Intl.NumberFormat(locale, { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat(locale, { maximumFractionDigits: 1 });
const currencyFormats = new Map();
const formatMoney = (amount, currency) => {
  if (!currencyFormats.has(currency))
    currencyFormats.set(currency, new Intl.NumberFormat(locale, { style: 'currency', currency }));
  return currencyFormats.get(currency).format(Number(amount));
};
const day = new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeZone: 'UTC' });
const monthYear = new Intl.DateTimeFormat(locale, { month: 'short', year: 'numeric', timeZone: 'UTC' });
const clock = new Intl.DateTimeFormat(locale, { timeStyle: 'medium' });
const dateTime = new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeStyle: 'short' });
const formatDay = (text) => day.format(new Date(`${text}T00:00:00Z`));
const formatMonth = (text) => monthYear.format(new Date(`${text}-01T00:00:00Z`));

// Okabe–Ito: distinguishable with the common colour-vision deficiencies.
const PALETTE = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9'];

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  return node;
}

/** A cell holding a figure: formatted text, the raw value in data-value (what the tests compare). */
function figure(tag, text, value, className) {
  return el(tag, text, { 'data-value': String(value), class: className || 'num' });
}

/** Amounts in several currencies, one per line, each with its code in data-currency. */
function moneyCell(list) {
  const td = el('td', null, { class: 'num' });
  if (!list.length) td.textContent = '—';
  list.forEach((m, i) => {
    if (i) td.append(el('br'));
    td.append(
      el('span', formatMoney(m.amount, m.currency), { 'data-value': m.amount, 'data-currency': m.currency }),
    );
  });
  return td;
}

function fillTable(id, rows, toCells, emptyText) {
  const body = document.querySelector(`#${id} tbody`);
  const columns = document.querySelectorAll(`#${id} thead th`).length;
  const fresh = rows.map((row, i) => {
    const tr = el('tr');
    tr.append(...toCells(row, i));
    return tr;
  });
  if (!fresh.length) {
    const tr = el('tr');
    tr.append(el('td', emptyText || 'Nothing yet.', { colspan: String(columns), class: 'empty' }));
    fresh.push(tr);
  }
  body.replaceChildren(...fresh);
}

const charts = {};
function chart(id, config) {
  if (typeof Chart === 'undefined') return; // the page still has every figure in its tables
  if (charts[id]) {
    charts[id].data = config.data;
    charts[id].update('none');
    return;
  }
  charts[id] = new Chart(document.getElementById(id), {
    ...config,
    options: {
      responsive: true,
      maintainAspectRatio: false,
      animation: false,
      ...config.options,
      plugins: { legend: { display: config.type === 'line' }, ...(config.options || {}).plugins },
    },
  });
}

const PERIOD_TITLES = { today: 'Today', month: 'This month', allTime: 'All time' };

function renderHeadline(h) {
  const titles = {
    today: `${PERIOD_TITLES.today} (${formatDay(h.today)})`,
    month: `${PERIOD_TITLES.month} (${formatMonth(h.month)})`,
    allTime: PERIOD_TITLES.allTime,
  };
  const tiles = Object.entries(h.periods).map(([key, p]) => {
    const box = el('article', null, { class: 'period', 'data-period': key });
    box.append(el('h3', titles[key]));
    const dl = el('dl');
    dl.append(el('dt', 'Orders'), figure('dd', integer.format(p.orders), p.orders, 'num orders'));
    dl.append(el('dt', 'Units'), figure('dd', integer.format(p.units), p.units, 'num units'));
    if (!p.revenue.length) dl.append(el('dt', 'Revenue'), el('dd', '—', { class: 'money' }));
    for (const r of p.revenue) {
      dl.append(el('dt', `Revenue ${r.currency}`));
      dl.append(
        el('dd', formatMoney(r.amount, r.currency), {
          class: 'money revenue',
          'data-value': r.amount,
          'data-currency': r.currency,
        }),
      );
    }
    box.append(dl);
    return box;
  });
  document.getElementById('headline').replaceChildren(...tiles);
}

function renderDesigns(designs) {
  fillTable('table-designs', designs, (d, i) => [
    el('td', integer.format(i + 1)),
    el('th', d.designName, { scope: 'row' }),
    figure('td', integer.format(d.units), d.units),
    figure('td', integer.format(d.orders), d.orders),
  ]);
  chart('chart-designs', {
    type: 'bar',
    data: {
      labels: designs.map((d) => d.designName),
      datasets: [{ label: 'Units sold', data: designs.map((d) => d.units), backgroundColor: PALETTE[0] }],
    },
    options: { indexAxis: 'y', scales: { x: { ticks: { callback: (v) => integer.format(v) } } } },
  });
}

function renderSalesOverTime(months) {
  fillTable('table-time', months, (m) => [
    el('td', formatMonth(m.month)),
    el('td', m.currency),
    figure('td', integer.format(m.orders), m.orders),
    figure('td', integer.format(m.units), m.units),
    figure('td', formatMoney(m.revenue, m.currency), m.revenue),
  ]);
  // Every month from the first to the last, so that a month without sales shows as 0, not as nothing.
  const labels = [];
  if (months.length) {
    const [last] = months
      .map((m) => m.month)
      .sort()
      .slice(-1);
    for (
      let d = new Date(`${months[0].month}-01T00:00:00Z`);
      d.toISOString().slice(0, 7) <= last;
      d.setUTCMonth(d.getUTCMonth() + 1)
    )
      labels.push(d.toISOString().slice(0, 7));
  }
  const currencies = [...new Set(months.map((m) => m.currency))].sort();
  chart('chart-time', {
    type: 'line',
    data: {
      labels: labels.map(formatMonth),
      datasets: currencies.map((c, i) => {
        const byMonth = new Map(
          months.filter((m) => m.currency === c).map((m) => [m.month, Number(m.revenue)]),
        );
        return {
          label: `Revenue (${c})`,
          data: labels.map((l) => byMonth.get(l) ?? 0),
          borderColor: PALETTE[i % PALETTE.length],
          backgroundColor: PALETTE[i % PALETTE.length],
          pointRadius: 2,
        };
      }),
    },
    options: { scales: { y: { ticks: { callback: (v) => integer.format(v) } } } },
  });
}

function renderLocations(countries, cities) {
  chart('chart-countries', {
    type: 'bar',
    data: {
      labels: countries.map((c) => c.country),
      datasets: [{ label: 'Units sold', data: countries.map((c) => c.units), backgroundColor: PALETTE[2] }],
    },
    options: { scales: { y: { ticks: { callback: (v) => integer.format(v) } } } },
  });
  fillTable('table-cities', cities, (c) => [
    el('th', c.city, { scope: 'row' }),
    el('td', c.country),
    figure('td', integer.format(c.units), c.units),
    moneyCell(c.revenue),
  ]);
}

const STATUS_WORDS = { due: 'Due', overdue: 'Overdue' };
const DIRECTION_WORDS = { incoming: 'to receive', outgoing: 'to pay', unknown: 'unknown' };

function renderPayments(p) {
  fillTable(
    'table-outstanding',
    p.outstanding,
    (o) => [
      el('td', STATUS_WORDS[o.status] || o.status, { 'data-status': o.status }),
      el('td', DIRECTION_WORDS[o.direction] || o.direction),
      figure('td', integer.format(o.payments), o.payments),
      figure('td', formatMoney(o.amount, o.currency), o.amount),
    ],
    'Every payment is made.',
  );
  fillTable(
    'table-overdue',
    p.mostOverdue,
    (o) => [
      el('td', `#${o.paymentId}`),
      el('td', `${o.counterparty} (${DIRECTION_WORDS[o.direction] || o.direction})`),
      el('td', formatDay(o.paymentDate)),
      figure('td', integer.format(o.daysOverdue), o.daysOverdue),
      figure('td', formatMoney(o.amount, o.currency), o.amount),
    ],
    'Nothing is overdue.',
  );
}

function renderPurchases(suppliers, items) {
  const cells = (r) => [
    el('th', r.name, { scope: 'row' }),
    figure('td', integer.format(r.orders), r.orders),
    figure('td', integer.format(r.quantity), r.quantity),
    moneyCell(r.spend),
  ];
  fillTable('table-suppliers', suppliers, cells);
  fillTable('table-items', items, cells);
}

const STAGE_WORDS = { capture: 'Capture', stream: 'Stream', transform: 'Transform', load: 'Load' };

function formatSeconds(s) {
  if (s === null || s === undefined) return 'unknown';
  if (s < 1) return `${integer.format(s * 1000)} ms`;
  if (s < 120) return `${decimal.format(s)} s`;
  if (s < 7200) return `${integer.format(s / 60)} min`;
  if (s < 172800) return `${decimal.format(s / 3600)} h`;
  return `${integer.format(s / 86400)} days`;
}

function renderPipeline(report) {
  const badge = document.getElementById('pipeline-status');
  if (report.error) {
    badge.textContent = 'Unknown';
    badge.className = 'badge unhealthy';
    document
      .getElementById('pipeline-problems')
      .replaceChildren(el('li', report.error, { class: 'critical' }));
    return;
  }
  badge.textContent = report.status.charAt(0).toUpperCase() + report.status.slice(1);
  badge.className = `badge ${report.status}`;
  badge.setAttribute('data-status', report.status);
  document
    .getElementById('pipeline-problems')
    .replaceChildren(
      ...report.problems.map((p) => el('li', p.message, { class: p.severity, 'data-code': p.code })),
    );
  fillTable(
    'table-stages',
    report.stages,
    (s) => [
      el('th', STAGE_WORDS[s.stage] || s.stage, { scope: 'row' }),
      figure('td', formatSeconds(s.lagSeconds), s.lagSeconds),
      figure('td', s.backlog === null ? 'unknown' : integer.format(s.backlog), s.backlog),
    ],
    'Stages are visible when the dashboard runs inside totes up.',
  );
  fillTable('table-freshness', report.freshness, (f) => [
    el('th', f.warehouseTable, { scope: 'row' }),
    el('td', f.newestCommitTs ? dateTime.format(new Date(f.newestCommitTs)) : '—'),
    figure('td', formatSeconds(f.ageSeconds), f.ageSeconds),
  ]);
  const parts = [];
  // The end-to-end freshness: the newest capture heartbeat that reached the warehouse.
  if (report.heartbeat)
    parts.push(
      report.heartbeat.ageSeconds === null
        ? 'Freshness: unknown (no capture heartbeat has reached the warehouse yet).'
        : `Freshness: ${formatSeconds(report.heartbeat.ageSeconds)} behind the source (newest capture heartbeat loaded).`,
    );
  if (report.throughput)
    parts.push(
      `Loading ${decimal.format(report.throughput.rowsPerSecond)} rows/s (last minute); ` +
        `${integer.format(report.throughput.rowsLastHour)} rows in the last hour.`,
    );
  if (report.quarantined !== null) parts.push(`Quarantined: ${integer.format(report.quarantined)}.`);
  if (report.failed !== null) parts.push(`Failed: ${integer.format(report.failed)}.`);
  if (report.lastError) parts.push(`Last error (${report.lastError.stage}): ${report.lastError.message}`);
  document.getElementById('pipeline-figures').textContent = parts.join(' ');
}

function render(snapshot) {
  const p = snapshot.panels;
  renderHeadline(p.headline);
  renderDesigns(p.topDesigns);
  renderSalesOverTime(p.salesOverTime);
  renderLocations(p.salesByCountry, p.salesByCity);
  renderPayments(p.payments);
  renderPurchases(p.purchasesBySupplier, p.purchasesByItem);
  renderPipeline(snapshot.pipeline);
  const updated = document.getElementById('updated');
  updated.textContent = `Live · updated ${clock.format(new Date(snapshot.generatedAt))}`;
  updated.setAttribute('data-generated-at', snapshot.generatedAt);
}

function connect() {
  const events = new EventSource('/api/events');
  events.addEventListener('snapshot', (e) => render(JSON.parse(e.data)));
  events.addEventListener('failure', (e) => {
    document.getElementById('updated').textContent =
      `The warehouse did not answer: ${JSON.parse(e.data).error}`;
  });
  // EventSource reconnects by itself (the server asks for 2 s); say so meanwhile.
  events.addEventListener('error', () => {
    document.getElementById('updated').textContent = 'Connection lost; reconnecting…';
  });
}

window.addEventListener('DOMContentLoaded', connect);
