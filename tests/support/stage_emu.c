/* SPDX-License-Identifier: MIT */
/*
 * The umockdev stage emulator (see stage_emu.h).  The usbfs ioctl handler
 * runs on umockdev's worker thread; the state it shares with the test
 * thread is under one mutex.
 *
 * URB handling mirrors what the kernel does for libusb: SUBMITURB queues,
 * REAPURBNDELAY hands back a finished URB or EAGAIN, DISCARDURB finishes
 * a pending URB with -ENOENT (libusb's timeout path).  A bulk IN URB
 * waits until the controller has reply bytes.
 */
#include "tests/support/stage_emu.h"

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include <linux/usbdevice_fs.h>
#include <umockdev-1.0/umockdev.h>

#define MAX_DONE 64
#define MAX_EMUS 32

/* The libumockdev and GObject calls, resolved at run time. */
static struct {
    __typeof__(&umockdev_testbed_new) testbed_new;
    __typeof__(&umockdev_testbed_add_from_string) add_from_string;
    __typeof__(&umockdev_testbed_remove_device) remove_device;
    __typeof__(&umockdev_testbed_attach_ioctl) attach_ioctl;
    __typeof__(&umockdev_testbed_load_ioctl) load_ioctl;
    __typeof__(&umockdev_testbed_uevent) uevent;
    __typeof__(&umockdev_testbed_detach_ioctl) detach_ioctl;
    __typeof__(&umockdev_ioctl_base_new) base_new;
    __typeof__(&umockdev_ioctl_client_get_request) get_request;
    __typeof__(&umockdev_ioctl_client_get_arg) get_arg;
    __typeof__(&umockdev_ioctl_client_complete) complete;
    __typeof__(&umockdev_ioctl_data_resolve) resolve;
    __typeof__(&umockdev_ioctl_data_set_ptr) set_ptr;
    __typeof__(&umockdev_ioctl_data_ref) data_ref;
    __typeof__(&umockdev_ioctl_data_unref) data_unref;
    __typeof__(&g_signal_connect_data) signal_connect;
    __typeof__(&g_object_unref) object_unref;
    __typeof__(&g_error_free) error_free;
    bool loaded;
} um;

struct stage_emu {
    UMockdevTestbed *tb;
    UMockdevIoctlBase *handler;
    enum se_dialect dialect;
    uint16_t vid, pid;
    pthread_mutex_t lock;
    double pos[3], from[3], target[3];
    double move_start_ms, move_ms;
    bool mute, plugged;
    unsigned baud;
    int line_state;
    char in[512];
    size_t in_len;
    char out[2048];
    size_t out_len;
    UMockdevIoctlData *pending_in;  /* a bulk IN URB waiting for bytes */
    UMockdevIoctlData *done[MAX_DONE];
    int ndone;
    long ncommands;
    char last_cmd[128];
    char position_file[512];
    int devnum;                     /* USB address on bus 1 */
    char devnode[64], syspath[96];
};

/* Every emulator made lives until exit: umockdev keeps calling its
 * handler's state for as long as the testbed exists. */
static struct stage_emu *emus[MAX_EMUS];
static int nemus;

static const char *
load_umockdev(void)
{
    const struct { void **slot; const char *name; } syms[] = {
        { (void **)&um.testbed_new, "umockdev_testbed_new" },
        { (void **)&um.add_from_string, "umockdev_testbed_add_from_string" },
        { (void **)&um.remove_device, "umockdev_testbed_remove_device" },
        { (void **)&um.attach_ioctl, "umockdev_testbed_attach_ioctl" },
        { (void **)&um.load_ioctl, "umockdev_testbed_load_ioctl" },
        { (void **)&um.uevent, "umockdev_testbed_uevent" },
        { (void **)&um.detach_ioctl, "umockdev_testbed_detach_ioctl" },
        { (void **)&um.base_new, "umockdev_ioctl_base_new" },
        { (void **)&um.get_request, "umockdev_ioctl_client_get_request" },
        { (void **)&um.get_arg, "umockdev_ioctl_client_get_arg" },
        { (void **)&um.complete, "umockdev_ioctl_client_complete" },
        { (void **)&um.resolve, "umockdev_ioctl_data_resolve" },
        { (void **)&um.set_ptr, "umockdev_ioctl_data_set_ptr" },
        { (void **)&um.data_ref, "umockdev_ioctl_data_ref" },
        { (void **)&um.data_unref, "umockdev_ioctl_data_unref" },
        { (void **)&um.signal_connect, "g_signal_connect_data" },
        { (void **)&um.object_unref, "g_object_unref" },
        { (void **)&um.error_free, "g_error_free" },
    };
    size_t i;
    void *h;

    if (um.loaded)
        return NULL;
    h = dlopen("libumockdev.so.0", RTLD_NOW | RTLD_GLOBAL);
    if (h == NULL)
        return "libumockdev.so.0 cannot be loaded (install libumockdev0)";
    for (i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
        *syms[i].slot = dlsym(h, syms[i].name);
        if (*syms[i].slot == NULL)
            return "libumockdev lacks a function this emulator needs";
    }
    um.loaded = true;
    return NULL;
}

