"""The command line's usage and configuration errors: exit 2, one clear line, never a traceback."""

import pytest

from tests.support.cli import run_kpopnews


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ((), "usage"),
        (("poll",), "--once"),
        (("search", "V", "--limit", "0"), "must be at least 1"),
        (("trending", "--hours", "soon"), "not a number"),
        (("frobnicate",), "invalid choice"),
        (("search", "V", "--config", "missing.toml"), "missing.toml not found"),
    ],
)
def test_usage_errors_exit_2_in_one_line(tmp_path, args, says):
    result = run_kpopnews(*args, cwd=tmp_path, inherit_env=False)
    assert result.returncode == 2, result.stderr
    assert says in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_configuration_names_the_key(tmp_path):
    (tmp_path / "config.toml").write_text("[polling]\ninterval_seconds = 0\n")
    result = run_kpopnews("poll", "--once", cwd=tmp_path, inherit_env=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["kpopnews: polling.interval_seconds must be ≥ 1, got 0.0"]


def test_a_shard_this_process_cannot_run_is_a_configuration_error(tmp_path):
    (tmp_path / "config.toml").write_text("[discord]\nshard_count = 2\nshard_ids = [0, 2]\n")
    result = run_kpopnews("run", cwd=tmp_path, inherit_env=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "kpopnews: discord.shard_ids: 2 is not a shard of 2 (0 to 1)"
    ]


def test_database_in_a_missing_folder_is_a_configuration_error(tmp_path):
    (tmp_path / "config.toml").write_text('[storage]\ndatabase = "no/such/dir/k.db"\n')
    result = run_kpopnews("search", "V", cwd=tmp_path, inherit_env=False)
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.stderr
