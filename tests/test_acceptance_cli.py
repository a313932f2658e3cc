"""Acceptance tests of the command line, black-box: only what ../shared/docs/contract.md promises.

Every check runs the installed `kpopnews` program (or `python -m bot`) as a child process, with configuration
files in tmp_path and feeds served over loopback by tests/support/feed_server.py (run in a thread of its own so
that plain blocking subprocess calls can talk to it). Nothing here imports the bot's modules: exit status,
stdout, stderr and the JSON shapes of the contract are all that is looked at.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import REPO_ROOT, run_kpopnews
from tests.support.feed_server import FeedServer, rss

SEED = Path("/work/shared/fixtures/koreaboo-style-v-iu.xml")
if not SEED.exists():  # a clean clone elsewhere: the project's copy of the same fixture
    SEED = REPO_ROOT / "tests" / "fixtures" / "feeds" / "koreaboo-style-v-iu.xml"
SEED_DATE = "Tue, 30 Jan 2024 02:58:11 +0000"
V_IU_LINK = "https://www.koreaboo.com/news/bts-v-viral-behind-scenes-iu-love-wins-all-romantic/"

STORY_KEYS = {"title", "url", "source", "published", "image", "summary", "artists", "quotes", "embed"}
CLUSTER_KEYS = {"rank", "score", "title", "url", "artists", "outlets", "first_seen", "stories"}
PLATFORMS = {"twitter", "x", "bluesky", "tiktok", "instagram", "threads", "reddit"}


# --- running the program -----------------------------------------------------------------------------------


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = [line for line in text.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]


def stderr_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.strip()]


def assert_iso_with_offset(value: Any) -> datetime:
    assert isinstance(value, str), value
    moment = datetime.fromisoformat(value)
    assert moment.utcoffset() is not None, f"{value} has no UTC offset"
    return moment


def assert_artist(artist: Any) -> None:
    assert isinstance(artist, dict) and set(artist) == {"id", "name", "group"}, artist
    assert isinstance(artist["id"], str) and artist["id"]
    assert isinstance(artist["name"], str) and artist["name"]
    assert artist["group"] is None or isinstance(artist["group"], str)


def assert_embed_within_limits(embed: dict[str, Any]) -> None:
    total = 0
    assert len(embed.get("title", "")) <= 256
    assert len(embed.get("description", "")) <= 4096
    total += len(embed.get("title", "")) + len(embed.get("description", ""))
    fields = embed.get("fields", [])
    assert len(fields) <= 25
    for field in fields:
        assert 1 <= len(field["name"]) <= 256 and 1 <= len(field["value"]) <= 1024, field
        total += len(field["name"]) + len(field["value"])
    if "footer" in embed:
        assert len(embed["footer"].get("text", "")) <= 2048
        total += len(embed["footer"].get("text", ""))
    if "author" in embed:
        assert len(embed["author"].get("name", "")) <= 256
        total += len(embed["author"].get("name", ""))
    assert total <= 6000
    for key in ("url",):
        if key in embed:
            assert embed[key].startswith(("http://", "https://"))
    if "image" in embed:
        assert embed["image"]["url"].startswith(("http://", "https://"))
    if "timestamp" in embed:
        assert_iso_with_offset(embed["timestamp"])


def assert_story_shape(story: dict[str, Any]) -> None:
    assert set(story) == STORY_KEYS, set(story) ^ STORY_KEYS
    assert isinstance(story["title"], str) and story["title"].strip()
    assert story["url"].startswith(("http://", "https://"))
    assert isinstance(story["source"], str) and story["source"]
    if story["published"] is not None:
        assert_iso_with_offset(story["published"])
    assert story["image"] is None or story["image"].startswith(("http://", "https://"))
    assert isinstance(story["summary"], str)
    assert not re.search(r"</?[a-zA-Z][^>]*>", story["summary"]), story["summary"]
    assert isinstance(story["artists"], list)
    for artist in story["artists"]:
        assert_artist(artist)
    assert isinstance(story["quotes"], list) and len(story["quotes"]) <= 3
    for quote in story["quotes"]:
        assert set(quote) == {"text", "author", "handle", "platform", "url"}, quote
        assert quote["platform"] in PLATFORMS, quote
        assert isinstance(quote["text"], str) and quote["text"].strip()
        assert "t.co/" not in quote["text"] and "pic.twitter.com" not in quote["text"]
        assert quote["url"].startswith(("http://", "https://"))
    assert isinstance(story["embed"], dict)
    assert_embed_within_limits(story["embed"])


# --- feeds with today's dates --------------------------------------------------------------------------------


def rfc822(moment: datetime) -> str:
    return email.utils.format_datetime(moment)


NOW = datetime.now(UTC)


def koreaboo_feed(published: datetime, extra: list[dict[str, str]] = ()) -> bytes:
    xml = SEED.read_text(encoding="utf-8").replace(SEED_DATE, rfc822(published))
    if extra:
        more = rss(list(extra)).decode()
        xml = xml.replace(
            "</channel>", more[more.index("<item>") : more.rindex("</item>") + 7] + "</channel>"
        )
    return xml.encode("utf-8")


def item(slug: str, title: str, description: str, published: datetime, site: str) -> dict[str, str]:
    return {
        "title": title,
        "link": f"{site}/news/{slug}/",
        "guid": f"{site}/?p={slug}",
        "pubDate": rfc822(published),
        "description": description,
        "content": f"<p>{description}</p><p>{description}</p>",
    }


SEVENTEEN = item(
    "seventeen-tour",
    "SEVENTEEN Announce Their 2025 World Tour With 20 New Dates",
    "SEVENTEEN will tour the world again in 2025, with twenty new dates across Asia, Europe and America.",
    NOW - timedelta(hours=3),
    "https://www.koreaboo.com",
)
SOOMPI_V_IU = item(
    "1638512wpp",
    "IU And BTS’s V Reveal Behind-The-Scenes Of “Love Wins All” MV Filming: V Sings To IU",
    "BTS’s V is going viral for a behind-the-scenes clip with IU from the “Love Wins All” MV, where V was "
    "really singing to IU in the wedding scene rather than lip-syncing.",
    NOW - timedelta(hours=2),
    "https://www.soompi.com",
)
SOOMPI_KARINA = item(
    "1638530wpp",
    "aespa’s Karina Wins Hearts With Heartfelt Speech At Fan Meeting",
    "aespa’s Karina moved fans to tears with a heartfelt speech at the group’s fan meeting in Seoul.",
    NOW - timedelta(hours=4),
    "https://www.soompi.com",
)
SCMP_V_IU = item(
    "3250190",
    "BTS’ V and IU’s Love Wins All: behind-the-scenes clip shows V really singing to IU",
    "A behind-the-scenes clip of IU’s Love Wins All music video shows BTS’ V was really singing to IU in the "
    "wedding scene, and fans are going viral over it.",
    NOW - timedelta(hours=1),
    "https://www.scmp.com",
)
OLD_TWICE = item(
    "twice-old",
    "TWICE Announce Their Comeback Date For Spring",
    "TWICE will return with a new mini album in the spring, JYP Entertainment announced.",
    NOW - timedelta(hours=30),
    "https://www.scmp.com",
)


class ThreadedFeedServer:
    """FeedServer on its own event loop in a thread: blocking subprocess calls can fetch from it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = FeedServer()

    def __enter__(self) -> FeedServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self.server

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def feeds() -> Iterator[FeedServer]:
    with ThreadedFeedServer() as server:
        server.set_feed("koreaboo", koreaboo_feed(NOW - timedelta(hours=2, minutes=30), [SEVENTEEN]))
        server.set_feed(
            "soompi", rss([SOOMPI_V_IU, SOOMPI_KARINA], title="Soompi", link="https://www.soompi.com/")
        )
        server.set_feed("scmp", rss([SCMP_V_IU, OLD_TWICE], title="SCMP K-pop", link="https://www.scmp.com/"))
        yield server


