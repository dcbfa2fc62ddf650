"""Progress off a terminal (plain lines now and then) and atomic JSON results."""

import json

import pytest

from mbrl_sam.progress import INTERVAL_VARIABLE, bar, write_json


def test_off_a_terminal_progress_is_whole_lines_at_the_interval(capsys, monkeypatch):
    monkeypatch.setenv(INTERVAL_VARIABLE, "0")  # a line at every update
    with bar(4, "eval", "step") as steps:
        for i in range(4):
            steps.set_postfix(episode=f"{i // 2 + 1}/2", refresh=False)
            steps.update()
    err = capsys.readouterr().err
    assert "\r" not in err  # no redraws in a log file
    lines = err.splitlines()
    assert lines[0].startswith("eval:   0%") and "0/4" in lines[0]
    assert any("2/4" in line and "episode=1/2" in line for line in lines)
    assert "4/4" in lines[-1] and "episode=2/2" in lines[-1]

    # At the default interval (a minute) a short stretch shows only where it starts and ends.
    monkeypatch.delenv(INTERVAL_VARIABLE)
    with bar(1000, "value gap", "step") as steps:
        for _ in range(1000):
            steps.update()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and "0/1000" in lines[0] and "1000/1000" in lines[1]

    with bar(3, "off", enabled=False) as steps:
        steps.update(3)
    assert capsys.readouterr().err == ""


def test_json_is_replaced_whole_or_not_at_all(tmp_path):
    path = tmp_path / "measure" / "step_5.json"
    write_json(path, {"flat": {"a": 1.0}})
    with pytest.raises(TypeError):
        write_json(path, {"flat": {"a": object()}})  # fails halfway through serialising
    assert json.loads(path.read_text()) == {"flat": {"a": 1.0}}
    assert [p.name for p in path.parent.iterdir()] == ["step_5.json"]  # no temp file left
