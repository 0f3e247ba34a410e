/* SPDX-License-Identifier: MIT */
/*
 * A text line link to a USB CDC-ACM controller, driven directly through
 * libusb: the device is found by VID:PID (and serial or bus address), the
 * data interface's bulk IN and OUT endpoints carry the bytes, and the
 * communication interface gets SET_LINE_CODING (8N1 at the dialect's
 * rate) and SET_CONTROL_LINE_STATE (DTR and RTS up; Arduino-based boards
 * only talk once DTR is set).  A kernel cdc_acm driver bound to the
 * interfaces is detached while we hold them.
 *
 * Replies are lines ended by CR or LF; bytes after the first complete
 * line are kept for the next reply.  After a timeout the link drains what
 * arrives late before the next command, so a late answer is never taken
 * for the reply to a later command.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "drivers/hw/hw_internal.h"

#define CDC_SET_LINE_CODING 0x20
#define CDC_SET_CONTROL_LINE_STATE 0x22
#define RX_MAX 1024

struct hw__usbser {
    libusb_device_handle *h;
    int comm_if, data_if;           /* comm_if -1 when not CDC */
    unsigned char ep_in, ep_out;
    int in_size;
    int timeout_ms;
    bool stale;                     /* a reply may still be in flight */
    unsigned detached;              /* interfaces taken from the kernel */
    char rx[RX_MAX];
    size_t rx_len;
    char name[48];
};

static bool
matches(libusb_device *dev, const struct hw__usb_match *m)
{
    struct libusb_device_descriptor dd;

    if (libusb_get_device_descriptor(dev, &dd) != 0)
        return false;
    if (dd.idVendor != m->vid || dd.idProduct != m->pid)
        return false;
    if (m->bus != 0 && libusb_get_bus_number(dev) != m->bus)
        return false;
    if (m->address != 0 && libusb_get_device_address(dev) != m->address)
        return false;
    return true;
}

static bool
serial_matches(libusb_device_handle *h, const struct hw__usb_match *m)
{
    struct libusb_device_descriptor dd;
    unsigned char buf[128];

    if (m->serial == NULL || m->serial[0] == '\0')
        return true;
    if (libusb_get_device_descriptor(libusb_get_device(h), &dd) != 0 ||
        dd.iSerialNumber == 0)
        return false;
    if (libusb_get_string_descriptor_ascii(h, dd.iSerialNumber, buf,
                                           sizeof(buf)) < 0)
        return false;
    return strcmp((char *)buf, m->serial) == 0;
}

/* Picks the first interface with a bulk IN and a bulk OUT endpoint as the
 * data interface, and a class 2 (CDC communication) interface as the one
 * that takes line settings. */
static int
find_endpoints(struct hw__usbser *s, libusb_device *dev)
{
    struct libusb_config_descriptor *cfg;
    int i, e;

    if (libusb_get_active_config_descriptor(dev, &cfg) != 0 &&
        libusb_get_config_descriptor(dev, 0, &cfg) != 0)
        return -1;
    s->comm_if = s->data_if = -1;
    for (i = 0; i < cfg->bNumInterfaces; i++) {
        const struct libusb_interface_descriptor *id;
        unsigned char in = 0, out = 0;
        int in_size = 0;

        if (cfg->interface[i].num_altsetting < 1)
            continue;
        id = &cfg->interface[i].altsetting[0];
        if (id->bInterfaceClass == LIBUSB_CLASS_COMM && s->comm_if < 0)
            s->comm_if = id->bInterfaceNumber;
        for (e = 0; e < id->bNumEndpoints; e++) {
            const struct libusb_endpoint_descriptor *ep = &id->endpoint[e];

            if ((ep->bmAttributes & 3) != LIBUSB_TRANSFER_TYPE_BULK)
                continue;
            if (ep->bEndpointAddress & LIBUSB_ENDPOINT_IN) {
                in = ep->bEndpointAddress;
                in_size = ep->wMaxPacketSize;
            } else {
                out = ep->bEndpointAddress;
            }
        }
        if (in != 0 && out != 0 && s->data_if < 0) {
            s->data_if = id->bInterfaceNumber;
            s->ep_in = in;
            s->ep_out = out;
            s->in_size = in_size > 0 && in_size <= 512 ? in_size : 64;
        }
    }
    libusb_free_config_descriptor(cfg);
    return s->data_if >= 0 ? 0 : -1;
}

/* A kernel driver (cdc_acm) bound to the interface is detached first and
 * given the interface back on close. */