bool
se_reexec_under_umockdev(char **argv)
{
    const char *pre = getenv("LD_PRELOAD");
    char *args[64];
    int i;

    if (pre != NULL && strstr(pre, "libumockdev-preload") != NULL)
        return true;
    if (getenv("SS_UMOCKDEV_REEXEC") != NULL)
        return false;
    setenv("SS_UMOCKDEV_REEXEC", "1", 1);
    setenv("ASAN_OPTIONS", "verify_asan_link_order=0:detect_leaks=0", 0);
    args[0] = "umockdev-wrapper";
    for (i = 0; argv[i] != NULL && i < 62; i++)
        args[i + 1] = argv[i];
    args[i + 1] = NULL;
    execvp(args[0], args);
    return false;
}

static double
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* --- the controller ---------------------------------------------------- */

static bool
moving(struct stage_emu *e)
{
    return now_ms() < e->move_start_ms + e->move_ms;
}

static void
settle_position(struct stage_emu *e)
{
    double f;
    int a;

    if (!moving(e)) {
        memcpy(e->pos, e->target, sizeof(e->pos));
        return;
    }
    f = (now_ms() - e->move_start_ms) / e->move_ms;
    for (a = 0; a < 3; a++)
        e->pos[a] = e->from[a] + f * (e->target[a] - e->from[a]);
}

static void
reply(struct stage_emu *e, const char *text)
{
    const char *eol = e->dialect == SE_PROSCAN ? "\r" : "\r\n";
    int n = snprintf(e->out + e->out_len, sizeof(e->out) - e->out_len,
                     "%s%s", text, eol);

    if (n > 0 && (size_t)n < sizeof(e->out) - e->out_len)
        e->out_len += (size_t)n;
}

static void
start_move(struct stage_emu *e, const long t[3])
{
    FILE *f;
    int a;

    settle_position(e);
    memcpy(e->from, e->pos, sizeof(e->pos));
    for (a = 0; a < 3; a++)
        e->target[a] = (double)t[a];
    e->move_start_ms = now_ms();
    if (e->position_file[0] != '\0' &&
        (f = fopen(e->position_file, "w")) != NULL) {
        fprintf(f, "%ld %ld %ld\n", t[0], t[1], t[2]);
        fclose(f);
    }
}

static void
halt(struct stage_emu *e)
{
    settle_position(e);
    memcpy(e->target, e->pos, sizeof(e->pos));
    e->move_start_ms = 0;
}

static void
zero(struct stage_emu *e)
{
    memset(e->pos, 0, sizeof(e->pos));
    memset(e->target, 0, sizeof(e->target));
    e->move_start_ms = 0;
}

static void
sangaboard_line(struct stage_emu *e, const char *l)
{
    char buf[128];
    long t[3];

    settle_position(e);
    if (!strcmp(l, "version"))
        reply(e, "Sangaboard Firmware v0.5.1 (slidescan emulator)");
    else if (!strcmp(l, "blocking_moves false"))
        reply(e, "done");
    else if (sscanf(l, "move_abs %ld %ld %ld", &t[0], &t[1], &t[2]) == 3) {
        start_move(e, t);
        reply(e, "done");
    } else if (!strcmp(l, "p?")) {
        snprintf(buf, sizeof(buf), "%ld %ld %ld", lround(e->pos[0]),
                 lround(e->pos[1]), lround(e->pos[2]));
        reply(e, buf);
    } else if (!strcmp(l, "moving?"))
        reply(e, moving(e) ? "true" : "false");
    else if (!strcmp(l, "stop")) {
        halt(e);
        reply(e, "done");
    } else if (!strcmp(l, "zero")) {
        zero(e);
        reply(e, "done");
    } else
        reply(e, "error: unknown command");
}

