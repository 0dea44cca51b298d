"""CI's container check: build the project's Dockerfile with a standard OCI builder and run the image.

From nothing: installs buildah, podman and debootstrap from Debian's registry; makes a Debian bookworm
base (debootstrap + Debian's python3.11, the equivalent of python:3.11-slim-bookworm, which Docker
Hub would serve) and passes it as PYTHON_IMAGE; builds with TORCH_VARIANT=pypi (torch from PyPI
through this machine's pip configuration, which reaches the build only as read-only mounts) and
random VGG-19 weights exported by the project (given as the "vgg19-weights" build context with their
SHA-256). Then it runs the image with its own ENTRYPOINT and CMD, as its non-root user, read-only
root filesystem, /data a volume, against tests/fake_discord on the host's loopback: READY, the
image's own HEALTHCHECK command, one !stylize job delivered, SIGTERM honoured within the grace with
the database intact. Prints the measured sizes and times, and removes everything it made.

    .venv/bin/python .ci/container_check.py         # as root (or with passwordless sudo)

NST_CONTAINER_CHECK=require turns a skip (no privileges for a chroot build) into a failure;
NST_CONTAINER_CHECK=skip skips on purpose. Exit status: 0 passed or skipped (with a SKIPPED line),
1 a container step failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import json
import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# runc, not crun: crun refuses hybrid cgroup v1/v2 hosts (as this CI machine is).
DEBIAN_PACKAGES = ["buildah", "podman", "debootstrap", "runc", "conmon", "catatonit"]
SUITE = "bookworm"
MIRROR = os.environ.get("NST_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# Debian's python3.11 with venv (ensurepip) and the command "python", as python:3.11-slim has them.
BASE_PACKAGES = ["python3-venv", "python3-distutils", "python-is-python3", "ca-certificates"]
VARIANT = "pypi"  # PyPI's torch build: the one this machine's indexes serve (a CUDA 13.0 build)
MIN_FREE_GB = 40  # overlay storage: 12 GB kept, 21-36 GB free-space drop at the build's peak; vfs: more
STOP_GRACE_S = 90  # compose.yaml's stop_grace_period and README's --stop-timeout
TOKEN = "container-check-token"
FAKE_SITE_IN_CONTAINER = "/opt/fake-discord-site"


class CheckFailed(Exception):
    pass


class Skip(Exception):
    pass


def log(message: str) -> None:
    print(f"[container] {message}", flush=True)


def run(args: list[str], *, check: bool = True, capture: bool = False, quiet: bool = False,
        timeout: float | None = None) -> subprocess.CompletedProcess:
    if not quiet:
        log("$ " + shlex.join(args))
    done = subprocess.run(args, text=True, timeout=timeout,
                          stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None)
    if check and done.returncode != 0:
        detail = f"\n{done.stdout or ''}{done.stderr or ''}" if capture else ""
        raise CheckFailed(f"{shlex.join(args[:3])} ... failed with exit status {done.returncode}{detail}")
    return done


def gb(size: int) -> str:
    return f"{size / 1e9:.2f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB"


# ------------------------------------------------------------------------------------ privileges


def privileges() -> None:
    """Raise Skip when this machine cannot do a rootful chroot build (root, mount namespaces, chroot)."""
    if os.geteuid() != 0:
        raise Skip("not root: a chroot build (buildah --isolation chroot) and the mounts it makes need root")
    probes = {
        "a mount namespace (CAP_SYS_ADMIN)": ["unshare", "--mount", "--fork", "true"],
        "chroot (CAP_SYS_CHROOT)": ["chroot", "/", "true"],
    }
    for what, probe in probes.items():
        if subprocess.run(probe, capture_output=True).returncode != 0:
            raise Skip(f"cannot create {what}: the container build needs a privileged machine")


def install_tools() -> None:
    missing = [p for p in DEBIAN_PACKAGES if shutil.which(p) is None]
    if not missing:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *DEBIAN_PACKAGES]
    log("installing from Debian: " + " ".join(DEBIAN_PACKAGES))
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=True)
        done = subprocess.run(install, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise CheckFailed(f"apt-get install failed:\n{done.stdout}{done.stderr}")
    run(["buildah", "--version"])
    run(["podman", "--version"])


# ------------------------------------------------------------------------------------ storage


class Tools:
    """buildah and podman on a storage of their own under the work folder: nothing touches the
    machine's default container storage, and cleaning up is removing that folder."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.driver = "overlay" if self._overlay_works() else "vfs"
        common = ["--root", str(work / "storage"), "--runroot", str(work / "run"), "--storage-driver", self.driver]
        self.buildah = ["buildah", *common]
        self.podman = ["podman", *common, "--runtime", "runc", "--cgroup-manager", "cgroupfs",
                       "--events-backend", "file", "--tmpdir", str(work / "podman-tmp")]
        # Limits within the host's hard ones: without CAP_SYS_RESOURCE (as here) podman's defaults
        # (above them) cannot be set and no container starts.
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nofile = 65536 if nofile == resource.RLIM_INFINITY else min(nofile, 65536)
        self.limits = ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=4096:4096"]
        # A helper container: no health check timer (needs systemd), no network.
        self.helper = ["run", "--rm", "--no-healthcheck", "--network", "none", *self.limits]

    def _overlay_works(self) -> bool:
        """The kernel's overlayfs on the work folder's file system (vfs copies every layer in full)."""
        probe = self.work / "overlay-probe"
        dirs = {name: probe / name for name in ("lower", "upper", "work", "merged")}
        for path in dirs.values():
            path.mkdir(parents=True)
        options = f"lowerdir={dirs['lower']},upperdir={dirs['upper']},workdir={dirs['work']}"
        ok = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(dirs["merged"])],
                            capture_output=True).returncode == 0
        if ok:
            subprocess.run(["umount", str(dirs["merged"])], check=True)
        shutil.rmtree(probe)
        return ok

    def remove_everything(self) -> None:
        """Containers, images and volumes this check made, then the storage folder itself."""
        for args in (self.podman + ["rm", "--all", "--force"], self.podman + ["volume", "rm", "--all", "--force"],
                     self.buildah + ["rm", "--all"], self.buildah + ["rmi", "--all", "--force"]):
            subprocess.run(args, capture_output=True)
        for mount in sorted(_mounts_under(self.work), reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(self.work, ignore_errors=True)


def _mounts_under(folder: Path) -> list[str]:
    prefix = str(folder)
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1].encode().decode("unicode_escape") for line in mounts]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


