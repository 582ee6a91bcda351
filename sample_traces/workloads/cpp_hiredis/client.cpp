/*
 * cpp_hiredis: a C++ service calling hiredis from std::thread workers, with its own ground
 * truth. The C++ sibling of c_hiredis (same flags, same truth.jsonl), built as C++ services
 * ship: g++ -O2 -g, then stripped (no .symtab; .eh_frame and .dynsym stay), so every frame of
 * our own code is mangled C++ that only the unstripped copy can name.
 *
 * Why each piece is here:
 * - namespaces, classes, a class template (tc::stats::Counter<N>) and a member function
 *   template (tc::Cache::store<T>): mangled names of every kind a demangler must handle;
 * - tc::Cache::lookup keeps a 32 KiB scratch buffer on its own stack (memset, formatted into,
 *   read by hiredis) and calls hiredis from there: a DWARF stack copy must span that frame
 *   to reach lookup's callers, and libhiredis's redisBufferRead (16 KiB buffer of its own)
 *   runs below it on stack pages nothing touched before, where perf's kernel copy stops
 *   (issue 26). tc::admin::Stall::run calls hiredis from a small frame, so its
 *   redisBufferRead lies on pages lookup's scratch already touched: its reads are cut only
 *   by the copy's size;
 * - every hiredis call is made from a noinline, noclone method, so the first frame outside
 *   libhiredis is that method and addr2line on the unstripped copy names it: the truth's
 *   "site";
 * - decoys (usleep, nanosleep in tc::Worker::pause) that must never be tagged hiredis.
 *
 * Ground truth, one JSON line per event (written under a mutex): first
 *   {"kind":"process","pid","main_tid","t0","threads","commands",...}
 * then per call {"kind":"call","func","cmd","site","worker","thread","tid","fd","t0","t1",
 * "dur_ns","slow"} with CLOCK_MONOTONIC read right before and after the hiredis call on the
 * calling thread (inside the site), decoys {"kind":"decoy",...}, and last {"kind":"end"}.
 *
 * usage: cpp_hiredis -port P -truth FILE [-threads N] [-commands N] [-slow-every N]
 *                    [-slow-ms MS] [-decoy-every N] [-decoy-ms MS] [-start-delay-ms MS]
 */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#define SITE __attribute__((noinline, noclone))

