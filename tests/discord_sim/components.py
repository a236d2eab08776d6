"""Message components and modals as Discord handles them (test infrastructure).

Discord's rules the simulator enforces on what a bot sends, besides the OpenAPI schema
(``openapi.py``): at most 5 action rows, at most 5 buttons in a row or one select alone,
unique ``custom_id``s of at most 100 characters, button labels of at most 80, 1-25 select
options with labels/values/descriptions of at most 100, ``min_values <= max_values <=
len(options)``; modals: a title of at most 45 characters, 1-5 rows, text inputs with labels
of at most 45 and ``0 <= min_length <= max_length <= 4000``.

What a user does with them: a button press or a select choice is INTERACTION_CREATE type 3
(``data.custom_id``, ``component_type``, ``values``), a modal submit type 5 (the inputs'
values in the rows they were sent in). The Discord client refuses what a user cannot do:
pressing a disabled button, choosing a value a select does not offer, typing past a text
input's ``max_length``; :class:`ComponentRejected` says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from tests.discord_sim.validation import DiscordError

ACTION_ROW, BUTTON, STRING_SELECT, TEXT_INPUT, LABEL = 1, 2, 3, 4, 18
LINK_STYLE, PREMIUM_STYLE = 5, 6
MAX_ROWS, MAX_ROW_WIDTH = 5, 5
CUSTOM_ID_MAX, BUTTON_LABEL_MAX = 100, 80
SELECT_OPTIONS_MAX, OPTION_TEXT_MAX, PLACEHOLDER_MAX = 25, 100, 150
MODAL_TITLE_MAX, INPUT_LABEL_MAX, INPUT_VALUE_MAX = 45, 45, 4000


class ComponentRejected(Exception):
    """The Discord client would not let the user do this with a component or modal."""


def _invalid(errors: dict[str, str]) -> DiscordError:
    return DiscordError(400, 50035, "Invalid Form Body", errors)


def validate_components(rows: Any) -> None:
    """Refuse (400, 50035) message components Discord would refuse."""
    if rows is None:
        return
    errors: dict[str, str] = {}
    if not isinstance(rows, list) or len(rows) > MAX_ROWS:
        raise _invalid({"components": f"Must be {MAX_ROWS} or fewer in length."})
    seen: set[str] = set()
    for r, row in enumerate(rows):
        where = f"components.{r}"
        if not isinstance(row, dict) or row.get("type") != ACTION_ROW:
            errors[where] = "Top-level components must be action rows."
            continue
        items = row.get("components") or []
        if not 1 <= len(items) <= MAX_ROW_WIDTH:
            errors[where] = f"An action row holds 1 to {MAX_ROW_WIDTH} components."
            continue
        kinds = {item.get("type") for item in items}
        if STRING_SELECT in kinds and len(items) > 1:
            errors[where] = "A select menu must be alone in its action row."
        for c, item in enumerate(items):
            errors.update(_item_errors(item, f"{where}.components.{c}", seen))
    if errors:
        raise _invalid(errors)


def _item_errors(item: dict[str, Any], where: str, seen: set[str]) -> dict[str, str]:
    errors: dict[str, str] = {}
    kind = item.get("type")
    custom_id = item.get("custom_id")
    needs_id = kind == STRING_SELECT or (
        kind == BUTTON and item.get("style") not in (LINK_STYLE, PREMIUM_STYLE)
    )
    if needs_id:
        if not isinstance(custom_id, str) or not 1 <= len(custom_id) <= CUSTOM_ID_MAX:
            errors[f"{where}.custom_id"] = f"Must be between 1 and {CUSTOM_ID_MAX} in length."
        elif custom_id in seen:
            errors[f"{where}.custom_id"] = "Component custom id cannot be duplicated"
        else:
            seen.add(custom_id)
    if kind == BUTTON:
        label = item.get("label") or ""
        if len(label) > BUTTON_LABEL_MAX:
            errors[f"{where}.label"] = f"Must be {BUTTON_LABEL_MAX} or fewer in length."
        if not label and not item.get("emoji"):
            errors[f"{where}.label"] = "A button needs a label or an emoji."
    elif kind == STRING_SELECT:
        errors.update(_select_errors(item, where))
    else:
        errors[f"{where}.type"] = f"Component type {kind} is not handled by the simulator."
    return errors


def _select_errors(item: dict[str, Any], where: str) -> dict[str, str]:
    errors: dict[str, str] = {}
    options = item.get("options") or []
    if not 1 <= len(options) <= SELECT_OPTIONS_MAX:
        errors[f"{where}.options"] = f"Must be between 1 and {SELECT_OPTIONS_MAX} in length."
    values = [o.get("value") for o in options]
    if len(set(values)) != len(values):
        errors[f"{where}.options"] = "Select option values must be unique."
    for o, option in enumerate(options):
        for key in ("label", "value"):
            text = option.get(key) or ""
            if not 1 <= len(text) <= OPTION_TEXT_MAX:
                errors[f"{where}.options.{o}.{key}"] = (
                    f"Must be between 1 and {OPTION_TEXT_MAX} in length."
                )
        if len(option.get("description") or "") > OPTION_TEXT_MAX:
            errors[f"{where}.options.{o}.description"] = "Must be 100 or fewer in length."
    if len(item.get("placeholder") or "") > PLACEHOLDER_MAX:
        errors[f"{where}.placeholder"] = f"Must be {PLACEHOLDER_MAX} or fewer in length."
    lo, hi = int(item.get("min_values", 1) or 0), int(item.get("max_values", 1) or 1)
    if not 0 <= lo <= hi <= max(len(options), 1):
        errors[f"{where}.max_values"] = "min_values <= max_values <= number of options"
    return errors


def text_inputs(components: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The text inputs of a modal, in action rows (type 1) or labels (type 18)."""
    for row in components:
        if row.get("type") == ACTION_ROW:
            yield from (c for c in row.get("components") or [] if c.get("type") == TEXT_INPUT)
        elif row.get("type") == LABEL:
            inner = row.get("component") or {}
            if inner.get("type") == TEXT_INPUT:
                yield {**inner, "label": row.get("label")}