# ------------------------------------------------------------------------------------ inputs


def debian_base(tools: Tools, tag: str) -> None:
    """A local python:3.11-slim-bookworm equivalent: debootstrap minbase + Debian's python3.11."""
    rootfs = tools.work / "rootfs"
    run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, str(rootfs), MIRROR],
        capture=True)
    # What python:3.11-slim also leaves out: package lists and caches, documentation, locales.
    for leftover in ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man", "usr/share/info",
                     "usr/share/locale", "debootstrap"):
        target = rootfs / leftover
        if target.is_dir():
            for child in target.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    context = tools.work / "base"
    context.mkdir()
    run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(context / "rootfs.tar"), "."])
    shutil.rmtree(rootfs)
    (context / "Containerfile").write_text('FROM scratch\nADD rootfs.tar /\nENV LANG=C.UTF-8\nCMD ["python3"]\n')
    run(tools.buildah + ["bud", "--format", "docker", "--isolation", "chroot", "-t", tag, str(context)], capture=True)
    (context / "rootfs.tar").unlink()


def random_weights(folder: Path) -> tuple[str, str]:
    """The features file export-weights writes from random weights, and its SHA-256."""
    folder.mkdir()
    path = folder / "vgg19-random.pth"
    run([sys.executable, "-m", "nst", "export-weights", str(path), "--weights", "random"], capture=True)
    return path.name, hashlib.sha256(path.read_bytes()).hexdigest()


