/* In-process speed of the C codec. Reads lines "schema name hex" from stdin and prints, per
 * message, decodes/s and encodes/s per CPU-second (plus decode+JSON rendering), best of
 * TRIALS runs. Usage: exi_bench [seconds per message] < lines */
#define _POSIX_C_SOURCE 199309L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ccsbus_exi.h"

#define TRIALS 10

static exi_doc doc;
static exi_jtree tree;
static char json[1 << 16];
static uint8_t out[1 << 16];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts); /* CPU time: per-core rate on a shared machine */
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int unhex(const char *h, uint8_t *b, size_t cap, size_t *n)
{
    size_t i, len = strlen(h);
    if (len % 2 || len / 2 > cap)
        return -1;
    for (i = 0; i < len / 2; i++) {
        unsigned v;
        if (sscanf(h + 2 * i, "%2x", &v) != 1)
            return -1;
        b[i] = (uint8_t)v;
    }
    *n = len / 2;
    return 0;
}

int main(int argc, char **argv)
{
    char schema[16], name[64], hex[8192];
    double seconds = argc > 1 ? atof(argv[1]) : 1.0;
    uint8_t msg[4096];
    printf("%-6s %-30s %6s %14s %14s %14s\n", "schema", "message", "bytes", "decode/s",
           "encode/s", "decode+json/s");
    while (scanf("%15s %63s %8191s", schema, name, hex) == 3) {
        const exi_schema *s = exi_schema_find(schema);
        exi_error err;
        size_t n, jl, ol;
        long iters = 0, k;
        int trial;
        double t0, dec, enc, dj;
        volatile uint32_t sink = 0;
        if (!s || unhex(hex, msg, sizeof msg, &n)) {
            fprintf(stderr, "bad line for %s\n", name);
            return 2;
        }
        if (exi_decode(s, msg, n, &doc, &err) ||
            exi_doc_to_json(&doc, json, sizeof json, &jl, &err) ||
            exi_json_parse(json, jl, &tree, &err) ||
            exi_encode(s, &tree, 0, out, sizeof out, &ol, &err)) {
            fprintf(stderr, "%s: %s\n", name, err.message);
            return 1;
        }
        if (ol != n || memcmp(out, msg, n) != 0) {
            fprintf(stderr, "%s: re-encoding differs\n", name);
            return 1;
        }
        /* best of TRIALS short runs: the machine is shared, the best run is the codec's speed */
        dec = enc = dj = 0;
        for (trial = 0; trial < TRIALS; trial++) {
            double r;
            iters = 0;
            t0 = now();
            do {
                for (k = 0; k < 1000; k++) {
                    exi_decode(s, msg, n, &doc, &err);
                    sink += doc.n_events;
                }
                iters += 1000;
            } while (now() - t0 < seconds / TRIALS);
            r = (double)iters / (now() - t0);
            dec = r > dec ? r : dec;
            iters = 0;
            t0 = now();
            do {
                for (k = 0; k < 1000; k++) {
                    exi_encode(s, &tree, 0, out, sizeof out, &ol, &err);
                    sink += (uint32_t)ol;
                }
                iters += 1000;
            } while (now() - t0 < seconds / TRIALS);
            r = (double)iters / (now() - t0);
            enc = r > enc ? r : enc;
            iters = 0;
            t0 = now();
            do {
                for (k = 0; k < 1000; k++) {
                    exi_decode(s, msg, n, &doc, &err);
                    exi_doc_to_json(&doc, json, sizeof json, &jl, &err);
                    sink += (uint32_t)jl;
                }
                iters += 1000;
            } while (now() - t0 < seconds / TRIALS);
            r = (double)iters / (now() - t0);
            dj = r > dj ? r : dj;
        }
        printf("%-6s %-30s %6zu %14.0f %14.0f %14.0f\n", schema, name, n, dec, enc, dj);
        (void)sink;
    }
    return 0;
}
