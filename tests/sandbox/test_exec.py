"""Running code: Python and bash, output, state between executions, output files."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from execbox.sandbox.bwrap import BwrapEngine
from execbox.sandbox.types import Box, ExecRequest
from tests.sandbox.sandbox_support import TEST_LIMITS, EngineWith, MakeBox, Run

pytestmark = pytest.mark.sandbox


async def test_python_stdout_stderr_and_return_code(box: Box, run: Run) -> None:
    result = await run(box, "import sys\nprint('hello')\nprint('oops', file=sys.stderr)\nsys.exit(3)")
    assert (result.stdout, result.stderr, result.return_code) == ("hello\n", "oops\n", 3)
    assert not result.timed_out and not result.oom_killed


async def test_python_traceback_shows_the_failing_line(box: Box, run: Run) -> None:
    result = await run(box, "x = 1\ny = x / 0\n")
    assert result.return_code == 1
    assert "y = x / 0" in result.stderr
    assert result.stderr.rstrip().endswith("ZeroDivisionError: division by zero")


async def test_bash_command(box: Box, run: Run) -> None:
    result = await run(box, "echo out; echo err >&2; pwd; whoami; exit 4", kind="bash")
    assert result.stdout == "out\n/workspace\nsandbox\n"
    assert result.stderr == "err\n"
    assert result.return_code == 4


async def test_long_bash_command(box: Box, run: Run) -> None:
    payload = "a" * 200_000
    result = await run(box, f"cat > big.txt <<'EOF'\n{payload}\nEOF\nwc -c < big.txt", kind="bash")
    assert result.stdout.strip() == str(len(payload) + 1)


async def test_signal_exit_is_128_plus_signal(box: Box, run: Run) -> None:
    result = await run(box, "kill -TERM $$", kind="bash")
    assert result.return_code == 128 + 15


async def test_runtime_python_and_environment(engine: BwrapEngine, box: Box, run: Run) -> None:
    result = await run(box, "import os, sys; print(sys.executable, os.getcwd(), os.environ['OUTPUT_DIR'])")
    assert result.stdout.split() == [f"{engine.runtime_dir}/bin/python", "/workspace", "/outputs"]


async def test_workspace_files_persist_between_executions(box: Box, run: Run) -> None:
    await run(box, "open('notes.txt', 'w').write('kept')")
    await run(box, "echo tmp-kept > /tmp/t.txt", kind="bash")
    result = await run(box, "print(open('/workspace/notes.txt').read(), open('/tmp/t.txt').read().strip())")
    assert result.stdout == "kept tmp-kept\n"


async def test_box_recovers_from_locking_itself_out(box: Box, run: Run) -> None:
    await run(box, "echo kept > f.txt; chmod 000 /workspace /tmp /outputs", kind="bash")
    result = await run(box, "cat f.txt", kind="bash")
    assert result.stdout == "kept\n"


async def test_workspace_modules_are_importable(box: Box, run: Run) -> None:
    await run(box, "open('helper.py', 'w').write('ANSWER = 42')")
    result = await run(box, "import helper; print(helper.ANSWER)")
    assert result.stdout == "42\n"


async def test_output_files_are_staged_outside_the_box(engine: BwrapEngine, box: Box, run: Run) -> None:
    result = await run(box, "import os\nopen(os.environ['OUTPUT_DIR'] + '/report.csv', 'w').write('a,b\\n1,2\\n')")
    [output] = result.files
    assert (output.filename, output.size_bytes, output.too_large) == ("report.csv", 8, False)
    assert output.staged is not None and output.staged.read_text() == "a,b\n1,2\n"
    assert output.staged.parent == engine.staging_dir
    output.staged.unlink()
    assert os.listdir(engine.staging_dir) == []  # the caller's unlink leaves nothing behind
    assert os.listdir(box.outputs) == []  # the execution's /outputs is gone from the box


async def test_output_dir_is_fresh_for_every_execution(box: Box, run: Run) -> None:
    first = await run(box, "echo 1 > $OUTPUT_DIR/one.txt", kind="bash")
    second = await run(box, "ls -A $OUTPUT_DIR | wc -l", kind="bash")
    assert [f.filename for f in first.files] == ["one.txt"]
    assert second.stdout.strip() == "0" and second.files == []
    first.files[0].staged.unlink()  # type: ignore[union-attr]


async def test_too_large_output_file_is_flagged_not_copied(box: Box, run: Run) -> None:
    size = TEST_LIMITS.output_file_bytes + 1
    code = f"open('/outputs/big.bin', 'wb').write(b'x' * {size})\nopen('/outputs/ok.txt', 'w').write('ok')"
    result = await run(box, code)
    big, ok = result.files
    assert (big.filename, big.size_bytes, big.too_large, big.staged) == ("big.bin", size, True, None)
    assert ok.filename == "ok.txt" and ok.staged is not None
    ok.staged.unlink()


async def test_output_file_count_is_capped_with_a_note(engine_with: EngineWith, make_box: MakeBox) -> None:
    capped = await engine_with(replace(TEST_LIMITS, output_files=3))
    box = await make_box(capped)
    result = await capped.execute(box, ExecRequest("bash", "cd $OUTPUT_DIR && touch e d c b a"))
    assert [f.filename for f in result.files] == ["a", "b", "c"]  # the first by name
    assert result.stderr == "[execbox: 2 more files in /outputs were not returned; at most 3 are returned per execution]"
    for output in result.files:
        output.staged.unlink()  # type: ignore[union-attr]


async def test_matplotlib_plot_to_outputs(box: Box, run: Run) -> None:
    code = (
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3], [1, 4, 9])\n"
        "plt.savefig('/outputs/plot.png')\n"
    )
    result = await run(box, code)
    assert result.return_code == 0, result.stderr
    [plot] = result.files
    assert plot.staged is not None and plot.staged.read_bytes().startswith(b"\x89PNG")
    plot.staged.unlink()


async def test_request_timeout_applies(box: Box, run: Run) -> None:
    result = await run(box, "sleep 30", kind="bash", timeout_s=0.5)
    assert result.timed_out and result.return_code != 0
    assert "timed out after 0.5 seconds" in result.stderr


async def test_request_timeout_is_capped_by_the_limit(engine_with: EngineWith, make_box: MakeBox) -> None:
    strict = await engine_with(replace(TEST_LIMITS, timeout_s=0.5))
    box = await make_box(strict)
    result = await strict.execute(box, ExecRequest("bash", "sleep 30", timeout_s=1000))
    assert result.timed_out
    assert "timed out after 0.5 seconds" in result.stderr


async def test_odd_source_text_reaches_the_interpreter(box: Box, run: Run) -> None:
    nul = await run(box, "echo a\0b", kind="bash")
    assert nul.return_code != 0 and "cannot execute binary file" in nul.stderr  # bash's own verdict
    surrogate = await run(box, "print('\ud800')")
    assert surrogate.return_code == 1 and "SyntaxError" in surrogate.stderr


async def test_every_execution_draws_fresh_random_numbers(box: Box, run: Run) -> None:
    # Forks of one interpreter share its RNG state unless each reseeds (numpy's never would).
    code = "import random, numpy\nprint(random.random(), numpy.random.rand())"
    first, second = await run(box, code), await run(box, code)
    assert first.return_code == 0 and first.stdout != second.stdout
    assert first.stdout.split()[0] != second.stdout.split()[0] and first.stdout.split()[1] != second.stdout.split()[1]