def pip_index_mounts() -> list[str]:
    """buildah --volume options for this machine's pip configuration: the config files pip reads (global
    and root's own: the build's pip runs as root) and every local path they name (file:// indexes,
    find-links, certificates, constraints), read-only at the same path, so the build's pip sees what
    the host's does and none of it enters a layer."""
    debug = subprocess.run([sys.executable, "-m", "pip", "config", "debug"], capture_output=True, text=True,
                           check=True).stdout
    files = [Path(m.group(1)) for m in re.finditer(r"^\s+(/\S+), exists: True", debug, re.M)]
    config_files = [f for f in files if not f.is_relative_to(Path(sys.prefix))]  # not this venv's own
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                            check=True).stdout
    paths = set(config_files)
    for value in re.findall(r"='(.*)'$", listed, re.M):
        for word in value.split():
            word = word.removeprefix("file://")
            if word.startswith("/") and Path(word).exists():
                paths.add(Path(word).parent if word.endswith("/simple") else Path(word))
    return [f"--volume={p}:{p}:ro" for p in sorted(paths)]


# ------------------------------------------------------------------------------------ build


class DiskPeak:
    """The largest drop of the file system's free space while building (sampled: it includes whatever
    else writes to that disk meanwhile)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.start = folder, shutil.disk_usage(folder).free
        self.lowest, self._stop = self.start, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(2):
            self.lowest = min(self.lowest, shutil.disk_usage(self.folder).free)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.start - self.lowest


def build(tools: Tools, base: str, weights_dir: Path, weights_name: str, weights_sha: str, tag: str) -> list[str]:
    mounts = pip_index_mounts()
    args = tools.buildah + [
        "bud", "--format", "docker",  # docker's image format: OCI's has no HEALTHCHECK and no SHELL
        "--layers",  # one layer per instruction, as docker build makes them
        "--isolation", "chroot", *mounts,
        "--build-arg", f"PYTHON_IMAGE={base}", "--build-arg", f"TORCH_VARIANT={VARIANT}",
        "--build-context", f"vgg19-weights={weights_dir}",
        "--build-arg", f"VGG19_WEIGHTS_FILE={weights_name}", "--build-arg", f"VGG19_WEIGHTS_SHA256={weights_sha}",
        "-t", tag, str(ROOT),
    ]
    run(args)
    return mounts


def inspect(tools: Tools, image: str) -> dict:
    return json.loads(run(tools.podman + ["image", "inspect", image], capture=True, quiet=True).stdout)[0]


def layer_sizes(tools: Tools, image: str) -> list[tuple[int, str]]:
    """(size, instruction) of each layer-making step, oldest first."""
    history = json.loads(run(tools.podman + ["history", "--format", "json", image], capture=True, quiet=True).stdout)
    return [(entry["size"], " ".join(entry.get("CreatedBy", entry.get("createdBy", "")).split()))
            for entry in reversed(history)]


def check_no_index_config_in_image(tools: Tools, base: str, image: str, mounts: list[str]) -> list[str]:
    """The pip configuration was mounted, never copied: each mounted path is in the image as it is in
    the base (absent, or the base's own file), or an empty mount point. buildah --volume leaves those
    (an empty file or folder where it mounted a path the image lacked) in the layers of every RUN;
    they are returned, for the report."""
    probe = ("import hashlib, os, sys; p = sys.argv[1]; "
             "print('absent' if not os.path.lexists(p) else ('empty folder' if not os.listdir(p) else 'folder') "
             "if os.path.isdir(p) else 'empty file' if not os.path.getsize(p) else "
             "hashlib.sha256(open(p, 'rb').read()).hexdigest())")
    residue = []
    for mount in mounts:
        path = mount.split("=", 1)[1].split(":")[0]
        in_base, in_image = [run(tools.podman + [*tools.helper, "--entrypoint", "python3", ref, "-c", probe, path],
                                 capture=True, quiet=True).stdout.strip() for ref in (base, image)]
        if in_image == in_base:
            continue
        if in_base != "absent" or not in_image.startswith("empty"):
            raise CheckFailed(f"{path}: the build's pip configuration reached the image ({in_base} in the base, "
                              f"{in_image} in the image)")
        residue.append(f"{path} ({in_image})")
    return residue


# ------------------------------------------------------------------------------------ run


def png(size: tuple[int, int], seed: int) -> bytes:
    from PIL import Image
    import random

    rng = random.Random(seed)
    image = Image.new("RGB", size)
    image.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(size[0] * size[1])])
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


async def exercise(tools: Tools, image: str, results: dict) -> None:
    from tests.fake_discord import SITE_DIR, FakeDiscord

    name, volume = f"nst-ci-{os.getpid()}", f"nst-ci-data-{os.getpid()}"
    async with FakeDiscord() as fake:
        operator = fake.add_user("operator")
        fake.add_bot(token=TOKEN, name="StyleBot", owner_id=operator.id)
        guild = fake.add_guild(name="Container Check", owner_id=operator.id)
        channel = fake.add_text_channel(guild.id, "general")
        alice = fake.add_user("alice")
        fake.add_member(guild.id, alice.id)
        env = fake.env()
        # The operator's config, mounted over the image's as compose.yaml does: the image's own plus the
        # one thing the fake needs, its loopback address as the host images are downloaded from.
        config = tools.work / "config.toml"
        text = (ROOT / "docker" / "config.toml").read_text()
        text, found = re.subn(r"(?m)^attachment_hosts\s*=.*$", 'attachment_hosts = ["127.0.0.1"]', text)
        if not found:
            text = text.replace("[bot]\n", '[bot]\nattachment_hosts = ["127.0.0.1"]\n', 1)
        if tomllib.loads(text)["bot"]["attachment_hosts"] != ["127.0.0.1"]:
            raise CheckFailed("could not set bot.attachment_hosts in a copy of docker/config.toml")
        config.write_text(text)
        config.chmod(0o644)
        command = tools.podman + [
            "run", "--detach", "--name", name, "--init", "--network", "host",  # the fake is on the host's loopback
            "--read-only", "--tmpfs", "/tmp", "--volume", f"{volume}:/data",
            "--stop-timeout", str(STOP_GRACE_S), *tools.limits,
            "--health-interval", "disable",  # the image's check, run below: podman's timers need systemd
            "--env", f"DISCORD_TOKEN={TOKEN}", "--env", f"FAKE_DISCORD_API={env['FAKE_DISCORD_API']}",
            "--env", f"FAKE_DISCORD_GATEWAY={env['FAKE_DISCORD_GATEWAY']}",
            # the fake's sitecustomize points the image's discord.py at it; nothing else is changed
            "--volume", f"{config}:/etc/nst-bot/config.toml:ro",
            "--volume", f"{SITE_DIR}:{FAKE_SITE_IN_CONTAINER}:ro", "--env", f"PYTHONPATH={FAKE_SITE_IN_CONTAINER}",
            image,  # its own ENTRYPOINT, CMD and USER
        ]
        started = time.monotonic()
        run(command, capture=True)
        try:
            await ready(tools, fake, name, timeout=300)
            results["cold start to READY"] = time.monotonic() - started
            log(f"READY after {results['cold start to READY']:.1f} s")
            user = run(tools.podman + ["exec", name, "id", "-u"], capture=True, quiet=True).stdout.strip()
            if user != "10001":
                raise CheckFailed(f"the bot runs as UID {user}, not the image's 10001")
            await healthy(tools, name, started, results)
            await one_job(fake, channel, alice, results)
            stop_started = time.monotonic()
            # In a thread: this loop serves the fake Discord, which the stopping bot still talks to.
            await asyncio.to_thread(run, tools.podman + ["stop", "--time", str(STOP_GRACE_S), name], capture=True)
            results["SIGTERM to exit"] = time.monotonic() - stop_started
            log(f"storage driver {tools.driver}; {tools_note()}")
            state = json.loads(run(tools.podman + ["inspect", name], capture=True, quiet=True).stdout)[0]["State"]
            logs = run(tools.podman + ["logs", name], capture=True, quiet=True)
            text = logs.stdout + logs.stderr
            if state["ExitCode"] != 0 or "SIGTERM received: shutting down gracefully" not in text:
                raise CheckFailed(f"SIGTERM: exit status {state['ExitCode']} after {results['SIGTERM to exit']:.1f} s"
                                  f"\n{text[-3000:]}")
            if TOKEN in text:
                raise CheckFailed("the token appears in the container's logs")
            log(f"SIGTERM: exited 0 after {results['SIGTERM to exit']:.1f} s (grace {STOP_GRACE_S} s); the bot's last "
                "log lines:\n" + "\n".join(text[text.index("SIGTERM received"):].rstrip().splitlines()[:40]))
        except BaseException:
            logs = run(tools.podman + ["logs", name], check=False, capture=True, quiet=True)
            log("container logs (last lines):\n" + (logs.stdout + logs.stderr)[-4000:])
            log("the fake's last requests: " + ", ".join(f"{r.method} {r.path} {r.status}" for r in fake.requests[-15:]))
            raise
        finally:
            run(tools.podman + ["rm", "--force", "--time", "0", name], check=False, capture=True, quiet=True)
        fake.assert_clean()
    database_intact(tools, image, volume)
    run(tools.podman + ["volume", "rm", volume], capture=True, quiet=True)


async def ready(tools: Tools, fake, name: str, timeout: float) -> None:
    """The fake's READY, failing as soon as the container has exited."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await fake.wait_ready(timeout=2)
        except (TimeoutError, AssertionError, asyncio.TimeoutError):
            state = json.loads(run(tools.podman + ["inspect", name], capture=True, quiet=True).stdout)[0]["State"]
            if not state["Running"]:
                raise CheckFailed(f"the container exited with status {state['ExitCode']} before READY") from None
            if time.monotonic() > deadline:
                raise


async def healthy(tools: Tools, name: str, started: float, results: dict) -> None:
    """The image's own HEALTHCHECK command (podman healthcheck run executes it in the container)."""
    configured = json.loads(run(tools.podman + ["inspect", name], capture=True, quiet=True).stdout)[0]
    test = (configured.get("Config", {}).get("Healthcheck") or {}).get("Test")
    if not test or "nst-healthcheck" not in " ".join(test):
        raise CheckFailed(f"the image has no HEALTHCHECK running nst-healthcheck: {test}")
    deadline = time.monotonic() + 120  # the HEALTHCHECK's start period
    while True:
        done = await asyncio.to_thread(run, tools.podman + ["healthcheck", "run", name], check=False, capture=True, quiet=True)
        if done.returncode == 0:
            results["cold start to healthy"] = time.monotonic() - started
            log(f"HEALTHCHECK {test[1:]} passed ({results['cold start to healthy']:.1f} s after start)")
            return
        if time.monotonic() > deadline:
            raise CheckFailed(f"the HEALTHCHECK never passed: {done.stdout}{done.stderr}")
        await asyncio.sleep(1)


async def one_job(fake, channel, user, results: dict) -> None:
    from PIL import Image

    images = [("content.png", png((96, 72), 1), "image/png"), ("style.png", png((64, 64), 2), "image/png")]
    started = time.monotonic()
    await fake.user_sends(channel.id, user.id, "!stylize --epochs 20 --size 64", attachments=images)
    # the result: the image with the result line, which mentions the user (previews come before it)
    reply = await fake.wait_for_message(lambda m: bool(m.attachments) and f"<@{user.id}> 20 epochs ·" in m.content,
                                        channel_id=channel.id, timeout=float(os.environ.get('NST_JOB_TIMEOUT', 900)))
    result = Image.open(io.BytesIO(reply.attachments[0].data))
    if max(result.size) != 64:
        raise CheckFailed(f"the job delivered a {result.size} image, 64 px were asked for")
    results["!stylize job (20 epochs, 64 px)"] = time.monotonic() - started
    log(f"!stylize delivered {reply.attachments[0].filename} {result.size} after "
        f"{results['!stylize job (20 epochs, 64 px)']:.1f} s: {reply.content[:120]!r}")


def database_intact(tools: Tools, image: str, volume: str) -> None:
    """The database after the stop, read with the image's own code: closed cleanly (no WAL left),
    passes integrity_check, records the delivered job as done and no job as unfinished."""
    script = """
import asyncio, json, os, sqlite3
from bot.core.store import Store
path = '/data/bot.sqlite3'
wal = path + '-wal'
conn = sqlite3.connect(f'file:{path}?mode=ro', uri=True)
found = {'wal_bytes': os.path.getsize(wal) if os.path.exists(wal) else 0,
         'integrity': conn.execute('PRAGMA integrity_check').fetchone()[0],
         'states': [state for (state,) in conn.execute('SELECT state FROM jobs')]}
conn.close()
async def unfinished():
    store = await Store.open(path)
    try:
        return len(await store.unfinished_jobs())
    finally:
        await store.close()
found['unfinished'] = asyncio.run(unfinished())
print(json.dumps(found))
"""
    done = run(tools.podman + [*tools.helper, "--read-only", "--volume", f"{volume}:/data",
                               "--entrypoint", "python", image, "-c", script], check=False, capture=True, quiet=True)
    if done.returncode != 0:
        raise CheckFailed(f"the database after SIGTERM could not be read: {done.stdout}{done.stderr}")
    found = json.loads(done.stdout.strip().splitlines()[-1])
    problems = []
    if found["wal_bytes"]:
        problems.append(f"a {found['wal_bytes']}-byte WAL file is left: it was not closed cleanly")
    if found["integrity"] != "ok":
        problems.append(f"integrity_check says {found['integrity']!r}")
    if found["states"] != ["done"] or found["unfinished"]:
        problems.append(f"the delivered job is recorded as {found['states']} ({found['unfinished']} unfinished), "
                        "not done: the next start would tell its user it was interrupted")
    if problems:
        raise CheckFailed("the database after SIGTERM: " + "; ".join(problems))
    log(f"database intact after the stop: {found}")


# ------------------------------------------------------------------------------------ main


def report_sizes(tools: Tools, base: str, image: str) -> None:
    info, base_info = inspect(tools, image), inspect(tools, base)
    layers = layer_sizes(tools, image)

    def layer(path: str) -> int:
        sizes = [size for size, created in layers if re.search(rf"COPY .* in {re.escape(path)}$", created)]
        if len(sizes) != 1:
            raise CheckFailed(f"expected one layer copying {path}, found {sizes}: {layers}")
        return sizes[0]

    rows = [
        (f"image nst-bot:{VARIANT} (TORCH_VARIANT={VARIANT}: PyPI's torch, a CUDA 13.0 build)", gb(info["Size"])),
        ("  base (debootstrap bookworm + python3.11)", gb(base_info["Size"])),
        ("  dependency layer (/opt/venv: torch, NVIDIA's libraries, ...)", gb(layer("/opt/venv"))),
        ("  weights layer (/opt/nst)", gb(layer("/opt/nst"))),
        ("  application layer (/opt/app: nst, bot)", gb(layer("/opt/app"))),
    ]
    table(f"Container image: measured sizes (uncompressed; podman image inspect --format '{{{{.Size}}}}', "
          f"podman history)", rows)


def compressed_size(tools: Tools, image: str) -> int:
    """What a registry would serve: the image's layers gzip-compressed (buildah push to an OCI folder)."""
    target = tools.work / "oci-export"
    run(tools.buildah + ["push", "--quiet", "--compression-format", "gzip", image, f"oci:{target}"], capture=True)
    blobs = target / "blobs" / "sha256"
    index = json.loads((target / "index.json").read_text())
    manifest = json.loads((blobs / index["manifests"][0]["digest"].split(":", 1)[1]).read_text())
    shutil.rmtree(target)
    return sum(layer["size"] for layer in manifest["layers"])


def report_times(results: dict) -> None:
    table(f"Container check: measured times ({tools_note()})",
          [(what, f"{seconds:.1f} s") for what, seconds in results.items()])


def tools_note() -> str:
    return f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}"


