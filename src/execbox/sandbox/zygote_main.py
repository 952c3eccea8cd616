"""The fork server ("zygote"), run by the sandbox runtime's interpreter as root.

Not imported by the server: ``sandbox/forkserver.py`` starts it as
``<runtime>/bin/python -I /proc/self/fd/N`` (this file in a memfd, so no host path shows in
a sandbox's ``/proc/1/cmdline``) with an empty environment, its control socket on fd 3.
It imports only the standard library and the runtime's libraries.

The zygote imports and warms the heavy libraries once, freezes its heap, then forks
*children* on request. Every child is pid 1 of a fresh pid namespace and prepares, still
as root, everything that does not depend on the container: new mount, network, ipc and
uts namespaces, loopback up, and a read-only root skeleton on a tmpfs. A child that has
got this far is a *spare*: it waits on its own control socket (a SOCK_SEQPACKET pair whose
other end the server holds) for the container it will serve. Then it enters that
container's sandbox, in this order:

1. join the container's cgroups (writing ``0`` to each ``cgroup.procs``);
2. bind the container's directories, write /etc/passwd, ``pivot_root`` into the
   skeleton, detach the host's tree, remount the root read-only;
3. a new cgroup namespace, the rlimits;
4. a new user namespace (the server writes its maps: uid/gid 1000 inside is the
   container's own host uid), every capability dropped, no_new_privs, the seccomp
   filter (the same BPF as the reference path);
5. a clean environment, ``/workspace`` as cwd, fresh seeds for ``random`` and numpy.

After that it runs *cells*: Python source executed in-process (one namespace per child:
a stateless execution runs one cell and exits, a *kernel* keeps its namespace for the
container's next cells) or a bash command run as a child process. Code arrives in a
memfd and output leaves through pipes the server passed with the request, so neither
ever passes through the zygote. The zygote itself only ever reads small JSON messages.

Messages (JSON objects, one per packet, file descriptors alongside):

    server -> zygote   {"op": "config"}                        fds: [the policy, JSON in a memfd]
                       {"op": "spawn", "token": T}             fds: [child's control socket]
    zygote -> server   {"op": "ready"} | {"op": "spawned", "token": T, "pid": P}
                       {"op": "exited", "pid": P, "status": S}   (a wait status)
    server -> child    {"op": "enter", ...container...}        fds: [cgroup.procs files, detached mounts]
    child  -> server   {"op": "userns"} (maps wanted) ... server -> child {"op": "mapped"}
                       {"op": "entered"} | {"op": "error", "message": M}
                       a kernel then: {"op": "restored", "restored", "failed", "restarted"}
    server -> child    {"op": "run", "kind": "python"|"bash", "filename": F, "tools": [...]}
                                                               fds: [code memfd, stdout, stderr]
    child  -> server   {"op": "tool_call", "call": N, "name", "input"} ... {"op": "waiting"}
    server -> child    {"op": "tool_result", "call": N, "content": text}
    child  -> server   {"op": "done", "rc": N}
    server -> child    {"op": "checkpoint", "path": P} -> {"op": "checkpointed", "saved", "skipped"}

A child whose control socket closes (the server went away) exits, and its pid namespace
with it.
"""

import ast
import asyncio
import ctypes
import errno
import fcntl
import gc
import importlib
import inspect
import io
import json
import linecache
import os
import pickle
import platform
import random
import resource
import select
import signal
import socket
import struct
import sys
import time
import traceback
import types

CTL_FD = 3
MAX_MESSAGE = 1 << 16

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC = 32, 4096, 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_SECCOMP, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 4, 22, 24, 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
SECCOMP_MODE_FILTER = 2
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}[platform.machine()]
SYS_CAPSET = {"x86_64": 126, "aarch64": 91}[platform.machine()]
SYS_MOVE_MOUNT, AT_FDCWD, MOVE_MOUNT_F_EMPTY_PATH = 429, -100, 0x04
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.syscall.restype = ctypes.c_long
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def _check(result, what):
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def unshare(flags):
    _check(libc.unshare(flags), "unshare")


