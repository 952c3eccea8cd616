"""Escape attempts: each test names the protection it relies on and fails without it."""

from __future__ import annotations

import json
import os
import platform
import signal
import socket
import subprocess
import uuid

import pytest

from execbox.sandbox import seccomp
from execbox.sandbox.bwrap import BwrapEngine
from execbox.sandbox.cgroups import Cgroup
from execbox.sandbox.types import Box
from tests.sandbox.sandbox_support import MakeBox, Run, drained

pytestmark = pytest.mark.sandbox


def _probe_syscalls(calls: dict[str, tuple]) -> str:
    """Python that tries each raw system call and prints {name: errno or 0} as JSON."""
    numbers = {name: seccomp.syscall_number(name) for name in calls}
    return (
        "import ctypes, json, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "libc.syscall.restype = ctypes.c_long\n"
        "out = {}\n"
        f"for name, (nr, args) in {json.dumps({n: (numbers[n], a) for n, a in calls.items()})}.items():\n"
        "    args = [a.encode() if isinstance(a, str) else a for a in args]\n"
        "    args = [ctypes.c_char_p(a) if isinstance(a, bytes) else ctypes.c_long(a) for a in args]\n"
        "    ret = libc.syscall(nr, *args)\n"
        "    if ret == 0 and name == 'clone':\n"
        "        os._exit(0)  # a child: must never get here\n"
        "    out[name] = ctypes.get_errno() if ret == -1 else 0\n"
        "print(json.dumps(out))\n"
    )


async def test_runs_as_an_unprivileged_uid_that_owns_its_files(box: Box, run: Run) -> None:
    result = await run(box, "import os; print(os.getuid(), os.getgid()); open('mine.txt', 'w').write('x')")
    assert result.stdout == "1000 1000\n"
    owner = os.stat(box.workspace / "mine.txt")
    assert (owner.st_uid, owner.st_gid) == (box.uid, box.uid)


async def test_no_capabilities_no_new_privileges_seccomp_on(box: Box, run: Run) -> None:
    result = await run(box, "cat /proc/self/status", kind="bash")
    status = dict(line.split(":\t", 1) for line in result.stdout.splitlines() if ":\t" in line)
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"
    for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(status[field], 16) == 0, field


async def test_inet_sockets_are_refused(box: Box, run: Run) -> None:
    code = (
        "import errno, socket\n"
        "for family in (socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK, socket.AF_PACKET):\n"
        "    kind = socket.SOCK_RAW if family == socket.AF_PACKET else socket.SOCK_DGRAM\n"
        "    try:\n        socket.socket(family, kind)\n"
        "    except OSError as e:\n        print(errno.errorcode[e.errno])\n"
    )
    result = await run(box, code)
    assert result.stdout.split() == ["EAFNOSUPPORT"] * 4


async def test_only_loopback_interface(box: Box, run: Run) -> None:
    result = await run(box, "tail -n +3 /proc/net/dev | cut -d: -f1", kind="bash")
    assert result.stdout.split() == ["lo"]


async def test_host_loopback_server_is_unreachable(box: Box, run: Run) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        result = await run(box, f"exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected", kind="bash")
        server.settimeout(0)
        with pytest.raises(BlockingIOError):
            server.accept()
    assert "connected" not in result.stdout
    assert result.return_code != 0


async def test_host_abstract_unix_socket_is_unreachable(box: Box, run: Run) -> None:
    name = f"execbox-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind("\0" + name)
        server.listen()
        code = (
            "import errno, socket\n"
            "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
            f"try:\n    s.connect('\\0{name}')\n    print('connected')\n"
            "except OSError as e:\n    print(errno.errorcode[e.errno])\n"
        )
        result = await run(box, code)
        server.settimeout(0)
        with pytest.raises(BlockingIOError):
            server.accept()
    assert result.stdout.strip() == "ECONNREFUSED"


async def test_nested_user_namespaces_are_refused(box: Box, run: Run) -> None:
    clone_newuser = 0x10000000 | signal.SIGCHLD
    result = await run(box, _probe_syscalls({"unshare": (0x10000000,), "clone": (clone_newuser, 0, 0, 0, 0)}))
    assert json.loads(result.stdout) == {"unshare": 1, "clone": 1}  # EPERM
    shell = await run(box, "unshare --user --map-root-user id", kind="bash")
    assert shell.return_code != 0 and "uid=0" not in shell.stdout


