"""Keyword filters: plain words and phrases, whole, whatever the case and accents; never patterns."""

from __future__ import annotations

import time

import pytest

from bot.keywords import (
    MAX_KEYWORD_LENGTH,
    MAX_KEYWORDS,
    MAX_OPTION_LENGTH,
    KeywordError,
    KeywordFilter,
    StoryWords,
    parse_keywords,
)


def accepts(keywords: str | None, exclude: str | None, title: str, summary: str = "") -> bool:
    keyword_filter = KeywordFilter.build(parse_keywords(keywords), parse_keywords(exclude, option="exclude"))
    assert keyword_filter is not None
    return keyword_filter.accepts(StoryWords.of(title, summary))


def test_options_are_split_at_commas_cleaned_and_deduplicated() -> None:
    assert parse_keywords("  comeback ,  world   tour,,; concert，Tour , TOUR, world tour ") == [
        "comeback",
        "world tour",
        "concert",
        "Tour",
    ]
    assert parse_keywords(None) == [] and parse_keywords("   ") == [] and parse_keywords(" , ,") == []
    assert KeywordFilter.build([], []) is None


def test_matching_ignores_case_and_accents_on_headline_and_summary() -> None:
    assert accepts("rose", None, "ROSÉ tops the charts again")
    assert accepts("Rosé", None, "Rose of BLACKPINK announces a solo tour")
    assert accepts("comeback", None, "NewJeans news", "The group confirmed a COMEBACK for June.")
    assert not accepts("comeback", None, "NewJeans news", "Nothing about a return here.")


def test_words_match_whole_and_phrases_in_order() -> None:
    assert not accepts("tour", None, "A detour through the tourism board")
    assert accepts("tour", None, "SEVENTEEN add a tour stop")
    assert accepts("love wins all", None, "V sings IU’s “Love Wins All” live")
    assert not accepts("love wins all", None, "All the love wins")
    assert accepts("(G)I-DLE", None, "(G)I-DLE announce a world tour")
    # a phrase never runs from the headline into the summary
    assert not accepts("tour dates", None, "A world tour", "Dates follow later")


def test_exclusions_win_over_keywords_and_work_alone() -> None:
    assert not accepts("comeback", "rumor", "Comeback rumor denied by the agency")
    assert accepts("comeback", "rumor", "Comeback confirmed by the agency")
    assert not accepts(None, "dating, scandal", "A dating report surfaces")
    assert accepts(None, "dating, scandal", "A new single is out")


def test_hangul_keywords_see_through_particles_and_cjk_is_matched_inside_words() -> None:
    assert accepts("뷔", None, "뷔가 새 앨범을 발표했다")
    assert not accepts("뷔", None, "방탄뷔 팬미팅")  # not inside another word
    assert accepts("東方神起", None, "東方神起が新曲を発表")


@pytest.mark.parametrize("pattern", [".*", "(?=)", "^$", "\\", "[]", "***", "|", "+?"])
def test_regular_expressions_are_refused_as_having_nothing_to_look_for(pattern: str) -> None:
    with pytest.raises(KeywordError, match="no letters or digits") as refused:
        parse_keywords(pattern)
    assert "plain words" in str(refused.value)


@pytest.mark.parametrize(
    ("typed", "title", "expected"),
    [
        ("a|b", "a story", False),  # not "a or b": the words "a" then "b"
        ("a|b", "plan a|b", True),
        ("v.*", "V announces", True),  # the word "v"
        ("x+", "x marks it", True),  # the letters, literally
        ("t(a)il", "t a il", True),
        ("\\d+", "123 fans", False),  # "d" is a word here; the digits are not
    ],
)
def test_regex_metacharacters_are_only_separators(typed: str, title: str, expected: bool) -> None:
    words = parse_keywords(typed)
    keyword_filter = KeywordFilter.build(words, [])
    assert keyword_filter is not None
    assert keyword_filter.accepts(StoryWords.of(title)) is expected


def test_limits_are_refused_with_a_clear_message() -> None:
    with pytest.raises(KeywordError, match=f"at most {MAX_OPTION_LENGTH} characters"):
        parse_keywords("a" * 10_000)
    with pytest.raises(KeywordError, match=f"at most {MAX_KEYWORDS}"):
        parse_keywords(",".join(f"word{i}" for i in range(MAX_KEYWORDS + 1)))
    with pytest.raises(KeywordError, match=f"at most {MAX_KEYWORD_LENGTH} characters each"):
        parse_keywords("x" * (MAX_KEYWORD_LENGTH + 1))
    with pytest.raises(KeywordError, match="too many words"):
        parse_keywords("one two three four five six seven eight nine")
    with pytest.raises(KeywordError, match="`exclude`"):
        parse_keywords(".*", option="exclude")


def test_long_hostile_story_text_is_filtered_in_bounded_time() -> None:
    keywords = parse_keywords(", ".join(f"aa aa aa aa aa aa aa b{i}" for i in range(4)))
    exclude = parse_keywords(", ".join(f"aa aa aa aa aa aa aa c{i}" for i in range(4)))
    keyword_filter = KeywordFilter.build(keywords, exclude)
    assert keyword_filter is not None
    text = "aa " * 50_000 + "ＡＡ " * 10 + "é" * 10_000
    started = time.perf_counter()
    assert not keyword_filter.accepts(StoryWords.of(text, text))
    assert time.perf_counter() - started < 5.0
