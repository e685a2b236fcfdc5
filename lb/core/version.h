/* version.h - the version of twlb, in one place: --version, the log, twlb_build_info,
 * the Debian package (the Makefile reads it from here) and docs/CHANGELOG.md. */
#ifndef TWLB_VERSION_H
#define TWLB_VERSION_H

#define TWLB_VERSION "0.1.0"

#endif
