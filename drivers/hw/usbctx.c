/* SPDX-License-Identifier: MIT */
/*
 * The process-wide libusb context that stages share, with the thread that
 * runs libusb's events.  libusb's file descriptors are not handed to
 * libuv: under umockdev the usbfs descriptor is a regular file that epoll
 * refuses, and a thread of our own works the same on real hardware.
 * Synchronous transfers on the device thread and this event thread
 * cooperate through libusb's own event lock.
 */
#include <pthread.h>
#include <string.h>

#include "common/log.h"
#include "drivers/hw/hw_internal.h"

static pthread_mutex_t usb_lock = PTHREAD_MUTEX_INITIALIZER;
static libusb_context *usb_ctx;
static pthread_t usb_thread;
static int usb_refs;
static volatile int usb_stop;

static void *
event_thread(void *arg)
{
    libusb_context *ctx = arg;
    struct timeval tv = { 0, 100000 };

    while (!usb_stop)
        libusb_handle_events_timeout_completed(ctx, &tv, (int *)&usb_stop);
    return NULL;
}

int
hw__usb_code(int rc)
{
    switch (rc) {
    case LIBUSB_SUCCESS:
        return 0;
    case LIBUSB_ERROR_TIMEOUT:
        return SS_ETIMEOUT;
    case LIBUSB_ERROR_NO_DEVICE:
        return SS_EGONE;
    case LIBUSB_ERROR_BUSY:
        return SS_EHELD;
    case LIBUSB_ERROR_ACCESS:
        return -13;
    case LIBUSB_ERROR_NOT_FOUND:
        return -2;
    case LIBUSB_ERROR_NO_MEM:
        return -12;
    default:
        return SS_EDEVICE;
    }
}

int
hw__usb_get(libusb_context **ctx, struct ss_err *err)
{
    int rc = 0;

    pthread_mutex_lock(&usb_lock);
    if (usb_refs == 0) {
        rc = libusb_init(&usb_ctx);
        if (rc != 0) {
            pthread_mutex_unlock(&usb_lock);
            return err_set(err, hw__usb_code(rc), "libusb: cannot start: "
                           "%s", libusb_strerror(rc));
        }
        usb_stop = 0;
        rc = pthread_create(&usb_thread, NULL, event_thread, usb_ctx);
        if (rc != 0) {
            libusb_exit(usb_ctx);
            usb_ctx = NULL;
            pthread_mutex_unlock(&usb_lock);
            return err_set(err, -rc, "libusb: cannot start the event "
                           "thread: %s", strerror(rc));
        }
    }
    usb_refs++;
    *ctx = usb_ctx;
    pthread_mutex_unlock(&usb_lock);
    return 0;
}

void
hw__usb_put(void)
{
    pthread_mutex_lock(&usb_lock);
    if (usb_refs > 0 && --usb_refs == 0) {
        usb_stop = 1;
        libusb_interrupt_event_handler(usb_ctx);
        pthread_join(usb_thread, NULL);
        libusb_exit(usb_ctx);
        usb_ctx = NULL;
    }
    pthread_mutex_unlock(&usb_lock);
}
