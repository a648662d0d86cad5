/*
 * bench_poll.c - dashboards polling a job: GET /v1/jobs/{id} from many
 * keep-alive clients while a quantization job runs, as requests per second
 * and latency percentiles.  Target (issue 10): >= 5,000 req/s with p99 <=
 * 20 ms on the 2-core CI machine.
 *
 * Starts build/gptqd (GPTQD_BIN or ./build/gptqd) on an ephemeral port
 * with a local model (tests/fixtures/tiny-llama), submits a job slowed by
 * GPTQD_TEST_DELAY_MS so it is running for the whole measurement, then
 * runs CLIENTS threads, each with one reused curl handle, for SECONDS.
 * Prints one JSON object.  The ratio printed is against the same run's
 * GET /healthz rate (no database), which is the machine's own ceiling for
 * this HTTP stack.
 */
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CLIENTS 16
#define SECONDS 3.0
#define MAXLAT 2000000

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static size_t sink(char *p, size_t s, size_t n, void *u)
{
    size_t k = s * n;
    char *buf = u;
    if (buf) {
        size_t have = strlen(buf);
        if (have + k < 4096) {
            memcpy(buf + have, p, k);
            buf[have + k] = '\0';
        }
    }
    return k;
}

struct client {
    char url[256];
    double until;
    long n, errors;
    float *lat;
    long cap;
};

static void *run_client(void *arg)
{
    struct client *c = arg;
    CURL *h = curl_easy_init();
    curl_easy_setopt(h, CURLOPT_URL, c->url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, NULL);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    while (now_s() < c->until) {
        double t0 = now_s();
        long code = 0;
        if (curl_easy_perform(h) != CURLE_OK || (curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code), code != 200))
            c->errors++;
        if (c->n < c->cap)
            c->lat[c->n] = (float)(now_s() - t0);
        c->n++;
    }
    curl_easy_cleanup(h);
    return NULL;
}

static int cmpf(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* rate, p50, p99 of CLIENTS clients hammering url for secs */
static void hammer(double *rate, double *p50, double *p99, long *errors, const char *url, double secs)
{
    struct client c[CLIENTS];
    pthread_t t[CLIENTS];
    long total = 0, kept = 0;
    float *all;
    double t0 = now_s();
    for (int i = 0; i < CLIENTS; i++) {
        memset(&c[i], 0, sizeof(c[i]));
        snprintf(c[i].url, sizeof(c[i].url), "%s", url);
        c[i].until = t0 + secs;
        c[i].cap = MAXLAT / CLIENTS;
        c[i].lat = malloc(sizeof(float) * (size_t)c[i].cap);
        pthread_create(&t[i], NULL, run_client, &c[i]);
    }
    *errors = 0;
    for (int i = 0; i < CLIENTS; i++) {
        pthread_join(t[i], NULL);
        total += c[i].n;
        *errors += c[i].errors;
    }
    all = malloc(sizeof(float) * MAXLAT);
    for (int i = 0; i < CLIENTS; i++) {
        long k = c[i].n < c[i].cap ? c[i].n : c[i].cap;
        memcpy(all + kept, c[i].lat, sizeof(float) * (size_t)k);
        kept += k;
        free(c[i].lat);
    }
    qsort(all, (size_t)kept, sizeof(float), cmpf);
    *rate = (double)total / (now_s() - t0);
    *p50 = kept ? all[kept / 2] : 0;
    *p99 = kept ? all[(long)(kept * 0.99)] : 0;
    free(all);
}

int main(void)
{
    const char *bin = getenv("GPTQD_BIN") ? getenv("GPTQD_BIN") : "build/gptqd";
    char dir[] = "/tmp/gptqd-bench-XXXXXX", cmd[1024], portfile[128], url[256], body[8192], id[64] = "";
    double rate, p50, p99, hrate, hp50, hp99;
    long errs, herrs;
    pid_t pid;
    int port = 0;
    FILE *f;

    if (!mkdtemp(dir))
        return 1;
    snprintf(cmd, sizeof(cmd), "mkdir -p %s/models && cp -r tests/fixtures/tiny-llama %s/models/", dir, dir);
    if (system(cmd) != 0)
        return 1;
    snprintf(portfile, sizeof(portfile), "%s/port", dir);
    if ((pid = fork()) == 0) {
        char db[128], data[128], models[128];
        snprintf(db, sizeof(db), "--db=%s/db", dir);
        snprintf(data, sizeof(data), "--data-dir=%s/data", dir);
        snprintf(models, sizeof(models), "--local-models=%s/models", dir);
        setenv("GPTQD_TEST_DELAY_MS", "200", 1);
        freopen("/dev/null", "w", stderr);
        execl(bin, bin, "--listen=127.0.0.1:0", db, data, models, "--port-file", portfile, "--log-level=error",
              (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 500 && !port; i++) {
        usleep(20000);
        if ((f = fopen(portfile, "r"))) {
            if (fscanf(f, "%d", &port) != 1)
                port = 0;
            fclose(f);
        }
    }
    if (!port) {
        fprintf(stderr, "bench_poll: gptqd did not start\n");
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    {
        /* a job that stays in quantizing for the whole run */
        CURL *h = curl_easy_init();
        struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
        char reply[4096] = "";
        size_t k = (size_t)snprintf(body, sizeof(body), "{\"model\": \"local:tiny-llama\", \"calibration\": "
                                    "{\"num_samples\": 8, \"seq_len\": 32, \"token_ids\": [");
        for (int i = 0; i < 600; i++)
            k += (size_t)snprintf(body + k, sizeof(body) - k, "%s%d", i ? "," : "", (i * 37) % 320);
        snprintf(body + k, sizeof(body) - k, "]}}");
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/jobs", port);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, reply);
        curl_easy_perform(h);
        curl_slist_free_all(hd);
        curl_easy_cleanup(h);
        {
            char *p = strstr(reply, "\"id\":\"");
            if (p)
                snprintf(id, sizeof(id), "%.22s", p + 6);
        }
    }
    usleep(500000);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/healthz", port);
    hammer(&hrate, &hp50, &hp99, &herrs, url, 1.5);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/jobs/%s", port, id);
    hammer(&rate, &p50, &p99, &errs, url, SECONDS);
    printf("{\"bench\": \"poll\", \"clients\": %d, \"seconds\": %.1f, \"req_per_s\": %.0f, \"p50_ms\": %.3f, "
           "\"p99_ms\": %.3f, \"errors\": %ld, \"healthz_req_per_s\": %.0f, \"ratio_to_healthz\": %.2f, "
           "\"target\": \">= 5000 req/s, p99 <= 20 ms\", \"met\": %s}\n",
           CLIENTS, SECONDS, rate, p50 * 1e3, p99 * 1e3, errs + herrs, hrate, rate / hrate,
           rate >= 5000 && p99 <= 0.020 && errs == 0 ? "true" : "false");
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0)
        return 1;
    curl_global_cleanup();
    return 0;
}
