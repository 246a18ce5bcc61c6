#ifndef STARLING_CLINUX_SHIM_H
#define STARLING_CLINUX_SHIM_H
// Linux calls Swift's Glibc module does not import (preadv2 needs _GNU_SOURCE, statfs sys/vfs.h).
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/vfs.h>

ssize_t preadv2(int fd, const struct iovec *iov, int iovcnt, off_t offset, int flags);

/// pread that fails with EAGAIN instead of waiting for the disk (RWF_NOWAIT, Linux 4.14):
/// the event loop reads what the page cache holds and leaves the rest to a worker thread.
static inline ssize_t starling_pread_nowait(int fd, void *buf, size_t count, off_t offset) {
    struct iovec iov = { buf, count };
    return preadv2(fd, &iov, 1, offset, 0x00000008 /* RWF_NOWAIT */);
}

/// 1 when fd is on tmpfs or ramfs, where a read never waits for a disk.
static inline int starling_in_memory_fs(int fd) {
    struct statfs fs;
    if (fstatfs(fd, &fs) != 0) return 0;
    return fs.f_type == 0x01021994 /* TMPFS_MAGIC */ || fs.f_type == 0x858458f6 /* RAMFS_MAGIC */;
}
#endif
