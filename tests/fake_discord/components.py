"""Validation the way Discord does it (API v10) for what bots send: message components, modals,
autocomplete choices and application commands.  Each ``check_*`` adds to a :class:`FormErrors`
(400/50035 with the JSON path of every bad field); components also get Discord's sequential
numeric ``id`` where the bot left it out.

Sources: developers/components/reference ("Anatomy of a Component", Action Row, Button, String Select,
Text Input, Label, Text Display), interactions/receiving-and-responding (Modal, Autocomplete) and
interactions/application-commands (naming, option structure, limits).
"""

from __future__ import annotations

import unicodedata
from typing import Any, Dict, Iterator, List, Optional, Set

from .errors import FormErrors

ACTION_ROW, BUTTON, STRING_SELECT, TEXT_INPUT = 1, 2, 3, 4
USER_SELECT, ROLE_SELECT, MENTIONABLE_SELECT, CHANNEL_SELECT = 5, 6, 7, 8
SECTION, TEXT_DISPLAY, THUMBNAIL, MEDIA_GALLERY, FILE, SEPARATOR, CONTAINER = 9, 10, 11, 12, 13, 14, 17
LABEL, FILE_UPLOAD, RADIO_GROUP, CHECKBOX_GROUP, CHECKBOX = 18, 19, 21, 22, 23
SELECTS = {STRING_SELECT, USER_SELECT, ROLE_SELECT, MENTIONABLE_SELECT, CHANNEL_SELECT}
LINK_STYLE, PREMIUM_STYLE = 5, 6
V2_TOP_LEVEL = {ACTION_ROW, SECTION, TEXT_DISPLAY, MEDIA_GALLERY, FILE, SEPARATOR, CONTAINER}
LABEL_CHILDREN = SELECTS | {TEXT_INPUT, FILE_UPLOAD, RADIO_GROUP, CHECKBOX_GROUP, CHECKBOX}

# Application command option types.
SUB_COMMAND, SUB_COMMAND_GROUP, STRING, INTEGER, BOOLEAN = 1, 2, 3, 4, 5
USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = 6, 7, 8, 9, 10, 11
CHAT_INPUT, USER_COMMAND, MESSAGE_COMMAND = 1, 2, 3
MAX_COMMANDS = {CHAT_INPUT: 100, USER_COMMAND: 15, MESSAGE_COMMAND: 15}
SAFE_INTEGER = 2 ** 53


def _length(errors: FormErrors, path: str, value: Any, lo: int, hi: int, *, required: bool = False) -> None:
    if value is None:
        if required:
            errors.add(path, "BASE_TYPE_REQUIRED", "This field is required")
        return
    if not isinstance(value, str):
        errors.add(path, "BASE_TYPE_STRING", "Must be a string.")
    elif not lo <= len(value) <= hi:
        errors.add(path, "BASE_TYPE_BAD_LENGTH", f"Must be between {lo} and {hi} in length.")


def _int_range(errors: FormErrors, path: str, value: Any, lo: float, hi: float) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool):
        errors.add(path, "NUMBER_TYPE_COERCE", f"Value \"{value}\" is not int.")
    elif not lo <= value <= hi:
        errors.add(path, "NUMBER_TYPE_MAX" if value > hi else "NUMBER_TYPE_MIN",
                   f"int value should be {'less' if value > hi else 'greater'} than or equal to "
                   f"{hi if value > hi else lo}.")


def walk(components: Any) -> Iterator[Dict[str, Any]]:
    """Every component of a tree (rows, their children, sections' accessories, containers, labels)."""
    for comp in components or []:
        if not isinstance(comp, dict):
            continue
        yield comp
        yield from walk(comp.get("components"))
        for key in ("accessory", "component"):
            if isinstance(comp.get(key), dict):
                yield from walk([comp[key]])


def assign_ids(components: List[Dict[str, Any]]) -> None:
    """Fill missing (or 0) ``id``s sequentially, skipping ids already used, as Discord does."""
    used = {c["id"] for c in walk(components) if isinstance(c.get("id"), int) and c["id"]}
    next_id = 1
    for comp in walk(components):
        if not comp.get("id"):
            while next_id in used:
                next_id += 1
            comp["id"] = next_id
            used.add(next_id)


