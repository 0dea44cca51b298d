"""The longest input every command accepts, through every command, prefix and slash, and the options
form: every request the bot sends must be one Discord accepts (the fake refuses what Discord refuses:
content over 2,000 characters, embed and component limits, allowed_mentions, pre-filled form values),
and every user hears an answer. The commands and their parameters are read from the running bot and
the published command tree, so a command added later is covered without editing this file.
"""

from __future__ import annotations

import inspect


from bot.frontend.help import HelpCommand
from bot_harness import IMAGES, make_config, running_bot

# A member with Nitro may send 4,000 characters; a slash command's string option holds up to 6,000
# (developers/interactions/application-commands, "Application Command Option Structure": max_length).
LONGEST_MESSAGE = 4000
LONGEST_OPTION = 6000
# Words in front of the long argument, so it reaches each command's deeper checks (a known setting's
# value, a limit's value, a preset's options) as well as the first one.
FILLERS = ("a", "epochs", "max_epochs", "channels", "p1")
# What may start a rest-of-the-line argument: plain text, an unknown option, an option's value.
REST_STARTS = ("", "--", "--epochs ", "p1 --epochs ")
STRING, ATTACHMENT, BOOLEAN, INTEGER, NUMBER, SUB_COMMAND, SUB_COMMAND_GROUP = 3, 11, 5, 4, 10, 1, 2
OPTIONS_LABEL = "Options (one per line, as in !stylize)"
SEED_LABEL = "Seed (empty = a new random seed)"


def long_message(head: str, start: str, tail: str) -> str:
    """``head start xxx…x tail``, LONGEST_MESSAGE characters in all."""
    room = LONGEST_MESSAGE - len(head) - len(start) - len(tail) - 2
    return f"{head} {start}{'x' * room} {tail}".rstrip()


def prefix_inputs(bot) -> list[str]:
    """For each argument of each prefix command: a message making that argument as long as it can be."""
    prefix = bot.config.bot.command_prefix
    texts = []
    for command in bot.walk_commands():
        params = list(command.clean_params.values())
        for index, param in enumerate(params):
            rest = param.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_POSITIONAL)
            after = " ".join("a" for p in params[index + 1:] if p.default is inspect.Parameter.empty)
            for filler in FILLERS if index else ("",):
                head = f"{prefix}{command.qualified_name} " + " ".join([filler] * index)
                for start in REST_STARTS if rest else ("",):
                    texts.append(long_message(head.strip(), start, after))
    return texts


def _leaves(command: dict) -> list[tuple[list[str], list[dict]]]:
    """(path, options) of every runnable form of a chat command: itself, or its subcommands."""
    options = command.get("options") or []
    subs = [o for o in options if o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP)]
    if not subs:
        return [([command["name"]], options)]
    out = []
    for sub in subs:
        for path, leaf in _leaves(sub):
            out.append(([command["name"], *path], leaf))
    return out


def _short_value(option: dict):
    if option.get("choices"):
        return option["choices"][0]["value"]
    return {ATTACHMENT: IMAGES[0], BOOLEAN: False, INTEGER: option.get("min_value", 1),
            NUMBER: option.get("min_value", 1), STRING: "a"}.get(option["type"])


def slash_inputs(fake) -> list[tuple[str, dict]]:
    """For each free-text option of each slash command: the command with that option 6,000 characters
    long (and once for each choice of a choice option beside it, e.g. every /limits name)."""
    calls = []
    for command in fake.commands():
        if command.get("type", 1) != 1:
            continue
        for path, options in _leaves(command):
            for long_one in (o for o in options if o["type"] == STRING and not o.get("choices")):
                required = {o["name"]: _short_value(o) for o in options if o.get("required") and o is not long_one}
                if any(o["name"] == "style_image" for o in options):  # /stylize: a style beside the content
                    required["style_image"] = IMAGES[1]
                chosen = [o for o in options if o.get("choices") and o.get("required")]
                variants = [{chosen[0]["name"]: c["value"]} for c in chosen[0]["choices"]] if chosen else [{}]
                for variant in variants:
                    calls.append((" ".join(path), {**required, **variant, long_one["name"]: "x" * LONGEST_OPTION}))
    return calls


def answered(ix) -> bool:
    return bool(ix.followups or (ix.original is not None and ix.original.content))


def answer_of(ix) -> str:
    return (ix.followups or [ix.original])[-1].content


async def test_the_longest_input_of_every_command_gets_an_answer_discord_accepts(fake, world, tmp_path, weights_file):
    async with running_bot(fake, make_config(tmp_path, weights_file)) as bot:
        fake.register_tree(bot)
        channel, user = world.general, world.boss  # an admin: the server commands reach their checks
        unanswered, answers, refused = [], [], []
        seen = len(fake.requests)

        def refusals() -> list:  # requests the fake (as Discord) refused since the last input
            return [r for r in fake.requests[seen:] if r.status >= 400]

        async def after(what: str, done) -> None:
            """Wait for the answer (``done()``) or a refusal, whichever comes first; note what happened."""
            nonlocal seen
            try:
                await fake.wait_until(lambda: done() or refusals(), timeout=30, what=f"an answer to {what}")
            except TimeoutError:
                pass
            if not done():
                unanswered.append(what)
            refused.extend((what, r) for r in refusals())
            seen = len(fake.requests)

        def bot_answer(sent):
            return next((m for m in fake.bot_messages(channel.id) if m.id > sent.id), None)

        for text in prefix_inputs(bot):
            sent = await fake.user_sends(channel.id, user.id, text)
            await after(text[:60], lambda: bot_answer(sent))
            if bot_answer(sent):
                answers.append((text[:60], bot_answer(sent).content))

        calls = slash_inputs(fake)
        assert {"settings set", "limits set", "preset save", "stylize", "style add"} <= {path for path, _ in calls}
        for path, options in calls:
            ix = await fake.slash(user, channel, path, options=options)
            await after(f"/{path} {sorted(options)}", lambda: answered(ix) or ix.errors)
            if answered(ix):
                answers.append((f"/{path}", answer_of(ix)))

        source = await fake.user_sends(channel.id, user.id, "two pictures", attachments=IMAGES)
        for options, seed in ((f"--{'x' * 3998}", ""), (f"--epochs {'9' * 3991}", "9" * 10), ("x" * 4000, "1")):
            menu = await fake.context_menu(user, source.id, "Stylize with options")
            await menu.wait_until(lambda i: i.modal is not None, timeout=30)
            form = await fake.submit_modal(user, menu, {OPTIONS_LABEL: options, SEED_LABEL: seed})
            await after(f"the options form with {options[:40]}", lambda: answered(form) or form.errors)
            if answered(form):
                answers.append(("form", answer_of(form)))

        assert not refused, f"Discord would refuse what the bot sent after: {refused}"
        assert not unanswered, f"no answer to: {unanswered}"
        assert len(answers) > 50
        for what, content in answers:
            assert "something went wrong" not in content, (what, content)
        quoted = [content for _, content in answers if "xxxxxxxxxx" in content]
        assert quoted and all("…" in content for content in quoted), "quoted user text is shortened with an ellipsis"
        assert isinstance(bot.help_command, HelpCommand)
