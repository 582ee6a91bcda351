// Command go_hiredis is the real-capture workload for tracecorr: a Go program
// that talks to redis-server through libhiredis via cgo from several goroutines,
// records a Go execution trace with runtime/trace, and logs its own ground
// truth (goroutine id, OS tid, CLOCK_MONOTONIC before/after every C call) as
// JSONL so tests can check attribution exactly.
//
// Two calling styles (-mode):
//
//	direct: Go calls C.redisCommandArgv itself, so the Go trace shows the cgo
//	        frame main._Cfunc_redisCommandArgv. The goroutine is locked to its OS
//	        thread and the truth is read by tiny C calls right before and after,
//	        so the logged window encloses the hiredis call and the tid is exact.
//	shim:   Go calls a C helper, tcw_redis_command, which reads the clock and
//	        gettid inside the same C call around redisCommandArgv. The Go frame is
//	        main._Cfunc_tcw_redis_command, which a name-only "redis*" match does
//	        not catch: the correlator must use perf callchains or a user pattern.
//
// Decoys (never hiredis): a C usleep called through cgo and Go's own time.Sleep.
//
// Pitfalls of cgo + hiredis, each on purpose and logged (role, fd = c->fd inside C):
//
//	-shared-pairs N   two goroutines use one redisContext at once (no lock): one sends a
//	                  DEBUG SLEEP, the other a PING while the first waits for its reply;
//	                  a socket timeout turns the crossed reply into an error, not a hang
//	-pool-users U     U goroutines take turns on one context (a pool of one, a channel)
//	-burst N          N goroutines, each with its own context, block in BLPOP at once
//	-leakers N        goroutines that never pass their replies to freeReplyObject
//	-poisoned N       N pooled contexts handed on in an error state: goroutine A's BLPOP
//	                  outlives a 50 ms socket timeout (the read fails with EAGAIN, c->err is
//	                  set) and A hands the context to goroutine B without resetting it; B's
//	                  commands then return at once without touching the socket
//	-broken N         N goroutines whose context's socket is shut down for writing under
//	                  it: the next command's write fails with EPIPE (and raises SIGPIPE)
//
// The caller's own code (-wrapper-every N -wrapper-ms M, shim mode): every Nth command the C
// shim sleeps M ms in nanosleep before it calls redisCommandArgv, inside the same cgo call.
// The call's truth carries that window (wrapper_t0, wrapper_t1): it is not hiredis's time.
//
// Before/after comparisons (-two-sites, -slow-phase F): each worker alternates two call
// sites, (*worker).steadyCall and (*worker).phaseCall, each a DEBUG SLEEP of -slow-ms x 1-2
// (seeded, so the same in every run); with -slow-phase F, phaseCall's sleeps last 8x longer
// for the middle fraction F of its commands. Use one goroutine: DEBUG SLEEP stalls the whole
// server, so concurrent workers would slow each other's call sites.
//
// Runtime pressure (-gomaxprocs, -spinners): few Ps and CPU-bound goroutines that hold them,
// so a goroutine returning from C often finds no P: the runtime spins (osyield), hands the P
// around and the thread waits. That is Go runtime time inside and after the cgo call, which
// tracecorr must report as the runtime's, not as hiredis blocking.
package main