# ------------------------------------------------------------------ messages


def check_message_components(components: Any, flags: int, errors: FormErrors, path: str = "components") -> None:
    """``components`` of a message create/edit or an interaction message response."""
    if components is None:
        return
    if not isinstance(components, list):
        errors.add(path, "LIST_TYPE_CONVERT", "Must be an array.")
        return
    v2 = bool(flags & (1 << 15))
    allowed = V2_TOP_LEVEL if v2 else {ACTION_ROW}
    if not v2 and len(components) > 5:
        errors.add(path, "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
    if v2 and sum(1 for _ in walk(components)) > 40:
        errors.add(path, "COMPONENT_MAX_TOTAL_COMPONENTS_EXCEEDED", "Must be 40 or fewer in total.")
    custom_ids: Set[str] = set()
    for i, comp in enumerate(components):
        where = f"{path}.{i}"
        if not isinstance(comp, dict) or comp.get("type") not in allowed:
            errors.add(where, "UNION_TYPE_CHOICES",
                       f"Value of field \"type\" must be one of {tuple(sorted(allowed))}.")
            continue
        if comp["type"] == ACTION_ROW:
            _check_message_row(comp, where, errors, custom_ids)
        # Components V2 layouts other than rows are stored as sent (their content rules are not modelled).
    _check_ids(components, path, errors)


def _check_message_row(row: Dict[str, Any], path: str, errors: FormErrors, custom_ids: Set[str]) -> None:
    children = row.get("components")
    if not isinstance(children, list) or not children:
        errors.add(f"{path}.components", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.")
        return
    if len(children) > 5:
        errors.add(f"{path}.components", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.")
    types = [c.get("type") if isinstance(c, dict) else None for c in children]
    if any(t in SELECTS for t in types) and len(children) > 1:
        errors.add(f"{path}.components", "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                   "The specified component exceeds the maximum width")
    for j, child in enumerate(children):
        where = f"{path}.components.{j}"
        if types[j] == BUTTON:
            check_button(child, where, errors, custom_ids)
        elif types[j] in SELECTS:
            _check_select(child, where, errors, custom_ids)
        else:
            errors.add(where, "UNION_TYPE_CHOICES",
                       f"Value of field \"type\" must be one of {(BUTTON, *sorted(SELECTS))}.")


def _custom_id(comp: Dict[str, Any], path: str, errors: FormErrors, seen: Set[str]) -> None:
    cid = comp.get("custom_id")
    _length(errors, f"{path}.custom_id", cid, 1, 100, required=True)
    if isinstance(cid, str):
        if cid in seen:
            errors.add(f"{path}.custom_id", "COMPONENT_CUSTOM_ID_DUPLICATED", "Component custom id cannot be duplicated")
        seen.add(cid)


def check_button(button: Dict[str, Any], path: str, errors: FormErrors, custom_ids: Set[str]) -> None:
    style = button.get("style")
    if style not in (1, 2, 3, 4, 5, 6):
        errors.add(f"{path}.style", "BASE_TYPE_CHOICES", "Value must be one of {1, 2, 3, 4, 5, 6}.")
        return
    _length(errors, f"{path}.label", button.get("label"), 0, 80)
    if style == LINK_STYLE:
        _length(errors, f"{path}.url", button.get("url"), 1, 512, required=True)
        if button.get("custom_id") is not None:
            errors.add(f"{path}.custom_id", "BUTTON_COMPONENT_CUSTOM_ID_NOT_ALLOWED", "A link button cannot have a custom id")
    elif style == PREMIUM_STYLE:
        if not button.get("sku_id"):
            errors.add(f"{path}.sku_id", "BASE_TYPE_REQUIRED", "This field is required")
    else:
        _custom_id(button, path, errors, custom_ids)
        if button.get("url") is not None:
            errors.add(f"{path}.url", "BUTTON_COMPONENT_URL_NOT_ALLOWED", "A non-link button cannot have a url")
    if style != PREMIUM_STYLE and not button.get("label") and not button.get("emoji"):
        errors.add(path, "BUTTON_COMPONENT_LABEL_OR_EMOJI_REQUIRED", "A button must have a label or an emoji")
    emoji = button.get("emoji")
    if emoji is not None and (not isinstance(emoji, dict) or not (emoji.get("id") or emoji.get("name"))):
        errors.add(f"{path}.emoji.name", "BUTTON_COMPONENT_INVALID_EMOJI", "Invalid emoji")
    if "disabled" in button and not isinstance(button["disabled"], bool):
        errors.add(f"{path}.disabled", "BASE_TYPE_BOOLEAN", "Must be either true or false.")


def _check_select(select: Dict[str, Any], path: str, errors: FormErrors, custom_ids: Set[str]) -> None:
    _custom_id(select, path, errors, custom_ids)
    _length(errors, f"{path}.placeholder", select.get("placeholder"), 0, 150)
    _int_range(errors, f"{path}.min_values", select.get("min_values"), 0, 25)
    _int_range(errors, f"{path}.max_values", select.get("max_values"), 1, 25)
    if select.get("type") == STRING_SELECT:
        options = select.get("options")
        if not isinstance(options, list) or not 1 <= len(options) <= 25:
            errors.add(f"{path}.options", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 25 in length.")
            return
        values = set()
        for k, opt in enumerate(options):
            _length(errors, f"{path}.options.{k}.label", opt.get("label"), 1, 100, required=True)
            _length(errors, f"{path}.options.{k}.value", opt.get("value"), 1, 100, required=True)
            _length(errors, f"{path}.options.{k}.description", opt.get("description"), 0, 100)
            if opt.get("value") in values:
                errors.add(f"{path}.options.{k}.value", "SELECT_COMPONENT_OPTION_VALUE_DUPLICATED",
                           "Select option values must be unique")
            values.add(opt.get("value"))
        max_values = select.get("max_values") or 1
        if isinstance(max_values, int) and max_values > len(options):
            errors.add(f"{path}.max_values", "BASE_TYPE_MAX", f"Must be less than or equal to {len(options)}.")


def _check_ids(components: List[Any], path: str, errors: FormErrors) -> None:
    seen: Set[int] = set()
    for comp in walk(components):
        cid = comp.get("id")
        if cid in (None, 0):
            continue
        if not isinstance(cid, int) or isinstance(cid, bool) or not 0 <= cid < 2 ** 31:
            errors.add(f"{path}.id", "NUMBER_TYPE_COERCE", "Component id must be a 32 bit integer.")
        elif cid in seen:
            errors.add(f"{path}.id", "COMPONENT_ID_DUPLICATED", "Component ids must be unique")
        seen.add(cid)


# --------------------------------------------------------------------- modals


def check_modal(data: Any, errors: FormErrors, path: str = "data") -> None:
    """The ``data`` of a MODAL (type 9) callback."""
    if not isinstance(data, dict):
        errors.add(path, "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")
        return
    _length(errors, f"{path}.custom_id", data.get("custom_id"), 1, 100, required=True)
    _length(errors, f"{path}.title", data.get("title"), 1, 45, required=True)
    components = data.get("components")
    if not isinstance(components, list) or not 1 <= len(components) <= 5:
        errors.add(f"{path}.components", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.")
        return
    custom_ids: Set[str] = set()
    for i, comp in enumerate(components):
        where = f"{path}.components.{i}"
        kind = comp.get("type") if isinstance(comp, dict) else None
        if kind == ACTION_ROW:  # deprecated but accepted: one text input, with its own label
            children = comp.get("components")
            if not isinstance(children, list) or len(children) != 1:
                errors.add(f"{where}.components", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 1 in length.")
                continue
            child = children[0]
            if child.get("type") != TEXT_INPUT:
                errors.add(f"{where}.components.0.type", "UNION_TYPE_CHOICES", "Value of field \"type\" must be one of (4,).")
                continue
            _length(errors, f"{where}.components.0.label", child.get("label"), 1, 45, required=True)
            _check_text_input(child, f"{where}.components.0", errors, custom_ids)
        elif kind == LABEL:
            _length(errors, f"{where}.label", comp.get("label"), 1, 45, required=True)
            _length(errors, f"{where}.description", comp.get("description"), 0, 100)
            child = comp.get("component")
            if not isinstance(child, dict) or child.get("type") not in LABEL_CHILDREN:
                errors.add(f"{where}.component", "UNION_TYPE_CHOICES",
                           f"Value of field \"type\" must be one of {tuple(sorted(LABEL_CHILDREN))}.")
                continue
            if child.get("type") == TEXT_INPUT:
                _check_text_input(child, f"{where}.component", errors, custom_ids)
            elif child.get("type") in SELECTS:
                _check_select(child, f"{where}.component", errors, custom_ids)
            else:
                _custom_id(child, f"{where}.component", errors, custom_ids)
        elif kind == TEXT_DISPLAY:
            _length(errors, f"{where}.content", comp.get("content"), 1, 4000, required=True)
        else:
            errors.add(where, "UNION_TYPE_CHOICES", "Value of field \"type\" must be one of (1, 10, 18).")
    _check_ids(components, f"{path}.components", errors)


def _check_text_input(text: Dict[str, Any], path: str, errors: FormErrors, custom_ids: Set[str]) -> None:
    _custom_id(text, path, errors, custom_ids)
    if text.get("style") not in (1, 2):
        errors.add(f"{path}.style", "BASE_TYPE_CHOICES", "Value must be one of {1, 2}.")
    _int_range(errors, f"{path}.min_length", text.get("min_length"), 0, 4000)
    _int_range(errors, f"{path}.max_length", text.get("max_length"), 1, 4000)
    lo, hi = text.get("min_length"), text.get("max_length")
    if isinstance(lo, int) and isinstance(hi, int) and lo > hi:
        errors.add(f"{path}.min_length", "BASE_TYPE_MAX", f"Must be less than or equal to {hi}.")
    _check_prefilled_value(text, path, errors)
    _length(errors, f"{path}.placeholder", text.get("placeholder"), 0, 100)
    if "required" in text and not isinstance(text["required"], bool):
        errors.add(f"{path}.required", "BASE_TYPE_BOOLEAN", "Must be either true or false.")


def _check_prefilled_value(text: Dict[str, Any], path: str, errors: FormErrors) -> None:
    """Text Input Structure: ``value`` "Pre-filled value for this component; max 4000 characters". Discord
    also refuses an empty one, and one outside the input's own ``min_length``/``max_length`` (the bounds
    of "the user's input text", which the pre-filled value is until the user edits it)."""
    value = text.get("value")
    if value is None:
        return
    lo, hi = text.get("min_length"), text.get("max_length")
    lo = max(1, lo) if isinstance(lo, int) else 1
    hi = min(4000, hi) if isinstance(hi, int) else 4000
    _length(errors, f"{path}.value", value, lo, hi)


# -------------------------------------------------------------- autocomplete


def check_choices(data: Any, option_type: int, errors: FormErrors, path: str = "data.choices") -> None:
    """The ``choices`` of an APPLICATION_COMMAND_AUTOCOMPLETE_RESULT (type 8) callback."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list):
        errors.add(path, "BASE_TYPE_REQUIRED", "This field is required")
        return
    if len(choices) > 25:
        errors.add(path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    for i, choice in enumerate(choices):
        _check_choice(choice, option_type, f"{path}.{i}", errors)


def _check_choice(choice: Any, option_type: int, path: str, errors: FormErrors) -> None:
    if not isinstance(choice, dict):
        errors.add(path, "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")
        return
    _length(errors, f"{path}.name", choice.get("name"), 1, 100, required=True)
    value = choice.get("value")
    if option_type == STRING:
        _length(errors, f"{path}.value", value, 1, 100, required=True)
    elif option_type == INTEGER:
        _int_range(errors, f"{path}.value", value, -SAFE_INTEGER + 1, SAFE_INTEGER - 1)
        if value is None:
            errors.add(f"{path}.value", "BASE_TYPE_REQUIRED", "This field is required")
    elif option_type == NUMBER:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            errors.add(f"{path}.value", "NUMBER_TYPE_COERCE", f"Value \"{value}\" is not a valid number.")


# ---------------------------------------------------------- application commands


def valid_command_name(name: Any, command_type: int = CHAT_INPUT) -> bool:
    """Discord's naming rule: CHAT_INPUT names and option names match
    ``^[-_'\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]{1,32}$`` and use lowercase where a letter has one;
    USER/MESSAGE command names are 1-32 characters, any case, spaces allowed."""
    if not isinstance(name, str) or not 1 <= len(name) <= 32:
        return False
    if command_type != CHAT_INPUT:
        return bool(name.strip())
    for ch in name:
        deva_thai = 0x0900 <= ord(ch) <= 0x097F or 0x0E00 <= ord(ch) <= 0x0E7F
        if not (ch in "-_'" or unicodedata.category(ch)[0] in "LN" or deva_thai):
            return False
        if ch.lower() != ch:
            return False
    return True


def check_commands(commands: Any, errors: FormErrors) -> None:
    """A bulk overwrite body (PUT .../commands): each command valid, names unique per type, counts."""
    if not isinstance(commands, list):
        errors.add("_root", "LIST_TYPE_CONVERT", "Must be an array.")
        return
    seen: Set[tuple] = set()
    counts: Dict[int, int] = {}
    for i, cmd in enumerate(commands):
        check_command(cmd, errors, str(i))
        if isinstance(cmd, dict):
            key = (cmd.get("name"), cmd.get("type", CHAT_INPUT))
            if key in seen:
                errors.add(f"{i}.name", "APPLICATION_COMMAND_ALREADY_EXISTS", "Application command names must be unique")
            seen.add(key)
            counts[key[1]] = counts.get(key[1], 0) + 1
    for kind, count in counts.items():
        if count > MAX_COMMANDS.get(kind, 0):
            errors.add("_root", "APPLICATION_COMMANDS_TOO_MANY",
                       f"Maximum number of application commands of type {kind} reached ({MAX_COMMANDS.get(kind, 0)}).")


def check_command(cmd: Any, errors: FormErrors, path: str = "") -> None:
    pre = f"{path}." if path else ""
    if not isinstance(cmd, dict):
        errors.add(path or "_root", "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")
        return
    kind = cmd.get("type", CHAT_INPUT)
    if kind not in (CHAT_INPUT, USER_COMMAND, MESSAGE_COMMAND):
        errors.add(f"{pre}type", "BASE_TYPE_CHOICES", "Value must be one of {1, 2, 3}.")
        return
    if not valid_command_name(cmd.get("name"), kind):
        errors.add(f"{pre}name", "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
    dmp = cmd.get("default_member_permissions")
    if dmp is not None and not (isinstance(dmp, (str, int)) and str(dmp).isdigit()):
        errors.add(f"{pre}default_member_permissions", "NUMBER_TYPE_COERCE", f"Value \"{dmp}\" is not snowflake.")
    contexts = cmd.get("contexts")
    if contexts is not None and (not isinstance(contexts, list) or any(c not in (0, 1, 2) for c in contexts)):
        errors.add(f"{pre}contexts", "BASE_TYPE_CHOICES", "Value must be one of {0, 1, 2}.")
    if kind == CHAT_INPUT:
        _length(errors, f"{pre}description", cmd.get("description"), 1, 100, required=True)
        _check_options(cmd.get("options") or [], f"{pre}options", errors, depth=0)
        if _command_size(cmd) > 8000:
            errors.add(pre.rstrip(".") or "_root", "APPLICATION_COMMAND_TOO_LARGE",
                       "Command exceeds maximum size (8000)")
    else:
        if cmd.get("description"):
            errors.add(f"{pre}description", "APPLICATION_COMMAND_CONTEXT_MENU_DESCRIPTION",
                       "Context menu commands cannot have description")
        if cmd.get("options"):
            errors.add(f"{pre}options", "APPLICATION_COMMAND_OPTIONS_CONTEXT_MENU",
                       "Context menu commands cannot have options")


def _check_options(options: Any, path: str, errors: FormErrors, depth: int) -> None:
    if not isinstance(options, list):
        errors.add(path, "LIST_TYPE_CONVERT", "Must be an array.")
        return
    if len(options) > 25:
        errors.add(path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    names: Set[str] = set()
    seen_optional = False
    kinds = set()
    for i, opt in enumerate(options):
        where = f"{path}.{i}"
        if not isinstance(opt, dict):
            errors.add(where, "MODEL_TYPE_CONVERT", "Only dictionaries may be used in a ModelType")
            continue
        kind = opt.get("type")
        if kind not in range(1, 12):
            errors.add(f"{where}.type", "BASE_TYPE_CHOICES", "Value must be one of {1, ..., 11}.")
            continue
        kinds.add(kind in (SUB_COMMAND, SUB_COMMAND_GROUP))
        if not valid_command_name(opt.get("name")):
            errors.add(f"{where}.name", "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        if opt.get("name") in names:
            errors.add(f"{where}.name", "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS", "Option names must be unique")
        names.add(opt.get("name"))
        _length(errors, f"{where}.description", opt.get("description"), 1, 100, required=True)
        if kind in (SUB_COMMAND, SUB_COMMAND_GROUP):
            if opt.get("required"):
                errors.add(f"{where}.required", "APPLICATION_COMMAND_OPTION_REQUIRED_INVALID",
                           "Subcommands and groups cannot be required")
            if kind == SUB_COMMAND_GROUP and depth > 0 or kind == SUB_COMMAND and depth > 1:
                errors.add(f"{where}.type", "APPLICATION_COMMAND_OPTION_INVALID_NESTING", "Invalid subcommand nesting")
            sub = opt.get("options") or []
            if kind == SUB_COMMAND_GROUP and any(isinstance(o, dict) and o.get("type") != SUB_COMMAND for o in sub):
                errors.add(f"{where}.options", "APPLICATION_COMMAND_OPTION_INVALID_NESTING",
                           "Subcommand groups may contain only subcommands")
            _check_options(sub, f"{where}.options", errors, depth + 1)
            continue
        if opt.get("options"):
            errors.add(f"{where}.options", "APPLICATION_COMMAND_OPTION_INVALID_NESTING",
                       "Only subcommands and groups may have options")
        if opt.get("required"):
            if seen_optional:
                errors.add(f"{where}.required", "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                           "Required options must be placed before non-required options")
        else:
            seen_optional = True
        choices = opt.get("choices")
        if choices:
            if kind not in (STRING, INTEGER, NUMBER):
                errors.add(f"{where}.choices", "APPLICATION_COMMAND_OPTION_CHOICES_INVALID",
                           "Choices are allowed only for string, integer and number options")
            elif len(choices) > 25:
                errors.add(f"{where}.choices", "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
            else:
                for k, choice in enumerate(choices):
                    _check_choice(choice, kind, f"{where}.choices.{k}", errors)
            if opt.get("autocomplete"):
                errors.add(f"{where}.autocomplete", "APPLICATION_COMMAND_AUTOCOMPLETE_INVALID",
                           "Autocomplete cannot be set with choices")
        if opt.get("autocomplete") and kind not in (STRING, INTEGER, NUMBER):
            errors.add(f"{where}.autocomplete", "APPLICATION_COMMAND_AUTOCOMPLETE_INVALID",
                       "Autocomplete is allowed only for string, integer and number options")
        for key in ("min_value", "max_value"):
            if opt.get(key) is not None and kind not in (INTEGER, NUMBER):
                errors.add(f"{where}.{key}", "APPLICATION_COMMAND_OPTION_INVALID", f"{key} is only for numbers")
        for key, lo in (("min_length", 0), ("max_length", 1)):
            if opt.get(key) is not None:
                if kind != STRING:
                    errors.add(f"{where}.{key}", "APPLICATION_COMMAND_OPTION_INVALID", f"{key} is only for strings")
                else:
                    _int_range(errors, f"{where}.{key}", opt.get(key), lo, 6000)
    if len(kinds) > 1:
        errors.add(path, "APPLICATION_COMMAND_OPTION_INVALID_NESTING",
                   "Subcommands cannot be mixed with other options")


def _command_size(cmd: Dict[str, Any]) -> int:
    """Combined name + description + choice name/value characters (Discord's 8000 limit)."""
    total = len(str(cmd.get("name") or "")) + len(str(cmd.get("description") or ""))
    for opt in cmd.get("options") or []:
        if isinstance(opt, dict):
            total += _command_size(opt)
            for choice in opt.get("choices") or []:
                total += len(str(choice.get("name") or "")) + len(str(choice.get("value") or ""))
    return total


def find_option(options: List[Dict[str, Any]], name: str) -> Optional[Dict[str, Any]]:
    return next((o for o in options or [] if o.get("name") == name), None)