def setns(fd, nstype):
    _check(libc.setns(fd, nstype), "setns")


def mount(source, target, fstype, flags, data=None):
    enc = (lambda s: s.encode() if isinstance(s, str) else s)
    _check(libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


def prctl(option, arg2=0, arg3=0, arg4=0, arg5=0):
    _check(libc.prctl(option, arg2, arg3, arg4, arg5), f"prctl {option}")


def pivot_root(new_root, put_old):
    _check(libc.syscall(SYS_PIVOT_ROOT, new_root.encode(), put_old.encode()), "pivot_root")


def drop_capabilities():
    """Empty the bounding, ambient, effective, permitted and inheritable sets."""
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == errno.EINVAL:
            break
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    header = struct.pack("Ii", 0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = bytes(24)  # two all-zero __user_cap_data_struct
    _check(libc.syscall(SYS_CAPSET, header, data), "capset")


def load_seccomp(bpf):
    """Install a compiled filter (an array of struct sock_filter, 8 bytes each)."""
    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = struct.pack("HxxxxxxQ", len(bpf) // 8, ctypes.addressof(buf))  # struct sock_fprog
    prog_buf = ctypes.create_string_buffer(prog, len(prog))
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog_buf))


def loopback_up():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        ifreq = struct.pack("16sh14x", b"lo", 0)
        flags = struct.unpack("16sh14x", fcntl.ioctl(sock, SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh14x", b"lo", flags | IFF_UP))


# --- messages ------------------------------------------------------------------------------


def send(sock, message, fds=()):
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def receive(sock):
    """The next message and its fds, or (None, []) once the peer has gone."""
    try:
        data, fds, _, _ = socket.recv_fds(sock, MAX_MESSAGE, 16)
    except (ConnectionResetError, OSError):
        return None, []
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    return json.loads(data), fds


# --- the zygote ----------------------------------------------------------------------------


def private_mounts(hide):
    """A mount namespace of the zygote's own (before any import starts a thread), without the
    containers' disks: every sandbox's namespace is copied from it, and then detached, so
    its cost stays the same however many containers the host has mounted since."""
    unshare(CLONE_NEWNS)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    with open("/proc/self/mountinfo") as fh:
        points = [line.split()[4] for line in fh]
    under = [p for p in points if any(p == h or p.startswith(h.rstrip("/") + "/") for h in hide)]
    for point in sorted(set(under), key=len, reverse=True):
        libc.umount2(point.encode(), MNT_DETACH)


def warm_up(modules):
    """Import the heavy libraries and run a little of each, so every fork starts warm."""
    for name in modules:
        try:
            __import__(name)
        except Exception as exc:  # a library missing from a custom runtime costs speed, not function
            print(f"zygote: cannot preload {name}: {exc}", file=sys.stderr)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np
        import pandas as pd

        frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "x"]})
        frame.sum()
        frame.describe()
        frame.groupby("b").sum()
        frame["b"].str.upper()
        np.linalg.inv(np.eye(3))
        fig = plt.figure()
        plt.plot([1, 2], [3, 4])
        fig.savefig(io.BytesIO(), format="png")
        plt.close("all")
    except Exception as exc:
        print(f"zygote: warm-up skipped: {exc}", file=sys.stderr)