static void
proscan_line(struct stage_emu *e, const char *l)
{
    char buf[128];
    long t[3];
    int a, mask = 0;

    settle_position(e);
    if (!strcmp(l, "VERSION"))
        reply(e, "100");
    else if (!strcmp(l, "COMP 0") || !strcmp(l, "H") || !strcmp(l, "J"))
        reply(e, "0");
    else if (sscanf(l, "G,%ld,%ld,%ld", &t[0], &t[1], &t[2]) == 3) {
        start_move(e, t);
        reply(e, "R");
    } else if (!strcmp(l, "P")) {
        snprintf(buf, sizeof(buf), "%ld,%ld,%ld", lround(e->pos[0]),
                 lround(e->pos[1]), lround(e->pos[2]));
        reply(e, buf);
    } else if (!strcmp(l, "$")) {
        for (a = 0; a < 3 && moving(e); a++)
            if (e->target[a] != e->from[a])
                mask |= 1 << a;
        snprintf(buf, sizeof(buf), "%d", mask);
        reply(e, buf);
    } else if (!strcmp(l, "I")) {
        halt(e);
        reply(e, "R");
    } else if (!strcmp(l, "SIS")) {
        zero(e);
        reply(e, "R");
    } else
        reply(e, "E,1");
}

/* Bytes from the host: complete lines become commands. */
static void
host_bytes(struct stage_emu *e, const char *p, size_t n)
{
    size_t i, start = 0;

    if (e->in_len + n > sizeof(e->in))
        e->in_len = 0;
    memcpy(e->in + e->in_len, p, n);
    e->in_len += n;
    for (i = 0; i < e->in_len; i++) {
        if (e->in[i] != '\r' && e->in[i] != '\n')
            continue;
        e->in[i] = '\0';
        if (i > start) {
            e->ncommands++;
            snprintf(e->last_cmd, sizeof(e->last_cmd), "%s", e->in + start);
            if (!e->mute) {
                if (e->dialect == SE_PROSCAN)
                    proscan_line(e, e->in + start);
                else
                    sangaboard_line(e, e->in + start);
            }
        }
        start = i + 1;
    }
    memmove(e->in, e->in + start, e->in_len - start);
    e->in_len -= start;
}

/* --- usbfs ------------------------------------------------------------- */

static struct usbdevfs_urb *
urb_of(UMockdevIoctlData *ud)
{
    return (struct usbdevfs_urb *)ud->data;
}

static void
finish(struct stage_emu *e, UMockdevIoctlData *ud)
{
    if (e->ndone < MAX_DONE)
        e->done[e->ndone++] = ud;
}

/* Fills a waiting bulk IN URB when there are reply bytes. */
static void
serve_in(struct stage_emu *e)
{
    UMockdevIoctlData *ud = e->pending_in, *bd;
    struct usbdevfs_urb *urb;
    size_t n;

    if (ud == NULL || e->out_len == 0)
        return;
    urb = urb_of(ud);
    bd = um.resolve(ud, offsetof(struct usbdevfs_urb, buffer),
                    (gsize)urb->buffer_length, NULL);
    if (bd == NULL)
        return;
    n = e->out_len < (size_t)urb->buffer_length ? e->out_len
                                                : (size_t)urb->buffer_length;
    memcpy(bd->data, e->out, n);
    memmove(e->out, e->out + n, e->out_len - n);
    e->out_len -= n;
    urb->actual_length = (int)n;
    urb->status = 0;
    e->pending_in = NULL;
    finish(e, ud);
}

static void
control_urb(struct stage_emu *e, struct usbdevfs_urb *urb, uint8_t *buf)
{
    uint16_t wlength = (uint16_t)(buf[6] | buf[7] << 8);

    if (buf[0] == 0x21 && buf[1] == 0x20 && wlength >= 7)
        e->baud = (unsigned)(buf[8] | buf[9] << 8 | buf[10] << 16 |
                             (unsigned)buf[11] << 24);
    if (buf[0] == 0x21 && buf[1] == 0x22)
        e->line_state = buf[2] | buf[3] << 8;
    urb->actual_length = wlength;
    urb->status = 0;
}

