"""What Discord refuses in a message body (create, edit, interaction responses and follow-ups), each
rule with the documentation that states it (discord-api-docs, developers/resources/message.mdx unless
said otherwise; the limits match discord-api-spec's openapi.json). Every bad field is reported at once
as 400/50035 "Invalid Form Body" with Discord's errors tree (developers/topics/opcodes-and-status-codes,
"JSON Error Codes"; the tree's shape: developers/reference, "Error Messages").
"""

from __future__ import annotations

from typing import Any, Dict, List

from .errors import FormErrors

#: "Create Message" JSON params: content "Message contents (up to 2000 characters)".
MAX_CONTENT = 2000
#: "Create Message" JSON params: nonce "Can be used to verify a message was sent (up to 25 characters)".
MAX_NONCE = 25
#: "Attachment Object": description "description (alt text) for the file (max 1024 characters)".
MAX_ATTACHMENT_DESCRIPTION = 1024
#: "Allowed Mentions Object": roles / users "Array of ... ids to mention, max 100";
#: "Allowed Mention Types": "roles", "users", "everyone".
MAX_MENTION_IDS = 100
MENTION_TYPES = ("roles", "users", "everyone")
#: "Embed Limits" (Embed Object).
EMBED_LIMITS = {"title": 256, "description": 4096}
FIELD_LIMITS = {"name": 256, "value": 1024}
MAX_FOOTER_TEXT = 2048
MAX_AUTHOR_NAME = 256
MAX_FIELDS = 25
MAX_EMBEDS = 10  # "Create Message": embeds "Up to 10 rich embeds (up to 6000 characters)"
MAX_EMBED_TOTAL = 6000


def _too_long(errors: FormErrors, path: str, limit: int) -> None:
    errors.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")


def check_message_body(payload: Dict[str, Any], errors: FormErrors) -> None:
    """Every rule below, on one create/edit body (``payload``); adds each violation to ``errors``."""
    content = payload.get("content")
    if content is not None and len(str(content)) > MAX_CONTENT:
        _too_long(errors, "content", MAX_CONTENT)
    nonce = payload.get("nonce")
    if nonce is not None and len(str(nonce)) > MAX_NONCE:
        _too_long(errors, "nonce", MAX_NONCE)
    if payload.get("embeds") is not None:
        check_embeds(payload["embeds"], errors)
    if payload.get("allowed_mentions") is not None:
        check_allowed_mentions(payload["allowed_mentions"], errors)
    for i, attachment in enumerate(payload.get("attachments") or []):
        description = attachment.get("description") if isinstance(attachment, dict) else None
        if description is not None and len(str(description)) > MAX_ATTACHMENT_DESCRIPTION:
            _too_long(errors, f"attachments.{i}.description", MAX_ATTACHMENT_DESCRIPTION)


def check_allowed_mentions(mentions: Any, errors: FormErrors) -> None:
    """"Allowed Mentions Object": ``parse`` holds only the three mention types; ``users``/``roles`` at most
    100 ids each; and ``parse`` is mutually exclusive with the list of the same kind ("an *invalid*
    configuration, because it includes both `parse` and `users` ... causing a validation error"; an empty
    or null list beside it is fine)."""
    if not isinstance(mentions, dict):
        errors.add("allowed_mentions", "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")
        return
    parse = mentions.get("parse") or []
    if not isinstance(parse, list):
        errors.add("allowed_mentions.parse", "LIST_TYPE_CONVERT", "Must be an array.")
        parse = []
    for i, kind in enumerate(parse):
        if kind not in MENTION_TYPES:
            errors.add(f"allowed_mentions.parse.{i}", "BASE_TYPE_CHOICES",
                       f"Value must be one of {set(MENTION_TYPES)}.")
    for kind in ("users", "roles"):
        ids = mentions.get(kind)
        if not ids:
            continue
        if len(ids) > MAX_MENTION_IDS:
            _too_long(errors, f"allowed_mentions.{kind}", MAX_MENTION_IDS)
        if kind in parse:
            errors.add("allowed_mentions", "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                       f"parse:[\"{kind}\"] and {kind}: [ids...] are mutually exclusive.")


def check_embeds(embeds: Any, errors: FormErrors) -> None:
    """"Embed Limits": title 256, description 4096, up to 25 fields (name 256, value 1024), footer text
    2048, author name 256, and 6000 characters summed over those fields of all the embeds."""
    if not isinstance(embeds, list):
        errors.add("embeds", "LIST_TYPE_CONVERT", "Must be an array.")
        return
    if len(embeds) > MAX_EMBEDS:
        _too_long(errors, "embeds", MAX_EMBEDS)
    total = 0
    for i, embed in enumerate(embeds):
        if not isinstance(embed, dict):
            errors.add(f"embeds.{i}", "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")
            continue
        texts = [(f"embeds.{i}.{key}", embed.get(key), limit) for key, limit in EMBED_LIMITS.items()]
        texts.append((f"embeds.{i}.footer.text", (embed.get("footer") or {}).get("text"), MAX_FOOTER_TEXT))
        texts.append((f"embeds.{i}.author.name", (embed.get("author") or {}).get("name"), MAX_AUTHOR_NAME))
        fields: List[Any] = embed.get("fields") or []
        if len(fields) > MAX_FIELDS:
            _too_long(errors, f"embeds.{i}.fields", MAX_FIELDS)
        for j, field in enumerate(fields):
            for key, limit in FIELD_LIMITS.items():
                text = field.get(key) if isinstance(field, dict) else None
                if not text:  # "Embed Field Structure": name and value are required
                    errors.add(f"embeds.{i}.fields.{j}.{key}", "BASE_TYPE_REQUIRED", "This field is required")
                texts.append((f"embeds.{i}.fields.{j}.{key}", text, limit))
        for path, text, limit in texts:
            # "Leading and trailing whitespace characters are not included (they are trimmed automatically)."
            length = len(str(text or "").strip())
            total += length
            if length > limit:
                _too_long(errors, path, limit)
    if total > MAX_EMBED_TOTAL:
        errors.add("embeds", "MAX_EMBED_SIZE_EXCEEDED", f"Embed size exceeds maximum size of {MAX_EMBED_TOTAL}")
