<?php
// First use of the KernelHost Reseller API through khproxy, with PHP's curl
// extension (Debian: apt-get install php-cli php-curl).
//
// khproxy signs every request, so this program sends plain HTTP. It lists the
// products, places an order with its own Idempotency-Key, sends the same order
// again as a retry would (the API replays its answer: no second order), reads
// the order back, downloads the invoice PDF and shows a problem+json error.
//
//   KHPROXY_URL=http://127.0.0.1:8080 php example.php
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

declare(strict_types=1);

final class Failed extends Exception {}

/** NoAnswer: the request got no HTTP answer at all (refused, reset, timeout). */
final class NoAnswer extends Exception {}

$base = rtrim(getenv('KHPROXY_URL') ?: 'http://127.0.0.1:8080', '/');

/** outDir makes a new private temporary directory for the invoice. */
function outDir(): string
{
    $dir = sys_get_temp_dir() . DIRECTORY_SEPARATOR . 'khproxy-example-' . bin2hex(random_bytes(8));
    if (!mkdir($dir, 0700)) {
        throw new Failed("cannot create the directory $dir");
    }
    return $dir;
}

/**
 * Sends one request to khproxy. Every HTTP status is an answer:
 * ['status' => int, 'headers' => [lowercase name => value], 'body' => string].
 */
function request(string $method, string $path, ?string $body = null, array $headers = []): array
{
    global $base;
    $ch = curl_init($base . $path);
    $got = [];
    curl_setopt_array($ch, [
        CURLOPT_CUSTOMREQUEST => $method,
        CURLOPT_RETURNTRANSFER => true,
        CURLOPT_HTTPHEADER => $headers,
        // khproxy retries the API for up to KH_RETRY_BUDGET (30 s) + KH_UPSTREAM_TIMEOUT.
        CURLOPT_TIMEOUT => 70,
        // khproxy is a local sidecar: never send its traffic through an
        // http_proxy from the environment.
        CURLOPT_PROXY => '',
        CURLOPT_HEADERFUNCTION => function ($ch, string $line) use (&$got): int {
            if (str_starts_with($line, 'HTTP/')) {
                $got = []; // a new response (after a 100 Continue, say)
            } elseif (str_contains($line, ':')) {
                [$name, $value] = explode(':', $line, 2);
                $got[strtolower(trim($name))] = trim($value);
            }
            return strlen($line);
        },
    ]);
    if ($body !== null) {
        curl_setopt($ch, CURLOPT_POSTFIELDS, $body);
    }
    $out = curl_exec($ch);
    if ($out === false) {
        $err = curl_error($ch);
        curl_close($ch);
        throw new NoAnswer("$method $path: $err");
    }
    $status = curl_getinfo($ch, CURLINFO_RESPONSE_CODE);
    curl_close($ch);
    return ['status' => $status, 'headers' => $got, 'body' => $out];
}

/** The problem+json body of an error answer, or null. */
function problem(array $resp): ?array
{
    if (!str_starts_with($resp['headers']['content-type'] ?? '', 'application/problem+json')) {
        return null;
    }
    return json_decode($resp['body'], true, 512, JSON_THROW_ON_ERROR);
}

/** Seconds to wait: the Retry-After header if any, else exponential backoff. */
function waitSeconds(?array $resp, int $attempt): float
{
    $value = $resp['headers']['retry-after'] ?? '';
    return ctype_digit($value) ? (float)$value : min(0.5 * 2 ** $attempt, 8);
}

/**
 * POSTs $payload with the caller's own Idempotency-Key, retrying safely:
 * every attempt sends the same key and the same body bytes, so the API runs
 * the order at most once and replays its answer to a retry (spec §2).
 * Retried: no answer at all, 429 (spec §4.3: honour Retry-After), 502, 503
 * and 504. Every other answer is the caller's.
 *
 * The 409 request_in_progress branch is the emulator's answer while the
 * first attempt still runs; what the real API answers then is not
 * documented (spec §2). Against the API it never matches, and any other 409
 * (such as idempotency_conflict) is final, so it does no harm.
 */
function postIdempotent(string $path, array $payload, string $key, int $attempts = 5): array
{
    $body = json_encode($payload, JSON_THROW_ON_ERROR); // serialised once: the same bytes every time
    $headers = ['Content-Type: application/json', "Idempotency-Key: $key"];
    for ($attempt = 0; ; $attempt++) {
        $resp = null;
        try {
            $resp = request('POST', $path, $body, $headers);
            if ($resp['status'] === 409 && (problem($resp)['reason'] ?? '') === 'request_in_progress') {
                $reason = 'the first attempt is still running';
            } elseif (in_array($resp['status'], [429, 502, 503, 504], true)) {
                $reason = "status {$resp['status']}";
            } else {
                return $resp;
            }
        } catch (NoAnswer $e) {
            $reason = 'no answer (' . $e->getMessage() . ')';
        }
        if ($attempt + 1 === $attempts) {
            throw new Failed("POST $path: gave up after $attempts attempts: $reason");
        }
        $wait = waitSeconds($resp, $attempt);
        echo "   retrying in {$wait}s with the same Idempotency-Key: $reason\n";
        usleep((int)($wait * 1e6));
    }
}