def validate_modal(data: dict[str, Any]) -> None:
    """Refuse (400, 50035) a modal Discord would refuse."""
    errors: dict[str, str] = {}
    title = data.get("title") or ""
    if not 1 <= len(title) <= MODAL_TITLE_MAX:
        errors["title"] = f"Must be between 1 and {MODAL_TITLE_MAX} in length."
    custom_id = data.get("custom_id") or ""
    if not 1 <= len(custom_id) <= CUSTOM_ID_MAX:
        errors["custom_id"] = f"Must be between 1 and {CUSTOM_ID_MAX} in length."
    rows = data.get("components") or []
    if not 1 <= len(rows) <= MAX_ROWS:
        errors["components"] = f"Must be between 1 and {MAX_ROWS} in length."
    seen: set[str] = set()
    for i, field in enumerate(text_inputs(rows)):
        where = f"components.{i}"
        cid = field.get("custom_id") or ""
        if not 1 <= len(cid) <= CUSTOM_ID_MAX or cid in seen:
            errors[f"{where}.custom_id"] = "Must be unique, 1 to 100 in length."
        seen.add(cid)
        if not 1 <= len(field.get("label") or "") <= INPUT_LABEL_MAX:
            errors[f"{where}.label"] = f"Must be between 1 and {INPUT_LABEL_MAX} in length."
        lo = field.get("min_length") or 0
        hi = field.get("max_length") or INPUT_VALUE_MAX
        if not 0 <= lo <= hi <= INPUT_VALUE_MAX:
            errors[f"{where}.max_length"] = "0 <= min_length <= max_length <= 4000"
        if len(field.get("value") or "") > hi:
            errors[f"{where}.value"] = f"Must be {hi} or fewer in length."
    if errors:
        raise _invalid(errors)