static int
submit(struct stage_emu *e, UMockdevIoctlData *arg)
{
    UMockdevIoctlData *ud, *bd;
    struct usbdevfs_urb *urb;

    ud = um.resolve(arg, 0, sizeof(struct usbdevfs_urb), NULL);
    if (ud == NULL)
        return EFAULT;
    urb = urb_of(ud);
    bd = um.resolve(ud, offsetof(struct usbdevfs_urb, buffer),
                    (gsize)urb->buffer_length, NULL);
    if (bd == NULL && urb->buffer_length > 0)
        return EFAULT;
    um.data_ref(ud);
    if (urb->type == USBDEVFS_URB_TYPE_CONTROL) {
        control_urb(e, urb, bd->data);
        finish(e, ud);
    } else if (urb->endpoint & 0x80) {
        if (e->pending_in != NULL) {
            um.data_unref(ud);
            return EBUSY;
        }
        e->pending_in = ud;
        serve_in(e);
    } else {
        host_bytes(e, (const char *)bd->data, (size_t)urb->buffer_length);
        urb->actual_length = urb->buffer_length;
        urb->status = 0;
        finish(e, ud);
        serve_in(e);
    }
    return 0;
}

static int
reap(struct stage_emu *e, UMockdevIoctlData *arg)
{
    UMockdevIoctlData *slot, *ud;

    if (e->ndone == 0)
        return EAGAIN;
    slot = um.resolve(arg, 0, sizeof(void *), NULL);
    if (slot == NULL)
        return EFAULT;
    ud = e->done[0];
    memmove(e->done, e->done + 1, sizeof(e->done[0]) * (size_t)--e->ndone);
    um.set_ptr(slot, 0, ud);
    um.data_unref(ud);
    return 0;
}

static int
discard(struct stage_emu *e, UMockdevIoctlData *arg)
{
    UMockdevIoctlData *ud = e->pending_in;

    if (ud == NULL || ud->client_addr != *(gulong *)arg->data)
        return EINVAL;
    urb_of(ud)->status = -ENOENT;
    urb_of(ud)->actual_length = 0;
    e->pending_in = NULL;
    finish(e, ud);
    return 0;
}

static int
dispatch(struct stage_emu *e, gulong req, UMockdevIoctlData *arg)
{
    if (!e->plugged)
        return ENODEV;
    switch (req) {
    case USBDEVFS_SUBMITURB:
        return submit(e, arg);
    case USBDEVFS_REAPURB:
    case USBDEVFS_REAPURBNDELAY:
        serve_in(e);
        return reap(e, arg);
    case USBDEVFS_DISCARDURB:
        return discard(e, arg);
    case USBDEVFS_GETDRIVER:
        return ENODATA;
    case USBDEVFS_CLAIMINTERFACE:
    case USBDEVFS_RELEASEINTERFACE:
    case USBDEVFS_SETINTERFACE:
    case USBDEVFS_SETCONFIGURATION:
    case USBDEVFS_CLEAR_HALT:
    case USBDEVFS_RESET:
    case USBDEVFS_IOCTL:
    case USBDEVFS_DISCONNECT_CLAIM:
        return 0;
    default:
        return ENOTTY;
    }
}

static gboolean
on_ioctl(UMockdevIoctlBase *base, UMockdevIoctlClient *client,
         gpointer data)
{
    struct stage_emu *e = data;
    int rc;

    pthread_mutex_lock(&e->lock);
    rc = dispatch(e, um.get_request(client), um.get_arg(client));
    pthread_mutex_unlock(&e->lock);
    um.complete(client, rc == 0 ? 0 : -1, rc);
    return TRUE;
}

/* --- the device -------------------------------------------------------- */

static void
hex(char *out, const uint8_t *b, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02X", b[i]);
}

/* A full-speed CDC-ACM device: interface 0 (communication, interrupt IN
 * 0x83), interface 1 (data, bulk OUT 0x02 and IN 0x81, 64 bytes). */
