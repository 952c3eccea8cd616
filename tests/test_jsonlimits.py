import json

from execbox.jsonlimits import json_values, upper_bound


def test_values_are_counted_outside_strings_and_bounded_above() -> None:
    body = json.dumps({"a": [1, 2, {"b": 'x,y:[z"'}], "c": "q\\\"r,"}).encode()
    assert 7 <= json_values(body) <= 2 * 7  # 7 values; members count twice at most
    assert json_values(body) <= upper_bound(body)
    assert json_values(b"[" + b",".join([b"0"] * 1000) + b"]") == 1001
    assert json_values(json.dumps({"text": "," * 10_000}).encode()) == 2  # a long string is one value