/*
#cgo CFLAGS: -O2 -g -fno-omit-frame-pointer
#cgo LDFLAGS: -lhiredis
#define _GNU_SOURCE
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/syscall.h>

typedef struct {
	long long tid;
	long long mono_ns;
} tcw_stamp;

static void tcw_now(tcw_stamp *s) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	s->mono_ns = (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
	s->tid = (long long)syscall(SYS_gettid);
}

typedef struct {
	tcw_stamp before;
	tcw_stamp after;
	tcw_stamp wrap_before;  // the shim's own wait before the library call (-wrapper-every)
	tcw_stamp wrap_after;
	int reply_type;   // REDIS_REPLY_*, or -1 when the call failed
	long long integer;
	char err[128];
} tcw_result;

static void tcw_fill(tcw_result *r, redisContext *c, redisReply *reply) {
	if (reply == NULL) {
		r->reply_type = -1;
		strncpy(r->err, c->errstr, sizeof(r->err) - 1);
		return;
	}
	r->reply_type = reply->type;
	r->integer = reply->integer;
	if (reply->type == REDIS_REPLY_ERROR && reply->str != NULL) {
		strncpy(r->err, reply->str, sizeof(r->err) - 1);
	}
}

// Shim mode: the whole command, with its ground truth, in one C call. With wrapper_us > 0
// the shim first blocks in its own code (a nanosleep, as a wrapper's lock or log would),
// inside the same cgo call but before hiredis is entered: time that is the caller's.
static void tcw_redis_command(redisContext *c, int argc, const char **argv,
                              const size_t *lens, unsigned wrapper_us, tcw_result *r) {
	memset(r, 0, sizeof(*r));
	if (wrapper_us > 0) {
		tcw_now(&r->wrap_before);
		struct timespec ts = { wrapper_us / 1000000, (wrapper_us % 1000000) * 1000L };
		nanosleep(&ts, NULL);
		tcw_now(&r->wrap_after);
	}
	tcw_now(&r->before);
	redisReply *reply = redisCommandArgv(c, argc, argv, lens);
	tcw_now(&r->after);
	tcw_fill(r, c, reply);
	if (reply != NULL) freeReplyObject(reply);
}

// Direct mode helper: inspect a reply the Go side got from C.redisCommandArgv.
static void tcw_reply_info(redisContext *c, void *reply, tcw_result *r) {
	memset(r, 0, sizeof(*r));
	tcw_fill(r, c, (redisReply *)reply);
}

static const char *tcw_errstr(redisContext *c) { return c == NULL ? "out of memory" : c->errstr; }
static int tcw_err(redisContext *c) { return c == NULL ? 1 : c->err; }
static int tcw_fd(redisContext *c) { return c == NULL ? -1 : c->fd; }

// A socket timeout, so that a crossed reply on a shared context ends in an error, not a hang.
static int tcw_set_timeout_ms(redisContext *c, long ms) {
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	return redisSetTimeout(c, tv);
}

// The broken-connection pitfall: the context's socket is shut down for writing under it (as
// a connection the network or a proxy broke), so its next write fails with EPIPE and the
// kernel sends the thread SIGPIPE.
static int tcw_break_socket(redisContext *c) { return shutdown(c->fd, SHUT_WR); }

// Decoy in shim mode: a blocking C call that has nothing to do with hiredis.
static void tcw_sleep_us(unsigned us, tcw_stamp *a, tcw_stamp *b) {
	tcw_now(a);
	usleep(us);
	tcw_now(b);
}
*/
import "C"

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
	"runtime/trace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

type config struct {
	host        string
	port        int
	goroutines  int
	commands    int
	slowEvery   int
	slowMs      int
	decoyEvery  int
	decoyMs     int
	mode        string
	duration    time.Duration
	tracePath   string
	truthPath   string
	pprofAddr   string
	startDelay  time.Duration
	payloadSize int
	gomaxprocs  int
	spinners    int
	sharedPairs int
	poolUsers   int
	burst       int
	leakers     int
	poisoned    int
	broken      int
	twoSites    bool
	slowPhase   float64
	wrapEvery   int
	wrapMs      int
}

// truthWriter serialises JSONL records from all goroutines.
type truthWriter struct {
	mu sync.Mutex
	w  *bufio.Writer
	f  *os.File
}

func (t *truthWriter) write(rec map[string]any) {
	b, err := json.Marshal(rec)
	if err != nil {
		panic(err)
	}
	t.mu.Lock()
	t.w.Write(b)
	t.w.WriteByte('\n')
	t.mu.Unlock()
}

// flush pushes what is buffered to the file (the header, so a recorder can learn our pid).
func (t *truthWriter) flush() {
	t.mu.Lock()
	t.w.Flush()
	t.mu.Unlock()
}

func (t *truthWriter) close() error {
	if err := t.w.Flush(); err != nil {
		return err
	}
	return t.f.Close()
}

// goid reads the current goroutine's id from its stack header ("goroutine 18 [running]:").
// The runtime does not export it; this is the standard, if slow, way. Called once per worker.
func goid() int64 {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	buf = bytes.TrimPrefix(buf, []byte("goroutine "))
	id, err := strconv.ParseInt(string(buf[:bytes.IndexByte(buf, ' ')]), 10, 64)
	if err != nil {
		panic(err)
	}
	return id
}

func now() C.tcw_stamp {
	var s C.tcw_stamp
	C.tcw_now(&s)
	return s
}

