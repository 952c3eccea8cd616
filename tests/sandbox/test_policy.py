"""The arithmetic of the sandbox policy's host-wide bounds (no sandbox needed)."""

from __future__ import annotations

from execbox.sandbox import policy
from execbox.sandbox.types import Limits


def test_open_files_per_process_times_processes_stay_within_the_container_bound() -> None:
    for pids, nofile, open_files in ((256, 1024, 32768), (64, 128, 2048), (1000, 1024, 500), (7, 1024, 100)):
        limits = Limits(pids=pids, nofile=nofile, open_files=open_files)
        per_process = policy.nofile_per_process(limits)
        assert per_process <= nofile
        assert per_process * pids <= max(open_files, pids)  # at least one file per process
    assert policy.nofile_per_process(Limits(pids=256, nofile=1024, open_files=32768)) == 128


def test_containers_with_processes_fit_in_half_the_host_file_table() -> None:
    limits = Limits(pids=256, nofile=1024, open_files=32768)
    assert policy.fit_file_table(limits, 32, file_max=2_466_183) == limits  # 32 x 32,768 fits
    fitted = policy.fit_file_table(limits, 96, file_max=2_466_183)  # 32 running + 64 kernels
    assert fitted.open_files * 96 <= 2_466_183 // 2 and policy.nofile_per_process(fitted) == 50
    tiny = policy.fit_file_table(limits, 96, file_max=100_000)  # never below 16 per process
    assert policy.nofile_per_process(tiny) == policy.MIN_NOFILE
