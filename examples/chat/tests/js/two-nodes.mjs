// Two browser pages, each on its own chat node (the nodes share a Redis), use the chat as a
// person would: nicknames (a refused one first), a room, the user list and room counts, the
// typing indicator, messages both ways with their delivered marks, and a lost connection that
// comes back with its session. Ends with a screenshot of both pages side by side.
//
// usage: node two-nodes.mjs http://NODE_A http://NODE_B SCREENSHOT.png
//
// Debian's Chromium, driven by playwright-core (which downloads no browser of its own).
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { chromium } from "playwright-core";

const [urlA, urlB, screenshot] = process.argv.slice(2);
if (!urlA || !urlB || !screenshot) {
  console.error("usage: node two-nodes.mjs URL_A URL_B SCREENSHOT");
  process.exit(2);
}
// Bounded whatever happens: a hung browser must not hang the test run.
setTimeout(() => {
  console.error("FAIL: the browser test took more than 90 s");
  process.exit(1);
}, 90_000).unref();

let passed = 0;
function ok(what) {
  passed += 1;
  console.log(`ok ${passed} - ${what}`);
}

// `chromium.launch` gives each run a fresh, temporary user-data-dir (it refuses one in args),
// and deletes it on close.
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  timeout: 30_000,
});

try {
  const viewport = { width: 900, height: 620 };
  const open = async (url, label) => {
    // One context per page: separate cookies and storage, as two people would have.
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    page.setDefaultTimeout(10_000);
    page.on("pageerror", (err) => console.log(`[${label}] page error: ${err.message}`));
    page.on("console", (m) => m.type() === "error" && console.log(`[${label}] console: ${m.text()}`));
    await page.goto(url);
    return page;
  };
  const a = await open(urlA, "ada");
  const b = await open(urlB, "bob");

  // A refused nickname: the server's middleware answers with CONNECT_ERROR data.
  await a.fill("#name-input", "   ");
  await a.click("#login-form button");
  await a.locator("#login-error").filter({ hasText: "A nickname is needed." }).waitFor();
  ok("an empty nickname is refused with the reason from the server");
  await a.fill("#name-input", "x".repeat(25));
  await a.click("#login-form button");
  await a.locator("#login-error").filter({ hasText: "At most 24 characters" }).waitFor();
  ok("a too long nickname is refused with the limit from the server");

  for (const [page, name] of [[a, "ada"], [b, "bob"]]) {
    await page.fill("#name-input", name);
    await page.click("#login-form button");
    await page.locator("#me").filter({ hasText: `you are ${name}` }).waitFor();
    await page.locator("#login").waitFor({ state: "hidden" });
  }
  const nodeA = await a.textContent("#node");
  const nodeB = await b.textContent("#node");
  if (nodeA === nodeB) throw new Error(`both pages are on ${nodeA}`);
  ok(`ada is on ${nodeA}, bob on ${nodeB}`);

  // Both join #rust, one after the other.
  for (const page of [a, b]) {
    await page.fill("#join-input", "rust");
    await page.press("#join-input", "Enter");
    await page.locator("#room-title").filter({ hasText: "# rust" }).waitFor();
  }
  for (const page of [a, b]) {
    await page.locator('#users li[data-name="ada"]').waitFor();
    await page.locator('#users li[data-name="bob"]').waitFor();
    await page.locator('#rooms li[data-room="rust"] .count').filter({ hasText: /^2$/ }).waitFor();
  }
  ok("both pages list ada and bob in #rust, and #rust has 2 members, across the two nodes");

  // Typing indicator, across nodes.
  await b.locator("#text").pressSequentially("hello fr", { delay: 20 });
  await a.locator("#typing").filter({ hasText: "bob is typing…" }).waitFor();
  ok("ada sees that bob is typing");

  await b.locator("#text").pressSequentially("om bob", { delay: 10 });
  await b.press("#text", "Enter");
  await a.locator(".msg:not(.mine) .text").filter({ hasText: "hello from bob" }).waitFor();
  await b.locator(".msg.mine.delivered .text").filter({ hasText: "hello from bob" }).waitFor();
  await b.locator(".msg.mine.delivered .status").filter({ hasText: "✓ delivered" }).first().waitFor();
  await a.locator("#typing").filter({ hasText: /^$/ }).waitFor();
  ok("bob's message reaches ada, is marked delivered on bob's page, and the typing hint clears");

  await a.fill("#text", "hi bob, ada here");
  await a.press("#text", "Enter");
  await b.locator(".msg:not(.mine) .text").filter({ hasText: "hi bob, ada here" }).waitFor();
  await a.locator(".msg.mine.delivered .text").filter({ hasText: "hi bob, ada here" }).waitFor();
  ok("ada's message reaches bob and is marked delivered on ada's page");

  // A lost connection: the page reconnects to its node and gets its session back (same rooms),
  // which the page says.
  const before = await a.evaluate(() => window.chat.socket.id);
  await a.evaluate(() => window.chat.socket.io.engine.close());
  await a.locator("#banner").filter({ hasText: "session recovered, still in lobby, rust" }).waitFor();
  const after = await a.evaluate(() => window.chat.socket.id);
  if (before !== after) throw new Error(`the socket id changed: ${before} -> ${after}`);
  await b.locator(".system").filter({ hasText: "ada is back" }).waitFor();
  ok("ada's lost connection is recovered (same socket id, still in lobby and rust); bob sees ada back");

  await b.fill("#text", "welcome back");
  await b.press("#text", "Enter");
  await a.locator(".msg:not(.mine) .text").filter({ hasText: "welcome back" }).waitFor();
  await a.locator('#users li[data-name="bob"]').waitFor();
  ok("messages flow again after the recovery");

  // Both pages, side by side, in one picture, with ada typing.
  await a.locator("#text").pressSequentially("see you", { delay: 10 });
  await b.locator("#typing").filter({ hasText: "ada is typing…" }).waitFor();
  ok("bob sees that ada is typing");
  const shots = await Promise.all([a, b].map((p) => p.screenshot()));
  mkdirSync(dirname(screenshot), { recursive: true });
  const sheet = await (await browser.newContext({ viewport: { width: 1840, height: 640 } })).newPage();
  const img = (buf) => `<img src="data:image/png;base64,${buf.toString("base64")}">`;
  await sheet.setContent(
    `<body style="margin:0;padding:10px;background:#888;display:flex;gap:20px">${img(shots[0])}${img(shots[1])}</body>`,
  );
  await sheet.screenshot({ path: screenshot });
  ok(`screenshot saved to ${screenshot}`);
  console.log(`all ${passed} checks ok`);
} catch (err) {
  console.error(`FAIL after ${passed} passed: ${err.stack || err}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