def write_config(folder: Path, feeds: FeedServer, *, extra: str = "", names: tuple[str, ...] = ()) -> Path:
    names = names or ("koreaboo", "soompi", "scmp")
    titles = {"koreaboo": "Koreaboo", "soompi": "Soompi", "scmp": "SCMP"}
    text = '[storage]\ndatabase = "news.db"\n\n[polling]\ninterval_seconds = 1\n' + extra
    for name in names:
        text += f'\n[[sources]]\nname = "{titles.get(name, name)}"\nurl = "{feeds.url("/dyn/" + name)}"\n'
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def polled(tmp_path_factory: pytest.TempPathFactory, feeds: FeedServer) -> dict[str, Any]:
    """A folder whose config.toml points at the three loopback outlets, polled twice."""
    folder = tmp_path_factory.mktemp("polled")
    write_config(folder, feeds)
    first = run_kpopnews("poll", "--once", cwd=folder)
    second = run_kpopnews("poll", "--once", cwd=folder)
    return {"folder": folder, "first": first, "second": second}


# --- preview ---------------------------------------------------------------------------------------------------


def test_preview_json_of_the_seed_story_is_the_contract_shape(tmp_path: Path) -> None:
    done = run_kpopnews("preview", str(SEED), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    stories = json_lines(done.stdout)
    assert len(stories) == 1
    story = stories[0]
    assert_story_shape(story)
    assert story["url"] == V_IU_LINK
    assert story["title"].startswith("BTS’s V Is Going Viral For A Behind-The-Scenes Moment With IU")
    assert assert_iso_with_offset(story["published"]) == datetime(2024, 1, 30, 2, 58, 11, tzinfo=UTC)
    assert story["image"] and story["image"].startswith("https://image.koreaboo.com/")
    assert story["artists"][:2] == [
        {"id": "bts-v", "name": "V", "group": "BTS"},
        {"id": "iu", "name": "IU", "group": None},
    ]
    assert 1 <= len(story["quotes"]) <= 3
    daph = [q for q in story["quotes"] if q["handle"] == "babiejieun"]
    assert daph, story["quotes"]
    assert daph[0]["author"] == "daph" and daph[0]["platform"] in {"twitter", "x"}
    assert daph[0]["text"].startswith("so taehyung was really singing to iu at this scene")
    assert "/babiejieun/status/1751962233445566778" in daph[0]["url"]
    # the photo-only tweet (lea⁷, only a pic.twitter.com link) is no quote
    assert all(q["handle"] != "seokjinbit" for q in story["quotes"])
    embed = story["embed"]
    assert embed["title"] and embed["url"] == V_IU_LINK
    assert embed["image"]["url"] == story["image"]
    assert "babiejieun" in json.dumps(embed["fields"], ensure_ascii=False)
    assert "Your browser does not support video" not in story["summary"]
    assert "&#8217;" not in story["title"] and "&#8217;" not in story["summary"]


def test_preview_human_output_and_limit(tmp_path: Path, feeds: FeedServer) -> None:
    done = run_kpopnews("preview", str(SEED), cwd=tmp_path)
    assert done.returncode == 0 and "BTS’s V Is Going Viral" in done.stdout
    assert "{" not in done.stdout.splitlines()[0]

    one = run_kpopnews("preview", feeds.url("/dyn/koreaboo"), "--json", "--limit", "1", cwd=tmp_path)
    both = run_kpopnews("preview", feeds.url("/dyn/koreaboo"), "--json", cwd=tmp_path)
    assert one.returncode == 0 and both.returncode == 0, (one.stderr, both.stderr)
    assert len(json_lines(one.stdout)) == 1
    assert len(json_lines(both.stdout)) == 2
    for story in json_lines(both.stdout):
        assert_story_shape(story)
    assert not (tmp_path / "kpopnews.db").exists(), "preview writes nothing to the database"


def test_preview_of_a_url_source(tmp_path: Path, feeds: FeedServer) -> None:
    done = run_kpopnews("preview", feeds.url("/dyn/soompi"), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    stories = json_lines(done.stdout)
    assert [s["title"] for s in stories] == [SOOMPI_V_IU["title"], SOOMPI_KARINA["title"]]
    for story in stories:
        assert_story_shape(story)
    ids = {a["id"] for a in stories[0]["artists"]}
    assert {"bts-v", "iu"} <= ids
    assert "aespa-karina" in {a["id"] for a in stories[1]["artists"]}


def test_preview_missing_file_is_named_and_the_good_one_still_printed(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-feed.xml"
    done = run_kpopnews("preview", str(missing), str(SEED), "--json", cwd=tmp_path)
    assert done.returncode == 1
    stories = json_lines(done.stdout)
    assert len(stories) == 1 and stories[0]["url"] == V_IU_LINK
    errors = stderr_lines(done)
    assert len(errors) == 1 and "no-such-feed.xml" in errors[0], errors


BAD_PATHS = ["/status/404", "/status/500", "/html", "/empty", "/reset", "/loop/a", "/files/not-xml.txt"]


def test_preview_of_bad_urls_is_one_line_each_and_exit_1(tmp_path: Path, feeds: FeedServer) -> None:
    urls = [feeds.url(path) for path in BAD_PATHS]
    done = run_kpopnews("preview", *urls[:3], str(SEED), *urls[3:], "--json", cwd=tmp_path)
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert len(json_lines(done.stdout)) == 1
    errors = stderr_lines(done)
    assert len(errors) == len(urls), errors
    for url, line in zip(urls, errors, strict=True):
        assert url in line or url.split("/", 3)[3] in line, (url, line)


def test_preview_hostile_fixtures_never_trace(tmp_path: Path) -> None:
    folder = REPO_ROOT / "tests" / "fixtures" / "feeds"
    done = run_kpopnews("preview", *sorted(str(p) for p in folder.iterdir()), "--json", cwd=tmp_path)
    assert done.returncode in (0, 1)
    stories = json_lines(done.stdout)
    assert stories
    for story in stories:
        assert_story_shape(story)
        embed_text = json.dumps(story["embed"], ensure_ascii=False)
        assert "@everyone" not in embed_text and "@here" not in embed_text


def test_preview_usage_errors_exit_2(tmp_path: Path) -> None:
    for args in (["preview"], ["preview", str(SEED), "--limit", "0"], ["preview", str(SEED), "--limit", "x"]):
        done = run_kpopnews(*args, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        assert len(stderr_lines(done)) == 1, done.stderr
    assert run_kpopnews("no-such-command", cwd=tmp_path).returncode == 2


# --- poll --once -----------------------------------------------------------------------------------------------


def test_poll_once_with_no_config_in_an_empty_folder(tmp_path: Path) -> None:
    # the built-in sources are unreachable from here: each fails in a line of its own, no traceback, exit 1
    done = run_kpopnews("poll", "--once", cwd=tmp_path, timeout=90)
    assert done.returncode == 1, (done.stdout, done.stderr)
    text = done.stdout + done.stderr
    for name in ("Koreaboo", "Soompi", "NME"):
        assert name in text
    assert re.search(r"total", text, re.IGNORECASE)


def test_poll_once_stores_then_reports_not_modified(polled: dict[str, Any]) -> None:
    first, second = polled["first"], polled["second"]
    assert first.returncode == 0, first.stderr
    out = first.stdout
    for name in ("Koreaboo", "Soompi", "SCMP"):
        assert name in out
    assert re.search(r"\b6\b", out.splitlines()[-1]), out  # 2 + 2 + 2 new stories in the total line
    assert (polled["folder"] / "news.db").exists()
    assert second.returncode == 0, second.stderr
    assert second.stdout.lower().count("not modified") >= 3, second.stdout
    for done in (first, second):  # progress is for terminals: a pipe gets plain lines
        assert "\r" not in done.stdout + done.stderr and "\x1b" not in done.stdout + done.stderr
        assert len(done.stdout.strip().splitlines()) == 4, done.stdout  # one line per source and a total


def test_poll_once_with_one_bad_source_is_exit_1_and_the_rest_stored(
    tmp_path: Path, feeds: FeedServer
) -> None:
    write_config(tmp_path, feeds, names=("koreaboo", "missing"))
    done = run_kpopnews("poll", "--once", cwd=tmp_path)
    assert done.returncode == 1
    assert "missing" in done.stdout + done.stderr
    found = run_kpopnews("search", "SEVENTEEN", "--json", cwd=tmp_path)
    assert [s["title"] for s in json_lines(found.stdout)] == [SEVENTEEN["title"]]


# --- search ----------------------------------------------------------------------------------------------------


def search(polled: dict[str, Any], *query: str) -> subprocess.CompletedProcess[str]:
    done = run_kpopnews("search", *query, cwd=polled["folder"])
    assert done.returncode == 0, done.stderr
    return done


V_IU_TITLES = {
    "BTS’s V Is Going Viral For A Behind-The-Scenes Moment With IU — Making One Scene Even More Romantic",
    SOOMPI_V_IU["title"],
    SCMP_V_IU["title"],
}


V_NAMES = [
    "V",
    "Taehyung",
    "뷔",
    "Kim Taehyung",
    "kim tae-hyung",
    "taehyng",
    "v",
    "V (BTS)",
    "BTS’s V",
    "BTS V",
]


def search_all(polled: dict[str, Any], queries: list[str], *args: str) -> dict[str, Any]:
    """The same search for many queries, a few processes at once (each loads the artist index)."""
    with ThreadPoolExecutor(max_workers=3) as pool:
        done = list(pool.map(lambda q: search(polled, q, *args), queries))
    return dict(zip(queries, done, strict=True))


def test_search_by_any_name_of_v(polled: dict[str, Any]) -> None:
    for name, done in search_all(polled, V_NAMES, "--json").items():
        stories = json_lines(done.stdout)
        assert {s["title"] for s in stories} == V_IU_TITLES, name
        for story in stories:
            assert_story_shape(story)
            assert "bts-v" in {a["id"] for a in story["artists"]}
        published = [assert_iso_with_offset(s["published"]) for s in stories]
        assert published == sorted(published, reverse=True), "newest first"


def test_search_group_includes_its_members(polled: dict[str, Any]) -> None:
    for name, done in search_all(polled, ["BTS", "bts", "방탄소년단"], "--json").items():
        assert {s["title"] for s in json_lines(done.stdout)} == V_IU_TITLES, name


def test_search_falls_back_to_the_words_of_titles_and_summaries(polled: dict[str, Any]) -> None:
    stories = json_lines(search(polled, "Love Wins All", "--json").stdout)
    assert {s["title"] for s in stories} == V_IU_TITLES


def test_search_limit_and_human_output(polled: dict[str, Any]) -> None:
    assert len(json_lines(search(polled, "V", "--json", "--limit", "1").stdout)) == 1
    text = search(polled, "Taehyung").stdout
    assert SCMP_V_IU["title"] in text and not text.lstrip().startswith("{")


def test_search_v_live_is_not_bts_v(polled: dict[str, Any]) -> None:
    stories = json_lines(search(polled, "V LIVE", "--json").stdout)
    assert not {s["title"] for s in stories} & V_IU_TITLES, [s["title"] for s in stories]


ODD_QUERIES = [
    '"',
    "(*",
    'BTS" NEAR(',
    "💜 V 💜",
    "-",
    "OR NOT AND",
    "title:BTS ^",
    "\\",
    "'; DROP TABLE stories;--",
    "x" * 500,
    "V " * 250,
    "\u200b",
]


def test_search_odd_text_is_sane(polled: dict[str, Any]) -> None:
    for query, done in search_all(polled, ODD_QUERIES, "--json").items():
        for story in json_lines(done.stdout):
            assert_story_shape(story)
        assert not done.stderr.strip(), (query, done.stderr)


def test_search_empty_ish_and_unknown(polled: dict[str, Any]) -> None:
    queries = ["   ", "zzqxj", ""]
    for query, done in search_all(polled, queries).items():
        assert done.stdout.strip(), (query, "a friendly answer, not silence")
    for query, done in search_all(polled, queries, "--json").items():
        assert json_lines(done.stdout) == [], query


def test_search_with_no_database_yet(tmp_path: Path) -> None:
    done = run_kpopnews("search", "V", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json_lines(done.stdout) == []


# --- trending --------------------------------------------------------------------------------------------------


def test_trending_json_shape_and_three_outlets_first(polled: dict[str, Any]) -> None:
    done = run_kpopnews("trending", "--json", cwd=polled["folder"])
    assert done.returncode == 0, done.stderr
    clusters = json_lines(done.stdout)
    assert clusters
    for rank, cluster in enumerate(clusters, 1):
        assert set(cluster) == CLUSTER_KEYS, set(cluster) ^ CLUSTER_KEYS
        assert cluster["rank"] == rank
        assert isinstance(cluster["score"], (int, float))
        assert cluster["url"].startswith(("http://", "https://"))
        assert_iso_with_offset(cluster["first_seen"])
        for artist in cluster["artists"]:
            assert_artist(artist)
        assert isinstance(cluster["outlets"], list) and cluster["outlets"]
        for story in cluster["stories"]:
            assert set(story) >= {"title", "url", "source", "published"}, story
    scores = [c["score"] for c in clusters]
    assert scores == sorted(scores, reverse=True)
    top = clusters[0]
    assert sorted(top["outlets"]) == ["Koreaboo", "SCMP", "Soompi"]
    assert len(top["stories"]) == 3
    assert {s["title"] for s in top["stories"]} == V_IU_TITLES
    assert top["url"] in {s["url"] for s in top["stories"]}
    assert {"bts-v", "iu"} <= {a["id"] for a in top["artists"]}
    for other in clusters[1:]:
        assert len(other["outlets"]) == 1, "SEVENTEEN, Karina are single-outlet stories"


def test_trending_hours(polled: dict[str, Any]) -> None:
    wide = json_lines(run_kpopnews("trending", "--json", "--hours", "72", cwd=polled["folder"]).stdout)
    day = json_lines(run_kpopnews("trending", "--json", cwd=polled["folder"]).stdout)
    titles_wide = {s["title"] for c in wide for s in c["stories"]}
    titles_day = {s["title"] for c in day for s in c["stories"]}
    assert OLD_TWICE["title"] in titles_wide
    assert OLD_TWICE["title"] not in titles_day, "published 30 h ago: outside the default 24 h"
    done = run_kpopnews("trending", "--hours", "24", cwd=polled["folder"])
    assert done.returncode == 0 and "Love Wins All" in done.stdout
    bad = run_kpopnews("trending", "--hours", "soon", cwd=polled["folder"])
    assert bad.returncode == 2 and len(stderr_lines(bad)) == 1


# --- configuration ---------------------------------------------------------------------------------------------


def test_every_contract_and_documented_key_is_accepted(tmp_path: Path, feeds: FeedServer) -> None:
    example = (REPO_ROOT / "config.example.toml").read_text(encoding="utf-8")
    example = example[: example.index("[[sources]]")]  # the operator's sources: ours, on loopback
    example = example.replace('database = "kpopnews.db"', 'database = "every-key.db"')
    example += f'\n[[sources]]\nname = "Soompi"\nurl = "{feeds.url("/dyn/soompi")}"\ncolor = "#00A0E9"\n'
    (tmp_path / "config.toml").write_text(example, encoding="utf-8")
    done = run_kpopnews("poll", "--once", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "every-key.db").exists()

    contract = (
        '[discord]\ntoken = ""\napi_base = "http://127.0.0.1:9/api/v10"\ngateway_url = "ws://127.0.0.1:9/gateway"\n'
        '[storage]\ndatabase = "contract.db"\n[polling]\ninterval_seconds = 1\n'
        f'[[sources]]\nname = "Koreaboo"\nurl = "{feeds.url("/dyn/koreaboo")}"\n'
    )
    path = tmp_path / "contract.toml"
    path.write_text(contract, encoding="utf-8")
    done = run_kpopnews("poll", "--once", "--config", str(path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    found = run_kpopnews("search", "IU", "--json", "--config", str(path), cwd=tmp_path)
    assert [s["url"] for s in json_lines(found.stdout)] == [V_IU_LINK]


def test_a_local_file_source(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(
        f'[storage]\ndatabase = "f.db"\n[[sources]]\nname = "Local"\nurl = "{SEED}"\n', encoding="utf-8"
    )
    done = run_kpopnews("poll", "--once", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [s["url"] for s in json_lines(run_kpopnews("search", "뷔", "--json", cwd=tmp_path).stdout)] == [
        V_IU_LINK
    ]


def test_run_without_a_token_is_exit_2_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('sources = []\n[storage]\ndatabase = "t.db"\n', encoding="utf-8")
    done = run_kpopnews("run", cwd=tmp_path, timeout=30)
    assert done.returncode == 2
    lines = stderr_lines(done)
    assert len(lines) == 1 and "token" in lines[0].lower(), lines
    empty_env = run_kpopnews("run", cwd=tmp_path, env={"DISCORD_TOKEN": ""}, timeout=30)
    assert empty_env.returncode == 2


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ("[polling]\nbogus = 1\n", "bogus"),
        ("bogus = 1\n", "bogus"),
        ("[discord]\ntokn = 'x'\n", "tokn"),
        ("[polling]\ninterval_seconds = 0\n", "interval_seconds"),
        ("[polling]\ninterval_seconds = 0.5\n", "interval_seconds"),
        ("[polling]\ninterval_seconds = -3\n", "interval_seconds"),
        ("[polling]\ninterval_seconds = 'soon'\n", "interval_seconds"),
        ("[polling]\ninterval_seconds = nan\n", "interval_seconds"),
        ("[polling]\ninterval_seconds = inf\n", "interval_seconds"),
        ("[storage]\ndatabase = 5\n", "database"),
        ("[discord]\ntoken = 5\n", "token"),
        ("[discord]\napi_base = 'not a url'\n", "api_base"),
        ("[[sources]]\nname = 'x'\n", "url"),
        ("[[sources]]\nname = 'x'\nurl = 'http://a/'\nfeed = 'y'\n", "feed"),
        ("[polling\n", "toml"),
        ("discord = 5\n", "discord"),
    ],
)
def test_bad_configuration_is_exit_2_naming_the_key(tmp_path: Path, toml: str, named: str) -> None:
    (tmp_path / "config.toml").write_text(toml, encoding="utf-8")
    # every command reads the same configuration; one of them per case keeps the file fast
    commands = (["poll", "--once"], ["search", "V"], ["run"], ["trending"])
    args = commands[sum(map(ord, toml)) % len(commands)]
    done = run_kpopnews(*args, cwd=tmp_path, env={"DISCORD_TOKEN": "x.y.z"}, timeout=30)
    assert done.returncode == 2, (args, done.stdout, done.stderr)
    lines = stderr_lines(done)
    assert len(lines) == 1 and named.lower() in lines[0].lower(), lines


def test_missing_config_file_given_is_exit_2(tmp_path: Path) -> None:
    done = run_kpopnews("search", "V", "--config", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert done.returncode == 2 and "nope.toml" in done.stderr and len(stderr_lines(done)) == 1


def test_python_m_bot_is_the_same_program(tmp_path: Path) -> None:
    import sys

    done = run_kpopnews(
        "preview",
        str(SEED),
        "--json",
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO_ROOT)},
        command=[sys.executable, "-m", "bot"],
    )
    assert done.returncode == 0, done.stderr
    assert json_lines(done.stdout)[0]["url"] == V_IU_LINK


def test_preview_tags_artists_by_every_name_and_not_look_alikes(tmp_path: Path) -> None:
    cases = {
        "뷔가 아이유의 뮤직비디오에 출연했다": {"bts-v", "iu"},
        "Naver to shut down V LIVE at the end of the year": set(),
        "SHINee’s Key hosts a new variety show": {"shinee-key"},
        "The key to a great comeback: joy and hard work": set(),
        "Red Velvet’s Joy stars in a new drama": {"red-velvet-joy"},
        "Rocky V screening and V-neck fashion trends this fall": set(),
        "Kim Taehyung and Lee Ji-eun reunite for a new project": {"bts-v", "iu"},
    }
    texts = {
        "뷔가": "방탄소년단 뷔가 아이유의 신곡 뮤직비디오에 출연했다.",
        "Naver": "V LIVE, the streaming app, will close. Fans moved to Weverse.",
        "SHINee": "Key of SHINee will host the show from March.",
        "The key": "A look at how agencies plan comebacks, with joy and patience.",
        "Red Velvet": "Joy of Red Velvet has been cast in the lead role.",
        "Rocky": "A film and fashion roundup for the weekend.",
        "Kim Taehyung": "Kim Taehyung and Lee Ji-eun were seen on set together.",
    }
    items = [
        {
            "title": title,
            "link": f"https://news.example.com/{i}",
            "guid": f"tag-{i}",
            "description": next(t for k, t in texts.items() if title.startswith(k)),
        }
        for i, title in enumerate(cases)
    ]
    feed = tmp_path / "tagging.xml"
    feed.write_bytes(rss(items))
    done = run_kpopnews("preview", str(feed), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    got = {s["title"]: {a["id"] for a in s["artists"]} for s in json_lines(done.stdout)}
    assert got == cases


def test_preview_of_an_excerpt_feed_reads_the_article_pages(tmp_path: Path, feeds: FeedServer) -> None:
    # Soompi's feed carries excerpts: the fan quotes and the lead image are on the article pages, which an
    # operator's source may have on loopback too
    feed = (REPO_ROOT / "tests" / "fixtures" / "feeds" / "soompi-style.xml").read_text(encoding="utf-8")
    feed = re.sub(
        r"https://www\.soompi\.com/article/(\d+wpp)/[^<\"#]*",
        lambda m: feeds.url(f"/files/soompi-{m.group(1)}.html"),
        feed,
    )
    url = feeds.set_feed("soompi-excerpts", feed.encode("utf-8"))
    done = run_kpopnews("preview", url, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    stories = {s["title"]: s for s in json_lines(done.stdout)}
    v_iu = next(s for title, s in stories.items() if "Love Wins All" in title)
    assert_story_shape(v_iu)
    assert v_iu["image"] and v_iu["image"].startswith("https://")
    assert v_iu["quotes"], "the tweet embedded in the article page"
    assert sum(len(s["quotes"]) for s in stories.values()) >= 3
