"""A client's view of a thread kept current by events (§7), as a browser would do it."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

Thread = dict[str, Any]  # {"post": post payload, "replies": [top-level replies with subtrees]}


def _find(nodes: list[dict[str, Any]], reply_id: str) -> tuple[list[dict[str, Any]], int] | None:
    for index, node in enumerate(nodes):
        if node["id"] == reply_id:
            return nodes, index
        found = _find(node["replies"], reply_id)
        if found is not None:
            return found
    return None


def _node(nodes: list[dict[str, Any]], reply_id: str) -> dict[str, Any] | None:
    found = _find(nodes, reply_id)
    return found[0][found[1]] if found else None


def _order(node: dict[str, Any]) -> tuple[datetime, str]:
    return datetime.fromisoformat(node["created_at"].replace("Z", "+00:00")), node["id"]


def _insert_in_order(siblings: list[dict[str, Any]], node: dict[str, Any]) -> None:
    """Siblings are oldest first (created_at, id), as REST orders them."""
    index = len(siblings)
    while index > 0 and _order(siblings[index - 1]) > _order(node):
        index -= 1
    siblings.insert(index, node)


def apply_event(thread: Thread, event: str, data: dict[str, Any]) -> Thread:
    """The thread after one ``thread:<id>`` event; ``liked_by_me`` stays the viewer's own.

    Idempotent by id: a page's ``last_event_id`` never misses an event but may lag behind what
    the page shows (ids are assigned after commit), so a replay can repeat applied events.
    """
    thread = copy.deepcopy(thread)
    post, replies = thread["post"], thread["replies"]
    if event == "post.liked" and data["id"] == post["id"]:
        post["like_count"] = data["like_count"]
    elif event == "reply.liked":
        node = _node(replies, data["id"])
        if node is not None:
            node["like_count"] = data["like_count"]
    elif event == "reply.created":
        if _node(replies, data["id"]) is not None:
            return thread  # already on the page (a replay may repeat what the page shows)
        node = {k: v for k, v in data.items()} | {"replies": []}
        parent_id = data["parent_reply_id"]
        if parent_id is None:
            _insert_in_order(replies, node)
        else:
            parent = _node(replies, parent_id)
            if parent is not None:
                _insert_in_order(parent["replies"], node)
                parent["reply_count"] += 1
        post["reply_count"] += 1
    elif event == "reply.updated":
        node = _node(replies, data["id"])
        if node is not None:
            node.update({k: v for k, v in data.items() if k != "liked_by_me"})
    elif event == "reply.deleted":
        found = _find(replies, data["id"])
        if found is None or found[0][found[1]]["deleted_at"] is not None:
            return thread  # already gone, or already a placeholder
        if found is not None:
            siblings, index = found
            if data["reply_count"] > 0:  # kept in the tree as [deleted]
                siblings[index].update({k: v for k, v in data.items() if k != "liked_by_me"})
            else:
                del siblings[index]
                if data["parent_reply_id"] is not None:
                    parent = _node(replies, data["parent_reply_id"])
                    if parent is not None:
                        parent["reply_count"] -= 1
        post["reply_count"] -= 1
    return thread
