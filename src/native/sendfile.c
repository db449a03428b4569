// sendfile(2) from a file to a connected socket, off the event loop: the copy-free path
// nginx takes for a large body, which Node has no API for (src/http/zero-copy.ts says
// when it is used). One detached thread per transfer (the caller bounds how many run):
// a transfer of a slow client may take minutes, which would starve libuv's thread pool of
// the file reads every other request needs.
//
// Both descriptors are dup()ed on the JavaScript thread before the transfer starts, so a
// socket that JavaScript closes meanwhile (a client gone, a server stopping) can never
// have its number reused under the transfer: the copy keeps the connection until the
// thread closes it. Node ignores SIGPIPE, so a peer gone is an EPIPE here, not a signal.
//
// JavaScript API (N-API 8, plain C):
//   start(socketFd, fileFd, offset, length, idleMs, done) -> handle
//       done(errorCode: string | null, bytesSent: number) runs on the JavaScript thread;
//       errorCode: an errno name ('EPIPE', 'ECONNRESET', ...), 'ECANCELED' after cancel,
//       'ETIMEDOUT' when the socket took nothing for idleMs (0: no limit; Node's own
//       socket timeout sees no traffic meanwhile), 'ESHORT' when the file ended before
//       `length` bytes.
//   cancel(handle): the thread stops within POLL_MS and `done` reports ECANCELED.
#define NAPI_VERSION 8
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <time.h>
#include <unistd.h>

// How often a transfer waiting for a full socket looks whether it was cancelled.
#define POLL_MS 200
// One sendfile call sends at most this much: the loop looks at `cancelled` between calls.
#define STEP (2 * 1024 * 1024)

typedef struct {
  int out_fd;
  int in_fd;
  off_t offset;
  uint64_t remaining;
  uint64_t sent;
  int64_t idle_ms;
  const char* error;  // a static string: an errno name, or NULL
  atomic_int cancelled;
  atomic_int refs;  // the thread and the JavaScript handle
  napi_threadsafe_function done;
} transfer;

static void release(transfer* t) {
  if (atomic_fetch_sub(&t->refs, 1) == 1) free(t);
}

