#!/usr/bin/env python3
"""First use of the KernelHost Reseller API through khproxy, standard library only.

khproxy signs every request, so this program sends plain HTTP. It lists the
products, places an order with its own Idempotency-Key, sends the same order
again as a retry would (the API replays its answer: no second order), reads
the order back, downloads the invoice PDF and shows a problem+json error.

    KHPROXY_URL=http://127.0.0.1:8080 python3 example.py

The invoice PDF goes to OUT_DIR when set, else to a new temporary directory;
the line that reports it names the file.

What the spec documents and what it does not: the paths, the
Idempotency-Key rules and the problem+json fields are the API's (spec §2,
§5, §6). The answer bodies this example reads (data, prices, status,
pending/paid, invoice_id), the Idempotent-Replayed header and the 409
reasons are the emulator's choices, which the real API may not share:
the provenance table in docs/emulator.md lists them.

Exit status 0 when every step worked, 1 with the reason otherwise.
"""

import json
import os
import secrets
import sys
import tempfile
import time
import urllib.error
import urllib.request

BASE = os.environ.get("KHPROXY_URL", "http://127.0.0.1:8080").rstrip("/")

# khproxy is a local sidecar: its traffic must never go through an
# HTTP_PROXY from the environment, so this opener ignores proxies.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# khproxy retries the API for up to KH_RETRY_BUDGET (30 s) + KH_UPSTREAM_TIMEOUT.
TIMEOUT = 70


class Failed(Exception):
    """A step did not give the expected answer."""


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def problem(self):
        """The problem+json body of an error answer, or None."""
        ctype = self.headers.get("Content-Type", "")
        if not ctype.startswith("application/problem+json"):
            return None
        return self.json()