async def test_denied_system_calls(box: Box, run: Run) -> None:
    # Arguments chosen so that each call would succeed or fail differently (ENOENT, EFAULT,
    # EINVAL...) without the filter: only the filter answers EPERM to all of them.
    calls = {
        "ptrace": (0, 0, 0, 0),  # PTRACE_TRACEME
        "mount": ("none", "/no-such-dir", "tmpfs", 0, 0),
        "unshare": (0,),
        "bpf": (9999, 0, 0),
        "keyctl": (0, -3, 0),  # KEYCTL_GET_KEYRING_ID of the session keyring
        "perf_event_open": (0, 0, -1, -1, 0),
        "io_uring_setup": (1, 0),
        "modify_ldt": (0, 0, 0),  # read 0 bytes of the LDT: 0
        "vmsplice": (-1, 0, 0, 0),  # EBADF
        "memfd_secret": (0,),  # a descriptor, or ENOSYS where secret memory is off
        "listmount": (0, 0, 0, 0),  # EFAULT
        "statmount": (0, 0, 0, 0),  # EFAULT
    }
    result = await run(box, _probe_syscalls(calls))
    assert json.loads(result.stdout) == {name: 1 for name in calls}


async def test_clone3_reports_not_implemented_and_fork_still_works(box: Box, run: Run) -> None:
    fork = "import subprocess; print(subprocess.run(['true']).returncode)"
    result = await run(box, _probe_syscalls({"clone3": (0, 0)}) + fork)
    first, second = result.stdout.splitlines()
    assert json.loads(first) == {"clone3": 38}  # ENOSYS: glibc falls back to clone(2)
    assert second == "0"


async def test_proc_shows_only_the_sandbox(box: Box, run: Run) -> None:
    code = (
        "import errno, json, os\n"
        "print(json.dumps(sorted(int(p) for p in os.listdir('/proc') if p.isdigit())))\n"
        f"try:\n    os.kill({os.getpid()}, 0)\nexcept OSError as e:\n    print(errno.errorcode[e.errno])\n"
    )
    result = await run(box, code)
    pids, kill = result.stdout.splitlines()
    assert max(json.loads(pids)) < 10  # a handful: bwrap's init and this process
    assert kill == "ESRCH"


async def test_host_process_of_the_same_uid_cannot_be_signalled(box: Box, run: Run) -> None:
    victim = subprocess.Popen(["sleep", "30"], user=box.uid, group=box.uid)
    try:
        code = (
            f"import errno, os\ntry:\n    os.kill({victim.pid}, 9)\n"
            "except OSError as e:\n    print(errno.errorcode[e.errno])\n"
        )
        result = await run(box, code)
        assert result.stdout.strip() == "ESRCH"
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


async def test_host_files_are_absent(engine: BwrapEngine, box: Box, make_box: MakeBox, run: Run) -> None:
    neighbour = await make_box()
    engine.write_file(neighbour, "secret.txt", b"neighbour's")
    paths = [
        "/root", "/etc/shadow", "/etc/sudoers", "/home", "/sys", "/var/lib", str(engine.state_dir),
        str(neighbour.root), str(neighbour.workspace / "secret.txt"), str(box.root),
    ]
    result = await run(box, f"import os\nprint([p for p in {paths!r} if os.path.exists(p)])")
    assert result.stdout == "[]\n"


async def test_hard_links_cannot_reach_system_or_runtime_files(engine: BwrapEngine, box: Box, run: Run) -> None:
    # The box's disk is a filesystem of its own: a link to anything outside it is EXDEV.
    sources = ["/usr/bin/true", "/etc/passwd", str(engine.runtime_dir / "bin" / "python")]
    code = (
        "import errno, os\n"
        f"for source in {sources!r}:\n"
        "    for target in ('/workspace/link', '/tmp/link', '/outputs/link'):\n"
        "        try:\n            os.link(source, target)\n            print('LINKED', source)\n"
        "        except OSError as e:\n            print(errno.errorcode[e.errno])\n"
    )
    result = await run(box, code)
    assert result.stdout.split() == ["EXDEV"] * 9


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x32 system call numbers exist on x86_64 only")
async def test_system_calls_of_another_abi_kill_the_caller(box: Box, run: Run) -> None:
    # unshare(2) by its x32 number: allowed through, it would bypass the filter's rules.
    code = (
        "import ctypes, os\n"
        "pid = os.fork()\n"
        "if pid == 0:\n    ctypes.CDLL(None).syscall(0x40000000 | 272, 0)\n    os._exit(0)\n"
        "print(os.waitpid(pid, 0)[1])\n"
    )
    result = await run(box, code)
    assert result.stdout == f"{signal.SIGSYS}\n"


