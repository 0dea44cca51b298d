"""Point discord.py at a fake Discord server in a subprocess, without the program knowing.

Python imports ``sitecustomize`` at startup from the first ``sys.path`` entry
that has one; ``FakeDiscord.env()`` puts this directory first on PYTHONPATH
and sets:

* ``FAKE_DISCORD_API``     - e.g. ``http://127.0.0.1:PORT/api/v10`` -> ``discord.http.Route.BASE``
* ``FAKE_DISCORD_GATEWAY`` - e.g. ``ws://127.0.0.1:PORT/gateway``   -> ``DiscordWebSocket.DEFAULT_GATEWAY``

``discord.asset.Asset.BASE`` (avatar/icon CDN) is pointed at ``/cdn`` on the
same host.  With neither variable set this file does nothing.  discord is not
imported here: an import hook patches ``discord.http`` / ``discord.gateway`` /
``discord.asset`` right after the program itself imports them, so processes
that never use discord pay nothing.  Any other ``sitecustomize`` this one
shadows (e.g. the interpreter's own) is still executed.
"""

import os
import sys


def _chain_shadowed_sitecustomize() -> None:
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None or os.path.abspath(spec.origin or "") == os.path.abspath(__file__):
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["_fake_discord_shadowed_sitecustomize"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # same leniency as site.py
        print(f"Error in shadowed sitecustomize {spec.origin}: {exc!r}", file=sys.stderr)


def _install_discord_patch(api: str, gateway: str) -> None:
    import importlib.abc
    import importlib.machinery
    from urllib.parse import urlsplit

    parts = urlsplit(api or gateway)
    scheme = "https" if parts.scheme in ("https", "wss") else "http"
    cdn = f"{scheme}://{parts.netloc}/cdn"

    def patch(module) -> None:
        if module.__name__ == "discord.http" and api:
            module.Route.BASE = api
        elif module.__name__ == "discord.gateway" and gateway:
            import yarl

            module.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway)
        elif module.__name__ == "discord.asset":
            module.Asset.BASE = cdn

    targets = ("discord.http", "discord.gateway", "discord.asset")

    class _Loader(importlib.abc.Loader):
        def __init__(self, inner) -> None:
            self._inner = inner

        def create_module(self, spec):
            return self._inner.create_module(spec)

        def exec_module(self, module) -> None:
            self._inner.exec_module(module)
            patch(module)

        def __getattr__(self, name):  # get_source, get_filename, ... for tracebacks/inspect
            return getattr(self._inner, name)

    class _Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path, target=None):
            if fullname not in targets:
                return None
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is not None and spec.loader is not None:
                spec.loader = _Loader(spec.loader)
            return spec

    for name in targets:  # already imported (unlikely this early): patch now
        if name in sys.modules:
            patch(sys.modules[name])
    sys.meta_path.insert(0, _Finder())


_API = os.environ.get("FAKE_DISCORD_API", "")
_GATEWAY = os.environ.get("FAKE_DISCORD_GATEWAY", "")
if _API or _GATEWAY:
    _install_discord_patch(_API, _GATEWAY)
_chain_shadowed_sitecustomize()
