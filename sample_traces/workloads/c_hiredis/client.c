/*
 * c_hiredis: a plain C service calling hiredis from pthreads, with its own ground truth.
 *
 * No Go trace, no Python: the only evidence a profiler has is perf's. Each worker thread
 * (named "hiredis-wN" with pthread_setname_np, so perf's comm says it) opens its own context
 * and sends fast commands (SET / GET / INCR) and, every --slow-every'th, a slow one that
 * alternates DEBUG SLEEP (the server stalls) and BLPOP on an empty list (waits for its
 * timeout). Decoys that must never be tagged hiredis: usleep() and nanosleep() between
 * commands, on the same threads.
 *
 * Ground truth, one JSON line per event (truth.jsonl, written under a mutex): first
 *   {"kind":"process","pid","main_tid","t0","threads","commands",...}
 * then per call {"kind":"call","func","cmd","worker","thread","tid","fd","t0","t1",
 * "dur_ns","slow"} with CLOCK_MONOTONIC read right before and after the hiredis call on the
 * calling thread, decoys {"kind":"decoy",...} the same way, and last {"kind":"end"}.
 *
 * usage: c_hiredis -port P -truth FILE [-threads N] [-commands N] [-slow-every N]
 *                  [-slow-ms MS] [-decoy-every N] [-decoy-ms MS] [-start-delay-ms MS]
 */
#define _GNU_SOURCE
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int port = 6379, threads = 3, commands = 24, slow_every = 4, slow_ms = 50;
static int decoy_every = 6, decoy_ms = 20, start_delay_ms = 0;
static FILE *truth;
static pthread_mutex_t truth_mu = PTHREAD_MUTEX_INITIALIZER;

static int64_t now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static long gettid_(void) { return syscall(SYS_gettid); }

/* one JSON line; cmd holds no quote or backslash (we build every command ourselves) */
static void record(const char *kind, const char *func, const char *cmd, int worker,
                   const char *thread, int fd, int64_t t0, int64_t t1, int slow) {
    pthread_mutex_lock(&truth_mu);
    fprintf(truth,
            "{\"kind\":\"%s\",\"func\":\"%s\",\"cmd\":\"%s\",\"worker\":%d,\"thread\":\"%s\","
            "\"tid\":%ld,\"fd\":%d,\"t0\":%lld,\"t1\":%lld,\"dur_ns\":%lld,\"slow\":%s}\n",
            kind, func, cmd, worker, thread, gettid_(), fd, (long long)t0, (long long)t1,
            (long long)(t1 - t0), slow ? "true" : "false");
    fflush(truth);
    pthread_mutex_unlock(&truth_mu);
}

struct worker {
    int id;
    char name[24]; /* "hiredis-wN": at most 12 bytes with N < 1000, under the 16 of a comm */
    unsigned seed;
};

/* 1x to 2x a length, seeded per worker: the workload is not periodic */
static double jitter(struct worker *w) { return 1.0 + (double)rand_r(&w->seed) / RAND_MAX; }

static void decoy(struct worker *w, int n) {
    int64_t t0 = now();
    if (n % 2 == 0) {
        usleep((useconds_t)(decoy_ms * jitter(w) * 1000));
        record("decoy", "usleep", "", w->id, w->name, -1, t0, now(), 0);
    } else {
        double s = decoy_ms * jitter(w) / 1000.0;
        struct timespec ts = {(time_t)s, (long)((s - (time_t)s) * 1e9)};
        nanosleep(&ts, NULL);
        record("decoy", "nanosleep", "", w->id, w->name, -1, t0, now(), 0);
    }
}

