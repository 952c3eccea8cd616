"""The sandbox's seccomp filter: a deny-list on top of namespaces and an unprivileged uid.

A deny-list, not an allow-list: the sandbox runs arbitrary scientific Python and shell
tools whose system calls change with every glibc, NumPy or kernel release, and an
allow-list that misses one breaks programs in ways their authors cannot diagnose. What
an allow-list would protect is covered here by denying every call with kernel attack
surface or host-wide effect that a sandboxed program has no need for (the calls nsjail's
and Docker's default policies refuse), on top of the namespaces, the unprivileged uid
and no capabilities.

Default action is allow; the calls below fail with an errno (never a kill, so programs
that probe for features keep running). The filter is compiled once to a BPF file;
bwrap loads it with ``--seccomp FD`` and every sandbox gets its own ``open()`` of the
file, because bwrap reads from the descriptor's current offset.

Only the native architecture is allowed: libseccomp's bad-architecture action kills
32-bit (``int 0x80``) and x32 system calls, so the filter cannot be bypassed through
another ABI.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import pyseccomp

# EPERM: kernel attack surface or host-wide effects a sandboxed program never needs.
DENIED = (
    # debugging and cross-process access
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    # mounts and namespaces
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsconfig",
    "fsmount", "fspick", "mount_setattr", "unshare", "setns",
    # kernel keyring
    "keyctl", "add_key", "request_key",
    # bpf, perf, userfaultfd, io_uring
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    # kernel modules and kexec
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    # file handles, kernel log, accounting, swap, reboot
    "open_by_handle_at", "name_to_handle_at", "syslog", "acct", "swapon", "swapoff", "reboot",
    # clocks
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    # quotas, fanotify, port I/O, personality (ASLR off), NUMA policy
    "quotactl", "quotactl_fd", "fanotify_init", "iopl", "ioperm", "personality",
    "mbind", "set_mempolicy", "migrate_pages", "move_pages", "set_mempolicy_home_node",
    # segment descriptors, page splicing into pipes, secret memory, the mount listing API
    "modify_ldt", "vmsplice", "memfd_secret", "listmount", "statmount",
)

# ENOSYS: inotify watches on the shared read-only trees (/usr, the runtime, the device
# nodes) would report every access by other sandboxes and by the host, so the facility
# is absent; programs that watch files (tail -f, watchdog) fall back to polling.
ABSENT = ("inotify_init", "inotify_init1", "inotify_add_watch")

# Calls newer than some libseccomp releases know by name. From 424 on, system call
# numbers are the same on every architecture but alpha.
NUMBERS = {"memfd_secret": 447, "statmount": 457, "listmount": 458}


def syscall_number(name: str) -> int:
    """The native number of a call, -1 if neither libseccomp nor ``NUMBERS`` knows it."""
    number = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
    return number if number >= 0 else NUMBERS.get(name, -1)

# clone(2) flags that create namespaces. CLONE_NEWTIME shares its bit with the exit
# signal in clone(2), so it can only be requested through unshare/clone3 (both denied).
CLONE_NEW_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)

TIOCSTI = 0x5412  # push bytes into a terminal's input queue
TIOCLINUX = 0x541C  # console tricks, including paste of the selection


def build_filter() -> pyseccomp.SyscallFilter:
    """The filter described in the module docstring."""
    f = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    eperm = pyseccomp.ERRNO(errno.EPERM)
    for names, action in ((DENIED, eperm), (ABSENT, pyseccomp.ERRNO(errno.ENOSYS))):
        for name in names:
            # Calls unknown here are unknown to older kernels too.
            if (number := syscall_number(name)) >= 0:
                f.add_rule(action, number)
    no_family = pyseccomp.ERRNO(errno.EAFNOSUPPORT)
    for name in ("socket", "socketpair"):
        f.add_rule(no_family, name, pyseccomp.Arg(0, pyseccomp.NE, socket.AF_UNIX))
    for flag in CLONE_NEW_FLAGS:
        f.add_rule(eperm, "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, flag, flag))
    # clone3 passes its flags in memory, out of the filter's reach: ENOSYS makes glibc
    # fall back to clone(2), whose flags are checked above.
    f.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
    for request in (TIOCSTI, TIOCLINUX):
        # Compare the low 32 bits only: the kernel truncates the request to an int.
        f.add_rule(eperm, "ioctl", pyseccomp.Arg(1, pyseccomp.MASKED_EQ, 0xFFFFFFFF, request))
    return f


def export(path: Path) -> Path:
    """Compile the filter to ``path`` (atomically replaced) and return it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as fh:
        build_filter().export_bpf(fh)
    os.chmod(partial, 0o644)
    os.replace(partial, path)
    return path
