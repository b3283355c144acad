// The collector's live page in a real browser (headless Chromium driven by playwright-core):
// started on a loopback port with an admin key and the file sink, loaded while a load runs.
//   BIN=<evlog-collector> SCHEMAS=<dir> PYTHON=<python with evlog> [CHROMIUM=/usr/bin/chromium]
//   [SCREENSHOT=docs/ui.png] node tests/ui/page.test.mjs
// Prints "ok - …" / "not ok - …" lines and "passed N failed M"; exits 1 when one failed.
// Every wait polls a condition with a deadline; nothing sleeps to synchronise.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const BIN = process.env.BIN;
const SCHEMAS = process.env.SCHEMAS;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SCREENSHOT = process.env.SCREENSHOT || "";
const PYTHON = process.env.PYTHON || "python3";
const KEY = "ui-test-admin-key-0123456789";
if (!BIN || !SCHEMAS) {
  console.error("set BIN (the evlog-collector binary) and SCHEMAS (a schemas directory)");
  process.exit(2);
}

let passed = 0;
let failed = 0;
function check(name, ok, detail = "") {
  if (ok) {
    passed++;
    console.log(`ok - ${name}`);
  } else {
    failed++;
    console.log(`not ok - ${name}${detail ? ": " + detail : ""}`);
  }
}
// Polls `f` (async, truthy when done) every 50 ms until `ms` passed; the last value.
async function until(ms, f) {
  const end = Date.now() + ms;
  let v;
  for (;;) {
    v = await f().catch(() => undefined);
    if (v || Date.now() >= end) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
}

const dir = mkdtempSync(join(tmpdir(), "evlog-ui-"));
writeFileSync(join(dir, "c.toml"), `
[collector]
listen = "127.0.0.1:0"
wal_dir = "${dir}/wal"
admin_keys = ["${KEY}"]
[sink]
kind = "file"
[sink.file]
dir = "${dir}/data"
[schemas]
dir = "${SCHEMAS}"
`);
const child = spawn(BIN, ["--config", join(dir, "c.toml")], { stdio: ["ignore", "pipe", "inherit"] });
let browser;
let load;
const cleanup = () => {
  try { child.kill("SIGKILL"); } catch {}
  rmSync(dir, { recursive: true, force: true });
};
process.on("exit", cleanup);

try {
  const url = await new Promise((resolve, reject) => {
    let out = "";
    const t = setTimeout(() => reject(new Error("the collector did not say where it listens in 30 s")), 30000);
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on (\S+)/);
      if (m) { clearTimeout(t); resolve(`http://${m[1]}`); }
    });
    child.on("exit", (c) => reject(new Error(`the collector exited (${c})`)));
  });
  const post = (events) => fetch(`${url}/v1/batch`, {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(events),
  }).then((r) => r.json());
  const pv = (user_id, path) => ({ namespace: "events", type: "page_view", event: { url: path, user_id } });

  // Auth: nothing without the admin key.
  for (const path of ["/ui", "/ui/feed"]) {
    const r = await fetch(url + path);
    check(`${path} without the admin key answers 401`, r.status === 401, `got ${r.status}`);
  }
  const bad = await fetch(url + "/ui/feed", { headers: { authorization: "Basic " + btoa("x:wrong") } });
  check("/ui/feed with a wrong Basic password answers 401", bad.status === 401, `got ${bad.status}`);

  // A load in the background: 10 page views every 100 ms until stopped.
  let loading = true;
  let sent = 0;
  load = (async () => {
    while (loading) {
      await post(Array.from({ length: 10 }, (_, i) => pv(i, `/load/${sent + i}`)));
      sent += 10;
      await new Promise((r) => setTimeout(r, 100));
    }
  })();

  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  const page = await (await browser.newContext({ viewport: { width: 1400, height: 1000 } })).newPage();
  // ?key= sets the HttpOnly cookie and redirects to /ui: the key leaves the address bar.
  const resp = await page.goto(`${url}/ui?key=${encodeURIComponent(KEY)}`);
  check("the page loads with the admin key (cookie)", resp.status() === 200 && page.url() === `${url}/ui`,
    `${resp.status()} ${page.url()}`);
  const cell = (table, cls) => page.textContent(`#tables tr[data-table="${table}"] td.${cls}`)
    .then((t) => Number((t || "").replace(/,/g, "")));
  const first = await until(10000, () => cell("events.page_view", "accepted"));
  const later = await until(10000, async () => {
    const n = await cell("events.page_view", "accepted");
    return n > first ? n : undefined;
  });
  check("accepted per table changes while the load runs", later > first, `${first} then ${later}`);
  const rate = await until(5000, async () => {
    const r = Number(await page.textContent('#tables tr[data-table="events.page_view"] td.rate-accepted'));
    return r > 0 ? r : undefined;
  });
  check("the page shows a rate of accepted events", rate > 0, `${rate}`);

  // A logged event shows in the tail within 2 s.
  const marker = `/marker/${Date.now()}`;
  const t0 = Date.now();
  await post([pv(5, marker)]);
  const seen = await until(2000, () => page.$eval("#tail", (e, m) => e.textContent.includes(m), marker));
  check("a logged event shows in the tail within 2 s", seen, `after ${Date.now() - t0} ms`);

  // The filter: only rows of events.page_view whose user_id is 424242.
  await page.selectOption("#tail-table", "events.page_view");
  await page.fill("#tail-filter", "user_id=424242");
  await page.click("#tail-apply");
  const wanted = `/wanted/${Date.now()}`;
  const shown = await until(5000, async () => {
    await post([pv(424242, wanted), pv(1, "/unwanted")]);
    return page.$eval("#tail", (e, m) => e.textContent.includes(m), wanted);
  });
  const rows = await page.$$eval("#tail li", (lis) => lis.map((li) => li.textContent));
  check("the filter shows matching rows", shown, rows.slice(0, 3).join(" | "));
  check("the filter hides the others",
    rows.length > 0 && rows.every((r) => r.includes('"user_id":424242')),
    rows.filter((r) => !r.includes('"user_id":424242')).slice(0, 2).join(" | "));

  // A rejected event (no user_id, REQUIRED) shows its reason and field.
  const answer = await post([{ namespace: "events", type: "transaction", event: { amount: "1.00" } }]);
  const dead = await until(5000, () => page.$eval("#dead tbody",
    (e) => [...e.querySelectorAll("tr")].map((tr) => tr.textContent).find((t) => t.includes("missing_required"))));
  check("a rejected event shows its reason and field", dead && dead.includes("user_id"),
    `${JSON.stringify(answer)} / ${dead}`);

  // An SDK-side drop: a Python process in forward mode whose queue (20 events) overflows
  // reports its queue_full drops (sink.forward.report_interval), and the page shows them.
  const sdk = spawnSync(PYTHON, ["-c", `
import sys, evlog
sdk = evlog.Client(
    sink={"kind": "forward", "forward": {"url": sys.argv[1], "app": "ui-test-py"}},
    schemas={"dir": sys.argv[2]}, queue={"capacity": 20}, spool={"enabled": False})
i = 0
while sdk.stats()['evlog_events_dropped_total{reason="queue_full"}'] < 10 and i < 2_000_000:
    sdk.log("events", "page_view", {"url": "/py/%d" % i, "user_id": i})
    i += 1
print(sdk.stats()['evlog_events_dropped_total{reason="queue_full"}'])
assert sdk.shutdown(10)
`, url, SCHEMAS], { encoding: "utf8", timeout: 60000 });
  const pyDropped = Number((sdk.stdout || "").trim());
  check("a Python process drops events with a full queue", sdk.status === 0 && pyDropped >= 10,
    `${sdk.status} ${sdk.stdout} ${sdk.stderr}`);
  const shownDrop = await until(10000, () => page.textContent('#sources tr[data-app="ui-test-py"] td.dropped'));
  check("the page shows the SDK-side drop with its reason", (shownDrop || "").replace(/,/g, "").includes(`queue_full: ${pyDropped}`),
    `page: ${shownDrop}, the process counted ${pyDropped}`);
  const shownBeside = await until(10000, async () => {
    const t = await page.textContent('#tables tr[data-table="events.page_view"] td.sdk-dropped');
    return (t || "").replace(/,/g, "").includes(`queue_full: ${pyDropped}`) ? t : undefined;
  });
  check("the page shows the SDK-side drop beside the table it was meant for", shownBeside !== undefined,
    `table row: ${await page.textContent('#tables tr[data-table="events.page_view"] td.sdk-dropped')}`);

  // Stop the load; once everything settled, the page's numbers are /metrics' numbers.
  loading = false;
  await load;
  const metric = (text, name, labels = "") => {
    const line = text.split("\n").find((l) => l.startsWith(`${name}${labels} `));
    return line === undefined ? undefined : Number(line.split(" ").pop());
  };
  let lastSeen = "";
  const match = await until(15000, async () => {
    const m = await (await fetch(`${url}/metrics`)).text();
    const want = {
      accepted: metric(m, "evlog_events_accepted_total"),
      delivered: metric(m, "evlog_events_delivered_total"),
      table: metric(m, "evlog_events_delivered_by_table_total", '{dataset="events",table="page_view"}'),
      rejected: metric(m, "evlog_events_rejected_total", '{reason="missing_required"}'),
    };
    const num = (sel) => page.textContent(sel).then((t) => Number((t || "").replace(/,/g, "")));
    const got = {
      accepted: await num('#dests tr[data-dest="default"] td.accepted'),
      delivered: await num('#dests tr[data-dest="default"] td.delivered'),
      table: await num('#tables tr[data-table="events.page_view"] td.delivered'),
      rejected: Number(((await page.textContent('#tables tr[data-table="events.transaction"] td.rejected')) || "")
        .replace(/,/g, "").replace(/^.*missing_required: /, "")),
    };
    lastSeen = JSON.stringify({ want, got });
    const settled = want.accepted === want.delivered + want.rejected;
    return settled && Object.keys(want).every((k) => want[k] === got[k]) ? want : undefined;
  });
  check("the page's numbers match /metrics", match, lastSeen);
  const identity = await page.$$eval("#tables td.identity", (tds) => tds.map((t) => t.textContent));
  check("the accounting identity holds for every table", identity.length > 0 && identity.every((t) => t === "holds"),
    identity.join(", "));

  if (SCREENSHOT) {
    await page.selectOption("#tail-table", "");
    await page.fill("#tail-filter", "");
    await page.click("#tail-apply");
    await post([pv(7, "/checkout"), pv(8, "/cart"), pv(9, "/")]);
    await until(3000, () => page.$eval("#tail", (e) => e.textContent.includes("/checkout")));
    await until(3000, () => page.$("#dead tbody tr"));
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  }

  // The feed ends when the collector shuts down: SIGTERM with the page connected exits quickly.
  const t1 = Date.now();
  child.kill("SIGTERM");
  const code = await new Promise((r) => child.on("exit", (c) => r(c)));
  check("SIGTERM with the page open exits cleanly and at once", code === 0 && Date.now() - t1 < 5000,
    `exit ${code} after ${Date.now() - t1} ms`);
} catch (e) {
  check("the test ran to its end", false, e.stack || String(e));
} finally {
  if (browser) await browser.close().catch(() => {});
}
console.log(`passed ${passed} failed ${failed}`);
process.exit(failed ? 1 : 0);
