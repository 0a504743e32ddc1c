// Load generator for Scriptorium /ws (installed at run time: npm install ws).
// N clients (tokens of a few dozen users, round robin) subscribe to one thread channel; once all
// are subscribed, replies are POSTed over REST at RATE/s for SECONDS (the full path: REST ->
// commit -> outbox -> broker -> hub). Each client counts reply.created events, flags gaps and
// duplicates by event id; latency is sampled from the send time written into the reply.
// Then a reconnect storm: every client disconnects, K replies are posted, and all clients
// reconnect within a few seconds with `since` = the last id they saw.
// Prints phase lines ({"phase": ...}) so the runner can sample the server's CPU and memory.
// With wsUrls / baseUrls (bench/scale), client k connects to node k mod N and post i goes to node i mod N.
// usage: node ws_client.mjs CONFIG.json
import fs from "node:fs";
import WebSocket from "ws";

const cfg = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
// A hung run ends: 3 minutes, plus 60 ms per client (connecting thousands on a busy machine).
setTimeout(() => { say({ phase: "error", error: "timeout" }); process.exit(1); }, 180000 + 60 * cfg.clients);
const { wsUrl, baseUrl, channel, postId, posterToken, tokens, clients: n, rate, seconds, stormReplies } = cfg;
const say = (obj) => console.log(JSON.stringify(obj));
// Several nodes (bench/scale): client k opens its socket on node k % N, post i goes to node i % N.
const wsUrls = cfg.wsUrls || [wsUrl], baseUrls = cfg.baseUrls || [baseUrl];
const clients = [];
const latencies = [];
// From the reply's created_at (the database's clock at its INSERT) to arrival: the path after the
// REST handler got to the write (commit -> outbox -> broker -> hub -> socket -> this process).
const fromCommit = [];
let received = 0, dups = 0, gaps = 0, sent = 0, sendErrors = 0;

function onFrame(c, raw) {
  const m = JSON.parse(raw);
  if (m.type === "subscribed") { c.subscribed(m); return; }
  if (m.type !== "event" || m.event !== "reply.created") { if (m.type === "error" || m.type === "reset") c.other.push(m); return; }
  if (m.id <= c.last) { dups += 1; c.dups += 1; return; }
  if (c.last !== 0 && m.id !== c.last + 1) { gaps += m.id - c.last - 1; }
  c.last = m.id; c.count += 1; c.stormCount += c.inStorm ? 1 : 0; received += 1;
  if (received % 50 === 0) {
    const t = /t=(\d+)/.exec(m.data.content);
    if (t) latencies.push(Date.now() - Number(t[1]));
    if (m.data.created_at) fromCommit.push(Date.now() - Date.parse(m.data.created_at));
  }
  if (c.waiter && c.waiter()) c.waiter = null;
}

function open(c, since) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${wsUrls[c.k % wsUrls.length]}/ws?token=${c.token}`, { perMessageDeflate: false });
    c.ws = ws;
    c.subscribed = (m) => resolve(m);
    ws.on("open", () => ws.send(JSON.stringify(since === undefined ? { type: "subscribe", channel } : { type: "subscribe", channel, since })));
    ws.on("message", (raw) => onFrame(c, raw));
    ws.on("error", reject);
    ws.on("close", (code) => { c.closeCode = code; reject(new Error(`closed ${code} before subscribed`)); });
  });
}

async function post(i) {
  try {
    const r = await fetch(`${baseUrls[(typeof i === "number" ? i : 0) % baseUrls.length]}/api/forum/posts/${postId}/replies`, {
      method: "POST", headers: { "content-type": "application/json", authorization: `Bearer ${posterToken}` },
      body: JSON.stringify({ content: `t=${Date.now()} #${i} ` + "x".repeat(160) }),
    });
    if (r.status === 201) sent += 1; else sendErrors += 1;
    await r.arrayBuffer();
  } catch { sendErrors += 1; }
}

const q = (xs, p) => xs.length ? xs[Math.min(xs.length - 1, Math.floor(p * xs.length))] : null;
const waitAll = (pred, ms) => new Promise((resolve) => {
  const deadline = Date.now() + ms;
  const tick = () => (pred() || Date.now() > deadline) ? resolve() : setTimeout(tick, 20);
  tick();
});

for (let i = 0; i < n; i++) clients.push({ k: i, token: tokens[i % tokens.length], last: 0, count: 0, dups: 0, stormCount: 0, inStorm: false, other: [] });
const t0 = Date.now();
for (let i = 0; i < n; i += 100) await Promise.all(clients.slice(i, i + 100).map((c) => open(c)));
say({ phase: "subscribed", connectMs: Date.now() - t0 });

// steady load
const pending = [];
let i = 0;
const started = Date.now();
await new Promise((resolve) => {
  const timer = setInterval(() => {
    const due = Math.floor(((Date.now() - started) / 1000) * rate);
    while (i < due) pending.push(post(i++));
    if (Date.now() - started >= seconds * 1000) { clearInterval(timer); resolve(); }
  }, 5);
});
await Promise.all(pending);
await waitAll(() => clients.every((c) => c.count >= sent), 30000);
latencies.sort((a, b) => a - b);
fromCommit.sort((a, b) => a - b);
const expected = sent * n;
say({ phase: "run_done", clients: n, rate, seconds, sent, sendErrors, expected, received, lost: expected - received,
      dups, gaps, p50: q(latencies, 0.5), p99: q(latencies, 0.99), max: latencies[latencies.length - 1] ?? null,
      fromCommit: { p50: q(fromCommit, 0.5), p99: q(fromCommit, 0.99), max: fromCommit[fromCommit.length - 1] ?? null },
      closed: clients.filter((c) => c.closeCode !== undefined).length });

// reconnect storm (skipped with stormReplies = 0)
if (!stormReplies) { for (const c of clients) c.ws.terminate(); process.exit(0); }
for (const c of clients) { c.ws.removeAllListeners("close"); c.ws.terminate(); c.inStorm = true; c.stormCount = 0; }
await Promise.all(Array.from({ length: stormReplies }, (_, k) => post(`storm${k}`)));
const stormSent = stormReplies;
say({ phase: "storm_start" });
const s0 = Date.now();
await Promise.all(clients.map((c) => open(c, c.last)));
const subscribedMs = Date.now() - s0;
await waitAll(() => clients.every((c) => c.stormCount >= stormSent), 30000);
const recovered = clients.filter((c) => c.stormCount === stormSent).length;
say({ phase: "storm_done", clients: n, replies: stormSent, allSubscribedMs: subscribedMs, recoveredMs: Date.now() - s0,
      recovered, lost: clients.reduce((a, c) => a + Math.max(0, stormSent - c.stormCount), 0), dups,
      resets: clients.reduce((a, c) => a + c.other.filter((m) => m.type === "reset").length, 0),
      errors: clients.reduce((a, c) => a + c.other.filter((m) => m.type === "error").length, 0) });
for (const c of clients) c.ws.terminate();
process.exit(0);