function expect(array $resp, int $status, string $what): void
{
    if ($resp['status'] !== $status) {
        $detail = problem($resp)['detail'] ?? substr($resp['body'], 0, 200);
        throw new Failed("$what: status {$resp['status']}, want $status: $detail");
    }
}

function jsonBody(array $resp): array
{
    return json_decode($resp['body'], true, 512, JSON_THROW_ON_ERROR);
}

function main(): void
{
    global $base;
    echo "khproxy at $base\n";

    // 1. The catalog.
    $resp = request('GET', '/v1/products');
    expect($resp, 200, 'GET /v1/products');
    $products = jsonBody($resp)['data'];
    if (!$products) {
        throw new Failed('GET /v1/products: the catalog is empty');
    }
    $product = $products[0];
    foreach ($products as $p) {
        if ($p['id'] === 42) {
            $product = $p;
        }
    }
    printf("1. products: %d listed; ordering %d \"%s\" (%s %s monthly)\n", count($products),
        $product['id'], $product['name'], $product['prices']['monthly'], $product['currency']);

    // 2. An order with our own Idempotency-Key (1-80 of A-Z a-z 0-9 _ . -).
    $key = 'example-' . bin2hex(random_bytes(16));
    $orderBody = ['product_id' => $product['id'], 'billing_cycle' => 'monthly'];
    $resp = postIdempotent('/v1/orders', $orderBody, $key);
    expect($resp, 201, 'POST /v1/orders');
    $order = jsonBody($resp);
    $location = $resp['headers']['location'] ?? "/v1/orders/{$order['id']}";
    echo "2. order placed: {$resp['status']}, order {$order['id']}, Idempotency-Key $key\n";

    // 3. The same request again, as a retry after a lost answer would send it.
    $resp = postIdempotent('/v1/orders', $orderBody, $key);
    expect($resp, 201, 'POST /v1/orders (retry)');
    $again = jsonBody($resp);
    if ($again['id'] !== $order['id']) {
        throw new Failed("the retry placed a second order: {$again['id']} besides {$order['id']}");
    }
    $replayed = $resp['headers']['idempotent-replayed'] ?? '(not sent)';
    echo "3. same request again: {$resp['status']}, order {$again['id']}, Idempotent-Replayed: $replayed (no second order)\n";

    // 4. Read the order back where its Location points (khproxy maps it to
    //    /v1/...). While the payment settles the order is "pending".
    for ($i = 0; $i < 30; $i++) {
        $resp = request('GET', $location);
        expect($resp, 200, "GET $location");
        $read = jsonBody($resp);
        if ($read['status'] !== 'pending') {
            break;
        }
        echo "   order {$read['id']} is pending; asking again in 1s\n";
        sleep(1);
    }
    if ($read['status'] !== 'paid' || empty($read['invoice_id'])) {
        throw new Failed("order {$read['id']} is {$read['status']}: " . ($read['failure_reason'] ?? 'no invoice'));
    }
    echo "4. order read back from $location: {$read['id']} status {$read['status']}, invoice {$read['invoice_id']}\n";

    // 5. The invoice as a PDF.
    $resp = request('GET', "/v1/billing/invoices/{$read['invoice_id']}/pdf");
    expect($resp, 200, 'GET /v1/billing/invoices/{id}/pdf');
    if (!str_starts_with($resp['body'], '%PDF')) {
        throw new Failed('the invoice is not a PDF: it starts with ' . json_encode(substr($resp['body'], 0, 8)));
    }
    $outDir = getenv('OUT_DIR') ?: outDir();
    $name = $outDir . DIRECTORY_SEPARATOR . "invoice-{$read['invoice_id']}.pdf";
    if (file_put_contents($name, $resp['body']) === false) {
        throw new Failed("cannot write $name");
    }
    printf("5. invoice PDF: %d bytes saved to %s\n", strlen($resp['body']), $name);

    // 6. An error: the same key with another body is refused, as problem+json.
    $resp = postIdempotent('/v1/orders', ['billing_cycle' => 'annually'] + $orderBody, $key);
    $p = problem($resp);
    if ($resp['status'] !== 409 || $p === null) {
        throw new Failed("reusing the key with another body: status {$resp['status']}, want a 409 problem");
    }
    $code = basename($p['type']);
    printf("6. problem+json: %d %s (reason %s): %s\n", $p['status'], $code, $p['reason'] ?? '-', $p['detail']);
    foreach ($p['errors'] ?? [] as $e) {
        echo "   {$e['field']}: {$e['message']}\n";
    }
    echo "ok\n";
}

try {
    main();
} catch (Failed $e) {
    fwrite(STDERR, 'FAILED: ' . $e->getMessage() . "\n");
    exit(1);
} catch (NoAnswer $e) {
    fwrite(STDERR, "FAILED: cannot reach khproxy at $base: " . $e->getMessage() . " (is it running? try: khproxy demo)\n");
    exit(1);
} catch (Throwable $e) {
    fwrite(STDERR, 'FAILED: ' . get_class($e) . ': ' . $e->getMessage() . "\n");
    exit(1);
}