namespace tc {

struct Flags {
    int port = 6379, threads = 3, commands = 24, slow_every = 4, slow_ms = 50;
    int decoy_every = 6, decoy_ms = 20, start_delay_ms = 0;
};

int64_t now() {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

long os_tid() { return syscall(SYS_gettid); }

/* One event of the ground truth. cmd holds no quote or backslash (we build every command). */
struct Event {
    const char *kind, *func, *site;
    std::string cmd;
    int worker, fd;
    const char *thread;
    int64_t t0, t1;
    bool slow;
};

class Truth {
  public:
    explicit Truth(FILE *f) : f_(f) {}
    void write(const Event &e) {
        std::lock_guard<std::mutex> lock(mu_);
        std::fprintf(f_,
                     "{\"kind\":\"%s\",\"func\":\"%s\",\"cmd\":\"%s\",\"site\":\"%s\","
                     "\"worker\":%d,\"thread\":\"%s\",\"tid\":%ld,\"fd\":%d,\"t0\":%lld,"
                     "\"t1\":%lld,\"dur_ns\":%lld,\"slow\":%s}\n",
                     e.kind, e.func, e.cmd.c_str(), e.site, e.worker, e.thread, os_tid(), e.fd,
                     (long long)e.t0, (long long)e.t1, (long long)(e.t1 - e.t0),
                     e.slow ? "true" : "false");
        std::fflush(f_);
    }
    FILE *file() { return f_; }

  private:
    std::mutex mu_;
    FILE *f_;
};

/* A worker's identity, as the truth names it. */
struct Who {
    int id;
    std::string name;  // "hiredis-wN": the thread's comm
    Truth *truth;
};

/* A hiredis context owned by one worker thread. */
class Connection {
  public:
    SITE Connection(const Who &who, int port) : who_(who) {
        int64_t t0 = now();
        c_ = redisConnect("127.0.0.1", port);
        int64_t t1 = now();
        if (c_ == nullptr || c_->err) {
            std::fprintf(stderr, "worker %d: connect: %s\n", who.id, c_ ? c_->errstr : "oom");
            std::exit(1);
        }
        log("redisConnect", "tc::Connection::Connection", "", t0, t1, false);
    }
    SITE ~Connection() {
        int fd = c_->fd;
        int64_t t0 = now();
        redisFree(c_);
        who_.truth->write({"call", "redisFree", "tc::Connection::~Connection", "", who_.id, fd,
                           who_.name.c_str(), t0, now(), false});
    }
    redisContext *raw() { return c_; }
    /* a reply checked and freed; the call logged */
    void done(redisReply *r, const char *site, const std::string &cmd, int64_t t0, int64_t t1,
              bool slow) {
        if (r == nullptr) {
            std::fprintf(stderr, "worker %d: %s: %s\n", who_.id, cmd.c_str(), c_->errstr);
            std::exit(1);
        }
        freeReplyObject(r);
        log("redisCommand", site, cmd, t0, t1, slow);
    }

  private:
    void log(const char *func, const char *site, const std::string &cmd, int64_t t0,
             int64_t t1, bool slow) {
        who_.truth->write({"call", func, site, cmd, who_.id, c_->fd, who_.name.c_str(), t0, t1,
                           slow});
    }
    const Who &who_;
    redisContext *c_;
};

/* The cache the service keeps in redis. */
class Cache {
  public:
    Cache(Connection &conn, std::string prefix) : conn_(conn), prefix_(std::move(prefix)) {}

    /* GET, or (slow) BLPOP on an empty list: wait for an item up to secs. The key is built
     * in a 32 KiB scratch buffer on this frame, cleared first (every page of it touched). */
    SITE void lookup(const std::string &key, double secs) {
        char scratch[32768];
        std::memset(scratch, 0, sizeof scratch);
        int n = std::snprintf(scratch, sizeof scratch, "%s:%s", prefix_.c_str(), key.c_str());
        scratch[sizeof scratch - 1] = char(n & 0x3f);  // the last page is used too
        std::string cmd = secs > 0 ? "BLPOP " + std::string(scratch) + ":empty" : "GET " + key;
        int64_t t0 = now();
        redisReply *r = secs > 0
            ? static_cast<redisReply *>(redisCommand(conn_.raw(), "BLPOP %s:empty %.3f",
                                                     scratch, secs))
            : static_cast<redisReply *>(redisCommand(conn_.raw(), "GET %s", scratch));
        int64_t t1 = now();
        if (secs > 0) cmd += " " + std::to_string(secs);
        conn_.done(r, "tc::Cache::lookup", cmd, t0, t1, secs > 0);
    }

    /* SET key value, for any value std::to_string can print */
    template <typename T>
    SITE void store(const std::string &key, const T &value) {
        std::string v = std::to_string(value);
        int64_t t0 = now();
        auto *r = static_cast<redisReply *>(
            redisCommand(conn_.raw(), "SET %s:%s %s", prefix_.c_str(), key.c_str(), v.c_str()));
        int64_t t1 = now();
        conn_.done(r, site_of(value), "SET " + key, t0, t1, false);
    }

  private:
    static const char *site_of(const long &) { return "tc::Cache::store<long>"; }
    static const char *site_of(const double &) { return "tc::Cache::store<double>"; }
    Connection &conn_;
    std::string prefix_;
};

namespace stats {

/* One of N shards of a counter (INCR key:shard). */
template <int N>
class Counter {
  public:
    explicit Counter(std::string key)
        : key_(std::move(key)), site_("tc::stats::Counter<" + std::to_string(N) + ">::bump") {}
    SITE void bump(Connection &conn, int i) {
        int shard = i % N;
        int64_t t0 = now();
        auto *r = static_cast<redisReply *>(
            redisCommand(conn.raw(), "INCR %s:%d", key_.c_str(), shard));
        int64_t t1 = now();
        conn.done(r, site_.c_str(), "INCR " + key_, t0, t1, false);
    }

  private:
    std::string key_, site_;
};

}  // namespace stats

namespace admin {

/* DEBUG SLEEP: the server stalls; called from a small frame (see the file's comment). */
class Stall {
  public:
    explicit Stall(Connection &conn) : conn_(conn) {}
    SITE void run(double secs) {
        int64_t t0 = now();
        auto *r = static_cast<redisReply *>(redisCommand(conn_.raw(), "DEBUG SLEEP %.3f", secs));
        int64_t t1 = now();
        conn_.done(r, "tc::admin::Stall::run", "DEBUG SLEEP " + std::to_string(secs), t0, t1,
                   true);
    }

  private:
    Connection &conn_;
};

}  // namespace admin

class Worker {
  public:
    Worker(int id, const Flags &flags, Truth *truth)
        : who_{id, "hiredis-w" + std::to_string(id), truth}, flags_(flags),
          seed_(0x9e3779b9u * unsigned(id + 1)) {}

    void operator()() {
        pthread_setname_np(pthread_self(), who_.name.c_str());
        Connection conn(who_, flags_.port);
        Cache cache(conn, "tc:cpp:" + std::to_string(who_.id));
        stats::Counter<3> hits("tc:cpp:hits:" + std::to_string(who_.id));
        admin::Stall stall(conn);
        int slow_seen = 0;
        for (int i = 0; i < flags_.commands; i++) {
            int every = flags_.slow_every;
            bool slow = every > 0 && (i + who_.id) % every == every - 1;
            if (slow) {
                double secs = flags_.slow_ms * jitter() / 1000.0;
                if ((slow_seen++ + who_.id) % 2 == 0)
                    stall.run(secs);
                else
                    cache.lookup("queue", secs);
            } else if (i % 4 == 0) {
                cache.store("n", long(i));
            } else if (i % 4 == 1) {
                cache.lookup("n", 0);
            } else if (i % 4 == 2) {
                cache.store("ratio", i / 7.0);
            } else {
                hits.bump(conn, i);
            }
            if (flags_.decoy_every > 0 && i % flags_.decoy_every == flags_.decoy_every - 1)
                pause(i / flags_.decoy_every);
        }
    }

  private:
    /* 1x to 2x a length, seeded per worker: the workload is not periodic */
    double jitter() { return 1.0 + double(rand_r(&seed_)) / RAND_MAX; }

    SITE void pause(int n) {
        int64_t t0 = now();
        double ms = flags_.decoy_ms * jitter();
        const char *func = n % 2 == 0 ? "usleep" : "nanosleep";
        if (n % 2 == 0) {
            usleep(useconds_t(ms * 1000));
        } else {
            timespec ts = {time_t(ms / 1000), long((ms - 1000 * time_t(ms / 1000)) * 1e6)};
            nanosleep(&ts, nullptr);
        }
        who_.truth->write({"decoy", func, "tc::Worker::pause", "", who_.id, -1,
                           who_.name.c_str(), t0, now(), false});
    }

    Who who_;
    const Flags &flags_;
    unsigned seed_;
};

}  // namespace tc

int main(int argc, char **argv) {
    tc::Flags f;
    const char *truth_path = nullptr;
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string k = argv[i];
        const char *v = argv[i + 1];
        int n = std::atoi(v);
        if (k == "-port") f.port = n;
        else if (k == "-threads") f.threads = n;
        else if (k == "-commands") f.commands = n;
        else if (k == "-slow-every") f.slow_every = n;
        else if (k == "-slow-ms") f.slow_ms = n;
        else if (k == "-decoy-every") f.decoy_every = n;
        else if (k == "-decoy-ms") f.decoy_ms = n;
        else if (k == "-start-delay-ms") f.start_delay_ms = n;
        else if (k == "-truth") truth_path = v;
        else {
            std::fprintf(stderr, "unknown flag %s\n", k.c_str());
            return 2;
        }
    }
    FILE *out = truth_path ? std::fopen(truth_path, "w") : nullptr;
    if (out == nullptr) {
        std::fprintf(stderr, "-truth FILE is required and must be writable\n");
        return 2;
    }
    if (f.threads < 1 || f.threads > 999) {
        std::fprintf(stderr, "-threads must be 1..999\n");
        return 2;
    }
    std::fprintf(out,
                 "{\"kind\":\"process\",\"pid\":%d,\"main_tid\":%ld,\"t0\":%lld,\"threads\":%d,"
                 "\"commands\":%d,\"slow_every\":%d,\"slow_ms\":%d,\"decoy_every\":%d,"
                 "\"decoy_ms\":%d,\"hiredis\":\"%d.%d.%d\",\"language\":\"c++\"}\n",
                 getpid(), tc::os_tid(), (long long)tc::now(), f.threads, f.commands,
                 f.slow_every, f.slow_ms, f.decoy_every, f.decoy_ms, HIREDIS_MAJOR,
                 HIREDIS_MINOR, HIREDIS_PATCH);
    std::fflush(out);
    if (f.start_delay_ms > 0) usleep(useconds_t(f.start_delay_ms) * 1000);
    tc::Truth truth(out);
    std::vector<tc::Worker> workers;
    workers.reserve(f.threads);
    for (int i = 0; i < f.threads; i++) workers.emplace_back(i, f, &truth);
    std::vector<std::thread> threads;
    for (auto &w : workers) threads.emplace_back(std::ref(w));
    for (auto &t : threads) t.join();
    std::fprintf(out, "{\"kind\":\"end\",\"t\":%lld}\n", (long long)tc::now());
    std::fclose(out);
    return 0;
}