def zygote():
    given = int(sys.argv[1])  # the control socket; fd 3 from here on, nothing else inherited
    if given != CTL_FD:
        os.dup2(given, CTL_FD)
    os.closerange(CTL_FD + 1, os.sysconf("SC_OPEN_MAX"))
    ctl = socket.socket(fileno=CTL_FD)
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the server is gone: so are we, and so our children
    os.chdir("/")
    message, fds = receive(ctl)  # the first message: the sandbox policy, in a memfd
    if message is None or len(fds) != 1:
        os._exit(0)
    with os.fdopen(fds[0], "rb") as fh:
        config = json.loads(fh.read())
    private_mounts(config.get("hide", ()))
    warm_up(config["preload"])
    # The code of the child stages is in this module: keep it resident and frozen too.
    gc.collect()
    gc.freeze()
    own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    exited = []

    def on_child(signum, frame):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            exited.append((pid, status))

    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, on_child)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server stops the zygote, not a terminal's ^C
    send(ctl, {"op": "ready", "pid": os.getpid()})
    while True:
        ready, _, _ = select.select([ctl, wake_r], [], [])
        if wake_r in ready:
            try:
                os.read(wake_r, 512)
            except BlockingIOError:
                pass
        try:
            while exited:
                pid, status = exited[0]
                send(ctl, {"op": "exited", "pid": pid, "status": status})
                exited.pop(0)
        except OSError:  # the server is gone
            os._exit(0)
        if ctl not in ready:
            continue
        message, fds = receive(ctl)
        if message is None:
            os._exit(0)
        if message["op"] != "spawn" or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            continue
        unshare(CLONE_NEWPID)
        pid = os.fork()
        if pid == 0:
            try:
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGCHLD, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)
                os.close(wake_r)
                os.close(wake_w)
                spare(config, fds[0])
            except BaseException as exc:  # never return into the zygote's loop
                try:
                    send(socket.socket(fileno=fds[0]), {"op": "error", "message": f"spare: {exc!r}"})
                finally:
                    os._exit(125)
            os._exit(0)
        setns(own_pidns, CLONE_NEWPID)  # later forks are not nested in this one's namespace
        os.close(fds[0])
        try:
            send(ctl, {"op": "spawned", "token": message["token"], "pid": pid})
        except OSError:
            os._exit(0)


# --- a child: spare, then sandbox ---------------------------------------------------------


def spare(config, ctl_fd):
    """Runs in the forked child (pid 1 of a new pid namespace, root): prepare, wait, serve."""
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the zygote exits when the server dies
    os.setsid()
    # Only the control socket survives: never the zygote's socket or any other fd.
    os.dup2(ctl_fd, CTL_FD, inheritable=False)
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.closerange(CTL_FD + 1, os.sysconf("SC_OPEN_MAX"))  # null included
    ctl = socket.socket(fileno=CTL_FD)
    unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)
    socket.sethostname(config["hostname"])
    loopback_up()
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    root = config["newroot"]
    build_root(config, root)
    # Into the skeleton now, before any request: the host's mount table (however many
    # containers' disks it holds) is detached here, off every execution's critical path.
    os.chdir(root)
    pivot_root(".", ".")
    libc.umount2(b".", MNT_DETACH)
    os.chdir("/")
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    message, fds = receive(ctl)
    if message is None or message.get("op") != "enter":
        os._exit(0)
    try:
        enter(config, message, fds, ctl)
    except BaseException as exc:
        send(ctl, {"op": "error", "message": f"{type(exc).__name__}: {exc}"})
        os._exit(125)
    send(ctl, {"op": "entered"})
    serve(ctl, message)