def find_component(
    rows: list[dict[str, Any]], *, label: str | None = None, custom_id: str | None = None
) -> dict[str, Any]:
    """The button or select on a message with this label/placeholder or custom id."""
    for row in rows:
        for item in row.get("components") or []:
            if custom_id is not None and item.get("custom_id") == custom_id:
                return item
            if label is not None and label in (item.get("label"), item.get("placeholder")):
                return item
    raise ComponentRejected(f"no component {label or custom_id!r} on that message")


def selection(select: dict[str, Any], values: list[str]) -> list[str]:
    """What the client sends for ``values`` chosen in ``select`` (or refuses)."""
    offered = {o["value"] for o in select.get("options") or []}
    unknown = [v for v in values if v not in offered]
    if unknown:
        raise ComponentRejected(f"the select does not offer {unknown}")
    lo, hi = int(select.get("min_values", 1) or 0), int(select.get("max_values", 1) or 1)
    if not lo <= len(values) <= hi:
        raise ComponentRejected(f"choose {lo} to {hi} values, not {len(values)}")
    return list(values)


def modal_submission(
    modal: dict[str, Any], values: dict[str, str], *, enforce: bool = True
) -> list[dict[str, Any]]:
    """The ``data.components`` of a modal submit: each text input's value, in the shape the
    modal was sent (rows or labels). ``enforce=False`` forges a client that ignores the
    inputs' length limits and required flags."""
    fields = {f["custom_id"]: f for f in text_inputs(modal.get("components") or [])}
    for key in values:
        if key not in fields:
            raise ComponentRejected(f"the modal has no text input {key!r}")
    out: list[dict[str, Any]] = []
    for row in modal.get("components") or []:
        if row.get("type") == LABEL:
            inner = row.get("component") or {}
            if inner.get("type") == TEXT_INPUT:
                value = _typed(fields[inner["custom_id"]], values, enforce)
                inner_out = {"type": TEXT_INPUT, "custom_id": inner["custom_id"], "value": value}
                out.append({"type": LABEL, "id": row.get("id", 0), "component": inner_out})
            continue
        items = [
            {"type": TEXT_INPUT, "custom_id": c["custom_id"], "value": _typed(c, values, enforce)}
            for c in row.get("components") or []
            if c.get("type") == TEXT_INPUT
        ]
        out.append({"type": ACTION_ROW, "components": items})
    return out


def _typed(field: dict[str, Any], values: dict[str, str], enforce: bool) -> str:
    value = values.get(field["custom_id"], field.get("value") or "")
    if enforce:
        hi = field.get("max_length") or INPUT_VALUE_MAX
        lo = field.get("min_length") or 0
        if len(value) > hi:
            raise ComponentRejected(f"the text input allows {hi} characters, not {len(value)}")
        if field.get("required", True) and len(value) < max(lo, 1):
            raise ComponentRejected(f"{field.get('label')!r} is required")
    return value


def validate_choices(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Autocomplete choices (callback type 8): at most 25, names 1-100 characters."""
    choices = data.get("choices") or []
    errors: dict[str, str] = {}
    if len(choices) > SELECT_OPTIONS_MAX:
        errors["choices"] = f"Must be {SELECT_OPTIONS_MAX} or fewer in length."
    for i, choice in enumerate(choices):
        if not 1 <= len(str(choice.get("name") or "")) <= OPTION_TEXT_MAX:
            errors[f"choices.{i}.name"] = "Must be between 1 and 100 in length."
        if isinstance(choice.get("value"), str) and len(choice["value"]) > OPTION_TEXT_MAX:
            errors[f"choices.{i}.value"] = "Must be 100 or fewer in length."
    if errors:
        raise _invalid(errors)
    return list(choices)
