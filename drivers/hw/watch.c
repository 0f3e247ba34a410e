/* SPDX-License-Identifier: MIT */
/*
 * USB hot-plug notices for stage controllers, handed to the libuv loop.
 * A thread of the watch's own runs libusb's events; libusb calls the
 * hot-plug callback on that thread, which queues the event and wakes the
 * loop with uv_async_send().  The loop thread drains the queue and calls
 * the user's callback.
 *
 * Where libusb has no hot-plug support (no udev or netlink), the thread
 * compares the list of matching devices every WATCH_POLL_MS instead, so
 * arrivals and removals are still seen, up to a second later.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "drivers/hw/hw_internal.h"

#define WATCH_POLL_MS 1000
#define WATCH_MAX_SEEN 32
#define WATCH_QUEUE 64

struct hw_watch {
    uv_async_t async;               /* first: the close callback frees it */
    hw_watch_cb cb;
    void *arg;
    libusb_context *ctx;
    libusb_hotplug_callback_handle hp;
    bool hp_ok;
    pthread_t thread;
    volatile int stop;
    uint16_t ids[8][2];             /* watched VID:PID pairs */
    int nids;
    pthread_mutex_t lock;
    struct hw_usb_event queue[WATCH_QUEUE];
    int nqueue;
    struct hw_usb_event seen[WATCH_MAX_SEEN];
    int nseen;
};

static bool
watched(const struct hw_watch *w, uint16_t vid, uint16_t pid)
{
    int i;

    for (i = 0; i < w->nids; i++)
        if (w->ids[i][0] == vid && w->ids[i][1] == pid)
            return true;
    return false;
}

static void
push(struct hw_watch *w, const struct hw_usb_event *ev)
{
    pthread_mutex_lock(&w->lock);
    if (w->nqueue < WATCH_QUEUE)
        w->queue[w->nqueue++] = *ev;
    pthread_mutex_unlock(&w->lock);
    uv_async_send(&w->async);
}

static int
on_hotplug(libusb_context *ctx, libusb_device *dev,
           libusb_hotplug_event event, void *data)
{
    struct hw_watch *w = data;
    struct libusb_device_descriptor dd;
    struct hw_usb_event ev;

    if (libusb_get_device_descriptor(dev, &dd) != 0 ||
        !watched(w, dd.idVendor, dd.idProduct))
        return 0;
    ev.arrived = event == LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED;
    ev.vid = dd.idVendor;
    ev.pid = dd.idProduct;
    ev.bus = libusb_get_bus_number(dev);
    ev.address = libusb_get_device_address(dev);
    log_debug("hw", "usb_hotplug_callback id=%04x:%04x arrived=%d", ev.vid,
              ev.pid, ev.arrived);
    push(w, &ev);
    return 0;
}

static bool
same_device(const struct hw_usb_event *a, const struct hw_usb_event *b)
{
    return a->vid == b->vid && a->pid == b->pid && a->bus == b->bus &&
           a->address == b->address;
}

static int
list_now(struct hw_watch *w, struct hw_usb_event *now)
{
    libusb_device **list;
    ssize_t n, i;
    int k = 0;

    n = libusb_get_device_list(w->ctx, &list);
    for (i = 0; i < n && k < WATCH_MAX_SEEN; i++) {
        struct libusb_device_descriptor dd;

        if (libusb_get_device_descriptor(list[i], &dd) != 0 ||
            !watched(w, dd.idVendor, dd.idProduct))
            continue;
        now[k].arrived = true;
        now[k].vid = dd.idVendor;
        now[k].pid = dd.idProduct;
        now[k].bus = libusb_get_bus_number(list[i]);
        now[k].address = libusb_get_device_address(list[i]);
        k++;
    }
    if (n >= 0)
        libusb_free_device_list(list, 1);
    return k;
}

static bool
contains(const struct hw_usb_event *set, int n, const struct hw_usb_event *e)
{
    int i;

    for (i = 0; i < n; i++)
        if (same_device(&set[i], e))
            return true;
    return false;
}

/* Compares the device list with the last one and reports differences. */
static void
poll_list(struct hw_watch *w)
{
    struct hw_usb_event now[WATCH_MAX_SEEN], ev;
    int i, n = list_now(w, now);

    for (i = 0; i < n; i++)
        if (!contains(w->seen, w->nseen, &now[i])) {
            log_debug("hw", "usb_poll_found id=%04x:%04x", now[i].vid,
                      now[i].pid);
            push(w, &now[i]);
        }
    for (i = 0; i < w->nseen; i++)
        if (!contains(now, n, &w->seen[i])) {
            ev = w->seen[i];
            ev.arrived = false;
            log_debug("hw", "usb_poll_lost id=%04x:%04x", ev.vid, ev.pid);
            push(w, &ev);
        }
    memcpy(w->seen, now, sizeof(now[0]) * (size_t)n);
    w->nseen = n;
}