// cArgs holds C copies of one command's arguments.
type cArgs struct {
	argv []*C.char
	lens []C.size_t
}

func newCArgs(args []string) *cArgs {
	a := &cArgs{}
	for _, s := range args {
		a.argv = append(a.argv, C.CString(s))
		a.lens = append(a.lens, C.size_t(len(s)))
	}
	return a
}

func (a *cArgs) free() {
	for _, p := range a.argv {
		C.free(unsafe.Pointer(p))
	}
}

type worker struct {
	cfg       *config
	id        int
	goid      int64
	ctx       *C.redisContext
	truth     *truthWriter
	seq       int
	key       string
	rng       *rand.Rand
	role      string // clean, shared, pool, burst, leak
	leak      bool   // never free replies
	shimCalls int    // shim calls made (-wrapper-every)
}

func (w *worker) record(kind, fn, cmd string, before, after C.tcw_stamp, extra map[string]any) {
	rec := map[string]any{
		"kind":      kind,
		"func":      fn,
		"mode":      w.cfg.mode,
		"worker":    w.id,
		"goid":      w.goid,
		"seq":       w.seq,
		"tid":       int64(before.tid),
		"tid_after": int64(after.tid),
		"t0":        int64(before.mono_ns),
		"t1":        int64(after.mono_ns),
		"dur_ns":    int64(after.mono_ns - before.mono_ns),
		"cmd":       cmd,
		"role":      w.role,
		"fd":        int(C.tcw_fd(w.ctx)),
	}
	for k, v := range extra {
		rec[k] = v
	}
	w.truth.write(rec)
	w.seq++
}

func (w *worker) connect() error {
	host := C.CString(w.cfg.host)
	defer C.free(unsafe.Pointer(host))
	before := now()
	ctx := C.redisConnect(host, C.int(w.cfg.port))
	after := now()
	w.ctx = ctx
	w.record("call", "redisConnect", "", before, after, nil)
	if C.tcw_err(ctx) != 0 {
		return fmt.Errorf("worker %d: redisConnect: %s", w.id, C.GoString(C.tcw_errstr(ctx)))
	}
	return nil
}

func (w *worker) close() {
	before := now()
	C.redisFree(w.ctx)
	after := now()
	w.record("call", "redisFree", "", before, after, nil)
}

// command runs one Redis command through hiredis and logs its ground truth.
func (w *worker) command(args []string, slow bool) error {
	return w.commandAt("", args, slow, nil)
}

// steadyCall and phaseCall make the same hiredis call from two functions, so Go stacks (and
// tracecorr's call sites) tell them apart (-two-sites).
//
//go:noinline
func (w *worker) steadyCall(a *cArgs) unsafe.Pointer {
	return C.redisCommandArgv(w.ctx, C.int(len(a.argv)), &a.argv[0], &a.lens[0])
}

//go:noinline
func (w *worker) phaseCall(a *cArgs) unsafe.Pointer {
	return C.redisCommandArgv(w.ctx, C.int(len(a.argv)), &a.argv[0], &a.lens[0])
}

// commandAt is command from a call site: "" (command itself), "steady" or "phase".
func (w *worker) commandAt(site string, args []string, slow bool, extra map[string]any) error {
	a := newCArgs(args)
	defer a.free()
	var r C.tcw_result
	fn := "redisCommandArgv"
	cmd := strings.Join(args, " ")
	switch w.cfg.mode {
	case "direct":
		before := now()
		var reply unsafe.Pointer
		switch site {
		case "steady":
			reply = w.steadyCall(a)
		case "phase":
			reply = w.phaseCall(a)
		default:
			reply = C.redisCommandArgv(w.ctx, C.int(len(args)), &a.argv[0], &a.lens[0])
		}
		after := now()
		C.tcw_reply_info(w.ctx, reply, &r)
		if reply != nil && !w.leak {
			C.freeReplyObject(reply)
		}
		r.before, r.after = before, after
	case "shim":
		fn = "tcw_redis_command"
		wrapUs := C.uint(0)
		if w.cfg.wrapEvery > 0 {
			w.shimCalls++
			if w.shimCalls%w.cfg.wrapEvery == 0 {
				wrapUs = C.uint(w.cfg.wrapMs * 1000)
			}
		}
		C.tcw_redis_command(w.ctx, C.int(len(args)), &a.argv[0], &a.lens[0], wrapUs, &r)
	}
	if extra == nil {
		extra = map[string]any{}
	}
	if r.wrap_after.mono_ns > 0 {
		extra["wrapper_t0"], extra["wrapper_t1"] = int64(r.wrap_before.mono_ns), int64(r.wrap_after.mono_ns)
	}
	extra["slow"], extra["reply_type"] = slow, int(r.reply_type)
	if r.reply_type == C.REDIS_REPLY_INTEGER {
		extra["integer"] = int64(r.integer)
	}
	errText := C.GoString(&r.err[0])
	if errText != "" {
		extra["error"] = errText
	}
	w.record("call", fn, cmd, r.before, r.after, extra)
	if r.reply_type == -1 {
		return fmt.Errorf("worker %d: %s: %s", w.id, cmd, errText)
	}
	return nil
}