static const char* errno_name(int err) {
  switch (err) {
    case EPIPE: return "EPIPE";
    case ECONNRESET: return "ECONNRESET";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case EIO: return "EIO";
    case ENOMEM: return "ENOMEM";
    case ENOTCONN: return "ENOTCONN";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EOVERFLOW: return "EOVERFLOW";
    case ESPIPE: return "ESPIPE";
    case ENOSYS: return "ENOSYS";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    default: return "EIO";
  }
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

// The name of a transfer's thread, as /proc/<pid>/task/*/comm shows it (tests count them).
#define THREAD_NAME "fc-sendfile"

static void* run(void* arg) {
  transfer* t = arg;
  pthread_setname_np(pthread_self(), THREAD_NAME);
  int64_t last_progress = now_ms();
  while (t->remaining > 0 && t->error == NULL) {
    if (atomic_load(&t->cancelled)) {
      t->error = "ECANCELED";
      break;
    }
    size_t step = t->remaining < STEP ? (size_t)t->remaining : STEP;
    ssize_t n = sendfile(t->out_fd, t->in_fd, &t->offset, step);
    if (n > 0) {
      t->remaining -= (uint64_t)n;
      t->sent += (uint64_t)n;
      last_progress = now_ms();
    } else if (n == 0) {
      t->error = "ESHORT";
    } else if (errno == EAGAIN) {
      if (t->idle_ms > 0 && now_ms() - last_progress >= t->idle_ms) {
        t->error = "ETIMEDOUT";
        break;
      }
      struct pollfd p = {.fd = t->out_fd, .events = POLLOUT};
      if (poll(&p, 1, POLL_MS) < 0 && errno != EINTR) t->error = errno_name(errno);
      // POLLERR or POLLHUP: the next sendfile names the error.
    } else if (errno != EINTR) {
      t->error = errno_name(errno);
    }
  }
  close(t->out_fd);
  close(t->in_fd);
  napi_call_threadsafe_function(t->done, t, napi_tsfn_blocking);
  napi_release_threadsafe_function(t->done, napi_tsfn_release);
  return NULL;
}

static void call_done(napi_env env, napi_value callback, void* context, void* data) {
  transfer* t = data;
  (void)context;
  if (env != NULL && callback != NULL) {
    napi_value argv[2], undefined;
    if (t->error == NULL) napi_get_null(env, &argv[0]);
    else napi_create_string_utf8(env, t->error, NAPI_AUTO_LENGTH, &argv[0]);
    napi_create_double(env, (double)t->sent, &argv[1]);
    napi_get_undefined(env, &undefined);
    napi_call_function(env, undefined, callback, 2, argv, NULL);
  }
  release(t);
}

static void finalize_handle(napi_env env, void* data, void* hint) {
  (void)env;
  (void)hint;
  release(data);
}

static napi_value throw_error(napi_env env, const char* code, const char* message) {
  napi_throw_error(env, code, message);
  return NULL;
}

static napi_value start(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 6) {
    return throw_error(env, "ERR_INVALID_ARG", "start(socketFd, fileFd, offset, length, idleMs, done)");
  }
  int32_t out_fd, in_fd;
  int64_t offset, length, idle_ms;
  napi_valuetype fn_type;
  if (napi_get_value_int32(env, argv[0], &out_fd) != napi_ok || napi_get_value_int32(env, argv[1], &in_fd) != napi_ok ||
      napi_get_value_int64(env, argv[2], &offset) != napi_ok || napi_get_value_int64(env, argv[3], &length) != napi_ok ||
      napi_get_value_int64(env, argv[4], &idle_ms) != napi_ok || napi_typeof(env, argv[5], &fn_type) != napi_ok || fn_type != napi_function ||
      offset < 0 || length < 0 || idle_ms < 0) {
    return throw_error(env, "ERR_INVALID_ARG", "start(socketFd, fileFd, offset, length, idleMs, done): bad argument");
  }
  transfer* t = calloc(1, sizeof(transfer));
  if (t == NULL) return throw_error(env, "ENOMEM", "out of memory");
  t->out_fd = fcntl(out_fd, F_DUPFD_CLOEXEC, 0);
  t->in_fd = t->out_fd < 0 ? -1 : fcntl(in_fd, F_DUPFD_CLOEXEC, 0);
  if (t->in_fd < 0) {
    const char* name = errno_name(errno);
    if (t->out_fd >= 0) close(t->out_fd);
    free(t);
    return throw_error(env, name, "dup of a descriptor failed");
  }
  t->offset = (off_t)offset;
  t->remaining = (uint64_t)length;
  t->idle_ms = idle_ms;
  atomic_init(&t->refs, 2);
  napi_value name;
  napi_create_string_utf8(env, "fleetcache sendfile", NAPI_AUTO_LENGTH, &name);
  napi_value handle;
  pthread_t thread;
  pthread_attr_t attr;
  if (napi_create_threadsafe_function(env, argv[5], NULL, name, 0, 1, NULL, NULL, NULL, call_done, &t->done) != napi_ok) {
    close(t->out_fd);
    close(t->in_fd);
    free(t);
    return throw_error(env, "EIO", "napi_create_threadsafe_function failed");
  }
  if (napi_create_external(env, t, finalize_handle, NULL, &handle) != napi_ok) {
    napi_release_threadsafe_function(t->done, napi_tsfn_abort);
    close(t->out_fd);
    close(t->in_fd);
    free(t);
    return throw_error(env, "EIO", "napi_create_external failed");
  }
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  // A small stack: the thread calls sendfile and poll only (at least the platform's minimum).
  pthread_attr_setstacksize(&attr, 64 * 1024 < PTHREAD_STACK_MIN ? PTHREAD_STACK_MIN : 64 * 1024);
  int rc = pthread_create(&thread, &attr, run, t);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    // The handle's finalizer releases one reference; the thread's is released here.
    napi_release_threadsafe_function(t->done, napi_tsfn_abort);
    close(t->out_fd);
    close(t->in_fd);
    release(t);
    return throw_error(env, "EAGAIN", "no thread for a sendfile transfer");
  }
  return handle;
}

static napi_value cancel(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void* data = NULL;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 1 || napi_get_value_external(env, argv[0], &data) != napi_ok) {
    return throw_error(env, "ERR_INVALID_ARG", "cancel(handle)");
  }
  atomic_store(&((transfer*)data)->cancelled, 1);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "start", NAPI_AUTO_LENGTH, start, NULL, &fn);
  napi_set_named_property(env, exports, "start", fn);
  napi_create_function(env, "cancel", NAPI_AUTO_LENGTH, cancel, NULL, &fn);
  napi_set_named_property(env, exports, "cancel", fn);
  return exports;
}
