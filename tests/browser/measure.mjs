// Timing of the Audit Logs page against a running server (not a test; CI does not run it):
// time to the first rows after load, and after each filter change the time from the input
// event (a select's change, Enter in the search bar) until the rows change and until the
// whole view settles (counts beside the options, chart), measured in the page
// (performance.now) over a few rounds, medians and worst printed.
//
//   AUDITLOG_URL=http://127.0.0.1:7795 AUDITLOG_TOKEN=alt_bench_0123456789 TENANT=acct_0924 \
//     node tests/browser/measure.mjs
//
// Against a 10M-event store: `search-report --events 10000000 --dir /tmp/sr10m` leaves one in
// /tmp/sr10m/store; serve it with `auditlog serve --data-dir /tmp/sr10m/store`.

import { chromium } from 'playwright-core';

const base = process.env.AUDITLOG_URL || 'http://127.0.0.1:7700';
const token = process.env.AUDITLOG_TOKEN;
const tenant = process.env.TENANT;
const rounds = Number(process.env.ROUNDS || 5);
if (!token || !tenant) {
  console.error('AUDITLOG_TOKEN and TENANT are required');
  process.exit(2);
}

// Records when the first row appears and each time the view settles (#app data-ready=true).
function probe() {
  window.__firstRowAt = null;
  window.__readyAt = [];
  window.__rowsAt = [];
  // When the reader's input reached the page (a select's change, Enter in the search bar):
  // the clock of a filter change starts there, not when the driver began its action.
  window.__inputAt = [];
  const input = (e) => window.__inputAt.push(e.timeStamp);
  document.addEventListener('change', input, true);
  document.addEventListener('keydown', (e) => { if (e.key === 'Enter') input(e); }, true);
  const watch = () => {
    const app = document.getElementById('app');
    const rows = document.getElementById('rows');
    if (!app || !rows) return requestAnimationFrame(watch);
    const check = () => {
      window.__rowsAt.push(performance.now());
      if (window.__firstRowAt === null && rows.querySelector('.row')) window.__firstRowAt = performance.now();
    };
    new MutationObserver(check).observe(rows, { childList: true, subtree: true });
    new MutationObserver(() => {
      if (app.dataset.ready === 'true') window.__readyAt.push(performance.now());
    }).observe(app, { attributes: true, attributeFilter: ['data-ready'] });
    check();
  };
  document.addEventListener('DOMContentLoaded', watch);
}

const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const worst = (xs) => Math.max(...xs);

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium' });
const loads = [];
const changes = new Map();
for (let round = 0; round < rounds; round++) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.addInitScript((t) => sessionStorage.setItem('auditlog.token', t), token);
  await page.addInitScript(probe);
  await page.goto(`${base}/?tenant=${encodeURIComponent(tenant)}`);
  await page.waitForFunction(() => window.__firstRowAt !== null, null, { timeout: 30_000 });
  await page.waitForSelector('#app[data-ready="true"]', { state: 'attached', timeout: 30_000 });
  loads.push(await page.evaluate(() => window.__firstRowAt));

  const steps = [
    ['action: delete', (p) => p.selectOption('#f-action', 'delete')],
    ['type: pod', (p) => p.selectOption('#f-type', 'pod')],
    ['range: 24h', (p) => p.selectOption('#f-range', '24h')],
    ['range: 30d', (p) => p.selectOption('#f-range', '30d')],
    ['all actions', (p) => p.selectOption('#f-action', '')],
    ['search: whisper', async (p) => { await p.fill('#q', 'whisper'); await p.press('#q', 'Enter'); }],
    ['search cleared', async (p) => { await p.fill('#q', ''); await p.press('#q', 'Enter'); }],
  ];
  for (const [name, act] of steps) {
    const before = await page.evaluate(() => { window.__t0 = performance.now(); return window.__readyAt.length; });
    await act(page);
    await page.waitForFunction((n) => window.__readyAt.length > n && document.getElementById('app').dataset.ready === 'true', before, { timeout: 30_000 });
    const [rowsMs, settledMs, answeredMs] = await page.evaluate(() => {
      const t0 = window.__inputAt.findLast((t) => t > window.__t0);
      // The last API answer of this change (resource timing): the server's part of the wait.
      const answered = Math.max(...performance.getEntriesByType('resource')
        .filter((e) => e.startTime >= t0 && e.name.includes('/v1/')).map((e) => e.responseEnd));
      performance.clearResourceTimings();
      return [(window.__rowsAt.find((t) => t > t0) ?? NaN) - t0, window.__readyAt.at(-1) - t0, answered - t0];
    });
    if (!changes.has(name)) changes.set(name, { rows: [], settled: [], answered: [] });
    changes.get(name).rows.push(rowsMs);
    changes.get(name).settled.push(settledMs);
    changes.get(name).answered.push(answeredMs);
  }
  await page.close();
}
await browser.close();
console.log(`first rows after load: median ${median(loads).toFixed(0)} ms, worst ${worst(loads).toFixed(0)} ms (${rounds} loads)`);
for (const [name, { rows, settled, answered }] of changes) {
  console.log(`${name.padEnd(18)} rows shown: median ${median(rows).toFixed(0)} ms, worst ${worst(rows).toFixed(0)} ms; ` +
    `view settled (counts, chart): median ${median(settled).toFixed(0)} ms, worst ${worst(settled).toFixed(0)} ms ` +
    `(last API answer: median ${median(answered).toFixed(0)} ms)`);
}