def build_root(config, root):
    """The container-independent part of the sandbox's filesystem, on a tmpfs at ``root``."""
    mount("execbox", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=4m")
    for d in config["dirs"]:
        os.makedirs(root + d, mode=0o755, exist_ok=True)
    for src, dest in config["ro_binds"]:
        os.makedirs(root + dest, exist_ok=True)
        mount(src, root + dest, None, MS_BIND | MS_REC)
        mount(None, root + dest, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    for target, link in config["symlinks"]:
        os.symlink(target, root + link)
    for path, text in config["files"].items():
        write_file(root + path, text.encode("latin-1"))
    dev = root + "/dev"
    mount("execbox-dev", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k")
    for name in config["devices"]:
        write_file(f"{dev}/{name}", b"")
        mount(f"/dev/{name}", f"{dev}/{name}", None, MS_BIND)
    for target, link in (("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"), ("/proc/self/fd/1", "stdout"),
                         ("/proc/self/fd/2", "stderr"), ("pts/ptmx", "ptmx")):
        os.symlink(target, f"{dev}/{link}")
    os.mkdir(f"{dev}/shm")
    mount("shm", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={config['shm_bytes']}")
    os.mkdir(f"{dev}/pts")
    mount("devpts", f"{dev}/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")
    mount(None, dev, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NOEXEC)
    mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for path in config["masked"]:
        target = root + path
        if os.path.isdir(target):
            mount("execbox-masked", target, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0")
        elif os.path.exists(target):
            mount("/dev/null", target, None, MS_BIND)


def write_file(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def enter(config, box, fds, ctl):
    """Move this process into the container ``box`` describes, and drop everything.

    ``fds`` are, in order: one open ``cgroup.procs`` file per cgroup to join, then one
    detached mount (``open_tree``) per entry of ``box["mounts"]``. The server opened them
    all, so no host path ever reaches this process.
    """
    joins, trees = fds[: box["cgroups"]], fds[box["cgroups"]:]
    for fd in joins:
        os.write(fd, b"0")
        os.close(fd)
    for fd, (dest, writable) in zip(trees, box["mounts"], strict=True):
        _check(libc.syscall(SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, dest.encode(), MOVE_MOUNT_F_EMPTY_PATH), f"mount {dest}")
        os.close(fd)
        mount(None, dest, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | (0 if writable else MS_RDONLY))
    unshare(CLONE_NEWCGROUP)
    for name, value in box["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (value, value))
    unshare(CLONE_NEWUSER)
    send(ctl, {"op": "userns"})
    reply, _ = receive(ctl)
    if reply is None or reply.get("op") != "mapped":
        os._exit(0)
    uid = config["uid"]  # inside the user namespace: the server mapped it to the container's uid
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)
    drop_capabilities()
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # changing uid cleared it
    prctl(PR_SET_DUMPABLE, 1)  # setuid made /proc/self root's; the sandbox's own tools need it
    load_seccomp(bytes.fromhex(config["seccomp_hex"]))
    os.chdir(config["workdir"])
    os.environ.clear()
    os.environ.update(config["env"])
    reseed()


def reseed():
    """Fresh randomness for this process: the zygote's state is shared by every fork."""
    random.seed(os.urandom(32))
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        numpy.random.seed(int.from_bytes(os.urandom(4), "little"))


# --- cells ----------------------------------------------------------------------------------


class Session:
    """One interpreter's user namespace (``__main__``), kept across cells in a kernel."""

    def __init__(self, argv0):
        self.module = types.ModuleType("__main__")
        self.module.__dict__["__builtins__"] = __builtins__
        sys.modules["__main__"] = self.module
        sys.argv = [argv0]
        sys.path[0:0] = [os.getcwd()]

    def run(self, source, filename, tools=(), bridge=None):
        text = source if isinstance(source, str) else source.decode("utf-8", errors="replace")
        linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
        namespace = self.module.__dict__
        namespace["__file__"] = filename
        for name in tools:
            namespace[tool_identifier(name)] = bridge.function(name)
        try:
            try:
                code = compile(source, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
                if code.co_flags & inspect.CO_COROUTINE:
                    asyncio.run(eval(code, namespace))
                else:
                    exec(code, namespace)
                return 0
            except SystemExit as exc:
                return exit_code(exc.code)
            except BaseException as exc:
                tb = exc.__traceback__
                while tb is not None and tb.tb_frame.f_code.co_filename != filename:
                    tb = tb.tb_next  # our own frames are not the user's business
                traceback.print_exception(type(exc), exc, tb if tb is not None else exc.__traceback__)
                return 1
        finally:
            flush()


def tool_identifier(name):
    """The Python name a client tool is called by in the code (invalid characters become _)."""
    ident = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return "_" + ident if not ident or ident[0].isdigit() else ident




class ToolBridge:
    """Client tools as async functions: a call goes to the server as ``tool_call``; once
    every task of the cell's event loop waits, ``waiting`` tells the server to hand the calls
    to the client; ``tool_result`` messages (read by the loop from the control socket)
    resolve them. The awaited value is the result's text."""

    def __init__(self, ctl):
        self.ctl = ctl
        self.wait_s = 270.0  # how long code waits for a client's tool result (the documented wait)
        self.ids = 0
        self.pending = {}
        self.flushing = False
        self.loops = set()

    def function(self, name):
        async def call_tool(tool_input=None, /, **fields):
            if tool_input is None:
                tool_input = fields
            elif fields or not isinstance(tool_input, dict):
                raise TypeError(f"{tool_identifier(name)}() takes one dict, the tool's input")
            return await self.call(name, tool_input)

        call_tool.__name__ = call_tool.__qualname__ = tool_identifier(name)
        return call_tool

    async def call(self, name, tool_input):
        loop = asyncio.get_running_loop()
        if loop not in self.loops:
            loop.add_reader(CTL_FD, self.on_message)
            self.loops.add(loop)
        self.ids += 1
        call = self.ids
        future = self.pending[call] = loop.create_future()
        send(self.ctl, {"op": "tool_call", "call": call, "name": name, "input": tool_input})
        if not self.flushing:  # after every task that is ready now has run (and made its calls)
            self.flushing = True
            loop.call_soon(self.flush)
        try:
            return await asyncio.wait_for(future, self.wait_s)
        except asyncio.TimeoutError:
            raise TimeoutError(
                f"Calling tool [{name!r}] timed out (no response after {self.wait_s:g}s)."
            ) from None
        finally:
            self.pending.pop(call, None)

    def flush(self):
        self.flushing = False
        send(self.ctl, {"op": "waiting"})

    def on_message(self):
        message, fds = receive(self.ctl)
        for fd in fds:
            os.close(fd)
        if message is None:
            os._exit(0)
        if message.get("op") == "tool_result":
            future = self.pending.get(message.get("call"))
            if future is not None and not future.done():
                future.set_result(str(message.get("content", "")))

    def detach(self):
        for loop in self.loops:
            if not loop.is_closed():
                loop.remove_reader(CTL_FD)
        self.loops.clear()


def exit_code(code):
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        print(code, file=sys.stderr)
    except Exception:
        pass
    return 1


def flush():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def attach_output(out_fd, err_fd):
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    os.close(out_fd)
    os.close(err_fd)
    streams = []
    for fd in (1, 2):
        raw = io.FileIO(fd, "w", closefd=False)
        streams.append(io.TextIOWrapper(raw, encoding="utf-8", errors="backslashreplace", write_through=True))
    sys.stdout, sys.stderr = streams
    sys.__stdout__, sys.__stderr__ = streams


def detach_output():
    flush()
    null = os.open("/dev/null", os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)
    os.close(null)


def read_code(fd):
    """The code's bytes from its memfd: text if it is UTF-8 (else the bytes, and Python's
    compile() reports the bad encoding as a SyntaxError, as the interpreter would)."""
    with os.fdopen(fd, "rb", closefd=False) as fh:
        data = fh.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


SCRIPT_FD = 10  # a long bash command is read by bash from its memfd, here


def run_bash(command, code_fd):
    """bash as a child process (the session stays pid 1); its exit status. Commands too long
    for one argument (or with NUL bytes) are read by bash from the code's memfd."""
    if len(command) < 65536 and "\0" not in command:
        args = ["bash", "-c", command]
    else:
        os.dup2(code_fd, SCRIPT_FD)  # inheritable: bash opens /dev/fd/10 from the start
        args = ["bash", f"/dev/fd/{SCRIPT_FD}"]
    try:
        pid = os.posix_spawn("/usr/bin/bash", args, dict(os.environ))
        _, status = os.waitpid(pid, 0)
    finally:
        if args[1] != "-c":
            os.close(SCRIPT_FD)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def reap():
    """Collect exited children without waiting (as pid 1, every orphan is ours)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def serve(ctl, box):
    session = Session(box["argv0"])
    bridge = ToolBridge(ctl)
    kernel = box["mode"] == "kernel"
    if kernel:
        send(ctl, dict(op="restored", **restore(session, box["restore"])))
    while True:
        message, fds = receive(ctl)
        if message is None:
            os._exit(0)
        op = message.get("op")
        if op == "run" and len(fds) == 3:
            reap()  # what the last cell's kill left as zombies (pid 1 inherits orphans)
            for fd in fds:
                os.set_inheritable(fd, False)  # nothing of the protocol reaches the code's children
            source = read_code(fds[0])
            attach_output(fds[1], fds[2])
            try:
                if message.get("kind") == "bash":
                    command = source if isinstance(source, str) else source.decode("utf-8", errors="surrogateescape")
                    rc = run_bash(command, fds[0])
                else:
                    bridge.wait_s = float(message.get("tool_wait_s", bridge.wait_s))
                    rc = session.run(source, message["filename"], message.get("tools", ()), bridge)
                    bridge.detach()
            except Exception as exc:  # ours, not the code's (session.run reports those)
                print(f"execbox: the sandbox could not run the code: {exc}", file=sys.stderr)
                rc = 125
            os.close(fds[0])
            # Nothing a cell started outlives it: everything else in this pid namespace
            # dies now (pid 1, this process, is never signalled by -1). A kernel keeps its
            # interpreter; a one-shot child exits right after answering.
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                pass
            reap()
            detach_output()
            send(ctl, {"op": "done", "rc": rc})
            if not kernel:
                ctl.shutdown(socket.SHUT_RDWR)
                os._exit(0)
        elif op == "tool_result":
            pass  # for a call its code stopped waiting for (it timed out): dropped
        elif op == "checkpoint":
            send(ctl, dict(op="checkpointed", **checkpoint(session, message["path"])))
        else:
            for fd in fds:
                os.close(fd)
            send(ctl, {"op": "error", "message": f"unexpected request {op!r}"})


# --- checkpoints (inside the sandbox, as the sandbox user) ----------------------------------

SKIPPED_TYPES = ("module",)
# Present while a kernel runs and removed by a checkpoint: found by the next kernel of the
# container without a checkpoint, it means the last one died and its state is gone.
MARKER = "/tmp/.execbox/session-live"


def checkpoint(session, path):
    """Save every picklable user variable to ``path``; names that cannot be saved are listed."""
    import cloudpickle

    saved, skipped, blobs = [], [], {}
    for name, value in list(session.module.__dict__.items()):
        if name.startswith("__") or name in ("In", "Out"):
            continue
        if type(value).__name__ in SKIPPED_TYPES:
            blobs[name] = ("module", value.__name__)
            saved.append(name)
            continue
        try:
            blobs[name] = ("value", cloudpickle.dumps(value))
            saved.append(name)
        except Exception:
            skipped.append(name)
    partial = path + ".partial"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(partial, "wb") as fh:
        pickle.dump({"version": 1, "blobs": blobs, "skipped": skipped, "saved_at": time.time()}, fh)
    os.replace(partial, path)
    try:
        os.unlink(MARKER)
    except FileNotFoundError:
        pass
    return {"saved": saved, "skipped": skipped}


def restore(session, path):
    """Load a checkpoint written by ``checkpoint`` (consuming it), and say what could not
    be restored and whether an earlier kernel died without one."""
    restarted = os.path.exists(MARKER) and not os.path.exists(path)
    restored, failed = [], []
    try:
        with open(path, "rb") as fh:
            state = pickle.load(fh)
        failed += list(state.get("skipped", []))
        for name, (kind, blob) in state["blobs"].items():
            try:
                value = importlib.import_module(blob) if kind == "module" else pickle.loads(blob)
                session.module.__dict__[name] = value
                restored.append(name)
            except Exception:
                failed.append(name)
    except FileNotFoundError:
        pass
    except Exception as exc:  # a damaged or crafted file only ever affects this container
        failed.append(f"<checkpoint unreadable: {type(exc).__name__}>")
    for stale in (path, MARKER):
        try:
            os.unlink(stale)
        except OSError:
            pass
    try:
        os.makedirs(os.path.dirname(MARKER), exist_ok=True)
        write_file(MARKER, b"")
    except OSError:
        pass  # a full or read-only disk: the kernel still runs
    return {"restored": restored, "failed": failed, "restarted": restarted}


if __name__ == "__main__":
    zygote()
