"""The sandbox's own exceptions, as the errors a client is told."""

from __future__ import annotations

from execbox.errors import Conflict, InternalError, InvalidRequest, NotFound, Overloaded, RequestTooLarge, from_sandbox
from execbox.sandbox import errors as sandbox_errors


def test_every_sandbox_exception_has_an_answer() -> None:
    kinds = [cls for cls in vars(sandbox_errors).values()
             if isinstance(cls, type) and issubclass(cls, sandbox_errors.SandboxError) and cls is not sandbox_errors.SandboxError]
    assert kinds  # the sandbox does raise its own
    for kind in kinds:
        error = from_sandbox(kind("what happened"))
        assert not isinstance(error, InternalError), kind
        assert error.message == "what happened"


def test_statuses_follow_what_went_wrong() -> None:
    assert isinstance(from_sandbox(sandbox_errors.BadPath("x")), InvalidRequest)
    assert isinstance(from_sandbox(sandbox_errors.NoSuchFile("x")), NotFound)
    assert isinstance(from_sandbox(sandbox_errors.FileBusy("x")), Conflict)
    assert isinstance(from_sandbox(sandbox_errors.FileTooLarge("x")), RequestTooLarge)
    assert isinstance(from_sandbox(sandbox_errors.HostExhausted("x")), Overloaded)
    assert from_sandbox(sandbox_errors.Unavailable("x")).status == 500
