// The /docs page (Swagger UI) as a person uses it, in headless Chromium: "Try it out" on
// POST /api/v1/echo with a valid body (200) and an invalid one (422 problem+json), read from the
// page itself. The server is the real binary ($POEM_API_BIN) on a loopback port.
//
//   POEM_API_BIN=target/release/poem-api node --test tests/browser/
//
// SCREENSHOT=path writes a PNG of the page after the 422 (the README shows one).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chromium } from 'playwright-core';

const BIN = process.env.POEM_API_BIN;
const HOST = '127.0.0.1';
// Ports of this test's own range (29000-29999), overridable when another run holds them.
const PORT = Number(process.env.BROWSER_TEST_PORT ?? 29191);
const ADMIN_PORT = PORT + 1;
const BASE = `http://${HOST}:${PORT}`;
// Generous: the machines are shared and small; nothing here measures speed.
const TIMEOUT_MS = 30_000;

let server;
let serverLog = '';
let browser;

async function waitForReady() {
  const deadline = Date.now() + TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (server.exitCode !== null) break;
    try {
      const r = await fetch(`http://${HOST}:${ADMIN_PORT}/readyz`);
      if (r.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`server not ready on ${ADMIN_PORT} (exit ${server.exitCode}):\n${serverLog}`);
}

before(async () => {
  assert.ok(BIN, 'POEM_API_BIN must name the server binary');
  server = spawn(BIN, [], {
    env: {
      ...process.env,
      POEM_API_HOST: HOST,
      POEM_API_PORT: String(PORT),
      POEM_API_ADMIN_PORT: String(ADMIN_PORT),
      POEM_API_LOG: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  server.stdout.on('data', (d) => (serverLog += d));
  server.stderr.on('data', (d) => (serverLog += d));
  await waitForReady();

  // Debian's Chromium (no browser download here). The flags keep it off the network: without
  // the background-networking ones it keeps trying hosts this machine cannot reach. launch()
  // starts it with a new empty profile of its own (it refuses --user-data-dir).
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', // as root in CI
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
});

after(async () => {
  await browser?.close();
  if (server && server.exitCode === null) {
    server.kill('SIGTERM');
    await new Promise((resolve) => server.once('exit', resolve));
  }
});

/** A page that records every request it makes to another origin than the server's. */
async function newPage(options) {
  const page = await browser.newPage(options);
  page.setDefaultTimeout(TIMEOUT_MS);
  page.elsewhere = [];
  // Swagger UI is served by the binary itself: any request elsewhere would be a missing asset.
  page.on('request', (req) => {
    if (!req.url().startsWith(BASE) && !req.url().startsWith('data:')) page.elsewhere.push(req.url());
  });
  return page;
}

/** Opens /docs, expands POST /api/v1/echo, presses "Try it out"; returns the operation block. */
async function openEcho(page) {
  await page.goto(`${BASE}/docs`);
  const op = page.locator('.opblock-post', { has: page.locator('[data-path="/api/v1/echo"]') });
  await op.locator('.opblock-summary').first().click();
  await op.getByRole('button', { name: 'Try it out' }).click();
  return op;
}

/** Puts `body` into the request editor, presses Execute, returns the live response's status
 * code, content type and body text as the page shows them. */
async function execute(page, op, body) {
  const editor = op.locator('textarea.body-param__text');
  await editor.fill(body);
  await op.getByRole('button', { name: 'Execute' }).click();
  const live = op.locator('.live-responses-table .response').first();
  await live.locator('.response-col_status').waitFor();
  const status = (await live.locator('.response-col_status').innerText()).trim();
  const text = await live.locator('.response-col_description .microlight').first().innerText();
  const headers = await live.locator('.response-col_description').innerText();
  return { status, text, headers };
}

test('the docs page shows a 200 for a valid echo body', async () => {
  const page = await newPage();
  const op = await openEcho(page);

  const res = await execute(page, op, JSON.stringify({ message: 'hi from the docs page', count: 2 }));

  assert.equal(res.status, '200');
  const echoed = JSON.parse(res.text);
  assert.equal(echoed.message, 'hi from the docs page');
  assert.match(res.headers, /content-type: application\/json/i);
  assert.deepEqual(page.elsewhere, [], 'the docs page requested something outside the server');
  await page.close();
});

test('the docs page shows a 422 problem+json naming each invalid field', async () => {
  const page = await newPage({ viewport: { width: 1280, height: 1000 } });
  const op = await openEcho(page);

  const res = await execute(page, op, JSON.stringify({ message: '', count: 0 }));

  assert.equal(res.status, '422');
  assert.match(res.headers, /content-type: application\/problem\+json/i);
  const problem = JSON.parse(res.text);
  assert.equal(problem.status, 422);
  assert.deepEqual(problem.errors.map((e) => e.field).sort(), ['count', 'message']);

  if (process.env.SCREENSHOT) {
    // The request body and the 422 the page shows, in one picture: from the top of the
    // operation to the end of the live response (the documented responses follow below it).
    const top = await op.boundingBox();
    const live = await op.locator('.live-responses-table').boundingBox();
    await page.screenshot({
      path: process.env.SCREENSHOT,
      fullPage: true,
      clip: { x: top.x, y: top.y, width: top.width, height: live.y + live.height - top.y },
    });
  }
  assert.deepEqual(page.elsewhere, [], 'the docs page requested something outside the server');
  await page.close();
});
