"""Reading conversations: open calls, current uploads, and what the model is shown."""

from __future__ import annotations

from execbox.conversation.history import current_uploads, model_view, open_calls, with_response

CALL = {"type": "server_tool_use", "id": "srvtoolu_1", "name": "bash_code_execution", "input": {"command": "ls"}}
RESULT = {
    "type": "bash_code_execution_tool_result",
    "tool_use_id": "srvtoolu_1",
    "content": {"type": "bash_code_execution_result", "stdout": "", "stderr": "", "return_code": 0, "content": []},
}
CLIENT_CALL = {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}}
CLIENT_REPLY = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}


def test_calls_without_results_in_the_current_turn_are_open() -> None:
    messages = [{"role": "user", "content": "go"}, {"role": "assistant", "content": [CALL, CLIENT_CALL]}]
    assert open_calls(messages) == [CALL, CLIENT_CALL]
    answered = [*messages, {"role": "user", "content": [CLIENT_REPLY]}]
    assert open_calls(answered) == [CALL]
    assert open_calls(with_response(answered, [RESULT])) == []


def test_results_of_server_tools_execbox_does_not_run_answer_their_calls() -> None:
    search = {"type": "server_tool_use", "id": "srvtoolu_2", "name": "web_search", "input": {"query": "q"}}
    found = {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_2", "content": []}
    messages = [{"role": "user", "content": "go"}, {"role": "assistant", "content": [search, found, CALL]}]
    assert open_calls(messages) == [CALL]


def test_a_new_prompt_abandons_open_calls() -> None:
    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [CALL]},
        {"role": "user", "content": "never mind"},
    ]
    assert open_calls(messages) == []
    # The abandoned call is dropped; the two user messages left side by side merge.
    assert model_view(messages) == [
        {"role": "user", "content": [{"type": "text", "text": "go"}, {"type": "text", "text": "never mind"}]},
    ]


def test_results_move_back_to_their_calls() -> None:
    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [CLIENT_CALL, CALL]},
        {"role": "user", "content": [CLIENT_REPLY]},
        {"role": "assistant", "content": [RESULT, {"type": "text", "text": "done"}]},
    ]
    assert model_view(messages) == [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [CLIENT_CALL, CALL, RESULT]},
        {"role": "user", "content": [CLIENT_REPLY]},
        {"role": "assistant", "content": [{"type": "text", "text": "done"}]},
    ]


def test_a_continuation_extends_the_trailing_assistant_message() -> None:
    messages = [{"role": "user", "content": "go"}, {"role": "assistant", "content": [CALL]}]
    assert with_response(messages, [RESULT]) == [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [CALL, RESULT]},
    ]


def test_only_the_last_user_message_uploads() -> None:
    upload = {"type": "container_upload", "file_id": "file_1"}
    assert current_uploads([{"role": "user", "content": [{"type": "text", "text": "hi"}, upload]}]) == ["file_1"]
    earlier = [{"role": "user", "content": [upload]}, {"role": "assistant", "content": "ok"}]
    assert current_uploads(earlier) == []
    assert current_uploads([*earlier, {"role": "user", "content": "again"}]) == []