static char *
describe(uint16_t vid, uint16_t pid, int devnum)
{
    const uint8_t d[] = {
        0x12, 0x01, 0x00, 0x02, 0x02, 0x00, 0x00, 0x40,
        vid & 0xff, vid >> 8, pid & 0xff, pid >> 8, 0x00, 0x01,
        0, 0, 0, 1,
        0x09, 0x02, 0x30, 0x00, 0x02, 0x01, 0x00, 0x80, 0x32,
        0x09, 0x04, 0x00, 0x00, 0x01, 0x02, 0x02, 0x01, 0x00,
        0x07, 0x05, 0x83, 0x03, 0x08, 0x00, 0x10,
        0x09, 0x04, 0x01, 0x00, 0x02, 0x0a, 0x00, 0x00, 0x00,
        0x07, 0x05, 0x02, 0x02, 0x40, 0x00, 0x00,
        0x07, 0x05, 0x81, 0x02, 0x40, 0x00, 0x00,
    };
    char h[2 * sizeof(d) + 1];
    char *text;

    hex(h, d, sizeof(d));
    if (asprintf(&text,
                 "P: /devices/pci0000:00/0000:00:14.0/usb1/1-%d\n"
                 "N: bus/usb/001/%03d=%s\n"
                 "E: BUSNUM=001\nE: DEVNAME=/dev/bus/usb/001/%03d\n"
                 "E: DEVNUM=%03d\n"
                 "E: DEVTYPE=usb_device\nE: DRIVER=usb\n"
                 "E: ID_VENDOR_ID=%04x\nE: ID_MODEL_ID=%04x\n"
                 "E: MAJOR=189\nE: MINOR=%d\nE: PRODUCT=%x/%x/100\n"
                 "E: SUBSYSTEM=usb\nE: TYPE=2/0/0\n"
                 "A: bConfigurationValue=1\nA: bDeviceClass=02\n"
                 "A: bDeviceProtocol=00\nA: bDeviceSubClass=00\n"
                 "A: bMaxPacketSize0=64\nA: bNumConfigurations=1\n"
                 "A: bNumInterfaces= 2\nA: bcdDevice=0100\n"
                 "A: bmAttributes=80\nA: busnum=1\\n\n"
                 "H: descriptors=%s\n"
                 "A: dev=189:%d\nA: devnum=%d\\n\nA: devpath=%d\n"
                 "A: idProduct=%04x\nA: idVendor=%04x\nA: speed=12\n"
                 "A: version= 2.00\n",
                 devnum, devnum, h, devnum, devnum, vid, pid, devnum - 1,
                 vid, pid, h, devnum - 1, devnum, devnum, pid, vid) < 0)
        return NULL;
    return text;
}

static UMockdevTestbed *shared_tb;

/* The testbed's directory (under $TMPDIR) goes with the testbed. */
static void
drop_testbed(void)
{
    if (shared_tb != NULL)
        um.object_unref(shared_tb);
    shared_tb = NULL;
}

static bool
add_device(struct stage_emu *e, const char **why)
{
    GError *gerr = NULL;
    char *text = describe(e->vid, e->pid, e->devnum);

    if (text == NULL || !um.add_from_string(e->tb, text, &gerr)) {
        *why = "umockdev refused the device description";
        if (gerr != NULL)
            um.error_free(gerr);
        free(text);
        return false;
    }
    free(text);
    return true;
}

static struct stage_emu *
emu_alloc(uint16_t vid, uint16_t pid, const char **why)
{
    struct stage_emu *e;

    *why = load_umockdev();
    if (*why != NULL)
        return NULL;
    if (nemus == MAX_EMUS) {
        *why = "too many emulated stages in one test program";
        return NULL;
    }
    e = calloc(1, sizeof(*e));
    emus[nemus++] = e;
    e->devnum = nemus + 1;
    snprintf(e->devnode, sizeof(e->devnode), "/dev/bus/usb/001/%03d",
             e->devnum);
    snprintf(e->syspath, sizeof(e->syspath),
             "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-%d", e->devnum);
    if (shared_tb == NULL) {
        shared_tb = um.testbed_new();
        atexit(drop_testbed);
    }
    e->tb = shared_tb;
    e->vid = vid;
    e->pid = pid;
    e->plugged = true;
    pthread_mutex_init(&e->lock, NULL);
    if (!add_device(e, why))
        return NULL;
    return e;
}