static void *run(void *arg) {
    struct worker *w = arg;
    pthread_setname_np(pthread_self(), w->name);
    int64_t t0 = now();
    redisContext *c = redisConnect("127.0.0.1", port);
    int64_t t1 = now();
    if (c == NULL || c->err) {
        fprintf(stderr, "worker %d: connect: %s\n", w->id, c ? c->errstr : "no memory");
        exit(1);
    }
    record("call", "redisConnect", "", w->id, w->name, c->fd, t0, t1, 0);
    char key[32], cmd[96];
    snprintf(key, sizeof key, "tc:c:%d", w->id);
    int slow_seen = 0;
    for (int i = 0; i < commands; i++) {
        int slow = slow_every > 0 && (i + w->id) % slow_every == slow_every - 1;
        if (slow) {
            double secs = slow_ms * jitter(w) / 1000.0;
            if ((slow_seen + w->id) % 2 == 0)
                snprintf(cmd, sizeof cmd, "DEBUG SLEEP %.3f", secs);
            else
                snprintf(cmd, sizeof cmd, "BLPOP tc:cempty:%d %.3f", w->id, secs);
            slow_seen++;
        } else if (i % 3 == 0) {
            snprintf(cmd, sizeof cmd, "SET %s x", key);
        } else if (i % 3 == 1) {
            snprintf(cmd, sizeof cmd, "GET %s", key);
        } else {
            snprintf(cmd, sizeof cmd, "INCR %s:n", key);
        }
        t0 = now();
        redisReply *r = redisCommand(c, cmd);
        t1 = now();
        if (r == NULL) {
            fprintf(stderr, "worker %d: %s: %s\n", w->id, cmd, c->errstr);
            exit(1);
        }
        freeReplyObject(r);
        record("call", "redisCommand", cmd, w->id, w->name, c->fd, t0, t1, slow);
        if (decoy_every > 0 && i % decoy_every == decoy_every - 1) decoy(w, i / decoy_every);
    }
    int fd = c->fd;
    t0 = now();
    redisFree(c);
    record("call", "redisFree", "", w->id, w->name, fd, t0, now(), 0);
    return NULL;
}

int main(int argc, char **argv) {
    const char *truth_path = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        int n = atoi(v);
        if (!strcmp(k, "-port")) port = n;
        else if (!strcmp(k, "-threads")) threads = n;
        else if (!strcmp(k, "-commands")) commands = n;
        else if (!strcmp(k, "-slow-every")) slow_every = n;
        else if (!strcmp(k, "-slow-ms")) slow_ms = n;
        else if (!strcmp(k, "-decoy-every")) decoy_every = n;
        else if (!strcmp(k, "-decoy-ms")) decoy_ms = n;
        else if (!strcmp(k, "-start-delay-ms")) start_delay_ms = n;
        else if (!strcmp(k, "-truth")) truth_path = v;
        else {
            fprintf(stderr, "unknown flag %s\n", k);
            return 2;
        }
    }
    if (truth_path == NULL || (truth = fopen(truth_path, "w")) == NULL) {
        fprintf(stderr, "-truth FILE is required and must be writable\n");
        return 2;
    }
    fprintf(truth,
            "{\"kind\":\"process\",\"pid\":%d,\"main_tid\":%ld,\"t0\":%lld,\"threads\":%d,"
            "\"commands\":%d,\"slow_every\":%d,\"slow_ms\":%d,\"decoy_every\":%d,"
            "\"decoy_ms\":%d,\"hiredis\":\"%d.%d.%d\"}\n",
            getpid(), gettid_(), (long long)now(), threads, commands, slow_every, slow_ms,
            decoy_every, decoy_ms, HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
    fflush(truth);
    if (threads < 1 || threads > 999) {
        fprintf(stderr, "-threads must be 1..999\n");
        return 2;
    }
    if (start_delay_ms > 0) usleep((useconds_t)start_delay_ms * 1000);
    pthread_t *ts = calloc((size_t)threads, sizeof *ts);
    struct worker *ws = calloc((size_t)threads, sizeof *ws);
    for (int i = 0; i < threads; i++) {
        ws[i].id = i;
        ws[i].seed = 0x9e3779b9u * (unsigned)(i + 1);
        snprintf(ws[i].name, sizeof ws[i].name, "hiredis-w%d", i);
        pthread_create(&ts[i], NULL, run, &ws[i]);
    }
    for (int i = 0; i < threads; i++) pthread_join(ts[i], NULL);
    fprintf(truth, "{\"kind\":\"end\",\"t\":%lld}\n", (long long)now());
    fclose(truth);
    return 0;
}
