// Drives the web chat in real headless Chromium (playwright-core) for tests/server/test_webchat.py.
//   node webchat_browser.mjs SERVER_URL SCREENSHOT_PATH
// Prints one line of JSON: {"ok": true, ...} or {"ok": false, "step": ..., "error": ...}.
// Chromium: $TAIWA_CHROMIUM, default /usr/bin/chromium (Debian's package).
import { chromium } from "playwright-core";

const [server, screenshot] = process.argv.slice(2);
if (!server || !screenshot) {
  console.error("usage: node webchat_browser.mjs SERVER_URL SCREENSHOT_PATH");
  process.exit(64);
}
const STEP_TIMEOUT_MS = 15000;
const TOTAL_TIMEOUT_MS = 100000;
const WEBHOOK = "**/webhooks/rest/webhook";

const result = { ok: false, step: "launch", consoleErrors: [], requests: [] };
let browser = null;

const watchdog = setTimeout(() => {
  console.log(JSON.stringify({ ...result, error: `the browser script ran past ${TOTAL_TIMEOUT_MS / 1000} s` }));
  process.exit(2);
}, TOTAL_TIMEOUT_MS);

async function run() {
  browser = await chromium.launch({
    executablePath: process.env.TAIWA_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    timeout: 30000,
  });
  const context = await browser.newContext({ viewport: { width: 520, height: 980 }, colorScheme: "light" });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  const page = await context.newPage();

  let expectFailedRequests = false;
  page.on("console", (msg) => {
    if (msg.type() === "error" && !(expectFailedRequests && /Failed to load resource/.test(msg.text()))) {
      result.consoleErrors.push(msg.text());
    }
  });
  page.on("pageerror", (err) => result.consoleErrors.push(String(err)));
  page.on("request", (req) => {
    if (req.url().endsWith("/webhooks/rest/webhook")) result.requests.push(req.postDataJSON());
  });

  const log = page.locator("#log");
  const input = page.getByLabel("Your message");
  const botBubbles = log.locator(".msg.bot .bubble");
  const focused = () => page.evaluate(() => document.activeElement?.id || document.activeElement?.textContent);
  const transcript = () =>
    log.locator(".msg").evaluateAll((items) =>
      items.map((m) => `${m.classList.contains("user") ? "user" : "bot"}: ${m.querySelector(".bubble")?.textContent}`),
    );
  const step = async (name, fn) => {
    result.step = name;
    await fn();
  };
  // Do something, then wait for the next bot message and return its text.
  const reply = async (action) => {
    const before = await botBubbles.count();
    await action();
    return botBubbles.nth(before).textContent();
  };
  const say = (text) =>
    reply(async () => {
      await input.fill(text);
      await input.press("Enter");
    });

  await step("open /chat", async () => {
    const response = await page.goto(server + "/chat", { waitUntil: "load" });
    result.status = response.status();
    result.title = await page.title();
    result.heading = await page.getByRole("heading", { level: 1 }).textContent();
    result.ariaLive = await log.getAttribute("aria-live");
    result.focusOnLoad = await focused();
  });

  await step("open a ticket", async () => {
    result.askSummary = await say("I want to open a ticket");
  });

  await step("give a summary", async () => {
    result.askPriority = await say("My database server stopped responding after the upgrade");
  });

  await step("click High", async () => {
    result.askConfirm = await reply(() => log.getByRole("button", { name: "High", exact: true }).click());
    result.userSaw = await log.locator(".msg.user .bubble").last().textContent();
    result.focusAfterButton = await focused();
    result.oldButtonDisabled = await log.getByRole("button", { name: "Low", exact: true }).isDisabled();
  });

  await step("confirm with the keyboard", async () => {
    // Keyboard only: from the input, Shift+Tab reaches the last suggested reply ("No"), again "Yes, open it".
    result.ticketMessage = await reply(async () => {
      await input.focus();
      await page.keyboard.press("Shift+Tab");
      await page.keyboard.press("Shift+Tab");
      result.keyboardFocus = await focused();
      await page.keyboard.press("Enter");
    });
  });

  await step("retry after a failed request", async () => {
    let attempts = 0;
    expectFailedRequests = true;
    await page.route(WEBHOOK, (route) => (attempts++ === 0 ? route.abort("connectionreset") : route.continue()));
    const before = result.requests.length;
    result.afterRetry = await reply(async () => {
      await input.fill("thank you");
      await input.press("Enter");
      await page.locator("#status.active").waitFor();
      result.reconnecting = await page.locator("#status").textContent();
    });
    result.statusVisibleAfterRetry = await page.locator("#status").isVisible();
    result.retryMessageIds = result.requests.slice(before).map((r) => r.message_id);
    await page.unroute(WEBHOOK);
    expectFailedRequests = false;
  });

  await step("reload", async () => {
    result.transcriptBefore = await transcript();
    await page.reload({ waitUntil: "load" });
    await log.locator(".msg").nth(result.transcriptBefore.length - 1).waitFor();
    result.transcriptAfter = await transcript();
    result.enabledButtonsAfterReload = await log.locator(".buttons button:enabled").count();
  });

  await step("screenshot", async () => {
    await page.screenshot({ path: screenshot, fullPage: true });
  });
  result.ok = true;
  result.step = "done";
}

try {
  await run();
} catch (err) {
  result.error = String(err?.stack || err);
  const page = browser?.contexts()[0]?.pages()[0];
  await page?.screenshot({ path: screenshot.replace(/\.png$/, "-failure.png") }).catch(() => {});
} finally {
  clearTimeout(watchdog);
  await browser?.close().catch(() => {});
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
