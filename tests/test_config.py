from pathlib import Path

import pytest

from bot.config import DEFAULT_SOURCES, ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parent.parent


def test_example_config_parses_and_matches_the_defaults():
    config = load_config(ROOT / "config.example.toml", env={})
    assert config.polling.interval_seconds == 300
    assert config.storage.database == "kpopnews.db"
    assert [(s.name, s.url) for s in config.sources] == [(s.name, s.url) for s in DEFAULT_SOURCES]
    assert config.sources[0].color == 0xE4007F


def test_no_file_gives_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(None, env={})
    assert config.sources == DEFAULT_SOURCES
    assert config.discord.token == ""
    assert config.path is None


def test_config_toml_in_the_working_folder_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.toml").write_text('[storage]\ndatabase = "x.db"\n')
    assert load_config(None, env={}).storage.database == "x.db"


def test_env_token_wins(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[discord]\ntoken = "from-file"\n')
    assert load_config(path, env={}).discord.token == "from-file"
    assert load_config(path, env={"DISCORD_TOKEN": "from-env"}).discord.token == "from-env"


def test_interval_of_one_second_is_honoured():
    assert parse_config({"polling": {"interval_seconds": 1}}).polling.interval_seconds == 1.0


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"polling": {"interval_seconds": 0}}, "polling.interval_seconds"),
        ({"polling": {"interval_seconds": "5"}}, "polling.interval_seconds must be a number"),
        ({"polling": {"bogus": 1}}, "unknown key polling.bogus"),
        ({"nonsense": {}}, "unknown configuration key 'nonsense'"),
        ({"discord": {"api_base": "127.0.0.1:80"}}, "discord.api_base must be a URL"),
        ({"sources": [{"name": "x"}]}, "sources[0].url is required"),
        ({"sources": {"name": "x"}}, "sources must be an array"),
        ({"sources": [{"url": "https://a/", "color": "#zz"}]}, "sources[0].color"),
        ({"sources": [{"url": "https://a/"}, {"url": "https://a/"}]}, "listed twice"),
        ({"storage": {"database": ""}}, "storage.database"),
        ({"storage": {"keep_text_days": -1}}, "storage.keep_text_days must be ≥ 0"),
        ({"storage": {"keep_text_days": "30"}}, "storage.keep_text_days must be a number"),
        ({"polling": {"fetch_article_pages": 1}}, "true or false"),
        ({"polling": {"max_failures": True}}, "polling.max_failures must be a whole number"),
    ],
)
def test_bad_values_name_the_key(raw, says):
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    assert says in str(caught.value)


def test_bad_toml_is_one_line(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[discord\ntoken=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, env={})


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", env={})


def test_keep_text_days_defaults_to_30_and_takes_any_number_from_0():
    assert parse_config({}).storage.keep_text_days == 30.0
    assert parse_config({"storage": {"keep_text_days": 0}}).storage.keep_text_days == 0.0  # for ever
    assert parse_config({"storage": {"keep_text_days": 7.5}}).storage.keep_text_days == 7.5


def test_empty_sources_list_means_none():
    assert parse_config({"sources": []}).sources == ()


def test_storage_url_chooses_postgresql_and_the_environment_wins(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[storage]\nurl = "postgresql://bot:s3cret@db.internal:5432/kpopnews"\n')
    storage = load_config(path, env={}).storage
    assert storage.target == "postgresql://bot:s3cret@db.internal:5432/kpopnews"
    assert "s3cret" not in repr(storage)
    env = {"KPOPNEWS_DATABASE_URL": "postgresql://other@db2/kpopnews"}
    assert load_config(path, env=env).storage.target == "postgresql://other@db2/kpopnews"
    assert load_config(None, env={}).storage.target == "kpopnews.db"  # no url: the SQLite file


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://bot:s3cret@db/kpopnews", "must be a postgresql:// URL"),
        ("postgresql://bot:s3cret@db:port/kpopnews", "is not a valid URL"),
        ("postgresql://bot:s3cret@db:5432", "names no database"),
    ],
)
def test_a_bad_database_url_is_one_line_without_the_password(tmp_path, url, says):
    with pytest.raises(ConfigError, match=says) as in_file:
        parse_config({"storage": {"url": url}})
    assert "storage.url" in str(in_file.value) and "s3cret" not in str(in_file.value)
    with pytest.raises(ConfigError, match=says) as in_env:
        load_config(None, env={"KPOPNEWS_DATABASE_URL": url})
    assert "KPOPNEWS_DATABASE_URL" in str(in_env.value) and "s3cret" not in str(in_env.value)


def test_shards_of_the_whole_bot_and_of_this_process():
    config = parse_config({"discord": {"shard_count": 6, "shard_ids": [2, 3]}})
    assert (config.discord.shard_count, config.discord.shard_ids) == (6, (2, 3))
    assert (parse_config({}).discord.shard_count, parse_config({}).discord.shard_ids) == (0, ())


@pytest.mark.parametrize(
    ("discord", "says"),
    [
        ({"shard_count": -1}, "discord.shard_count must be ≥ 0"),
        ({"shard_ids": [0]}, "discord.shard_ids needs discord.shard_count"),
        ({"shard_count": 2, "shard_ids": [2]}, "discord.shard_ids: 2 is not a shard of 2 (0 to 1)"),
        ({"shard_count": 2, "shard_ids": [1, 1]}, "discord.shard_ids lists a shard twice: [1, 1]"),
        ({"shard_count": 2, "shard_ids": ["0"]}, "discord.shard_ids: '0' is not a shard of 2"),
        ({"shard_count": 2, "shard_ids": 0}, "discord.shard_ids must be an array, got 0"),
        ({"shard_count": "2"}, "discord.shard_count must be a whole number"),
    ],
)
def test_bad_shards_are_one_line_naming_the_key(discord, says):
    with pytest.raises(ConfigError) as raised:
        parse_config({"discord": discord})
    assert str(raised.value).startswith(says) and "\n" not in str(raised.value)
