/* SPDX-License-Identifier: MIT */
/*
 * A USB stage controller emulated with umockdev, for the stage driver's
 * tests.  The test process builds a umockdev testbed, adds a CDC-ACM
 * device (bus 1, address 2) and answers its usbfs ioctls itself, so the
 * real libusb code path runs unchanged: SET_LINE_CODING arrives as a
 * control URB, commands as bulk OUT URBs, replies go back in bulk IN URBs.
 *
 * The emulated controller speaks the Sangaboard or the ProScan dialect,
 * keeps a position, takes move_ms to finish a move, and can be told to
 * stop answering (timeouts) or to vanish (unplug) and come back.
 *
 * libumockdev is loaded with dlopen() so that no test binary links it;
 * the tests need the umockdev preload library in LD_PRELOAD, which
 * se_reexec_under_umockdev() arranges by re-running the program through
 * umockdev-wrapper.
 */
#ifndef SS_TESTS_STAGE_EMU_H
#define SS_TESTS_STAGE_EMU_H

#include <stdbool.h>
#include <stdint.h>

enum se_dialect { SE_SANGABOARD, SE_PROSCAN };

struct stage_emu;

/* Re-executes argv through umockdev-wrapper unless the preload library
 * is already there.  Returns only when no re-exec happened: true when the
 * process runs in the mock environment, false when umockdev is missing. */
bool se_reexec_under_umockdev(char **argv);

/* NULL when libumockdev cannot be loaded; the reason is in *why. */
struct stage_emu *se_new(enum se_dialect d, uint16_t vid, uint16_t pid,
                         const char **why);
void se_free(struct stage_emu *e);

/* Time a move takes, in ms of wall clock (default 0). */
void se_set_move_ms(struct stage_emu *e, double ms);
/* Stops (true) or resumes answering commands; commands are swallowed. */
void se_set_mute(struct stage_emu *e, bool mute);
/* Unplugs (every ioctl fails with ENODEV, the device leaves the bus) or
 * plugs the device back in. */
void se_set_plugged(struct stage_emu *e, bool plugged);
/* Writes "x y z\n" in controller units to path after every move. */
void se_set_position_file(struct stage_emu *e, const char *path);

/* What the emulated controller saw and holds. */
void se_position(struct stage_emu *e, double pos[3]);
unsigned se_baud(struct stage_emu *e);
int se_line_state(struct stage_emu *e);
long se_commands(struct stage_emu *e);
void se_last_command(struct stage_emu *e, char *buf, int len);

/* A fixed dialogue instead of the programmable controller: loads a
 * umockdev .ioctl tree file for the device (the device must be free of
 * a programmable handler, i.e. made with se_new_tree()). */
struct stage_emu *se_new_tree(uint16_t vid, uint16_t pid,
                              const char *ioctl_file, const char **why);

#endif
