"""Rows to models and back: the one place that knows how a model is laid out in its table."""

from __future__ import annotations

import json
import zlib
from typing import Any

from bot.models import (
    ArtistRef,
    DailySummary,
    Delivery,
    DirectMessage,
    Follow,
    Follower,
    HeldPost,
    Quote,
    Source,
    Story,
    Subscription,
)
from bot.timeutil import from_iso


def quotes_to_json(quotes: list[Quote]) -> str:
    return json.dumps([q.to_json() | {"score": q.score} for q in quotes], ensure_ascii=False)


def quotes_from_json(text: str | None) -> list[Quote]:
    """The stored quotes; a damaged row gives none rather than failing the story that holds it."""
    try:
        return [Quote.from_json(q) for q in json.loads(text or "[]") if isinstance(q, dict) and q.get("text")]
    except (ValueError, KeyError, TypeError):
        return []


TEXT_KEEP_CHARS = 64 * 1024  # a story's text kept for retagging, at most: beyond is no article's prose


def pack_text(text: str) -> bytes | None:
    """A story's clean text as stored in story_texts.text_zlib: UTF-8, zlib-compressed (about 2-4x smaller on
    English prose); None for no text (no row is stored)."""
    text = text[:TEXT_KEEP_CHARS].strip()
    return zlib.compress(text.encode("utf-8"), 6) if text else None


def unpack_text(blob: bytes | None) -> str:
    """The text `pack_text` stored; a damaged value gives no text rather than failing the story that holds it."""
    if not blob:
        return ""
    try:
        return zlib.decompress(bytes(blob)).decode("utf-8")
    except (zlib.error, UnicodeDecodeError):
        return ""


def words_to_json(words: list[str]) -> str:
    """A subscription's keywords or exclusions as stored: a JSON list of the words as typed."""
    return json.dumps(words, ensure_ascii=False)


def story_from_row(row: Any, artists: list[ArtistRef] | None = None) -> Story:
    """A stored story without its text (story_texts: only retagging reads it, see StoryTable.texts_after)."""
    return Story(
        key=row["story_key"],
        title=row["title"],
        url=row["url"],
        source=row["source_name"],
        published=from_iso(row["published_at"]),
        summary=row["summary"],
        image=row["image_url"],
        quotes=quotes_from_json(row["quotes_json"]),
        artists=list(artists or []),
        categories=json.loads(row["categories_json"] or "[]"),
        canonical_url=row["canonical_url"],
        id=row["id"],
        source_id=row["source_id"],
        first_seen=from_iso(row["first_seen_at"]),
        cluster_id=row["cluster_id"],
    )


def brief_story_from_row(row: Any) -> Story:
    """A story without its text, content or artists, from a row of those columns and `cluster`."""
    return Story(
        key="",
        title=row["title"],
        url=row["url"],
        source=row["source_name"],
        published=from_iso(row["published_at"]),
        image=row["image_url"],
        quotes=quotes_from_json(row["quotes_json"]),
        id=row["id"],
        first_seen=from_iso(row["first_seen_at"]),
        cluster_id=row["cluster"],
    )


def source_from_row(row: Any) -> Source:
    return Source(
        id=row["id"],
        url=row["url"],
        name=row["name"],
        owner_guild_id=row["owner_guild_id"],
        color=row["color"],
        etag=row["etag"],
        last_modified=row["last_modified"],
        body_hash=row["body_hash"],
        last_status=row["last_status"],
        last_error=row["last_error"],
        last_fetched_at=from_iso(row["last_fetched_at"]),
        last_success_at=from_iso(row["last_success_at"]),
        consecutive_failures=row["consecutive_failures"],
        next_poll_at=from_iso(row["next_poll_at"]),
        disabled_reason=row["disabled_reason"],
        probe_at=from_iso(row["probe_at"]),
        probes=row["probes"],
        redirect_to=row["redirect_to"],
        redirects_seen=row["redirects_seen"],
        moved_from=row["moved_from"],
        moved_at=from_iso(row["moved_at"]),
    )