static int
claim(struct hw__usbser *s, int iface, struct ss_err *err)
{
    int rc;

    if (iface < 0)
        return 0;
    if (libusb_kernel_driver_active(s->h, iface) == 1) {
        rc = libusb_detach_kernel_driver(s->h, iface);
        if (rc != 0)
            return err_set(err, hw__usb_code(rc), "%s: cannot detach the "
                           "kernel driver from interface %d: %s", s->name,
                           iface, libusb_strerror(rc));
        s->detached |= 1u << iface;
    }
    rc = libusb_claim_interface(s->h, iface);
    if (rc == LIBUSB_ERROR_BUSY)
        return err_set(err, SS_EHELD, "%s: interface %d is claimed by "
                       "another program", s->name, iface);
    if (rc != 0)
        return err_set(err, hw__usb_code(rc), "%s: cannot claim interface "
                       "%d: %s", s->name, iface, libusb_strerror(rc));
    return 0;
}

static int
line_setup(struct hw__usbser *s, unsigned baud, struct ss_err *err)
{
    unsigned char coding[7] = {
        baud & 0xff, (baud >> 8) & 0xff, (baud >> 16) & 0xff,
        (baud >> 24) & 0xff, 0 /* 1 stop bit */, 0 /* no parity */, 8,
    };
    uint8_t rt = LIBUSB_REQUEST_TYPE_CLASS | LIBUSB_RECIPIENT_INTERFACE |
                 LIBUSB_ENDPOINT_OUT;
    int rc;

    if (s->comm_if < 0)
        return 0;
    rc = libusb_control_transfer(s->h, rt, CDC_SET_LINE_CODING, 0,
                                 (uint16_t)s->comm_if, coding, 7,
                                 (unsigned)s->timeout_ms);
    if (rc >= 0)
        rc = libusb_control_transfer(s->h, rt, CDC_SET_CONTROL_LINE_STATE,
                                     3, (uint16_t)s->comm_if, NULL, 0,
                                     (unsigned)s->timeout_ms);
    if (rc < 0)
        return err_set(err, hw__usb_code(rc), "%s: cannot set the line to "
                       "%u 8N1: %s", s->name, baud, libusb_strerror(rc));
    return 0;
}

static libusb_device *
find_device(libusb_context *ctx, const struct hw__usb_match *m, int *nfound)
{
    libusb_device **list, *hit = NULL;
    ssize_t n, i;

    *nfound = 0;
    n = libusb_get_device_list(ctx, &list);
    for (i = 0; i < n; i++)
        if (matches(list[i], m)) {
            if (hit == NULL)
                hit = libusb_ref_device(list[i]);
            (*nfound)++;
        }
    if (n >= 0)
        libusb_free_device_list(list, 1);
    return hit;
}

static int
open_device(struct hw__usbser *s, libusb_context *ctx,
            const struct hw__usb_match *m, struct ss_err *err)
{
    libusb_device *dev;
    int n, rc;

    dev = find_device(ctx, m, &n);
    if (dev == NULL)
        return err_set(err, SS_EGONE, "USB %04x:%04x: no such device "
                       "attached", m->vid, m->pid);
    snprintf(s->name, sizeof(s->name), "USB %04x:%04x at %03d:%03d",
             m->vid, m->pid, libusb_get_bus_number(dev),
             libusb_get_device_address(dev));
    if (n > 1)
        log_warn("stage", "usb_ambiguous device=%s matches=%d using=first",
                 s->name, n);
    if (find_endpoints(s, dev) != 0) {
        libusb_unref_device(dev);
        return err_set(err, SS_EDEVICE, "%s: no interface with bulk IN "
                       "and OUT endpoints; not a serial controller", s->name);
    }
    rc = libusb_open(dev, &s->h);
    libusb_unref_device(dev);
    if (rc != 0)
        return err_set(err, hw__usb_code(rc), "%s: cannot open: %s%s",
                       s->name, libusb_strerror(rc),
                       rc == LIBUSB_ERROR_ACCESS ? " (is the udev rule "
                       "installed and the user in group slidescan?)" : "");
    return 0;
}

int
hw__usbser_open(libusb_context *ctx, const struct hw__usb_match *m,
                unsigned baud, int timeout_ms, struct hw__usbser **out,
                struct ss_err *err)
{
    struct hw__usbser *s = calloc(1, sizeof(*s));
    int rc;