static void *
watch_thread(void *arg)
{
    struct hw_watch *w = arg;
    struct timeval tv = { 0, 100000 };
    double next_poll = util_now_ms() + WATCH_POLL_MS;

    while (!w->stop) {
        libusb_handle_events_timeout_completed(w->ctx, &tv,
                                               (int *)&w->stop);
        if (!w->hp_ok && util_now_ms() >= next_poll) {
            poll_list(w);
            next_poll = util_now_ms() + WATCH_POLL_MS;
        }
    }
    return NULL;
}

static void
on_async(uv_async_t *h)
{
    struct hw_watch *w = (struct hw_watch *)h;
    struct hw_usb_event q[WATCH_QUEUE];
    int i, n;

    pthread_mutex_lock(&w->lock);
    n = w->nqueue;
    memcpy(q, w->queue, sizeof(q[0]) * (size_t)n);
    w->nqueue = 0;
    pthread_mutex_unlock(&w->lock);
    for (i = 0; i < n; i++) {
        log_notice("hw", "usb_%s id=%04x:%04x usb=%03d:%03d",
                   q[i].arrived ? "arrived" : "removed", q[i].vid, q[i].pid,
                   q[i].bus, q[i].address);
        w->cb(&q[i], w->arg);
    }
}

static void
add_ids(struct hw_watch *w, const struct hw_config *c)
{
    const struct hw__dialect *d = hw__dialect_get(c->stage.dialect);
    size_t i;

    for (i = 0; i < hw__known_usb_count && w->nids < 7; i++) {
        w->ids[w->nids][0] = hw__known_usb[i].vid;
        w->ids[w->nids][1] = hw__known_usb[i].pid;
        w->nids++;
    }
    if (d != NULL) {
        w->ids[w->nids][0] = c->stage.vid ? c->stage.vid : d->vid;
        w->ids[w->nids][1] = c->stage.pid ? c->stage.pid : d->pid;
        w->nids++;
    }
}

static void
register_hotplug(struct hw_watch *w)
{
    int rc;

    if (!libusb_has_capability(LIBUSB_CAP_HAS_HOTPLUG))
        return;
    rc = libusb_hotplug_register_callback(
        w->ctx, LIBUSB_HOTPLUG_EVENT_DEVICE_ARRIVED |
        LIBUSB_HOTPLUG_EVENT_DEVICE_LEFT, 0, LIBUSB_HOTPLUG_MATCH_ANY,
        LIBUSB_HOTPLUG_MATCH_ANY, LIBUSB_HOTPLUG_MATCH_ANY, on_hotplug, w,
        &w->hp);
    w->hp_ok = rc == LIBUSB_SUCCESS;
}

int
hw_watch_start(uv_loop_t *loop, const struct hw_config *c, hw_watch_cb cb,
               void *arg, struct hw_watch **out, struct ss_err *err)
{
    struct hw_watch *w = calloc(1, sizeof(*w));
    int rc;

    *out = NULL;
    if (w == NULL)
        return err_set(err, -12, "out of memory");
    w->cb = cb;
    w->arg = arg;
    add_ids(w, c);
    pthread_mutex_init(&w->lock, NULL);
    rc = libusb_init(&w->ctx);
    if (rc != 0) {
        free(w);
        return err_set(err, hw__usb_code(rc), "usb watch: libusb: %s",
                       libusb_strerror(rc));
    }
    w->nseen = list_now(w, w->seen);
    register_hotplug(w);
    uv_async_init(loop, &w->async, on_async);
    rc = pthread_create(&w->thread, NULL, watch_thread, w);
    if (rc != 0) {
        libusb_exit(w->ctx);
        w->ctx = NULL;
        hw_watch_stop(w);
        return err_set(err, -rc, "usb watch: cannot start thread");
    }
    *out = w;
    return 0;
}

static void
on_closed(uv_handle_t *h)
{
    struct hw_watch *w = (struct hw_watch *)h;

    pthread_mutex_destroy(&w->lock);
    free(w);
}

void
hw_watch_stop(struct hw_watch *w)
{
    if (w == NULL)
        return;
    if (w->ctx != NULL) {
        w->stop = 1;
        libusb_interrupt_event_handler(w->ctx);
        pthread_join(w->thread, NULL);
        if (w->hp_ok)
            libusb_hotplug_deregister_callback(w->ctx, w->hp);
        libusb_exit(w->ctx);
        w->ctx = NULL;
    }
    uv_close((uv_handle_t *)&w->async, on_closed);
}