// decoy blocks without hiredis: a C usleep through cgo, then a Go-native sleep.
func (w *worker) decoy() {
	sleep := time.Duration(float64(w.cfg.decoyMs) * w.jitter() * float64(time.Millisecond))
	us := C.uint(sleep / time.Microsecond)
	var before, after C.tcw_stamp
	fn := "usleep"
	switch w.cfg.mode {
	case "direct":
		before = now()
		C.usleep(us)
		after = now()
	case "shim":
		fn = "tcw_sleep_us"
		C.tcw_sleep_us(us, &before, &after)
	}
	w.record("decoy", fn, "", before, after, nil)

	before = now()
	time.Sleep(sleep)
	after = now()
	w.record("decoy", "time.Sleep", "", before, after, nil)
}

// slowCommand alternates the two ways a Redis call can block: a server that is
// busy (DEBUG SLEEP stalls the whole single-threaded server) and a blocking
// pop on an empty list that times out.
// jitter is 1x to 2x, seeded per worker: slow and decoy lengths vary, so the workload is not
// periodic (a periodic one lets a clock offset one period off look as right as the true one).
func (w *worker) jitter() float64 { return 1 + w.rng.Float64() }

func (w *worker) slowCommand(n int) []string {
	secs := strconv.FormatFloat(float64(w.cfg.slowMs)*w.jitter()/1000, 'f', 3, 64)
	if n%2 == 0 {
		return []string{"DEBUG", "SLEEP", secs}
	}
	return []string{"BLPOP", fmt.Sprintf("tc:empty:%d", w.id), secs}
}

func (w *worker) fastCommand(i int) []string {
	switch i % 3 {
	case 0:
		return []string{"SET", w.key, strings.Repeat("x", w.cfg.payloadSize)}
	case 1:
		return []string{"GET", w.key}
	default:
		return []string{"INCR", w.key + ":n"}
	}
}