struct stage_emu *
se_new(enum se_dialect d, uint16_t vid, uint16_t pid, const char **why)
{
    struct stage_emu *e = emu_alloc(vid, pid, why);
    GError *gerr = NULL;

    if (e == NULL)
        return NULL;
    e->dialect = d;
    e->handler = um.base_new();
    um.signal_connect(e->handler, "handle-ioctl", G_CALLBACK(on_ioctl), e,
                      NULL, 0);
    if (!um.attach_ioctl(e->tb, e->devnode, e->handler, &gerr)) {
        *why = "umockdev cannot attach the ioctl handler";
        if (gerr != NULL)
            um.error_free(gerr);
        se_free(e);
        return NULL;
    }
    return e;
}

struct stage_emu *
se_new_tree(uint16_t vid, uint16_t pid, const char *ioctl_file,
            const char **why)
{
    struct stage_emu *e = emu_alloc(vid, pid, why);
    GError *gerr = NULL;

    if (e == NULL)
        return NULL;
    if (!um.load_ioctl(e->tb, e->devnode, ioctl_file, &gerr)) {
        *why = "umockdev cannot load the .ioctl file";
        if (gerr != NULL)
            um.error_free(gerr);
        se_free(e);
        return NULL;
    }
    return e;
}

void
se_free(struct stage_emu *e)
{
    if (e == NULL)
        return;
    if (e->plugged)
        um.remove_device(e->tb, e->syspath);
    /* The handler stays referenced by the testbed's socket listener until
     * the process exits; the state it points to must outlive it too. */
    pthread_mutex_lock(&e->lock);
    e->plugged = false;
    pthread_mutex_unlock(&e->lock);
}

void
se_set_move_ms(struct stage_emu *e, double ms)
{
    pthread_mutex_lock(&e->lock);
    e->move_ms = ms;
    pthread_mutex_unlock(&e->lock);
}

void
se_set_mute(struct stage_emu *e, bool mute)
{
    pthread_mutex_lock(&e->lock);
    e->mute = mute;
    pthread_mutex_unlock(&e->lock);
}

void
se_set_plugged(struct stage_emu *e, bool plugged)
{
    GError *gerr = NULL;
    const char *why;

    pthread_mutex_lock(&e->lock);
    if (plugged == e->plugged) {
        pthread_mutex_unlock(&e->lock);
        return;
    }
    e->plugged = plugged;
    e->pending_in = NULL;
    e->ndone = 0;
    e->in_len = e->out_len = 0;
    pthread_mutex_unlock(&e->lock);
    if (!plugged) {
        um.uevent(e->tb, e->syspath, "remove");
        if (e->handler != NULL &&
            !um.detach_ioctl(e->tb, e->devnode, &gerr) && gerr != NULL)
            um.error_free(gerr);
        um.remove_device(e->tb, e->syspath);
        return;
    }
    if (!add_device(e, &why))
        return;
    if (e->handler != NULL &&
        !um.attach_ioctl(e->tb, e->devnode, e->handler, &gerr) && gerr != NULL)
        um.error_free(gerr);
    um.uevent(e->tb, e->syspath, "add");
}

void
se_set_position_file(struct stage_emu *e, const char *path)
{
    pthread_mutex_lock(&e->lock);
    snprintf(e->position_file, sizeof(e->position_file), "%s", path);
    pthread_mutex_unlock(&e->lock);
}

void
se_position(struct stage_emu *e, double pos[3])
{
    pthread_mutex_lock(&e->lock);
    settle_position(e);
    memcpy(pos, e->pos, sizeof(e->pos));
    pthread_mutex_unlock(&e->lock);
}

unsigned
se_baud(struct stage_emu *e)
{
    unsigned b;

    pthread_mutex_lock(&e->lock);
    b = e->baud;
    pthread_mutex_unlock(&e->lock);
    return b;
}

int
se_line_state(struct stage_emu *e)
{
    int s;

    pthread_mutex_lock(&e->lock);
    s = e->line_state;
    pthread_mutex_unlock(&e->lock);
    return s;
}

long
se_commands(struct stage_emu *e)
{
    long n;

    pthread_mutex_lock(&e->lock);
    n = e->ncommands;
    pthread_mutex_unlock(&e->lock);
    return n;
}

void
se_last_command(struct stage_emu *e, char *buf, int len)
{
    pthread_mutex_lock(&e->lock);
    snprintf(buf, (size_t)len, "%s", e->last_cmd);
    pthread_mutex_unlock(&e->lock);
}