def table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(what) for what, _ in rows)
    print(f"\n{title}")
    for what, value in rows:
        print(f"  {what.ljust(width)}  {value}")
    print(flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compressed", action="store_true", help="also measure the compressed size (gzip, as "
                        "a registry serves it; minutes of CPU)")
    parser.add_argument("--work", type=Path, help="for developing this check: reuse this folder's storage "
                        "(the base and the image built by an earlier --keep run) and keep it afterwards")
    args = parser.parse_args(argv)
    mode = os.environ.get("NST_CONTAINER_CHECK", "auto")
    if mode == "skip":
        print("CONTAINER CHECK SKIPPED: NST_CONTAINER_CHECK=skip", flush=True)
        return 0
    try:
        privileges()
    except Skip as why:
        print(f"CONTAINER CHECK SKIPPED: {why}. The image was NOT built or tested on this machine.", flush=True)
        return 1 if mode == "require" else 0
    started = time.monotonic()
    results: dict[str, float] = {}
    install_tools()
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="nst-container-check.", dir="/var/tmp"))
    tools = Tools(work)
    # buildah's temporary files and its RUN --mount=type=cache folders ($TMPDIR/buildah-cache) go in the
    # work folder too, so that removing it leaves nothing behind
    (work / "tmp").mkdir(exist_ok=True)
    os.environ["TMPDIR"] = str(work / "tmp")
    base, tag = f"localhost/nst-ci-base:{SUITE}", f"localhost/nst-bot:{VARIANT}"
    try:
        free = shutil.disk_usage(work).free
        need = MIN_FREE_GB * (1 if tools.driver == "overlay" else 3)
        if free < need * 1e9 and not args.work:
            raise CheckFailed(f"{gb(free)} free under {work}: the build needs about {need} GB ({tools.driver} storage)")
        have = run(tools.podman + ["image", "exists", tag], check=False, capture=True, quiet=True).returncode == 0
        if args.work and have:
            log(f"reusing {tag} from {work}")
            mounts = pip_index_mounts()
        else:
            phase, disk = time.monotonic(), DiskPeak(work)
            debian_base(tools, base)
            results["base image (debootstrap)"] = time.monotonic() - phase
            weights_name, weights_sha = random_weights(work / "weights")
            phase = time.monotonic()
            mounts = build(tools, base, work / "weights", weights_name, weights_sha, tag)
            results["image build"] = time.monotonic() - phase
            log(f"free disk space dropped by {gb(disk.stop())} at most during the build (storage driver {tools.driver})")
        report_sizes(tools, base, tag)
        if args.compressed:
            phase = time.monotonic()
            size = compressed_size(tools, tag)
            results["compressing the image (gzip)"] = time.monotonic() - phase
            log(f"compressed (gzip) layers of {tag}: {gb(size)}")
        residue = check_no_index_config_in_image(tools, base, tag, mounts)
        log("the pip configuration is not in the image; buildah left empty mount points: "
            + (", ".join(residue) or "none"))
        asyncio.run(exercise(tools, tag, results))
        results["container check, in all"] = time.monotonic() - started
        report_times(results)
        print("CONTAINER CHECK PASSED: built, READY, healthy, job delivered, SIGTERM honoured, database intact",
              flush=True)
        return 0
    except (CheckFailed, subprocess.TimeoutExpired, TimeoutError, AssertionError) as error:
        if results:
            report_times(results)
        print(f"CONTAINER CHECK FAILED: {error}", flush=True)
        return 1
    finally:
        if args.work:
            run(tools.podman + ["rm", "--all", "--force"], check=False, capture=True, quiet=True)
            run(tools.podman + ["volume", "prune", "--force"], check=False, capture=True, quiet=True)
        else:
            tools.remove_everything()
            log(f"removed the images, containers, volumes and storage under {work}")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