    *out = NULL;
    if (s == NULL)
        return err_set(err, -12, "out of memory");
    s->timeout_ms = timeout_ms;
    rc = open_device(s, ctx, m, err);
    if (rc == 0 && !serial_matches(s->h, m))
        rc = err_set(err, SS_EGONE, "%s: serial number is not '%s'",
                     s->name, m->serial);
    if (rc == 0)
        rc = claim(s, s->comm_if, err);
    if (rc == 0 && s->data_if != s->comm_if)
        rc = claim(s, s->data_if, err);
    if (rc == 0)
        rc = line_setup(s, baud, err);
    if (rc != 0) {
        hw__usbser_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

void
hw__usbser_close(struct hw__usbser *s)
{
    int i;

    if (s == NULL)
        return;
    if (s->h != NULL) {
        if (s->data_if >= 0)
            libusb_release_interface(s->h, s->data_if);
        if (s->comm_if >= 0 && s->comm_if != s->data_if)
            libusb_release_interface(s->h, s->comm_if);
        for (i = 0; i < 32; i++)
            if (s->detached & (1u << i))
                libusb_attach_kernel_driver(s->h, i);
        libusb_close(s->h);
    }
    free(s);
}

const char *
hw__usbser_name(const struct hw__usbser *s)
{
    return s->name;
}

/* Reads whatever arrives within a few milliseconds and forgets it. */
static void
drain(struct hw__usbser *s)
{
    unsigned char buf[512];
    int got, i;

    s->rx_len = 0;
    for (i = 0; i < 16; i++) {
        got = 0;
        if (libusb_bulk_transfer(s->h, s->ep_in, buf, s->in_size, &got,
                                 20) != 0 || got == 0)
            break;
    }
    s->stale = false;
}

static int
write_all(struct hw__usbser *s, const char *line, size_t n,
          struct ss_err *err)
{
    int sent = 0, rc;

    rc = libusb_bulk_transfer(s->h, s->ep_out, (unsigned char *)line,
                              (int)n, &sent, (unsigned)s->timeout_ms);
    if (rc == 0 && (size_t)sent != n)
        rc = LIBUSB_ERROR_IO;
    if (rc != 0)
        return err_set(err, hw__usb_code(rc), "%s: write: %s", s->name,
                       rc == LIBUSB_ERROR_NO_DEVICE ? "device unplugged"
                       : libusb_strerror(rc));
    return 0;
}

/* Takes one line out of the receive buffer, skipping empty lines. */
static bool
take_line(struct hw__usbser *s, char *reply, size_t len)
{
    size_t i, skip = 0;

    while (skip < s->rx_len && (s->rx[skip] == '\r' || s->rx[skip] == '\n'))
        skip++;
    for (i = skip; i < s->rx_len; i++)
        if (s->rx[i] == '\r' || s->rx[i] == '\n')
            break;
    if (i == s->rx_len) {
        memmove(s->rx, s->rx + skip, s->rx_len - skip);
        s->rx_len -= skip;
        return false;
    }
    snprintf(reply, len, "%.*s", (int)(i - skip), s->rx + skip);
    memmove(s->rx, s->rx + i + 1, s->rx_len - i - 1);
    s->rx_len -= i + 1;
    return true;
}

static int
read_line(struct hw__usbser *s, const char *cmd, char *reply, size_t len,
          struct ss_err *err)
{
    double deadline = util_now_ms() + s->timeout_ms;
    unsigned char buf[512];
    int got, rc, left;

    while (!take_line(s, reply, len)) {
        left = (int)(deadline - util_now_ms());
        if (left <= 0) {
            s->stale = true;
            return err_set(err, SS_ETIMEOUT, "%s: no reply to '%s' within "
                           "%d ms", s->name, cmd, s->timeout_ms);
        }
        got = 0;
        rc = libusb_bulk_transfer(s->h, s->ep_in, buf, s->in_size, &got,
                                  (unsigned)left);
        if (rc == LIBUSB_ERROR_TIMEOUT)
            continue;
        if (rc != 0)
            return err_set(err, hw__usb_code(rc), "%s: read: %s", s->name,
                           rc == LIBUSB_ERROR_NO_DEVICE ? "device unplugged"
                           : libusb_strerror(rc));
        if (s->rx_len + (size_t)got > RX_MAX) {
            s->rx_len = 0;
            return err_set(err, SS_EPROTO, "%s: reply to '%s' longer than "
                           "%d bytes without a line end", s->name, cmd,
                           RX_MAX);
        }
        memcpy(s->rx + s->rx_len, buf, (size_t)got);
        s->rx_len += (size_t)got;
    }
    return 0;
}

int
hw__usbser_cmd(struct hw__usbser *s, const char *cmd, const char *eol,
               char *reply, size_t len, struct ss_err *err)
{
    char line[256];
    int n, rc;

    if (s->stale)
        drain(s);
    n = snprintf(line, sizeof(line), "%s%s", cmd, eol);
    if (n < 0 || (size_t)n >= sizeof(line))
        return err_set(err, -22, "%s: command too long", s->name);
    rc = write_all(s, line, (size_t)n, err);
    if (rc == 0)
        rc = read_line(s, cmd, reply, len, err);
    if (rc == 0)
        log_debug("stage", "cmd device=\"%s\" sent=\"%s\" reply=\"%s\"",
                  s->name, cmd, reply);
    return rc;
}
