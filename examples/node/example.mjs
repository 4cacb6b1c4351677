#!/usr/bin/env node
// First use of the KernelHost Reseller API through khproxy, with Node's
// built-in fetch (Node 18 or later) and no packages.
//
// khproxy signs every request, so this program sends plain HTTP. It lists the
// products, places an order with its own Idempotency-Key, sends the same order
// again as a retry would (the API replays its answer: no second order), reads
// the order back, downloads the invoice PDF and shows a problem+json error.
//
//   KHPROXY_URL=http://127.0.0.1:8080 node example.mjs
//
// The invoice PDF goes to OUT_DIR when set, else to a new temporary directory;
// the line that reports it names the file.
//
// What the spec documents and what it does not: the paths, the
// Idempotency-Key rules and the problem+json fields are the API's (spec §2,
// §5, §6). The answer bodies this example reads (data, prices, status,
// pending/paid, invoice_id), the Idempotent-Replayed header and the 409
// reasons are the emulator's choices, which the real API may not share:
// the provenance table in docs/emulator.md lists them.
//
// Exit status 0 when every step worked, 1 with the reason otherwise.

import { randomBytes } from "node:crypto";
import { mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

const BASE = (process.env.KHPROXY_URL || "http://127.0.0.1:8080").replace(/\/+$/, "");

// khproxy retries the API for up to KH_RETRY_BUDGET (30 s) + KH_UPSTREAM_TIMEOUT.
const TIMEOUT_MS = 70_000;

class Failed extends Error {}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// request sends one request to khproxy; every HTTP status is an answer, only
// a missing answer (refused, reset, timeout) throws.
async function request(method, path, { body, headers } = {}) {
  const resp = await fetch(BASE + path, { method, body, headers, signal: AbortSignal.timeout(TIMEOUT_MS) });
  const bytes = Buffer.from(await resp.arrayBuffer());
  return { status: resp.status, headers: resp.headers, bytes };
}

const json = (resp) => JSON.parse(resp.bytes.toString("utf8"));

// problem returns the problem+json body of an error answer, or null.
function problem(resp) {
  const ctype = resp.headers.get("content-type") || "";
  return ctype.startsWith("application/problem+json") ? json(resp) : null;
}

// waitSeconds is the Retry-After header if any, else exponential backoff.
function waitSeconds(resp, attempt) {
  const value = resp?.headers.get("retry-after") || "";
  return /^[0-9]+$/.test(value) ? Number(value) : Math.min(0.5 * 2 ** attempt, 8);
}

// postIdempotent POSTs payload with the caller's own Idempotency-Key,
// retrying safely: every attempt sends the same key and the same body bytes,
// so the API runs the order at most once and replays its answer to a retry
// (spec §2). Retried: no answer at all, 429 (spec §4.3: honour Retry-After),
// 502, 503 and 504. Every other answer is the caller's.
//
// The 409 request_in_progress branch is the emulator's answer while the
// first attempt still runs; what the real API answers then is not documented
// (spec §2). Against the API it never matches, and any other 409 (such as
// idempotency_conflict) is final, so it does no harm.
async function postIdempotent(path, payload, key, attempts = 5) {
  const body = JSON.stringify(payload); // serialised once: the same bytes every time
  const headers = { "Content-Type": "application/json", "Idempotency-Key": key };
  for (let attempt = 0; ; attempt++) {
    let resp = null;
    let reason;
    try {
      resp = await request("POST", path, { body, headers });
      if (resp.status === 409 && problem(resp)?.reason === "request_in_progress") {
        reason = "the first attempt is still running";
      } else if ([429, 502, 503, 504].includes(resp.status)) {
        reason = `status ${resp.status}`;
      } else {
        return resp;
      }
    } catch (err) {
      reason = `no answer (${err.cause?.message || err.message})`;
    }
    if (attempt + 1 === attempts) {
      throw new Failed(`POST ${path}: gave up after ${attempts} attempts: ${reason}`);
    }
    const wait = waitSeconds(resp, attempt);
    console.log(`   retrying in ${wait}s with the same Idempotency-Key: ${reason}`);
    await sleep(wait * 1000);
  }
}

function expect(resp, status, what) {
  if (resp.status !== status) {
    const detail = problem(resp)?.detail ?? resp.bytes.subarray(0, 200).toString("utf8");
    throw new Failed(`${what}: status ${resp.status}, want ${status}: ${detail}`);
  }
}

async function main() {
  console.log(`khproxy at ${BASE}`);

  // 1. The catalog.
  let resp = await request("GET", "/v1/products");
  expect(resp, 200, "GET /v1/products");
  const products = json(resp).data;
  if (!products.length) throw new Failed("GET /v1/products: the catalog is empty");
  const product = products.find((p) => p.id === 42) ?? products[0];
  console.log(`1. products: ${products.length} listed; ordering ${product.id} "${product.name}" ` +
    `(${product.prices.monthly} ${product.currency} monthly)`);

  // 2. An order with our own Idempotency-Key (1-80 of A-Z a-z 0-9 _ . -).
  const key = "example-" + randomBytes(16).toString("hex");
  const orderBody = { product_id: product.id, billing_cycle: "monthly" };
  resp = await postIdempotent("/v1/orders", orderBody, key);
  expect(resp, 201, "POST /v1/orders");
  const order = json(resp);
  const location = resp.headers.get("location") || `/v1/orders/${order.id}`;
  console.log(`2. order placed: ${resp.status}, order ${order.id}, Idempotency-Key ${key}`);

  // 3. The same request again, as a retry after a lost answer would send it.
  resp = await postIdempotent("/v1/orders", orderBody, key);
  expect(resp, 201, "POST /v1/orders (retry)");
  const again = json(resp);
  if (again.id !== order.id) {
    throw new Failed(`the retry placed a second order: ${again.id} besides ${order.id}`);
  }
  const replayed = resp.headers.get("idempotent-replayed") ?? "(not sent)";
  console.log(`3. same request again: ${resp.status}, order ${again.id}, ` +
    `Idempotent-Replayed: ${replayed} (no second order)`);

  // 4. Read the order back where its Location points (khproxy maps it to
  //    /v1/...). While the payment settles the order is "pending".
  let read;
  for (let i = 0; i < 30; i++) {
    resp = await request("GET", location);
    expect(resp, 200, `GET ${location}`);
    read = json(resp);
    if (read.status !== "pending") break;
    console.log(`   order ${read.id} is pending; asking again in 1s`);
    await sleep(1000);
  }
  if (read.status !== "paid" || !read.invoice_id) {
    throw new Failed(`order ${read.id} is ${read.status}: ${read.failure_reason || "no invoice"}`);
  }
  console.log(`4. order read back from ${location}: ${read.id} status ${read.status}, invoice ${read.invoice_id}`);

  // 5. The invoice as a PDF.
  resp = await request("GET", `/v1/billing/invoices/${read.invoice_id}/pdf`);
  expect(resp, 200, "GET /v1/billing/invoices/{id}/pdf");
  if (resp.bytes.subarray(0, 4).toString("latin1") !== "%PDF") {
    throw new Failed(`the invoice is not a PDF: it starts with ${JSON.stringify(resp.bytes.subarray(0, 8).toString("latin1"))}`);
  }
  const outDir = process.env.OUT_DIR || (await mkdtemp(join(tmpdir(), "khproxy-example-")));
  const name = join(outDir, `invoice-${read.invoice_id}.pdf`);
  await writeFile(name, resp.bytes);
  console.log(`5. invoice PDF: ${resp.bytes.length} bytes saved to ${name}`);

  // 6. An error: the same key with another body is refused, as problem+json.
  resp = await postIdempotent("/v1/orders", { ...orderBody, billing_cycle: "annually" }, key);
  const p = problem(resp);
  if (resp.status !== 409 || !p) {
    throw new Failed(`reusing the key with another body: status ${resp.status}, want a 409 problem`);
  }
  const code = p.type.split("/").pop();
  console.log(`6. problem+json: ${p.status} ${code} (reason ${p.reason ?? "-"}): ${p.detail}`);
  for (const e of p.errors ?? []) console.log(`   ${e.field}: ${e.message}`);
  console.log("ok");
}

try {
  await main();
} catch (err) {
  if (err instanceof Failed) {
    console.error(`FAILED: ${err.message}`);
  } else if (err instanceof TypeError && err.cause) {
    // fetch reports a missing answer as TypeError("fetch failed") with a cause.
    const why = [err.cause.code, err.cause.message].filter(Boolean).join(": ");
    console.error(`FAILED: cannot reach khproxy at ${BASE}: ${why} (is it running? try: khproxy demo)`);
  } else {
    console.error(`FAILED: ${err.name}: ${err.message}`);
  }
  process.exit(1);
}