def request(method, path, body=None, headers=None):
    """Sends one request to khproxy; every HTTP status comes back as a Response."""
    req = urllib.request.Request(BASE + path, data=body, method=method, headers=headers or {})
    try:
        with OPENER.open(req, timeout=TIMEOUT) as resp:
            return Response(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return Response(err.code, err.headers, err.read())


def retry_after(resp, attempt):
    """Seconds to wait: the Retry-After header if any, else exponential backoff."""
    value = resp.headers.get("Retry-After", "") if resp is not None else ""
    if value.isdigit():
        return int(value)
    return min(0.5 * 2 ** attempt, 8)


def post_idempotent(path, payload, key, attempts=5):
    """POSTs payload with the caller's own Idempotency-Key, retrying safely.

    Every attempt sends the same key and the same body bytes, so the API
    runs the order at most once and replays its answer to a retry (spec
    §2). Retried: no answer at all (connection refused or reset, timeout),
    429 (spec §4.3: honour Retry-After), 502, 503 and 504. Every other
    answer is the caller's to judge.

    The 409 request_in_progress branch is the emulator's answer while the
    first attempt still runs; what the real API answers then is not
    documented (spec §2). Against the API the branch never matches, and any
    other 409 (such as idempotency_conflict) is final, so it does no harm.
    """
    body = json.dumps(payload).encode()  # serialised once: the same bytes every time
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    for attempt in range(attempts):
        resp, reason = None, ""
        try:
            resp = request("POST", path, body, headers)
        except (urllib.error.URLError, OSError) as err:
            reason = f"no answer ({err})"
        else:
            problem = resp.problem() or {}
            if resp.status == 409 and problem.get("reason") == "request_in_progress":
                reason = "the first attempt is still running"
            elif resp.status in (429, 502, 503, 504):
                reason = f"status {resp.status}"
            else:
                return resp
        if attempt + 1 == attempts:
            raise Failed(f"POST {path}: gave up after {attempts} attempts: {reason}")
        wait = retry_after(resp, attempt)
        print(f"   retrying in {wait}s with the same Idempotency-Key: {reason}")
        time.sleep(wait)


def expect(resp, status, what):
    if resp.status != status:
        problem = resp.problem()
        detail = problem.get("detail") if problem else resp.body[:200].decode("utf-8", "replace")
        raise Failed(f"{what}: status {resp.status}, want {status}: {detail}")


def main():
    print(f"khproxy at {BASE}")

    # 1. The catalog.
    resp = request("GET", "/v1/products")
    expect(resp, 200, "GET /v1/products")
    products = resp.json()["data"]
    if not products:
        raise Failed("GET /v1/products: the catalog is empty")
    product = next((p for p in products if p["id"] == 42), products[0])
    print(f"1. products: {len(products)} listed; ordering {product['id']} \"{product['name']}\" "
          f"({product['prices']['monthly']} {product['currency']} monthly)")

    # 2. An order with our own Idempotency-Key (1-80 of A-Z a-z 0-9 _ . -).
    key = "example-" + secrets.token_hex(16)
    order_body = {"product_id": product["id"], "billing_cycle": "monthly"}
    resp = post_idempotent("/v1/orders", order_body, key)
    expect(resp, 201, "POST /v1/orders")
    order = resp.json()
    location = resp.headers.get("Location") or f"/v1/orders/{order['id']}"
    print(f"2. order placed: {resp.status}, order {order['id']}, Idempotency-Key {key}")

    # 3. The same request again, as a retry after a lost answer would send it.
    resp = post_idempotent("/v1/orders", order_body, key)
    expect(resp, 201, "POST /v1/orders (retry)")
    again = resp.json()
    if again["id"] != order["id"]:
        raise Failed(f"the retry placed a second order: {again['id']} besides {order['id']}")
    replayed = resp.headers.get("Idempotent-Replayed", "(not sent)")
    print(f"3. same request again: {resp.status}, order {again['id']}, "
          f"Idempotent-Replayed: {replayed} (no second order)")

    # 4. Read the order back where its Location points (khproxy maps it to
    #    /v1/...). While the payment settles the order is "pending".
    for _ in range(30):
        resp = request("GET", location)
        expect(resp, 200, f"GET {location}")
        read = resp.json()
        if read["status"] != "pending":
            break
        print(f"   order {read['id']} is pending; asking again in 1s")
        time.sleep(1)
    if read["status"] != "paid" or not read.get("invoice_id"):
        raise Failed(f"order {read['id']} is {read['status']}: {read.get('failure_reason') or 'no invoice'}")
    print(f"4. order read back from {location}: {read['id']} status {read['status']}, invoice {read['invoice_id']}")

    # 5. The invoice as a PDF.
    resp = request("GET", f"/v1/billing/invoices/{read['invoice_id']}/pdf")
    expect(resp, 200, "GET /v1/billing/invoices/{id}/pdf")
    if not resp.body.startswith(b"%PDF"):
        raise Failed(f"the invoice is not a PDF: it starts with {resp.body[:8]!r}")
    out_dir = os.environ.get("OUT_DIR") or tempfile.mkdtemp(prefix="khproxy-example-")
    name = os.path.join(out_dir, f"invoice-{read['invoice_id']}.pdf")
    with open(name, "wb") as f:
        f.write(resp.body)
    print(f"5. invoice PDF: {len(resp.body)} bytes saved to {name}")

    # 6. An error: the same key with another body is refused, as problem+json.
    other = dict(order_body, billing_cycle="annually")
    resp = post_idempotent("/v1/orders", other, key)
    problem = resp.problem()
    if resp.status != 409 or problem is None:
        raise Failed(f"reusing the key with another body: status {resp.status}, want a 409 problem")
    code = problem["type"].rsplit("/", 1)[-1]
    # The reason (body_mismatch) is the emulator's; the API documents none for
    # this 409 (spec §2, §6). Its problem body says so in "emulator".
    print(f"6. problem+json: {problem['status']} {code} (reason {problem.get('reason', '-')}): {problem['detail']}")
    for e in problem.get("errors") or []:
        print(f"   {e['field']}: {e['message']}")
    print("ok")


if __name__ == "__main__":
    try:
        main()
    except Failed as err:
        print(f"FAILED: {err}", file=sys.stderr)
        sys.exit(1)
    except (urllib.error.URLError, OSError) as err:
        print(f"FAILED: cannot reach khproxy at {BASE}: {err} (is it running? try: khproxy demo)", file=sys.stderr)
        sys.exit(1)
    except (KeyError, ValueError, TypeError) as err:
        print(f"FAILED: unexpected answer ({type(err).__name__}: {err})", file=sys.stderr)
        sys.exit(1)