def subscription_from_row(row: Any) -> Subscription:
    return Subscription(
        id=row["id"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        artist_id=row["artist_id"],
        source_id=row["source_id"],
        only_trending=bool(row["only_trending"]),
        created_at=from_iso(row["created_at"]),
        start_story_id=row["start_story_id"],
        status=row["status"],
        last_error=row["last_error"],
        last_error_at=from_iso(row["last_error_at"]),
        failures=row["failures"],
        retry_at=from_iso(row["retry_at"]),
        last_post_at=from_iso(row["last_post_at"]),
        created_by=row["created_by"],
        source_name=row["source_name"],
        kind=row["kind"],
        ping_role_id=row["ping_role_id"],
        keywords=json.loads(row["keywords_json"] or "[]"),
        exclude=json.loads(row["exclude_json"] or "[]"),
        threads=bool(row["threads"]),
        publish_limited_at=from_iso(row["publish_limited_at"]),
        publish_resumes_at=from_iso(row["publish_resumes_at"]),
    )


def delivery_from_row(row: Any) -> Delivery:
    return Delivery(
        id=row["id"],
        story_id=row["story_id"],
        cluster_id=row["cluster_id"],
        guild_id=row["guild_id"],
        channel_id=row["channel_id"],
        subscription_id=row["subscription_id"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=from_iso(row["next_attempt_at"]),
        nonce=row["nonce"],
        message_id=row["message_id"],
        last_error=row["last_error"],
        created_at=from_iso(row["created_at"]),
        sent_at=from_iso(row["sent_at"]),
        also_on=json.loads(row["also_on_json"] or "[]"),
        edit_pending=bool(row["edit_pending"]),
        edits=row["edits"],
        attempt_started_at=from_iso(row["attempt_started_at"]),
        story_source=row["story_source"],
        kind=row["kind"],
        ping_role_ids=[int(r) for r in json.loads(row["ping_roles_json"] or "[]")],
        thread_id=row["thread_id"],
        thread_state=row["thread_state"],
        publish_state=row["publish_state"],
    )


def held_post_from_row(row: Any) -> HeldPost:
    """A row of `id, channel_id, cluster_id, story_id, story_source, status, also_on_json, edits, edit_pending`."""
    also_on = row[6]
    return HeldPost(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        json.loads(also_on) if also_on and also_on != "[]" else [],
        row[7],
        bool(row[8]),
    )


def follower_from_row(row: Any) -> Follower:
    return Follower(
        user_id=row["user_id"],
        locale=row["locale"],
        dm_channel_id=row["dm_channel_id"],
        status=row["status"],
        paused_at=from_iso(row["paused_at"]),
        paused_reason=row["paused_reason"],
        told_at=from_iso(row["told_at"]),
        created_at=from_iso(row["created_at"]),
    )


def follow_from_row(row: Any) -> Follow:
    return Follow(
        user_id=row["user_id"],
        artist_id=row["artist_id"],
        created_at=from_iso(row["created_at"]),
        start_story_id=row["start_story_id"],
    )


def direct_message_from_row(row: Any) -> DirectMessage:
    return DirectMessage(
        id=row["id"],
        user_id=row["user_id"],
        cluster_id=row["cluster_id"],
        story_id=row["story_id"],
        artist_id=row["artist_id"],
        day=row["day"],
        kind=row["kind"],
        nonce=row["nonce"],
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=from_iso(row["next_attempt_at"]),
        attempt_started_at=from_iso(row["attempt_started_at"]),
        message_id=row["message_id"],
        last_error=row["last_error"],
        created_at=from_iso(row["created_at"]),
        sent_at=from_iso(row["sent_at"]),
    )


def daily_summary_from_row(row: Any) -> DailySummary:
    next_attempt_at = from_iso(row["next_attempt_at"])
    assert next_attempt_at is not None  # NOT NULL in the table
    return DailySummary(
        id=row["id"],
        user_id=row["user_id"],
        day=row["day"],
        nonce=row["nonce"],
        next_attempt_at=next_attempt_at,
        status=row["status"],
        attempts=row["attempts"],
        attempt_started_at=from_iso(row["attempt_started_at"]),
        message_id=row["message_id"],
        last_error=row["last_error"],
        created_at=from_iso(row["created_at"]),
        sent_at=from_iso(row["sent_at"]),
    )