async def test_mount_table_shows_no_server_data_paths(engine: BwrapEngine, box: Box, make_box: MakeBox,
                                                      run: Run) -> None:
    # Box directories are bound from their own disk and /etc is built from memory, so no
    # path of the server's data shows (only the runtime is bound from its host path).
    neighbour = await make_box()
    result = await run(box, "cat /proc/self/mountinfo /proc/self/mounts", kind="bash")
    assert " /workspace /workspace " in result.stdout
    for path in (engine.state_dir, box.root, neighbour.root):
        assert str(path) not in result.stdout


async def test_etc_holds_only_what_programs_need(box: Box, run: Run) -> None:
    result = await run(box, "ls /etc; getent passwd sandbox; hostname", kind="bash")
    lines = result.stdout.splitlines()
    assert set(lines[:-2]) <= {"alternatives", "group", "hostname", "hosts", "ld.so.cache", "localtime",
                                "nsswitch.conf", "os-release", "passwd"}
    assert lines[-2:] == ["sandbox:x:1000:1000:sandbox:/workspace:/bin/bash", "sandbox"]


async def test_system_and_runtime_are_read_only(engine: BwrapEngine, box: Box, run: Run) -> None:
    targets = ["/usr/x", "/usr/lib/x", f"{engine.runtime_dir}/x", f"{engine.runtime_dir}/bin/python",
               "/etc/passwd", "/x", "/run/x", "/run/execbox/main.py", "/proc/sys/kernel/hostname"]
    code = (
        "import errno\n"
        f"for path in {targets!r}:\n"
        "    try:\n        open(path, 'a').close()\n        print('WROTE', path)\n"
        "    except OSError as e:\n        print(errno.errorcode[e.errno])\n"
    )
    result = await run(box, code)
    assert "WROTE" not in result.stdout
    assert set(result.stdout.split()) <= {"EROFS", "EACCES", "EPERM"}


async def test_no_server_secret_or_host_path_leaks(engine: BwrapEngine, box: Box, run: Run,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"sk-test-{uuid.uuid4().hex}"
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    monkeypatch.setenv("EXECBOX_TEST_SECRET", secret)
    code = (
        "import glob, os\n"
        "seen = [repr(dict(os.environ))]\n"
        "for path in glob.glob('/proc/[0-9]*/environ') + glob.glob('/proc/[0-9]*/cmdline'):\n"
        "    try:\n        seen.append(open(path, 'rb').read().decode(errors='replace'))\n"
        "    except OSError as e:\n        seen.append(path + ' unreadable')\n"
        "print('\\n'.join(seen))\n"
    )
    result = await run(box, code)
    assert "/proc/1/environ unreadable" not in result.stdout  # it was really checked
    for leak in (secret, "ANTHROPIC_API_KEY", "EXECBOX_", str(engine.state_dir), str(box.root), os.getcwd()):
        assert leak not in result.stdout, leak


async def test_no_file_descriptors_leak_in(box: Box, run: Run) -> None:
    result = await run(box, "ls /proc/self/fd", kind="bash")
    assert result.stdout.split() == ["0", "1", "2", "3"]  # 3: ls's own directory


async def test_killing_init_or_parent_neither_escapes_nor_hangs(box: Box, run: Run) -> None:
    result = await run(box, "kill -9 1; kill -9 $PPID; sleep 0.2; echo still-here", kind="bash", timeout_s=5)
    assert not result.timed_out and result.stdout == "still-here\n"
    assert await drained(Cgroup.for_box(box.id)) == []
    again = await run(box, "print('fine')")
    assert again.stdout == "fine\n"