func (w *worker) run(deadline time.Time) error {
	// Direct mode reads the truth in separate C calls around the hiredis call;
	// pinning the goroutine to its thread makes the logged tid the one that ran it.
	if w.cfg.mode == "direct" {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	w.goid = goid()
	w.key = fmt.Sprintf("tc:%d", w.id)
	if err := w.connect(); err != nil {
		return err
	}
	defer w.close()
	if w.cfg.twoSites {
		return w.runTwoSites(deadline)
	}
	slowSeen := 0
	for i := 0; w.more(i, deadline); i++ {
		// Stagger slow commands across workers so they do not all line up.
		if w.cfg.slowEvery > 0 && (i+w.id)%w.cfg.slowEvery == w.cfg.slowEvery-1 {
			if err := w.command(w.slowCommand(slowSeen+w.id), true); err != nil {
				return err
			}
			slowSeen++
		} else if err := w.command(w.fastCommand(i), false); err != nil {
			return err
		}
		if w.cfg.decoyEvery > 0 && i%w.cfg.decoyEvery == w.cfg.decoyEvery-1 {
			w.decoy()
		}
	}
	return nil
}

// more says whether command i is due: before the deadline with -duration, else while
// fewer than -commands were sent.
func (w *worker) more(i int, deadline time.Time) bool {
	if w.cfg.duration > 0 {
		return !time.Now().After(deadline)
	}
	return i < w.cfg.commands
}

// runTwoSites alternates the steady and the phase call site (-two-sites): every command a
// DEBUG SLEEP of -slow-ms x 1-2; the phase site's last 8x longer in the middle -slow-phase
// fraction of its commands. Both sites draw their lengths from the same seeded sequence
// whether or not there is a slow phase, so two runs differ only where the phase is.
func (w *worker) runTwoSites(deadline time.Time) error {
	perSite := (w.cfg.commands + 1) / 2
	lo := int(float64(perSite) * (1 - w.cfg.slowPhase) / 2)
	hi := lo + int(float64(perSite)*w.cfg.slowPhase)
	for i := 0; w.more(i, deadline); i++ {
		site, k := "steady", i/2
		ms := float64(w.cfg.slowMs) * w.jitter()
		inPhase := false
		if i%2 == 1 {
			site = "phase"
			inPhase = w.cfg.slowPhase > 0 && k >= lo && k < hi
			if inPhase {
				ms *= 8
			}
		}
		secs := strconv.FormatFloat(ms/1000, 'f', 4, 64)
		extra := map[string]any{"site": site, "sleep_ms": ms, "in_phase": inPhase}
		if err := w.commandAt(site, []string{"DEBUG", "SLEEP", secs}, inPhase, extra); err != nil {
			return err
		}
	}
	return nil
}

// spin keeps a P busy with Go code until told to stop (preemptible: the scheduler still
// takes it back every 10 ms, as a CPU-bound service goroutine would be).
func spin(stop <-chan struct{}) {
	x := uint64(1)
	for {
		select {
		case <-stop:
			return
		default:
		}
		for i := 0; i < 100000; i++ {
			x = x*6364136223846793005 + 1442695040888963407
		}
		sink.Store(x)
	}
}

var sink atomic.Uint64

// roleOf tells a worker what it plays: clean workers first, then the pitfalls.
func (c *config) workers() []string {
	roles := []string{}
	for i := 0; i < c.goroutines; i++ {
		roles = append(roles, "clean")
	}
	for i := 0; i < c.leakers; i++ {
		roles = append(roles, "leak")
	}
	return roles
}

// sharedPair runs two goroutines on one context at once: the first sends DEBUG SLEEP, the
// second a PING while the first waits. hiredis contexts are not thread-safe: the replies
// cross, and the socket timeout ends the wait of the one left without its reply.
func sharedPair(cfg *config, id int, truth *truthWriter, errs chan<- error) {
	owner := &worker{cfg: cfg, id: id, truth: truth, rng: rand.New(rand.NewSource(int64(id + 1))), role: "shared"}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	owner.goid = goid()
	if err := owner.connect(); err != nil {
		errs <- err
		return
	}
	C.tcw_set_timeout_ms(owner.ctx, 300)
	var wg sync.WaitGroup
	started := make(chan struct{})
	wg.Add(1)
	go func() { // the second user of the same context, on its own thread
		defer wg.Done()
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		other := &worker{cfg: cfg, id: id + 1, truth: truth, ctx: owner.ctx, role: "shared", rng: rand.New(rand.NewSource(int64(id + 2)))}
		other.goid = goid()
		for range started {
			time.Sleep(10 * time.Millisecond)          // the DEBUG SLEEP is on the wire by now
			_ = other.command([]string{"PING"}, false) // crossed replies end in errors
		}
	}()
	for i := 0; i < 3; i++ {
		started <- struct{}{}
		if err := owner.command([]string{"DEBUG", "SLEEP", "0.05"}, true); err != nil {
			break // the context is broken now (c->err): the pitfall, not a failure
		}
	}
	close(started)
	wg.Wait()
	// the context may be broken: no redisFree on a poisoned context's reader state
}

// pool runs U goroutines that take turns on one context, handed over through a channel.
func pool(cfg *config, id int, truth *truthWriter, errs chan<- error) {
	owner := &worker{cfg: cfg, id: id, truth: truth, rng: rand.New(rand.NewSource(int64(id + 1))), role: "pool"}
	runtime.LockOSThread()
	owner.goid = goid()
	if err := owner.connect(); err != nil {
		runtime.UnlockOSThread()
		errs <- err
		return
	}
	runtime.UnlockOSThread()
	ctxs := make(chan *C.redisContext, 1)
	ctxs <- owner.ctx
	var wg sync.WaitGroup
	for u := 0; u < cfg.poolUsers; u++ {
		wg.Add(1)
		go func(u int) {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			w := &worker{cfg: cfg, id: id + 1 + u, truth: truth, role: "pool", rng: rand.New(rand.NewSource(int64(id + 2 + u)))}
			w.goid = goid()
			w.key = fmt.Sprintf("tc:pool:%d", u)
			for i := 0; i < 4; i++ {
				w.ctx = <-ctxs
				err := w.command(w.fastCommand(i), false)
				ctxs <- w.ctx
				if err != nil {
					errs <- err
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		}(u)
	}
	wg.Wait()
	owner.ctx = <-ctxs
	runtime.LockOSThread()
	owner.close()
	runtime.UnlockOSThread()
}

// poisonedPool: goroutine A's call ends in a socket timeout (c->err set), and A hands the
// context to goroutine B through a channel without resetting it, as a pool that does not
// check a returned context's error would; B's commands fail at once, without I/O.
func poisonedPool(cfg *config, id int, truth *truthWriter, errs chan<- error) {
	ctxs := make(chan *C.redisContext, 1)
	done := make(chan struct{})
	go func() { // B, on its own thread
		defer close(done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		b := &worker{cfg: cfg, id: id + 1, truth: truth, role: "poisoned-next", rng: rand.New(rand.NewSource(int64(id + 2)))}
		b.goid = goid()
		b.key = fmt.Sprintf("tc:poisoned:%d", id)
		ctx, ok := <-ctxs
		if !ok {
			return
		}
		b.ctx = ctx
		for i := 0; i < 3; i++ {
			_ = b.command(b.fastCommand(i), false) // fails: the context's error is A's
		}
	}()
	runtime.LockOSThread()
	a := &worker{cfg: cfg, id: id, truth: truth, role: "poisoned", rng: rand.New(rand.NewSource(int64(id + 1)))}
	a.goid = goid()
	if err := a.connect(); err != nil {
		runtime.UnlockOSThread()
		errs <- err
		close(ctxs)
		<-done
		return
	}
	C.tcw_set_timeout_ms(a.ctx, 50)
	_ = a.command([]string{"BLPOP", fmt.Sprintf("tc:poisoned:empty:%d", id), "0.3"}, true)
	runtime.UnlockOSThread()
	ctxs <- a.ctx // handed on, c->err still set
	<-done
}

// brokenConnection: a goroutine's context loses its socket under it (shut down for writing),
// so the next command's write fails with EPIPE and SIGPIPE is raised inside the C call.
func brokenConnection(cfg *config, id int, truth *truthWriter, errs chan<- error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	w := &worker{cfg: cfg, id: id, truth: truth, role: "broken", rng: rand.New(rand.NewSource(int64(id + 1)))}
	w.goid = goid()
	w.key = fmt.Sprintf("tc:broken:%d", id)
	if err := w.connect(); err != nil {
		errs <- err
		return
	}
	_ = w.command([]string{"PING"}, false)
	before := now()
	C.tcw_break_socket(w.ctx)
	w.record("break", "shutdown", "SHUT_WR", before, now(), map[string]any{"fd": int(C.tcw_fd(w.ctx))})
	_ = w.command([]string{"SET", w.key, "x"}, false) // the write fails: EPIPE, SIGPIPE
	_ = w.command([]string{"GET", w.key}, false)      // and the context stays broken
}

// burst blocks N goroutines at once, each on its own context, in a BLPOP that times out:
// each holds its thread in C, so the runtime starts new threads for everything else.
func burst(cfg *config, id int, truth *truthWriter, errs chan<- error) {
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for b := 0; b < cfg.burst; b++ {
		wg.Add(1)
		go func(b int) {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			w := &worker{cfg: cfg, id: id + b, truth: truth, role: "burst", rng: rand.New(rand.NewSource(int64(id + b + 1)))}
			w.goid = goid()
			if err := w.connect(); err != nil {
				errs <- err
				return
			}
			defer w.close()
			<-gate
			if err := w.command([]string{"BLPOP", fmt.Sprintf("tc:burst:%d", b), "0.1"}, true); err != nil {
				errs <- err
			}
		}(b)
	}
	time.Sleep(50 * time.Millisecond) // all connected and parked at the gate
	close(gate)
	wg.Wait()
}

func parseFlags() *config {
	c := &config{}
	flag.StringVar(&c.host, "host", "127.0.0.1", "redis-server host")
	flag.IntVar(&c.port, "port", 6379, "redis-server port")
	flag.IntVar(&c.goroutines, "goroutines", 4, "worker goroutines, one hiredis connection each")
	flag.IntVar(&c.commands, "commands", 50, "commands per worker (ignored with -duration)")
	flag.IntVar(&c.slowEvery, "slow-every", 10, "every Nth command is slow (DEBUG SLEEP or BLPOP timeout); 0 = none")
	flag.IntVar(&c.slowMs, "slow-ms", 50, "shortest slow command, ms (each lasts 1x to 2x, seeded)")
	flag.IntVar(&c.decoyEvery, "decoy-every", 20, "after every Nth command, sleep in C usleep and in Go (never hiredis); 0 = none")
	flag.IntVar(&c.decoyMs, "decoy-ms", 30, "shortest decoy sleep, ms (1x to 2x, seeded)")
	flag.StringVar(&c.mode, "mode", "direct", "direct (Go calls C.redisCommandArgv) or shim (Go calls C tcw_redis_command)")
	flag.DurationVar(&c.duration, "duration", 0, "run for this long instead of -commands")
	flag.StringVar(&c.tracePath, "trace", "trace.out", "Go execution trace output ('' = none)")
	flag.StringVar(&c.truthPath, "truth", "truth.jsonl", "ground-truth JSONL output")
	flag.StringVar(&c.pprofAddr, "pprof", "", "serve net/http/pprof on this loopback address (e.g. 127.0.0.1:6060)")
	flag.DurationVar(&c.startDelay, "start-delay", 0, "wait this long before the first command (lets an external recorder attach)")
	flag.IntVar(&c.payloadSize, "payload", 64, "SET value size, bytes")
	flag.IntVar(&c.gomaxprocs, "gomaxprocs", 0, "GOMAXPROCS (0 = the runtime's default)")
	flag.IntVar(&c.spinners, "spinners", 0, "CPU-bound goroutines competing for the Ps")
	flag.IntVar(&c.sharedPairs, "shared-pairs", 0, "pairs of goroutines sharing one context at once (pitfall)")
	flag.IntVar(&c.poolUsers, "pool-users", 0, "goroutines taking turns on one pooled context (pitfall)")
	flag.IntVar(&c.burst, "burst", 0, "goroutines blocked in hiredis at once, own contexts (pitfall)")
	flag.IntVar(&c.leakers, "leakers", 0, "goroutines that never free their replies (pitfall)")
	flag.IntVar(&c.poisoned, "poisoned", 0, "pooled contexts handed on in an error state (pitfall)")
	flag.IntVar(&c.broken, "broken", 0, "goroutines whose connection breaks under hiredis (pitfall)")
	flag.IntVar(&c.wrapEvery, "wrapper-every", 0, "shim mode: every Nth command the C shim itself waits before calling hiredis; 0 = never")
	flag.IntVar(&c.wrapMs, "wrapper-ms", 20, "shim mode: that wait, ms")
	flag.BoolVar(&c.twoSites, "two-sites", false, "alternate two call sites of DEBUG SLEEP -slow-ms x 1-2 (before/after diffs)")
	flag.Float64Var(&c.slowPhase, "slow-phase", 0, "with -two-sites: the middle fraction of the phase site's commands sleeps 8x longer")
	flag.Parse()
	if c.mode != "direct" && c.mode != "shim" {
		fmt.Fprintf(os.Stderr, "go_hiredis: -mode must be direct or shim, not %q\n", c.mode)
		os.Exit(2)
	}
	if c.twoSites && c.mode != "direct" {
		fmt.Fprintln(os.Stderr, "go_hiredis: -two-sites needs -mode direct")
		os.Exit(2)
	}
	if c.slowPhase < 0 || c.slowPhase > 1 {
		fmt.Fprintln(os.Stderr, "go_hiredis: -slow-phase is a fraction, 0 to 1")
		os.Exit(2)
	}
	return c
}

func main() {
	cfg := parseFlags()
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "go_hiredis:", err)
		os.Exit(1)
	}
}

func run(cfg *config) error {
	f, err := os.Create(cfg.truthPath)
	if err != nil {
		return err
	}
	truth := &truthWriter{w: bufio.NewWriter(f), f: f}

	if cfg.pprofAddr != "" {
		go func() {
			if err := http.ListenAndServe(cfg.pprofAddr, nil); err != nil {
				fmt.Fprintln(os.Stderr, "go_hiredis: pprof:", err)
			}
		}()
	}

	var traceFile *os.File
	if cfg.tracePath != "" {
		if traceFile, err = os.Create(cfg.tracePath); err != nil {
			return err
		}
		if err := trace.Start(traceFile); err != nil {
			return err
		}
	}
	if cfg.gomaxprocs > 0 {
		runtime.GOMAXPROCS(cfg.gomaxprocs)
	}
	start := now()
	truth.write(map[string]any{
		"kind":          "process",
		"pid":           os.Getpid(),
		"main_tid":      int64(start.tid),
		"t0":            int64(start.mono_ns),
		"go_version":    runtime.Version(),
		"goarch":        runtime.GOARCH,
		"mode":          cfg.mode,
		"goroutines":    cfg.goroutines,
		"commands":      cfg.commands,
		"slow_every":    cfg.slowEvery,
		"slow_ms":       cfg.slowMs,
		"decoy_every":   cfg.decoyEvery,
		"decoy_ms":      cfg.decoyMs,
		"duration_ns":   cfg.duration.Nanoseconds(),
		"trace":         cfg.tracePath,
		"pprof":         cfg.pprofAddr,
		"gomaxprocs":    runtime.GOMAXPROCS(0),
		"spinners":      cfg.spinners,
		"shared_pairs":  cfg.sharedPairs,
		"pool_users":    cfg.poolUsers,
		"burst":         cfg.burst,
		"leakers":       cfg.leakers,
		"poisoned":      cfg.poisoned,
		"broken":        cfg.broken,
		"two_sites":     cfg.twoSites,
		"slow_phase":    cfg.slowPhase,
		"wrapper_every": cfg.wrapEvery,
		"wrapper_ms":    cfg.wrapMs,
	})
	truth.flush()
	if cfg.startDelay > 0 {
		time.Sleep(cfg.startDelay)
	}

	deadline := time.Now().Add(cfg.duration)
	stopSpinning := make(chan struct{})
	for i := 0; i < cfg.spinners; i++ {
		go spin(stopSpinning)
	}
	defer close(stopSpinning)
	var wg sync.WaitGroup
	roles := cfg.workers()
	errs := make(chan error, len(roles)+cfg.sharedPairs+cfg.poolUsers+cfg.burst+cfg.poisoned+cfg.broken+4)
	for i, role := range roles {
		wg.Add(1)
		w := &worker{cfg: cfg, id: i, truth: truth, rng: rand.New(rand.NewSource(int64(i + 1))), role: role, leak: role == "leak"}
		go func() {
			defer wg.Done()
			trace.WithRegion(context.Background(), "worker", func() {
				if err := w.run(deadline); err != nil {
					errs <- err
				}
			})
		}()
	}
	next := 1000 // worker ids of the pitfall goroutines
	for p := 0; p < cfg.sharedPairs; p++ {
		wg.Add(1)
		go func(id int) { defer wg.Done(); sharedPair(cfg, id, truth, errs) }(next)
		next += 10
	}
	if cfg.poolUsers > 0 {
		wg.Add(1)
		go func(id int) { defer wg.Done(); pool(cfg, id, truth, errs) }(next)
		next += cfg.poolUsers + 10
	}
	if cfg.burst > 0 {
		wg.Add(1)
		go func(id int) { defer wg.Done(); burst(cfg, id, truth, errs) }(next)
		next += cfg.burst + 10
	}
	for p := 0; p < cfg.poisoned; p++ {
		wg.Add(1)
		go func(id int) { defer wg.Done(); poisonedPool(cfg, id, truth, errs) }(next)
		next += 10
	}
	for p := 0; p < cfg.broken; p++ {
		wg.Add(1)
		go func(id int) { defer wg.Done(); brokenConnection(cfg, id, truth, errs) }(next)
		next += 10
	}
	wg.Wait()
	close(errs)

	end := now()
	truth.write(map[string]any{"kind": "end", "t0": int64(end.mono_ns), "main_tid": int64(end.tid)})
	if traceFile != nil {
		trace.Stop()
		if err := traceFile.Close(); err != nil {
			return err
		}
	}
	if err := truth.close(); err != nil {
		return err
	}
	for err := range errs {
		return err
	}
	return nil
}
